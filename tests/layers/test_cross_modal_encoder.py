import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import CrossModalEncoder


def _randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.standard_normal(w.shape).astype("float32") * 0.4)


def _ln(x, gamma, beta, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def numpy_encoder(layer, query, context=None, query_mask=None, context_mask=None):
    """Eqs. 8-12 of seed 004 written out with NumPy (float64)."""
    q_in = np.asarray(query, np.float64)
    B, Tq, _ = q_in.shape
    qm = np.ones((B, Tq), bool) if query_mask is None else np.asarray(query_mask, bool)
    q_in = q_in * qm[..., None]
    if context is None:
        cm = qm
    else:
        c_in = np.asarray(context, np.float64)
        cm = np.ones(c_in.shape[:2], bool) if context_mask is None else np.asarray(context_mask, bool)
        c_in = c_in * cm[..., None]
    w = lambda v: np.asarray(v, np.float64)  # noqa: E731
    h = q_in
    for i in range(layer.num_layers):
        x = _ln(h, w(layer.query_norms[i].gamma), w(layer.query_norms[i].beta))
        if context is None:
            c = x
        elif layer.context_norms:
            c = _ln(c_in, w(layer.context_norms[i].gamma), w(layer.context_norms[i].beta))
        else:
            c = c_in
        Q = np.einsum("btd,dhk->bthk", x, w(layer.q_proj[i].kernel)) + w(layer.q_proj[i].bias)
        K = np.einsum("btd,dhk->bthk", c, w(layer.k_proj[i].kernel)) + w(layer.k_proj[i].bias)
        V = np.einsum("btd,dhk->bthk", c, w(layer.v_proj[i].kernel)) + w(layer.v_proj[i].bias)
        dk = Q.shape[-1]
        heads = []
        for b in range(B):
            per_head = []
            for hh in range(layer.num_heads):
                scores = Q[b, :, hh] @ K[b, :, hh].T / np.sqrt(dk)  # [Tq, Tk]
                valid = cm[b][None, :].repeat(Tq, 0)
                if valid.any():
                    s = np.where(valid, scores, -np.inf)
                    e = np.exp(s - s.max(-1, keepdims=True))
                    a = e / e.sum(-1, keepdims=True)
                else:
                    a = np.zeros_like(scores)
                per_head.append(a @ V[b, :, hh])
            heads.append(np.stack(per_head, axis=1))  # [Tq, h, dv]
        att = np.einsum("bthk,hkd->btd", np.stack(heads), w(layer.o_proj[i].kernel)) + w(layer.o_proj[i].bias)
        h_hat = att + x
        y = _ln(h_hat, w(layer.ffn_norms[i].gamma), w(layer.ffn_norms[i].beta))
        f = np.maximum(y @ w(layer.ffn_in[i].kernel) + w(layer.ffn_in[i].bias), 0)
        h = f @ w(layer.ffn_out[i].kernel) + w(layer.ffn_out[i].bias) + y
    return h * qm[..., None]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((3, 5, 8)).astype("float32")
    c = rng.standard_normal((3, 7, 6)).astype("float32")
    qm = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)
    cm = np.array([[1, 1, 1, 1, 0, 0, 0], [1] * 7, [0] * 7], bool)  # row 2: missing modality
    return q, c, qm, cm


@pytest.mark.parametrize("normalize_context", [True, False])
def test_cross_attention_matches_numpy(data, normalize_context):
    q, c, qm, cm = data
    layer = CrossModalEncoder(num_layers=2, num_heads=2, ffn_dim=12, normalize_context=normalize_context)
    layer(q, c, query_mask=qm, context_mask=cm)
    _randomize(layer)
    out = np.asarray(layer(q, c, query_mask=qm, context_mask=cm))
    ref = numpy_encoder(layer, q, c, qm, cm)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)
    assert out.shape == (3, 5, 8)
    assert layer.compute_output_shape((3, 5, 8), (3, 7, 6)) == (3, 5, 8)


def test_self_attention_matches_numpy(data):
    q, _, qm, _ = data
    layer = CrossModalEncoder(num_layers=2, num_heads=4, key_dim=3, value_dim=5)
    layer(q, query_mask=qm)
    _randomize(layer, seed=1)
    out = np.asarray(layer(q, query_mask=qm))
    np.testing.assert_allclose(out, numpy_encoder(layer, q, None, qm), atol=1e-5, rtol=1e-5)
    # No mask at all: every step is real.
    out = np.asarray(layer(q))
    np.testing.assert_allclose(out, numpy_encoder(layer, q), atol=1e-5, rtol=1e-5)


def test_masking(data):
    q, c, qm, cm = data
    layer = CrossModalEncoder(num_layers=2, num_heads=2)
    base = np.asarray(layer(q, c, query_mask=qm, context_mask=cm))
    q2, c2 = q.copy(), c.copy()
    q2[~qm] = 1e4
    c2[~cm] = -1e4
    changed = np.asarray(layer(q2, c2, query_mask=qm, context_mask=cm))
    np.testing.assert_allclose(changed, base, atol=1e-6)
    # Padded query steps are zero; the sample whose context is all padding is finite.
    assert np.all(base[~qm] == 0)
    assert np.all(np.isfinite(base))
    # An all-padding query sequence is finite too (zeros).
    empty = np.asarray(layer(q, c, query_mask=np.zeros_like(qm), context_mask=cm))
    assert np.all(empty == 0)


