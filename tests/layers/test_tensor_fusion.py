import keras
import numpy as np
import tensorflow as tf

from keras_msa.layers import TensorFusion


def numpy_tensor_fusion(hs):
    """Eq. 1 by explicit loops over every index combination."""
    out = []
    for b in range(hs[0].shape[0]):
        ext = [np.concatenate([[1.0], h[b]]) for h in hs]
        z = ext[0]
        for e in ext[1:]:
            z = np.array([zi * ej for zi in z for ej in e])
        out.append(z)
    return np.array(out)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((3, d)).astype("float32") for d in (3, 2, 4)]


def test_matches_numpy_and_shape():
    hs = _inputs()
    layer = TensorFusion()
    out = np.asarray(layer(hs))
    assert out.shape == (3, 4 * 3 * 5) == layer.compute_output_shape([h.shape for h in hs])
    np.testing.assert_allclose(out, numpy_tensor_fusion(hs), atol=1e-5)


def test_config_round_trip_and_gradient_reaches_every_input():
    layer = TensorFusion.from_config(TensorFusion(name="tf").get_config())
    hs = [tf.Variable(h) for h in _inputs(1)]
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(layer(hs) ** 2)
    assert all(np.abs(np.asarray(g)).max() > 0 for g in tape.gradient(out, hs))


def test_a_missing_modality_enters_as_its_constant_term_only():
    hs = _inputs(2)
    poisoned = [h.copy() for h in hs]
    poisoned[1][1] = np.nan
    present = [np.ones(3, bool), np.array([True, False, True]), np.ones(3, bool)]
    out = np.asarray(TensorFusion()(poisoned, mask=present))
    assert np.isfinite(out).all()
    want = numpy_tensor_fusion([hs[0], np.where(present[1][:, None], hs[1], 0), hs[2]])
    np.testing.assert_allclose(out, want, atol=1e-5)
    # Samples that have every modality are untouched by the other's padding.
    np.testing.assert_allclose(out[[0, 2]], numpy_tensor_fusion(hs)[[0, 2]], atol=1e-5)


def test_in_a_functional_model():
    ins = [keras.Input((d,)) for d in (3, 2)]
    model = keras.Model(ins, TensorFusion()(ins))
    assert model.output_shape == (None, 12)
