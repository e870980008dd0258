import keras
import numpy as np

from keras_msa.layers import MaskedMeanPooling


def test_forward_matches_numpy_and_masking():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 3)).astype("float32")
    mask = np.array([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], bool)
    out = np.asarray(MaskedMeanPooling()(x, mask=mask))
    np.testing.assert_allclose(out[0], x[0, :2].mean(0), atol=1e-6)
    np.testing.assert_array_equal(out[1], 0)
    x2 = x.copy()
    x2[0, 2:] = 99.0
    np.testing.assert_allclose(np.asarray(MaskedMeanPooling()(x2, mask=mask)), out, atol=1e-6)


def test_keras_mask_propagation_and_config():
    inp = keras.Input((None, 3))
    masked = keras.layers.Masking(0.0)(inp)
    model = keras.Model(inp, MaskedMeanPooling()(masked))
    x = np.array([[[1, 1, 1], [3, 3, 3], [0, 0, 0]]], "float32")
    np.testing.assert_allclose(np.asarray(model(x)), [[2, 2, 2]])
    layer = MaskedMeanPooling(name="pool")
    clone = MaskedMeanPooling.from_config(layer.get_config())
    assert clone.name == "pool"
    assert layer.compute_output_shape((None, 7, 3)) == (None, 3)


def test_inf_and_nan_under_the_mask_change_nothing_and_keep_gradients_finite():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 2)).astype("float32")
    mask = np.array([[1, 1, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0]], bool)
    clean = np.asarray(MaskedMeanPooling()(x, mask=mask))
    for value in (np.inf, -np.inf, np.nan):
        bad = tf.constant(np.where(mask[..., None], x, value).astype("float32"))
        with tf.GradientTape() as tape:
            tape.watch(bad)
            out = MaskedMeanPooling()(bad, mask=mask)
        np.testing.assert_allclose(np.asarray(out), clean, atol=1e-6)
        grad = np.asarray(tape.gradient(out, bad))
        assert np.isfinite(grad).all() and np.all(grad[~mask] == 0)
