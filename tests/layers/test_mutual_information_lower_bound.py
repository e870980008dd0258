import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import MutualInformationLowerBound


def _mlp(x, k1, b1, k2, b2):
    return np.maximum(x @ k1 + b1, 0) @ k2 + b2


def test_lld_matches_numpy_and_stop_weights_splits_the_gradient():
    rng = np.random.default_rng(0)
    bound = MutualInformationLowerBound()
    x = rng.standard_normal((5, 6)).astype("float32")
    y = rng.standard_normal((5, 8)).astype("float32")
    bound.build(x.shape, y.shape)
    for w in bound.weights:
        w.assign(0.5 * rng.standard_normal(w.shape))
    w = {v.name: np.asarray(v) for v in bound.weights}
    mu = _mlp(x, w["mu_kernel_1"], w["mu_bias_1"], w["mu_kernel_2"], w["mu_bias_2"])
    logvar = _mlp(x, w["logvar_kernel_1"], w["logvar_bias_1"], w["logvar_kernel_2"], w["logvar_bias_2"])
    want = np.mean(np.sum(-(mu - y) ** 2 / 2.0 / np.exp(logvar), axis=-1))
    np.testing.assert_allclose(float(bound(x, y)), want, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(bound.entropy_projection(y)),
                               np.tanh(y @ w["entropy_kernel"] + w["entropy_bias"]), atol=1e-6)
    assert bound.entropy_kernel.shape == (8, 2) and not bound.entropy_kernel.trainable
    assert len(bound.trainable_weights) == 8
    xt, yt = tf.constant(x), tf.constant(y)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([xt, yt])
        full = bound(xt, yt)
        encoders = bound(xt, yt, stop_weights=True)
    np.testing.assert_allclose(float(encoders), float(full), rtol=1e-6)
    # Same value; the encoders' side reaches the inputs only, never the weights.
    assert all(g is None for g in tape.gradient(encoders, bound.trainable_weights))
    for a, b in zip(tape.gradient(encoders, [xt, yt]), tape.gradient(full, [xt, yt])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert all(np.any(np.asarray(g) != 0) for g in tape.gradient(full, bound.trainable_weights))


def test_config_round_trip_and_errors():
    bound = MutualInformationLowerBound(activation="tanh", entropy_dim=3)
    clone = MutualInformationLowerBound.from_config(bound.get_config())
    assert clone.get_config() == bound.get_config()
    clone.build((None, 5), (None, 8))
    assert tuple(clone.entropy_projection(np.ones((2, 8), "float32")).shape) == (2, 3)
    with pytest.raises(ValueError, match="width >= 4"):
        MutualInformationLowerBound().build((None, 4), (None, 3))
    with pytest.raises(TypeError, match="activation"):
        MutualInformationLowerBound(activation=np.tanh)
