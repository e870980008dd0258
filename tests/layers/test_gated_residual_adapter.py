import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import GatedResidualAdapter

B, L, TA, TV, D, DA, DV, H = 3, 5, 4, 6, 8, 3, 7, 2


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((B, L, D)).astype("float32")
    audio = rng.standard_normal((B, TA, DA)).astype("float32")
    vision = rng.standard_normal((B, TV, DV)).astype("float32")
    masks = {
        "text_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], bool),
        "audio_mask": np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], bool),
        "vision_mask": np.array([[1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], bool),
    }
    return text, audio, vision, masks


def _layer(**kw):
    kw.setdefault("num_heads", H)
    kw.setdefault("adapter_dim", 4)
    kw.setdefault("layer_scale_init", 0.5)  # large enough to test the adapter path
    keras.utils.set_random_seed(0)
    layer = GatedResidualAdapter(**kw)
    text, audio, vision, masks = _inputs()
    layer(text, audio, vision, **masks)
    # Random biases, so that the reference checks them too.
    rng = np.random.default_rng(1)
    for w in layer.weights:
        if w.path.endswith("bias"):
            w.assign(rng.standard_normal(w.shape).astype("float32") * 0.3)
    return layer


def _w(layer, name):
    for w in layer.weights:
        if w.path.endswith(name):
            return np.asarray(w.numpy(), np.float64)
    raise KeyError(name)


def _erf_gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_gmra(layer, text, audio, vision, text_mask, audio_mask, vision_mask, use_adapter=True):
    """Seed 001 Eqs. 1-6 plus the LayerScale bottleneck adapter, in float64;
    padded text steps are computed from zeros."""
    t = np.where(text_mask[..., None], text, 0).astype(np.float64)
    h_av = np.concatenate([audio @ _w(layer, "audio_proj/kernel"), vision @ _w(layer, "vision_proj/kernel")], 1)
    km = np.concatenate([audio_mask, vision_mask], 1)
    q = t @ _w(layer, "query/kernel")
    k = h_av @ _w(layer, "key/kernel")
    v = h_av @ _w(layer, "value/kernel")
    dk = D // H
    heads = []
    for h in range(H):
        sl = slice(h * dk, (h + 1) * dk)
        scores = np.einsum("bqd,bkd->bqk", q[..., sl], k[..., sl]) / math.sqrt(dk)
        out = np.zeros((B, L, dk))
        for b in range(B):
            valid = km[b]
            if not valid.any():
                continue  # no audio/vision at all: nothing is injected
            s = scores[b][:, valid]
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            out[b] = p @ v[b][valid][:, sl]
        heads.append(out)
    h_cross = np.concatenate(heads, -1) @ _w(layer, "attention_output/kernel")
    g = _sigmoid(np.concatenate([t, h_cross], -1) @ _w(layer, "gate/kernel") + _w(layer, "gate/bias"))
    fused = t + g * h_cross
    if use_adapter:
        a = _erf_gelu(fused @ _w(layer, "adapter_down/kernel") + _w(layer, "adapter_down/bias"))
        a = a @ _w(layer, "adapter_up/kernel") + _w(layer, "adapter_up/bias")
        fused = fused + _w(layer, "layer_scale") * a
    return fused, g


@pytest.mark.parametrize("use_adapter", [True, False])
def test_matches_numpy_reference(use_adapter):
    layer = _layer(use_adapter=use_adapter)
    text, audio, vision, masks = _inputs()
    out, details = layer(text, audio, vision, **masks, return_attention=True)
    expected, gate = numpy_gmra(layer, text, audio, vision, **masks, use_adapter=use_adapter)
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(details["gate"]), gate, atol=1e-5, rtol=0)
    assert tuple(out.shape) == (B, L, D)
    assert tuple(details["attention"].shape) == (B, H, L, TA + TV)


def test_attention_ignores_padding_and_rows_sum_to_one():
    layer = _layer()
    text, audio, vision, masks = _inputs()
    _, details = layer(text, audio, vision, **masks, return_attention=True)
    att = np.asarray(details["attention"])
    key_mask = np.concatenate([masks["audio_mask"], masks["vision_mask"]], 1)
    assert np.all(att[~np.broadcast_to(key_mask[:, None, None, :], att.shape)] == 0)
    np.testing.assert_allclose(att[:2].sum(-1), 1.0, atol=1e-6)
    assert np.all(att[2] == 0)  # sample 2 has no audio and no vision


