import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import SEChannelAttention


def _randomize(layer, seed=0):
    # Non-zero biases keep the ReLU gates open so every weight matters.
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.5 + 0.3 for w in layer.get_weights()])


def numpy_se(x, mask, w1, b1, w2, b2, gate="relu"):
    x = x.astype(np.float64)
    per_step = x.reshape(x.shape[0], x.shape[1], -1, x.shape[-1]).mean(axis=2)  # [B, T, C]
    z = np.zeros((x.shape[0], x.shape[-1]))
    for b in range(x.shape[0]):
        rows = per_step[b][mask[b]]
        if len(rows):
            z[b] = rows.mean(axis=0)
    h = np.maximum(z @ w1 + b1, 0.0)
    g = h @ w2 + b2
    s = np.maximum(g, 0.0) if gate == "relu" else 1.0 / (1.0 + np.exp(-g))
    keep = mask.reshape(mask.shape + (1,) * (x.ndim - 2))  # padded steps are zero
    return np.where(keep, x, 0) * s.reshape((x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)), s


@pytest.mark.parametrize("gate", ["relu", "sigmoid"])
@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (2, 5, 4), (2, 5, 2, 3, 4)])
def test_matches_numpy_eqs_4_to_6(gate, shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    layer = SEChannelAttention(ratio=3, gate=gate)
    layer.build(shape)
    _randomize(layer)
    w1, b1, w2, b2 = layer.get_weights()
    assert w1.shape == (4, 12) and w2.shape == (12, 4)  # hidden width n * r (Eq. 5)
    out, s = layer(x, mask=mask, return_weights=True)
    ref, ref_s = numpy_se(x, mask, w1, b1, w2, b2, gate)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(s), ref_s, atol=1e-5)
    assert layer.compute_output_shape(shape) == shape


def test_no_mask_is_plain_mean_over_time_and_space():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 2, 5)).astype("float32")
    layer = SEChannelAttention(ratio=2, gate="relu")
    layer.build(x.shape)
    _randomize(layer, 3)
    ref, _ = numpy_se(x, np.ones((3, 4), bool), *layer.get_weights())
    np.testing.assert_allclose(np.asarray(layer(x)), ref, atol=1e-5)


def test_padded_values_change_nothing_and_all_padding_is_finite():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 3, 4)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]], bool)
    layer = SEChannelAttention(ratio=4, gate="relu")
    layer.build(x.shape)
    _randomize(layer, 4)
    out = np.asarray(layer(x, mask=mask))
    x2 = x.copy()
    x2[~mask] = 1e3
    out2 = np.asarray(layer(x2, mask=mask))
    np.testing.assert_allclose(out2[mask], out[mask], atol=1e-6)
    # An all-padding row squeezes to 0: the excitation is the bias path.
    _, s = layer(x, mask=mask, return_weights=True)
    w1, b1, w2, b2 = layer.get_weights()
    np.testing.assert_allclose(np.asarray(s)[1], np.maximum(np.maximum(b1, 0) @ w2 + b2, 0), atol=1e-5)
    assert np.isfinite(out).all()


def test_gradient_reaches_every_weight():
    rng = np.random.default_rng(5)
    x = tf.constant(rng.standard_normal((2, 5, 3, 4)).astype("float32"))
    layer = SEChannelAttention(ratio=2)
    layer.build(x.shape)
    _randomize(layer, 6)
    target = tf.constant(rng.standard_normal((2, 5, 3, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) * target)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == 4
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None and np.abs(np.asarray(g)).max() > 0, w.path


def test_config_roundtrip_and_errors():
    layer = SEChannelAttention(ratio=5, gate="sigmoid", name="se")
    clone = SEChannelAttention.from_config(layer.get_config())
    assert clone.ratio == 5 and clone.gate == "sigmoid" and clone.name == "se"
    x = np.ones((1, 3, 2, 4), "float32")
    layer(x)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(layer(x)))
    with pytest.raises(ValueError, match="rank >= 3"):
        SEChannelAttention()(np.ones((2, 4), "float32"))
    with pytest.raises(ValueError, match="ratio"):
        SEChannelAttention(ratio=0)
    with pytest.raises(ValueError, match="gate"):
        SEChannelAttention(gate="tanh")


