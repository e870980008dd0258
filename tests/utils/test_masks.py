import numpy as np

from keras_msa.utils.masks import last_valid_step
from keras_msa.utils.masks import masked_mean
from keras_msa.utils.masks import masked_softmax
from keras_msa.utils.masks import sequence_mask


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 0, 0, 0, 0]], bool)
    return x, mask


def test_masked_mean_matches_numpy_and_is_zero_for_empty_rows():
    x, mask = _data()
    out = np.asarray(masked_mean(x, mask))
    for b in range(2):
        np.testing.assert_allclose(out[b], x[b][mask[b]].mean(0), atol=1e-6)
    np.testing.assert_array_equal(out[2], np.zeros(4))


def test_masked_mean_ignores_values_under_the_mask():
    x, mask = _data()
    y = x.copy()
    y[~mask] = 1e6
    np.testing.assert_allclose(np.asarray(masked_mean(x, mask)), np.asarray(masked_mean(y, mask)), atol=1e-6)


def test_last_valid_step_picks_last_true_position():
    x, mask = _data()
    out = np.asarray(last_valid_step(x, mask))
    np.testing.assert_allclose(out[0], x[0, 2])
    np.testing.assert_allclose(out[1], x[1, 3])
    np.testing.assert_array_equal(out[2], np.zeros(4))


def test_masked_softmax_zero_rows_and_normalised_rows():
    rng = np.random.default_rng(1)
    s = rng.standard_normal((2, 3, 5)).astype("float32")
    mask = np.ones((2, 3, 5), bool)
    mask[0, :, 3:] = False
    mask[1] = False
    w = np.asarray(masked_softmax(s, mask))
    ref = np.exp(s[0, :, :3]) / np.exp(s[0, :, :3]).sum(-1, keepdims=True)
    np.testing.assert_allclose(w[0, :, :3], ref, atol=1e-6)
    np.testing.assert_array_equal(w[0, :, 3:], 0)
    np.testing.assert_array_equal(w[1], 0)
    assert np.isfinite(w).all()


def test_sequence_mask():
    np.testing.assert_array_equal(
        np.asarray(sequence_mask(np.array([0, 2, 4]), 4)),
        [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]],
    )
