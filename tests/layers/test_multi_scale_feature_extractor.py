import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import MultiScaleFeatureExtractor


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def numpy_lstm(x, mask, kernel, recurrent, bias):
    """Keras LSTM (gates i, f, c, o), masked steps keep the state."""
    B, T, _ = x.shape
    d = recurrent.shape[0]
    h = np.zeros((B, d))
    c = np.zeros((B, d))
    out = np.zeros((B, T, d))
    for t in range(T):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * d:(k + 1) * d] for k in range(4))
        c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h_new = _sigmoid(o) * np.tanh(c_new)
        m = mask[:, t][:, None]
        c = np.where(m, c_new, c)
        h = np.where(m, h_new, h)
        out[:, t] = h
    return out


def numpy_extractor(layer, x, mask):
    """Eqs. 1-7 of seed 003 in NumPy from the layer's weights."""
    x = x.astype(np.float64)
    keep = mask[..., None].astype(np.float64)
    k, r, b = (np.asarray(w, np.float64) for w in layer.lstm.get_weights())
    scale = numpy_lstm(x, mask, k, r, b) * keep
    scales = [scale]
    for norm, linear in zip(layer.norms, layer.linears):
        gamma, beta = (np.asarray(w, np.float64) for w in norm.get_weights())
        w, wb = (np.asarray(v, np.float64) for v in linear.get_weights())
        a = np.maximum(scale, 0.0)
        mu = a.mean(-1, keepdims=True)
        var = a.var(-1, keepdims=True)
        a = (a - mu) / np.sqrt(var + norm.epsilon) * gamma + beta
        scale = (a @ w + wb) * keep
        scales.append(scale)
    if layer.num_scales == 1:
        return scales[0], scales[0]
    stacked = np.stack(scales, -1)  # [B, T, d, n]
    w1, b1, w2, b2 = (np.asarray(v, np.float64) for v in layer.channel_attention.get_weights())
    per_step = stacked.mean(axis=2)
    z = (per_step * keep).sum(1) / np.maximum(keep.sum(1), 1.0)
    g = np.maximum(z @ w1 + b1, 0) @ w2 + b2
    s = np.maximum(g, 0) if layer.gate == "relu" else 1.0 / (1.0 + np.exp(-g))
    weighted = stacked * s[:, None, None, :]
    ck, cb = (np.asarray(v, np.float64) for v in layer.merge.get_weights())
    out = (weighted @ ck.reshape(-1, 1))[..., 0] + cb[0]
    return out * keep, scales[-1]


def _layer(num_scales=4, seed=0, x_shape=(3, 6, 5)):
    layer = MultiScaleFeatureExtractor(hidden_dim=6, num_scales=num_scales, ratio=2)
    layer.build(x_shape)
    rng = np.random.default_rng(seed)
    # Positive-leaning biases keep the ReLU excitation open (non-trivial s).
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.4 + 0.1 for w in layer.get_weights()])
    return layer


MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], bool)


@pytest.mark.parametrize("num_scales", [1, 2, 4])
def test_matches_numpy_eqs_1_to_7(num_scales):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 5)).astype("float32")
    layer = _layer(num_scales)
    out, last = layer(x, mask=MASK)
    ref, ref_last = numpy_extractor(layer, x, MASK)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(last), ref_last, atol=1e-5)
    assert out.shape == (3, 6, 6) and last.shape == (3, 6, 6)
    assert layer.compute_output_shape((3, 6, 5)) == ((3, 6, 6), (3, 6, 6))
    if num_scales > 1:
        assert len(layer.linears) == num_scales - 1
        assert tuple(layer.compute_channel_weights(x, MASK).shape) == (3, num_scales)


def test_padding_values_change_nothing_and_all_padding_is_finite():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6, 5)).astype("float32")
    layer = _layer()
    out, last = (np.asarray(v) for v in layer(x, mask=MASK))
    x2 = x.copy()
    x2[~MASK] = -500.0
    out2, last2 = (np.asarray(v) for v in layer(x2, mask=MASK))
    np.testing.assert_allclose(out2, out, atol=1e-6)
    np.testing.assert_allclose(last2, last, atol=1e-6)
    assert np.isfinite(out).all() and np.isfinite(last).all()
    np.testing.assert_array_equal(out[~MASK], 0.0)
    np.testing.assert_array_equal(out[2], 0.0)


def test_gradient_reaches_every_weight():
    rng = np.random.default_rng(3)
    x = tf.constant(rng.standard_normal((3, 6, 5)).astype("float32"))
    layer = _layer(3, seed=4)
    t1 = tf.constant(rng.standard_normal((3, 6, 6)).astype("float32"))
    t2 = tf.constant(rng.standard_normal((3, 6, 6)).astype("float32"))
    with tf.GradientTape() as tape:
        out, last = layer(x, mask=MASK)
        loss = tf.reduce_sum(out * t1) + tf.reduce_sum(last * t2)
    grads = tape.gradient(loss, layer.trainable_weights)
    # LSTM (3) + 2 x (norm 2 + linear 2) + SE (4) + 1x1 conv (2)
    assert len(grads) == 3 + 8 + 4 + 2
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None and np.abs(np.asarray(g)).max() > 0, w.path