def test_mixed_precision_compute_dtype():
    layer = SEChannelAttention(ratio=2, dtype="mixed_float16")
    out = layer(np.ones((2, 3, 2, 4), "float32"), mask=np.ones((2, 3), bool))
    assert out.dtype == "float16" and np.isfinite(np.asarray(out, "float32")).all()


def _poison(shape):
    """+inf, -inf and NaN in turn, to fill the padded entries of a test input."""
    return np.resize(np.array([np.inf, -np.inf, np.nan], "float32"), shape)


def test_inf_and_nan_under_the_mask_change_nothing_and_keep_gradients_finite():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 3, 4)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]], bool)
    layer = SEChannelAttention(ratio=4, gate="relu")
    layer.build(x.shape)
    _randomize(layer, 4)
    out = np.asarray(layer(x, mask=mask))
    bad = x.copy()
    bad[~mask] = _poison(bad[~mask].shape)
    with tf.GradientTape() as tape:
        got = layer(bad, mask=mask)
        loss = tf.reduce_sum(got * got)
    np.testing.assert_allclose(np.asarray(got), out, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(got)[~mask], 0.0)
    for w, g in zip(layer.trainable_weights, tape.gradient(loss, layer.trainable_weights)):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path


def _m3sa_stack_at_init(gate, seed):
    """M³SA's multi-scale extractor (d = 64, n = 5, r = 4) at initialisation."""
    import keras

    from keras_msa.layers import MultiScaleFeatureExtractor

    keras.utils.set_random_seed(seed)
    kwargs = {} if gate is None else {"gate": gate}
    layer = MultiScaleFeatureExtractor(hidden_dim=64, num_scales=5, ratio=4, **kwargs)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((16, 10, 5)).astype("float32")
    mask = np.arange(10)[None, :] < rng.integers(3, 11, 16)[:, None]
    layer(x, mask=mask)
    return layer, x, mask


def test_default_gate_starts_alive_where_the_paper_relu_gate_starts_dead():
    zero_shares = {}
    for gate in (None, "relu"):
        shares = []
        for seed in range(3):
            layer, x, mask = _m3sa_stack_at_init(gate, seed)
            s = np.asarray(layer.compute_channel_weights(x, mask))
            shares.append(float((s == 0).mean()))
            if gate is None:
                assert layer.channel_attention.gate == "sigmoid"
                probe = tf.constant(np.random.default_rng(seed).standard_normal((16, 10, 64)), tf.float32)
                se_weights = layer.channel_attention.trainable_weights
                with tf.GradientTape() as tape:
                    out, _ = layer(x, mask=mask, training=True)
                    loss = tf.reduce_sum(out * probe)
                for w, g in zip(se_weights, tape.gradient(loss, se_weights)):
                    assert np.all(np.asarray(g) != 0), (seed, w.path)
        zero_shares[gate] = np.mean(shares)
    assert zero_shares[None] == 0.0
    # The defect the default avoids: Eq. 5's ReLU cuts a large share of the
    # scales off exactly at the start.
    assert zero_shares["relu"] > 0.2, zero_shares


def test_m3sa_uses_the_live_gate_by_default_and_keeps_the_paper_gate_as_an_option():
    from keras_msa.models import M3SA

    assert M3SA().se_gate == "sigmoid"
    assert M3SA().extractors["audio"].gate == "sigmoid"
    assert M3SA(se_gate="relu").extractors["text"].gate == "relu"
    assert M3SA(se_gate="relu").get_config()["se_gate"] == "relu"
