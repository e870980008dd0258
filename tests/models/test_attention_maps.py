"""`MSAModel.attention_maps` / `attention_axes` of every model with attention:
documented shapes, softmax rows over real keys, exact zeros at padded keys
(with inf and NaN under the masks), SE weights in the gate's range, and the
GMRA and key-modality maps recomputed in NumPy from the layers' weights."""

import numpy as np
import pytest

from keras_msa.models import EFLSTM
from keras_msa.models import LFDNN
from keras_msa.models import MulG
from keras_msa.testing import ATTENTION_MODEL_CONFIGS
from keras_msa.testing import padded_attention_batch

B, T_T, T_A, T_V = 3, 12, 16, 10
FILL = {"text": np.nan, "audio": -np.inf, "vision": np.inf}


@pytest.fixture(scope="module")
def batch():
    return padded_attention_batch(fill=FILL)


@pytest.fixture(scope="module")
def built(attention_models, batch):
    return {
        name: (model, {k: np.asarray(v) for k, v in model.attention_maps(batch).items()})
        for name, model in attention_models.items()
    }


def _key_mask(axes, batch):
    """Boolean [B, *key shape] of the real keys of a map with `axes`."""
    if axes[-2].startswith("modality:"):  # CS-DSA: (modality, time) keys
        rows = len(axes[-2].split(":")[1].split(","))
        mask = batch[axes[-1].split(":")[1] + "_mask"]
        return np.repeat(mask[:, None, :], rows, axis=1)
    parts = axes[-1].split(":")[1].split("+")
    return np.concatenate([batch[f"{m}_mask"] for m in parts], axis=1)


EXPECTED_SHAPES = {
    "mulg": {
        "text_from_audio": (B, T_T, T_A), "text_from_vision": (B, T_T, T_V),
        "audio_from_text": (B, T_A, T_T), "audio_from_vision": (B, T_A, T_V),
        "vision_from_text": (B, T_V, T_T), "vision_from_audio": (B, T_V, T_A),
    },
    "ssgdl": {"csdsa_k1": (B, 3, T_T, 3, T_T), "csdsa_k3": (B, 3, T_T, 3, T_T)},
    "crosssent": {"text_from_audio+vision": (B, 2, T_T, T_A + T_V)},
    "tecafn": {"text_from_audio": (B, 2, 2, T_T, T_A), "text_from_vision": (B, 2, 2, T_T, T_V)},
    "m3sa": {
        "text_from_audio": (B, 2, T_T, T_A), "text_from_vision": (B, 2, T_T, T_V),
        "text_from_text": (B, 2, T_T, T_T), "se_text": (B, 3), "se_audio": (B, 3), "se_vision": (B, 3),
    },
}


@pytest.mark.parametrize("name", sorted(ATTENTION_MODEL_CONFIGS))
def test_documented_shapes_and_axes(built, name):
    model, maps = built[name]
    axes = model.attention_axes()
    assert {k: v.shape for k, v in maps.items()} == EXPECTED_SHAPES[name]
    assert set(axes) == set(maps)
    for key, value in maps.items():
        assert value.dtype == np.float32
        assert len(axes[key]) == value.ndim - 1, key


@pytest.mark.parametrize("name", sorted(ATTENTION_MODEL_CONFIGS))
def test_rows_sum_to_one_over_real_keys_and_padding_gets_zero(built, batch, name):
    model, maps = built[name]
    for key, axes in model.attention_axes().items():
        value = maps[key]
        assert np.isfinite(value).all(), key
        if axes == ("scale",):
            continue
        query = [i for i, a in enumerate(axes) if a.startswith("time:")][0]
        key_ndim = 2 if axes[-2].startswith("modality:") else 1
        real_keys = _key_mask(axes, batch)
        # Broadcast [B, *key] over the query/head/layer axes in between.
        real = real_keys.reshape((B,) + (1,) * (value.ndim - 1 - key_ndim) + real_keys.shape[1:])
        real = np.broadcast_to(real, value.shape)
        assert (value[~real] == 0.0).all(), f"{name} {key}: padded keys get weight"
        sums = value.sum(axis=tuple(range(-key_ndim, 0)))
        q_mask = batch[axes[query].split(":")[1] + "_mask"]
        has_keys = real_keys.reshape(B, -1).any(axis=1)
        for b in range(B):
            # Summed over its key axes, every map ends with its query steps.
            real_rows = sums[b][..., q_mask[b]]
            expected = 1.0 if has_keys[b] else 0.0
            np.testing.assert_allclose(real_rows, expected, atol=1e-5, err_msg=f"{name} {key} sample {b}")