def test_values_under_mask_change_nothing():
    layer = _layer()
    text, audio, vision, masks = _inputs()
    out = np.asarray(layer(text, audio, vision, **masks))
    rng = np.random.default_rng(5)
    audio2 = np.where(masks["audio_mask"][..., None], audio, rng.standard_normal(audio.shape) * 100).astype("float32")
    vision2 = np.where(masks["vision_mask"][..., None], vision, rng.standard_normal(vision.shape) * 100).astype("float32")
    text2 = np.where(masks["text_mask"][..., None], text, rng.standard_normal(text.shape) * 100).astype("float32")
    out2 = np.asarray(layer(text2, audio2, vision2, **masks))
    tm = masks["text_mask"]
    # Real text tokens are unchanged; padded text positions only affect themselves.
    np.testing.assert_allclose(out2[tm], out[tm], atol=1e-5, rtol=0)


def test_all_padding_audio_and_vision_injects_nothing_and_is_finite():
    layer = _layer(use_adapter=False)
    text, audio, vision, masks = _inputs()
    masks = dict(masks, audio_mask=np.zeros_like(masks["audio_mask"]), vision_mask=np.zeros_like(masks["vision_mask"]))
    out = np.asarray(layer(text, audio * 1e3, vision * 1e3, **masks))
    assert np.all(np.isfinite(out))
    # H_fusion = H_T, with padded text steps zeroed.
    np.testing.assert_allclose(out, np.where(masks["text_mask"][..., None], text, 0), atol=1e-6)


def test_all_padding_text_is_finite():
    layer = _layer()
    text, audio, vision, masks = _inputs()
    masks = dict(masks, text_mask=np.zeros_like(masks["text_mask"]))
    assert np.all(np.isfinite(np.asarray(layer(text, audio, vision, **masks))))


def test_gradients_reach_every_weight():
    layer = _layer()
    text, audio, vision, masks = _inputs()
    with tf.GradientTape() as tape:
        out = layer(text, audio, vision, **masks, training=False)
        loss = tf.reduce_sum(tf.square(out))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(layer.trainable_weights) == 13
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None and np.any(np.asarray(g) != 0), w.path


def test_config_round_trip():
    layer = _layer(dropout=0.1, layer_scale_init=1e-3)
    config = layer.get_config()
    clone = GatedResidualAdapter.from_config(config)
    assert clone.get_config() == config
    text, audio, vision, masks = _inputs()
    clone(text, audio, vision, **masks)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        np.asarray(clone(text, audio, vision, **masks)), np.asarray(layer(text, audio, vision, **masks)), atol=1e-6
    )


def test_layer_scale_initial_value_and_dropout_only_in_training():
    layer = GatedResidualAdapter(num_heads=2, adapter_dim=3, dropout=0.5)
    text, audio, vision, masks = _inputs()
    a = np.asarray(layer(text, audio, vision, **masks))
    np.testing.assert_allclose(_w(layer, "layer_scale"), 1e-4)
    b = np.asarray(layer(text, audio, vision, **masks))
    np.testing.assert_array_equal(a, b)
    c = np.asarray(layer(text, audio, vision, **masks, training=True))
    assert not np.allclose(a, c)


def test_mixed_precision_output_is_finite():
    layer = GatedResidualAdapter(num_heads=2, adapter_dim=3, dtype="mixed_float16")
    text, audio, vision, masks = _inputs()
    out = layer(text, audio, vision, **masks)
    assert out.dtype == "float16"
    assert np.all(np.isfinite(np.asarray(out, np.float32)))


def test_clear_errors():
    text, audio, vision, masks = _inputs()
    with pytest.raises(ValueError, match="not divisible by num_heads=3"):
        GatedResidualAdapter(num_heads=3)(text, audio, vision)
    with pytest.raises(ValueError, match="'audio' must be \\[batch, time, dim\\]"):
        GatedResidualAdapter(num_heads=2)(text, audio[:, :, 0], vision)


def _poison(shape):
    """+inf, -inf and NaN in turn, to fill the padded entries of a test input."""
    return np.resize(np.array([np.inf, -np.inf, np.nan], "float32"), shape)


def test_inf_and_nan_under_the_masks_change_nothing_and_keep_gradients_finite():
    layer = _layer(dropout=0.0)
    text, audio, vision, masks = _inputs()
    out = np.asarray(layer(text, audio, vision, **masks))
    bad = []
    for x, key in ((text, "text_mask"), (audio, "audio_mask"), (vision, "vision_mask")):
        x = x.copy()
        x[~masks[key]] = _poison(x[~masks[key]].shape)
        bad.append(x)
    with tf.GradientTape() as tape:
        got = layer(*bad, **masks, training=True)
        loss = tf.reduce_sum(got * got)
    np.testing.assert_allclose(np.asarray(got), out, atol=1e-5, rtol=0)
    assert np.isfinite(np.asarray(got)).all()
    for w, g in zip(layer.trainable_weights, tape.gradient(loss, layer.trainable_weights)):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path
