import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import KeyModalityFusion

LENGTHS = {"text": 4, "audio": 6, "vision": 3}
D = 10


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    feats = {m: rng.standard_normal((3, t, D)).astype("float32") for m, t in LENGTHS.items()}
    masks = {
        "text": np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], bool),
        "audio": np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], bool),
        "vision": np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]], bool),
    }
    return feats, masks


def _layer(key, seed=0, heads=5):
    layer = KeyModalityFusion(key=key, num_heads=heads)
    layer.build({m: (None, None, D) for m in LENGTHS})
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.3 for w in layer.get_weights()])
    return layer


def numpy_mha(mha, q_in, kv_in, kv_mask):
    """Eqs. 11-12 / 16-17 / 21-22 with Keras's weight layout."""
    wq, bq, wk, bk, wv, bv, wo, bo = (np.asarray(w, np.float64) for w in mha.get_weights())
    q = np.einsum("btd,dhk->bthk", q_in, wq) + bq
    k = np.einsum("bsd,dhk->bshk", kv_in, wk) + bk
    v = np.einsum("bsd,dhk->bshk", kv_in, wv) + bv
    scores = np.einsum("bthk,bshk->bhts", q, k) / np.sqrt(wq.shape[-1])
    valid = kv_mask[:, None, None, :]
    scores = np.where(valid, scores, -1e9)
    scores = scores - scores.max(-1, keepdims=True)
    p = np.exp(scores)
    p = p / p.sum(-1, keepdims=True)
    heads = np.einsum("bhts,bshk->bthk", p, v)
    return np.einsum("bthk,hkd->btd", heads, wo) + bo


def numpy_fusion(layer, feats, masks):
    f = {m: feats[m].astype(np.float64) * masks[m][..., None] for m in feats}
    if layer.key is None:
        pairs = [(m, m) for m in LENGTHS]
    else:
        pairs = [(layer.key, m) for m in LENGTHS if m != layer.key] + [(layer.key, layer.key)]
    pooled = []
    for q, kv in pairs:
        name = f"{q}_self_attention" if q == kv else f"{q}_to_{kv}_attention"
        out = numpy_mha(layer.attention[name], f[q], f[kv], masks[kv])
        m = masks[q][..., None].astype(np.float64)
        pooled.append((out * m).sum(1) / np.maximum(m.sum(1), 1.0))
    return np.concatenate(pooled, -1)


@pytest.mark.parametrize("key", ["text", "audio", "vision", None])
def test_matches_numpy_eqs_11_to_23(key):
    feats, masks = _inputs()
    layer = _layer(key)
    out = np.asarray(layer(feats, masks=masks))
    assert out.shape == (3, 3 * D)
    assert layer.compute_output_shape({m: (3, t, D) for m, t in LENGTHS.items()}) == (3, 3 * D)
    np.testing.assert_allclose(out, numpy_fusion(layer, feats, masks), atol=1e-5)


def test_concatenation_order_is_eq_23():
    layer = _layer("audio")
    assert list(layer.attention) == ["audio_to_text_attention", "audio_to_vision_attention", "audio_self_attention"]
    assert list(_layer(None).attention) == ["text_self_attention", "audio_self_attention", "vision_self_attention"]


@pytest.mark.parametrize("key", ["text", "audio", None])
def test_padded_values_change_nothing_and_missing_modality_is_finite(key):
    feats, masks = _inputs(1)
    layer = _layer(key, seed=2)
    out = np.asarray(layer(feats, masks=masks))
    changed = {m: np.where(masks[m][..., None], feats[m], 77.0).astype("float32") for m in feats}
    np.testing.assert_allclose(np.asarray(layer(changed, masks=masks)), out, atol=1e-5)
    # Audio of sample 2 is entirely padding: finite, and its values still don't matter.
    assert np.isfinite(out).all()
    gone = {m: masks[m].copy() for m in masks}
    for m in gone:
        gone[m][:] = False
    empty = np.asarray(layer(feats, masks=gone))
    assert np.isfinite(empty).all()


