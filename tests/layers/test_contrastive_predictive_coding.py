import numpy as np
import tensorflow as tf

from keras_msa.layers import ContrastivePredictiveCoding


def _unit(v):
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_nce_matches_numpy_and_reaches_every_weight():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4)).astype("float32")
    z = rng.standard_normal((5, 6)).astype("float32")
    for layers in (1, 2):
        cpc = ContrastivePredictiveCoding(num_layers=layers)
        cpc.build(x.shape, z.shape)
        for w in cpc.weights:
            w.assign(0.5 * rng.standard_normal(w.shape))
        pred = z
        for i, dense in enumerate(cpc.predictor):
            pred = pred @ np.asarray(dense.kernel) + np.asarray(dense.bias)
            if i == 0 and layers > 1:
                pred = np.tanh(pred)
        scores = _unit(x) @ _unit(pred).T
        lse = np.log(np.exp(scores).sum(axis=1))
        want = -np.mean(np.diag(scores) - lse)
        np.testing.assert_allclose(float(cpc(x, z)), want, rtol=1e-5)
        with tf.GradientTape() as tape:
            loss = cpc(x, z)
        assert all(np.any(np.asarray(g) != 0) for g in tape.gradient(loss, cpc.trainable_weights))
    # A zero target (a missing modality's representation) stays finite; a
    # masked sample leaves the loss of the others as if it were absent.
    x[0] = 0.0
    assert np.isfinite(float(cpc(x, z)))
    mask = np.array([False, True, True, True, True])
    np.testing.assert_allclose(float(cpc(x, z, sample_mask=mask)), float(cpc(x[1:], z[1:])), rtol=1e-5)
    clone = ContrastivePredictiveCoding.from_config(cpc.get_config())
    assert clone.get_config() == cpc.get_config()