def test_csdsa_map_is_zero_off_the_cross(built):
    model, maps = built["ssgdl"]
    value = maps["csdsa_k3"]
    rows, steps = value.shape[1], value.shape[2]
    same_row = np.eye(rows, dtype=bool)[:, None, :, None]
    same_step = np.eye(steps, dtype=bool)[None, :, None, :]
    off_cross = ~(same_row | same_step)
    assert (value[:, off_cross] == 0.0).all()
    assert (value[:, ~off_cross] > 0).any()


def test_se_weights_lie_in_the_sigmoid_range(built):
    _, maps = built["m3sa"]
    for m in ("text", "audio", "vision"):
        s = maps[f"se_{m}"]
        assert ((s > 0.0) & (s < 1.0)).all(), m


def _softmax_masked(scores, valid):
    scores = np.where(valid, scores, -np.inf)
    top = np.max(np.where(valid, scores, -1e30), axis=-1, keepdims=True)
    e = np.where(valid, np.exp(scores - top), 0.0)
    total = e.sum(-1, keepdims=True)
    return np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)


def test_gmra_map_matches_numpy(built, batch):
    model, maps = built["crosssent"]
    # The text hidden state GMRA reads: the layers up to injection_index.
    hidden, text_mask, apply, _ = model._text_layers(batch, training=False)
    for i in range(model.injection_index + 1):
        hidden = apply(i, hidden)
    gmra = model.gmra
    clean = {m: np.where(batch[f"{m}_mask"][..., None], batch[m], 0.0) for m in ("audio", "vision")}
    w = lambda layer: np.asarray(layer.kernel, np.float64)  # noqa: E731
    h_t = np.where(np.asarray(text_mask)[..., None], np.asarray(hidden, np.float64), 0.0)
    h_av = np.concatenate([clean["audio"] @ w(gmra.audio_proj), clean["vision"] @ w(gmra.vision_proj)], axis=1)
    heads, dk = gmra.num_heads, gmra.head_dim
    q = (h_t @ w(gmra.query_dense)).reshape(B, T_T, heads, dk).transpose(0, 2, 1, 3)
    k = (h_av @ w(gmra.key_dense)).reshape(B, T_A + T_V, heads, dk).transpose(0, 2, 1, 3)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dk)
    valid = np.concatenate([batch["audio_mask"], batch["vision_mask"]], axis=1)[:, None, None, :]
    expected = _softmax_masked(scores, np.broadcast_to(valid, scores.shape))
    np.testing.assert_allclose(maps["text_from_audio+vision"], expected, atol=1e-5)


def test_key_modality_maps_match_numpy(built, batch):
    model, maps = built["m3sa"]
    feats = {}
    for m in ("text", "audio", "vision"):
        x = np.where(batch[f"{m}_mask"][..., None], batch[m], 0.0).astype("float32")
        out, _ = model.extractors[m](x, mask=batch[f"{m}_mask"])
        feats[m] = np.where(batch[f"{m}_mask"][..., None], np.asarray(out, np.float64), 0.0)
    fusion = model.fusions["text"]
    for kv, layer in (("audio", "text_to_audio_attention"), ("vision", "text_to_vision_attention"),
                      ("text", "text_self_attention")):
        mha = fusion.attention[layer]
        qk, qb = np.asarray(mha.query_dense.kernel), np.asarray(mha.query_dense.bias)
        kk, kb = np.asarray(mha.key_dense.kernel), np.asarray(mha.key_dense.bias)
        q = np.einsum("btd,dhk->bhtk", feats["text"], qk) + qb[None, :, None, :]
        k = np.einsum("btd,dhk->bhtk", feats[kv], kk) + kb[None, :, None, :]
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(qk.shape[-1])
        valid = np.broadcast_to(batch[f"{kv}_mask"][:, None, None, :], scores.shape)
        np.testing.assert_allclose(maps[f"text_from_{kv}"], _softmax_masked(scores, valid), atol=1e-5,
                                   err_msg=kv)


def test_models_without_attention_return_no_maps(batch):
    for model in (LFDNN(), EFLSTM(), MulG(hidden_dim=8, cross_modal_attention=False)):
        assert model.attention_maps(batch) == {} and model.attention_axes() == {}
