import numpy as np
import pytest
import tensorflow as tf

from keras_msa.losses import ErrorIntervalOrdinalInconsistency
from keras_msa.losses import error_interval_ordinal_inconsistency


def numpy_eioi(y, p, delta):
    """Seed 001 Eq. 15."""
    e = np.abs(np.asarray(p, np.float64).ravel() - np.asarray(y, np.float64).ravel())
    return float(np.mean(np.maximum(0.0, e - delta) ** 2))


@pytest.mark.parametrize("delta", [0.0, 0.2, 0.5, 1.0])
def test_matches_numpy_reference(delta):
    rng = np.random.default_rng(0)
    y = rng.uniform(-3, 3, (19, 1)).astype("float32")
    p = (y + rng.normal(0, 1.2, y.shape)).astype("float32")
    got = ErrorIntervalOrdinalInconsistency(delta=delta)(y, p)
    np.testing.assert_allclose(float(got), numpy_eioi(y, p, delta), atol=1e-5, rtol=0)


def test_zero_inside_the_band_and_at_its_edge():
    y = np.array([[0.0], [1.0], [-2.0]], "float32")
    p = y + np.array([[0.5], [-0.5], [0.25]], "float32")
    assert float(ErrorIntervalOrdinalInconsistency(delta=0.5)(y, p)) == 0.0


def test_delta_zero_is_mse_and_all_equal_labels():
    y = np.full((5, 1), 1.0, "float32")
    p = np.linspace(-1, 1, 5, dtype="float32")[:, None]
    np.testing.assert_allclose(
        float(ErrorIntervalOrdinalInconsistency(delta=0.0)(y, p)), np.mean((p - y) ** 2), atol=1e-6
    )


def test_per_sample_values_and_sample_weights():
    y = np.array([[0.0], [0.0]], "float32")
    p = np.array([[1.5], [0.2]], "float32")
    per = np.asarray(error_interval_ordinal_inconsistency(y, p, 0.5))
    np.testing.assert_allclose(per, [1.0, 0.0], atol=1e-6)
    weighted = ErrorIntervalOrdinalInconsistency(delta=0.5)(y, p, sample_weight=np.array([0.0, 1.0]))
    assert float(weighted) == 0.0


def test_gradient_only_outside_the_band():
    y = tf.constant([[0.0], [0.0]])
    p = tf.Variable([[0.3], [1.5]])
    with tf.GradientTape() as tape:
        value = ErrorIntervalOrdinalInconsistency(delta=0.5)(y, p)
    g = tape.gradient(value, p).numpy().ravel()
    np.testing.assert_allclose(g, [0.0, 2 * 1.0 / 2], atol=1e-6)


def test_config_round_trip_and_errors():
    loss = ErrorIntervalOrdinalInconsistency(delta=0.3)
    assert ErrorIntervalOrdinalInconsistency.from_config(loss.get_config()).get_config() == loss.get_config()
    with pytest.raises(ValueError, match="delta must be >= 0"):
        error_interval_ordinal_inconsistency(np.zeros(2), np.zeros(2), delta=-1)
    with pytest.raises(ValueError, match="different numbers of samples"):
        error_interval_ordinal_inconsistency(np.zeros((3, 1)), np.zeros((2, 1)))