def test_gradients_reach_every_weight(data):
    q, c, qm, cm = data
    layer = CrossModalEncoder(num_layers=2, num_heads=2)
    layer(q, c, query_mask=qm, context_mask=cm)
    _randomize(layer, seed=2)
    with tf.GradientTape() as tape:
        out = layer(q, c, query_mask=qm, context_mask=cm)
        loss = tf.reduce_sum(out * tf.random.stateless_normal(out.shape, seed=[1, 2]))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == len(layer.trainable_weights) == 2 * 18  # 9 sublayers with 2 weights each, per layer
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None and np.any(np.asarray(g) != 0), w.path


def test_config_round_trip_and_serialization(data):
    q, c, qm, cm = data
    layer = CrossModalEncoder(
        num_layers=3, num_heads=2, key_dim=4, value_dim=3, ffn_dim=10, dropout=0.2,
        attention_dropout=0.1, normalize_context=False, name="coat",
    )
    clone = CrossModalEncoder.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    # Same weights -> same outputs after a keras serialisation round trip.
    layer(q, c, query_mask=qm, context_mask=cm)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    restored(q, c, query_mask=qm, context_mask=cm)
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        np.asarray(restored(q, c, query_mask=qm, context_mask=cm)),
        np.asarray(layer(q, c, query_mask=qm, context_mask=cm)),
        atol=1e-6,
    )


def test_dropout_only_in_training(data):
    q, c, qm, cm = data
    layer = CrossModalEncoder(num_layers=1, num_heads=2, dropout=0.5, attention_dropout=0.5)
    a = np.asarray(layer(q, c, query_mask=qm, context_mask=cm))
    b = np.asarray(layer(q, c, query_mask=qm, context_mask=cm))
    np.testing.assert_array_equal(a, b)
    t = np.asarray(layer(q, c, query_mask=qm, context_mask=cm, training=True))
    assert not np.allclose(a, t)


def test_mixed_precision_and_xla(data):
    q, c, qm, cm = data
    layer = CrossModalEncoder(num_layers=1, num_heads=2, dtype="mixed_float16")
    out = layer(q, c, query_mask=qm, context_mask=cm)
    assert out.dtype == "float16"
    assert np.all(np.isfinite(np.asarray(out, np.float32)))
    f32 = CrossModalEncoder(num_layers=1, num_heads=2)
    f32(q, c, query_mask=qm, context_mask=cm)
    f32.set_weights(layer.get_weights())
    fn = tf.function(lambda a, b: f32(a, b, query_mask=qm, context_mask=cm), jit_compile=True)
    np.testing.assert_allclose(np.asarray(fn(q, c)), np.asarray(f32(q, c, query_mask=qm, context_mask=cm)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(fn(q, c)), atol=5e-2)


def test_bad_calls_raise():
    with pytest.raises(ValueError, match="num_layers"):
        CrossModalEncoder(num_layers=0)
    layer = CrossModalEncoder(num_layers=1, num_heads=1)
    x = np.zeros((1, 3, 4), "float32")
    layer(x)
    with pytest.raises(ValueError, match="self-attention"):
        layer(x, x)


def _poison(shape):
    """+inf, -inf and NaN in turn, to fill the padded entries of a test input."""
    return np.resize(np.array([np.inf, -np.inf, np.nan], "float32"), shape)


def test_inf_and_nan_under_the_masks_change_nothing_and_keep_gradients_finite(data):
    q, c, qm, cm = data
    layer = CrossModalEncoder(num_layers=2, num_heads=2)
    base = np.asarray(layer(q, c, query_mask=qm, context_mask=cm))
    q2, c2 = q.copy(), c.copy()
    q2[~qm] = _poison(q2[~qm].shape)
    c2[~cm] = _poison(c2[~cm].shape)
    with tf.GradientTape() as tape:
        out = layer(q2, c2, query_mask=qm, context_mask=cm, training=True)
        loss = tf.reduce_sum(out * tf.random.stateless_normal(out.shape, seed=[3, 4]))
    np.testing.assert_allclose(np.asarray(out), base, atol=1e-6)
    assert np.isfinite(np.asarray(out)).all()
    for w, g in zip(layer.trainable_weights, tape.gradient(loss, layer.trainable_weights)):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path


def test_return_attention_keeps_the_output_and_gives_masked_rows():
    rng = np.random.default_rng(3)
    text = rng.normal(size=(2, 5, 8)).astype("float32")
    audio = rng.normal(size=(2, 7, 6)).astype("float32")
    mask = np.ones((2, 7), bool)
    mask[0, 4:] = False
    mask[1, :] = False  # no audio at all: rows of zeros
    audio[~mask] = np.inf
    enc = CrossModalEncoder(num_layers=2, num_heads=2)
    plain = np.asarray(enc(text, audio, context_mask=mask))
    out, weights = enc(text, audio, context_mask=mask, return_attention=True)
    np.testing.assert_array_equal(np.asarray(out), plain)
    weights = np.asarray(weights)
    assert weights.shape == (2, 2, 2, 5, 7) and np.isfinite(weights).all()
    assert (weights[0][..., 4:] == 0).all() and (weights[1] == 0).all()
    np.testing.assert_allclose(weights[0].sum(-1), 1.0, atol=1e-6)
