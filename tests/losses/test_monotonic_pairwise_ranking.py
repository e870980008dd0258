import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.losses import MonotonicPairwiseRanking
from keras_msa.losses import monotonic_pairwise_ranking


def numpy_mpr(y, p, alpha=0.3, beta=1.0, min_gap=0.3):
    """Seed 001 Eqs. 9-12 over the ordered pairs i != j, as the paper writes them."""
    y = np.asarray(y, np.float64).ravel()
    p = np.asarray(p, np.float64).ravel()
    terms = []
    for i in range(len(y)):
        for j in range(len(y)):
            if i != j and abs(y[i] - y[j]) >= min_gap:
                m = alpha * abs(y[i] - y[j]) ** beta
                terms.append(max(0.0, m - np.sign(y[i] - y[j]) * (p[i] - p[j])))
    return float(np.mean(terms)) if terms else 0.0


@pytest.mark.parametrize("alpha,beta,min_gap", [(0.3, 1.0, 0.3), (0.5, 2.0, 1.0), (0.1, 1.5, 0.0)])
def test_matches_numpy_reference(alpha, beta, min_gap):
    rng = np.random.default_rng(0)
    y = np.round(rng.uniform(-3, 3, (17, 1)), 1).astype("float32")
    p = (y + rng.normal(0, 1.0, y.shape)).astype("float32")
    got = MonotonicPairwiseRanking(alpha=alpha, beta=beta, min_gap=min_gap)(y, p)
    np.testing.assert_allclose(float(got), numpy_mpr(y, p, alpha, beta, min_gap), atol=1e-5, rtol=0)


def test_no_valid_pair_gives_zero():
    y = np.array([[1.0], [1.1], [1.2]], "float32")  # all gaps < 0.3
    p = np.array([[3.0], [-3.0], [0.0]], "float32")
    assert float(MonotonicPairwiseRanking()(y, p)) == 0.0
    assert float(MonotonicPairwiseRanking()(y[:1], p[:1])) == 0.0  # a single sample


def test_all_equal_labels_give_zero_even_with_min_gap_zero():
    y = np.full((4, 1), 0.6, "float32")
    p = np.array([[3.0], [-3.0], [0.0], [1.0]], "float32")
    # Ties in the labels: sgn = 0 and margin = 0, so every pair costs 0.
    assert float(MonotonicPairwiseRanking(min_gap=0.0)(y, p)) == 0.0


def test_tied_predictions_cost_the_margin_and_ordered_ones_cost_nothing():
    y = np.array([[-2.0], [0.0], [1.5]], "float32")
    tied = MonotonicPairwiseRanking()(y, np.zeros_like(y))
    np.testing.assert_allclose(float(tied), 0.3 * (2.0 + 3.5 + 1.5) / 3, atol=1e-6)
    assert float(MonotonicPairwiseRanking()(y, 2 * y)) == 0.0  # well separated, same order
    reversed_ = float(MonotonicPairwiseRanking()(y, -y))
    np.testing.assert_allclose(reversed_, numpy_mpr(y, -y), atol=1e-6)
    assert reversed_ > float(tied)


def test_max_pairs_subsamples_admitted_pairs():
    rng = np.random.default_rng(3)
    y = rng.uniform(-3, 3, (6, 1)).astype("float32")
    p = rng.normal(0, 1, (6, 1)).astype("float32")
    yy, pp = y.ravel(), p.ravel()
    singles = []
    for i in range(6):
        for j in range(i + 1, 6):
            if abs(yy[i] - yy[j]) >= 0.3:
                singles.append(max(0.0, 0.3 * abs(yy[i] - yy[j]) - np.sign(yy[i] - yy[j]) * (pp[i] - pp[j])))
    seen = set()
    loss = MonotonicPairwiseRanking(max_pairs=1, seed=0)
    for _ in range(30):
        value = float(loss(y, p))
        # One pair at a time: the value is one pair's hinge.
        assert np.min(np.abs(np.array(singles) - value)) < 1e-5
        seen.add(round(value, 5))
    assert len(seen) > 1  # the subset changes from call to call
    # A cap above the number of pairs uses them all.
    np.testing.assert_allclose(float(MonotonicPairwiseRanking(max_pairs=15)(y, p)), np.mean(singles), atol=1e-5)


def test_works_in_a_compiled_function_with_unknown_batch():
    loss = MonotonicPairwiseRanking(max_pairs=3, seed=1)

    @tf.function(input_signature=[tf.TensorSpec([None, 1]), tf.TensorSpec([None, 1])])
    def f(y, p):
        return loss(y, p)

    y = np.array([[-2.0], [0.0], [1.5], [3.0]], "float32")
    assert np.isfinite(float(f(y, np.zeros_like(y))))


def test_gradient_pushes_predictions_into_label_order():
    y = tf.constant([[-1.0], [1.0]])
    p = tf.Variable([[0.5], [-0.5]])
    with tf.GradientTape() as tape:
        value = monotonic_pairwise_ranking(y, p)
    g = tape.gradient(value, p).numpy().ravel()
    assert g[0] > 0 and g[1] < 0  # gradient descent lowers p0 and raises p1


def test_config_round_trip_and_errors():
    loss = MonotonicPairwiseRanking(alpha=0.4, beta=2.0, min_gap=0.5, max_pairs=10, seed=3)
    clone = MonotonicPairwiseRanking.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="beta must be >= 1"):
        monotonic_pairwise_ranking(np.zeros(2), np.zeros(2), beta=0.5)
    with pytest.raises(ValueError, match="different numbers of samples"):
        monotonic_pairwise_ranking(np.zeros((3, 1)), np.zeros((2, 1)))


def test_float16_inputs_give_float32():
    y = np.array([[-2.0], [0.0], [1.5]], "float16")
    assert keras.ops.convert_to_tensor(monotonic_pairwise_ranking(y, y * 0)).dtype == "float32"