def test_gradient_reaches_every_weight():
    feats, masks = _inputs(3)
    layer = _layer("text", seed=4)
    tensors = {m: tf.constant(v) for m, v in feats.items()}
    target = tf.constant(np.random.default_rng(5).standard_normal((3, 3 * D)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(tensors, masks=masks) * target)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == 3 * 8
    for w, g in zip(layer.trainable_weights, grads):
        # The key bias of attention cancels in the softmax (a known zero).
        if w.path.endswith("key/bias"):
            continue
        assert g is not None and np.abs(np.asarray(g)).max() > 0, w.path


def test_config_roundtrip_and_errors():
    layer = KeyModalityFusion(key="vision", num_heads=2, key_dim=3, dropout=0.1, name="fuse")
    clone = KeyModalityFusion.from_config(layer.get_config())
    assert (clone.key, clone.num_heads, clone.key_dim, clone.dropout, clone.name) == ("vision", 2, 3, 0.1, "fuse")
    feats, masks = _inputs()
    layer(feats, masks=masks)
    clone(feats, masks=masks)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(feats, masks=masks)), np.asarray(layer(feats, masks=masks)), atol=1e-6)
    with pytest.raises(ValueError, match="key must be one of"):
        KeyModalityFusion(key="smell")
    bad = dict(feats)
    bad["audio"] = np.ones((3, 6, D + 1), "float32")
    with pytest.raises(ValueError, match="one feature width"):
        KeyModalityFusion()(bad)
    with pytest.raises(KeyError, match="vision"):
        KeyModalityFusion()({m: feats[m] for m in ("text", "audio")})


def _poison(shape):
    """+inf, -inf and NaN in turn, to fill the padded entries of a test input."""
    return np.resize(np.array([np.inf, -np.inf, np.nan], "float32"), shape)


@pytest.mark.parametrize("key", ["text", None])
def test_inf_and_nan_under_the_masks_change_nothing_and_keep_gradients_finite(key):
    feats, masks = _inputs(1)
    layer = _layer(key, seed=2)
    out = np.asarray(layer(feats, masks=masks))
    bad = {m: np.where(masks[m][..., None], feats[m], _poison(feats[m].shape)).astype("float32") for m in feats}
    with tf.GradientTape() as tape:
        got = layer(bad, masks=masks, training=True)
        loss = tf.reduce_sum(got * got)
    np.testing.assert_allclose(np.asarray(got), out, atol=1e-5)
    assert np.isfinite(np.asarray(got)).all()
    for w, g in zip(layer.trainable_weights, tape.gradient(loss, layer.trainable_weights)):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path


def test_return_attention_keeps_the_output_and_names_every_pair():
    rng = np.random.default_rng(4)
    feats = {m: rng.normal(size=(2, t, 10)).astype("float32") for m, t in (("text", 4), ("audio", 6), ("vision", 3))}
    masks = {m: np.ones(f.shape[:2], bool) for m, f in feats.items()}
    masks["audio"][0, 3:] = False
    feats["audio"][0, 3:] = np.nan
    fusion = KeyModalityFusion(key="text", num_heads=2)
    plain = np.asarray(fusion(feats, masks=masks))
    fused, weights = fusion(feats, masks=masks, return_attention=True)
    np.testing.assert_allclose(np.asarray(fused), plain, atol=1e-6)
    assert {k: tuple(v.shape) for k, v in weights.items()} == {
        "text_from_audio": (2, 2, 4, 6), "text_from_vision": (2, 2, 4, 3), "text_from_text": (2, 2, 4, 4),
    }
    audio = np.asarray(weights["text_from_audio"])
    assert (audio[0][..., 3:] == 0).all()
    np.testing.assert_allclose(audio.sum(-1), 1.0, atol=1e-6)
