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


# ------------------------------------------------- non-finite values under masks
import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_msa.utils.masks import masked_rnn  # noqa: E402
from keras_msa.utils.masks import zero_masked  # noqa: E402

POISON = [np.inf, -np.inf, np.nan]


def _poisoned(x, mask, value):
    y = x.copy()
    y[~mask] = value
    return y


@pytest.mark.parametrize("value", POISON)
def test_masked_mean_and_last_valid_step_ignore_inf_and_nan_under_the_mask(value):
    x, mask = _data()
    bad = tf.constant(_poisoned(x, mask, value))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(bad)
        mean = masked_mean(bad, mask)
        last = last_valid_step(bad, mask)
    np.testing.assert_allclose(np.asarray(mean), np.asarray(masked_mean(x, mask)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(last), np.asarray(last_valid_step(x, mask)), atol=1e-6)
    for out in (mean, last):
        g = np.asarray(tape.gradient(out, bad))
        assert np.isfinite(g).all() and np.all(g[~mask] == 0)


@pytest.mark.parametrize("value", POISON)
def test_zero_masked_selects_instead_of_multiplying(value):
    x, mask = _data()
    out = np.asarray(zero_masked(_poisoned(x, mask, value), mask))
    np.testing.assert_array_equal(out[~mask], 0.0)
    np.testing.assert_array_equal(out[mask], x[mask])
    four_d = np.repeat(_poisoned(x, mask, value)[..., None], 2, axis=-1)
    assert np.isfinite(np.asarray(zero_masked(four_d, mask))).all()


class _SpyLSTM(keras.layers.LSTM):
    """An LSTM that records the masks it is called with."""

    seen = []

    def call(self, sequences, initial_state=None, mask=None, training=False):
        self.seen.append(None if mask is None else np.asarray(mask))
        return super().call(sequences, initial_state=initial_state, mask=mask, training=training)


def _rnn_data():
    x = np.random.default_rng(3).standard_normal((5, 6, 3)).astype("float32")
    mask = np.array(
        [
            [1, 1, 1, 1, 0, 0],  # right-padded
            [0, 0, 1, 1, 1, 1],  # left-padded
            [0, 0, 0, 0, 0, 0],  # missing modality
            [1, 0, 1, 0, 1, 0],  # holes
            [1, 1, 1, 1, 1, 1],  # full
        ],
        bool,
    )
    return x, mask


def _cudnn_would_accept(mask):
    """Keras' cuDNN mask conditions (`_assert_valid_mask`): every row has a
    real step and its real steps form a prefix."""
    counts = mask.sum(1)
    prefix = np.arange(mask.shape[1])[None, :] < counts[:, None]
    return bool((counts > 0).all() and (mask == prefix).all())


@pytest.mark.parametrize("return_sequences", [True, False])
def test_masked_rnn_only_passes_cudnn_valid_masks_and_keeps_real_rows(return_sequences):
    x, mask = _rnn_data()
    keras.utils.set_random_seed(0)
    rnn = _SpyLSTM(4, return_sequences=return_sequences)
    reference = np.asarray(rnn(x, mask=mask))  # generic kernel on the raw mask
    _SpyLSTM.seen.clear()
    out = np.asarray(masked_rnn(rnn, x, mask))
    assert len(_SpyLSTM.seen) == 1 and _cudnn_would_accept(_SpyLSTM.seen[0])
    assert not _cudnn_would_accept(mask)  # the raw mask would have failed on a GPU
    assert np.isfinite(out).all()
    if return_sequences:
        # Real steps are unchanged (the generic kernel skips masked steps, so
        # packing them out gives the same states); padded steps are zero.
        np.testing.assert_allclose(out[mask], reference[mask], atol=1e-6)
        np.testing.assert_array_equal(out[~mask], 0.0)
    else:
        keep = mask.any(1)
        np.testing.assert_allclose(out[keep], reference[keep], atol=1e-6)
        np.testing.assert_array_equal(out[~keep], 0.0)


@pytest.mark.parametrize("value", POISON)
def test_masked_rnn_outputs_and_gradients_are_finite_with_inf_nan_padding(value):
    x, mask = _rnn_data()
    keras.utils.set_random_seed(1)
    rnn = keras.layers.GRU(4, return_sequences=True)
    clean = np.asarray(masked_rnn(rnn, x, mask))
    bad = tf.constant(_poisoned(x, mask, value))
    with tf.GradientTape() as tape:
        tape.watch(bad)
        out = masked_rnn(rnn, bad, mask, training=True)
        loss = tf.reduce_sum(out * out)
    np.testing.assert_allclose(np.asarray(out), clean, atol=1e-6)
    grads = tape.gradient(loss, rnn.trainable_weights + [bad])
    for g in grads:
        assert np.isfinite(np.asarray(g)).all()
    assert np.all(np.asarray(grads[-1])[~mask] == 0)


def test_masked_rnn_without_mask_and_bad_layers():
    x, _ = _rnn_data()
    rnn = keras.layers.LSTM(2, return_sequences=True)
    np.testing.assert_allclose(np.asarray(masked_rnn(rnn, x)), np.asarray(rnn(x)), atol=1e-6)
    with pytest.raises(ValueError, match="return_state"):
        masked_rnn(keras.layers.LSTM(2, return_state=True), x, np.ones((5, 6), bool))


def test_softmax_over_one_key_is_one_without_a_warning():
    import warnings

    from keras_msa.utils.masks import softmax

    scores = tf.constant(np.array([[[0.3], [-2.0]]], "float32"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with tf.GradientTape() as tape:
            tape.watch(scores)
            out = softmax(scores)
            masked = masked_softmax(scores, np.array([[[True], [False]]]))
    np.testing.assert_array_equal(np.asarray(out), np.ones((1, 2, 1)))
    np.testing.assert_array_equal(np.asarray(masked), [[[1.0], [0.0]]])
    grad = tape.gradient(out, scores)
    assert grad is not None and not np.any(np.asarray(grad))
    wide = np.random.default_rng(0).normal(size=(2, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(softmax(wide)), np.exp(wide) / np.exp(wide).sum(-1, keepdims=True), rtol=1e-6)
