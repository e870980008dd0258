import numpy as np
import pytest
import tensorflow as tf

from keras_msa.losses import ConcordanceCorrelationLoss
from keras_msa.losses import concordance_correlation_loss


def np_ccc(y, p):
    y, p = np.asarray(y, np.float64).ravel(), np.asarray(p, np.float64).ravel()
    cov = ((y - y.mean()) * (p - p.mean())).mean()
    return 2 * cov / (y.var() + p.var() + (y.mean() - p.mean()) ** 2)


def test_matches_numpy_reference():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 24, size=(32, 1)).astype("float32") / 25
    p = (y + rng.normal(0, 0.1, size=y.shape) + 0.05).astype("float32")
    np.testing.assert_allclose(float(concordance_correlation_loss(y, p)), 1 - np_ccc(y, p), atol=1e-5)
    np.testing.assert_allclose(float(ConcordanceCorrelationLoss()(y, p)), 1 - np_ccc(y, p), atol=1e-5)


def test_edge_cases():
    y = np.array([0.1, 0.4, 0.2, 0.9], "float32")
    assert abs(float(concordance_correlation_loss(y, y))) < 1e-6  # perfect agreement
    np.testing.assert_allclose(float(concordance_correlation_loss(y, -y)), 1 - np_ccc(y, -y), atol=1e-5)
    assert float(concordance_correlation_loss(y, -y)) > 1.0
    # Correlated but shifted/scaled: CCC < Pearson = 1 (the loss sees bias).
    assert float(concordance_correlation_loss(y, 2 * y + 1)) > 0.5
    # Ties / constants: all-equal labels with varying predictions, all equal both.
    const = np.full(4, 0.3, "float32")
    np.testing.assert_allclose(float(concordance_correlation_loss(const, y)), 1.0, atol=1e-6)
    np.testing.assert_allclose(float(concordance_correlation_loss(const, const)), 1.0, atol=1e-6)
    np.testing.assert_allclose(float(concordance_correlation_loss([0.5], [0.2])), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="sample_weight"):
        ConcordanceCorrelationLoss()(y, y, sample_weight=np.ones(4))


def test_gradient_is_finite_and_config_roundtrip():
    y = tf.constant([0.1, 0.4, 0.2, 0.9])
    p = tf.Variable([0.3, 0.3, 0.5, 0.6])
    with tf.GradientTape() as tape:
        loss = concordance_correlation_loss(y, p)
    g = tape.gradient(loss, p).numpy()
    assert np.isfinite(g).all() and np.abs(g).max() > 0
    const = tf.Variable([0.3, 0.3, 0.3, 0.3])
    with tf.GradientTape() as tape:
        loss = concordance_correlation_loss(tf.constant([0.3] * 4), const)
    assert np.isfinite(tape.gradient(loss, const).numpy()).all()
    loss = ConcordanceCorrelationLoss(epsilon=1e-6)
    assert ConcordanceCorrelationLoss.from_config(loss.get_config()).epsilon == 1e-6