def test_config_roundtrip_and_errors():
    layer = MultiScaleFeatureExtractor(hidden_dim=7, num_scales=3, ratio=5, gate="sigmoid", name="ms")
    clone = MultiScaleFeatureExtractor.from_config(layer.get_config())
    assert (clone.hidden_dim, clone.num_scales, clone.ratio, clone.gate, clone.name) == (7, 3, 5, "sigmoid", "ms")
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype("float32")
    layer(x)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)[0]), np.asarray(layer(x)[0]), atol=1e-6)
    with pytest.raises(ValueError, match="num_scales"):
        MultiScaleFeatureExtractor(num_scales=0)
    with pytest.raises(ValueError, match=r"\[batch, time, features\]"):
        MultiScaleFeatureExtractor()(np.ones((2, 3), "float32"))
    with pytest.raises(ValueError, match="no channel attention"):
        one = MultiScaleFeatureExtractor(hidden_dim=4, num_scales=1)
        one(x)
        one.compute_channel_weights(x)


def _poison(shape):
    """+inf, -inf and NaN in turn, to fill the padded entries of a test input."""
    return np.resize(np.array([np.inf, -np.inf, np.nan], "float32"), shape)


@pytest.mark.parametrize("num_scales", [1, 4])
def test_inf_and_nan_under_the_mask_change_nothing_and_keep_gradients_finite(num_scales):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6, 5)).astype("float32")
    layer = _layer(num_scales)
    out, last = (np.asarray(v) for v in layer(x, mask=MASK))
    bad = x.copy()
    bad[~MASK] = _poison(bad[~MASK].shape)
    with tf.GradientTape() as tape:
        got, got_last = layer(bad, mask=MASK, training=True)
        loss = tf.reduce_sum(got * got) + tf.reduce_sum(got_last)
    np.testing.assert_allclose(np.asarray(got), out, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got_last), last, atol=1e-6)
    assert np.isfinite(np.asarray(got)).all()
    for w, g in zip(layer.trainable_weights, tape.gradient(loss, layer.trainable_weights)):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path


def _numpy_scales_with_norm(layer, x, mask, training):
    """Eqs. 1-2 with Norm = identity, or BatchNorm over the real steps
    (training) / moving statistics (inference), in float64."""
    x = np.where(mask[..., None], x, 0.0).astype(np.float64)
    keep = mask[..., None].astype(np.float64)
    k, r, b = (np.asarray(w, np.float64) for w in layer.lstm.get_weights())
    scale = numpy_lstm(x, mask, k, r, b) * keep
    scales = [scale]
    for norm, linear in zip(layer.norms, layer.linears):
        a = np.maximum(scale, 0.0)
        if layer.norm == "batch":
            gamma, beta, mm, mv = (np.asarray(w, np.float64) for w in norm.get_weights())
            if training:
                real = a[mask]
                mu, var = real.mean(0), real.var(0)
            else:
                mu, var = mm, mv
            a = (a - mu) / np.sqrt(var + norm.epsilon) * gamma + beta
        w, wb = (np.asarray(v, np.float64) for v in linear.get_weights())
        scale = (a @ w + wb) * keep
        scales.append(scale)
    return scales


@pytest.mark.parametrize("norm,training", [("none", False), ("batch", True), ("batch", False)])
def test_norm_options_match_numpy(norm, training):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6, 5)).astype("float32")
    x[~MASK] = np.nan  # padding carries NaN: it must reach nothing
    layer = MultiScaleFeatureExtractor(hidden_dim=6, num_scales=3, ratio=2, norm=norm)
    layer.build(x.shape)
    weights = [rng.standard_normal(w.shape).astype("float32") * 0.4 + 0.1 for w in layer.get_weights()]
    if norm == "batch":  # moving variances must stay positive
        weights = [np.abs(w) + 0.5 if "moving_variance" in v.path else w
                   for w, v in zip(weights, layer.weights)]
    layer.set_weights(weights)
    ref = _numpy_scales_with_norm(layer, np.nan_to_num(x), MASK, training)
    scales, _ = layer._scales(x, MASK, training)
    for got, want in zip(scales, ref):
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    out, _ = layer(x, mask=MASK, training=training)
    assert np.isfinite(np.asarray(out)).all()


def test_batch_norm_ignores_an_all_padding_sample_in_training():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 5)).astype("float32")
    mask = MASK[:2]
    layer = MultiScaleFeatureExtractor(hidden_dim=6, num_scales=3, ratio=2, norm="batch")
    out, _ = layer(x, mask=mask, training=True)
    padded = np.concatenate([x, np.full((1, 6, 5), np.inf, "float32")])
    out_padded, _ = layer(padded, mask=np.concatenate([mask, np.zeros((1, 6), bool)]), training=True)
    np.testing.assert_allclose(np.asarray(out_padded)[:2], np.asarray(out), atol=1e-6)
    assert MultiScaleFeatureExtractor.from_config(layer.get_config()).norm == "batch"
    with pytest.raises(ValueError, match="norm must be one of"):
        MultiScaleFeatureExtractor(norm="group")
