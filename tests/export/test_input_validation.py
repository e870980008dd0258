"""`validate_finite` and the mask-aware finite checks of `validate_batch` and
`assert_finite_dataset`: real steps must be finite, padding may hold anything."""

import numpy as np
import pytest
import tensorflow as tf

from keras_msa.data.validation import BatchValidationError
from keras_msa.data.validation import NonFiniteInputError
from keras_msa.data.validation import assert_finite_dataset
from keras_msa.data.validation import validate_batch
from keras_msa.data.validation import validate_finite


def _batch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 2)).astype("float32")
    mask = np.ones((3, 5), bool)
    mask[1, 3:] = False
    return {"audio": x, "audio_mask": mask}


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_padding_may_hold_non_finite_values(value):
    b = _batch()
    b["audio"][1, 3:] = value  # MMSA audio holds -inf under its mask
    validate_finite(b)
    validate_batch(b, modalities=["audio"])
    ds = assert_finite_dataset(tf.data.Dataset.from_tensors((b, {})), modalities=["audio"])
    np.testing.assert_array_equal(next(iter(ds))[0]["audio"].numpy(), b["audio"])


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_real_steps_must_be_finite_in_eager_and_graph(value):
    b = _batch()
    b["audio"][1, 2, 1] = value
    message = r"input `audio` at \[row, step\] = \[1, 2\]"
    with pytest.raises(NonFiniteInputError, match=message):
        validate_finite(b)
    with pytest.raises(BatchValidationError, match=r"batch index 1, step 2, channel 1"):
        validate_batch(b, modalities=["audio"])

    @tf.function
    def graph(batch):
        with tf.control_dependencies(validate_finite(batch)):
            return tf.identity(batch["audio"])

    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        graph({k: tf.constant(v) for k, v in b.items()})
    ds = assert_finite_dataset(tf.data.Dataset.from_tensors((b, {})), modalities=["audio"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or inf in 'audio' features"):
        next(iter(ds))


def test_no_mask_means_every_step_is_real_and_xla_skips_the_check():
    b = {"audio": _batch()["audio"]}
    b["audio"][2, 4, 0] = np.nan
    with pytest.raises(NonFiniteInputError, match=r"\[2, 4\]"):
        validate_finite(b)

    @tf.function(jit_compile=True)
    def compiled(x):
        assert validate_finite({"audio": x}) == []  # XLA compiles no string assertions
        return x * 2.0

    assert np.isnan(compiled(tf.constant(b["audio"])).numpy()[2, 4, 0])


def test_eager_tensors_are_checked_and_shape_errors_are_left_to_the_model():
    b = _batch()
    b["audio"][0, 4, 1] = np.inf
    tensors = {k: tf.constant(v) for k, v in b.items()}
    with pytest.raises(NonFiniteInputError, match=r"input `audio` at \[row, step\] = \[0, 4\]"):
        validate_finite(tensors)
    tensors["audio_mask"] = tensors["audio_mask"][:, :3]  # the model names this mismatch itself
    assert validate_finite(tensors) == []
    assert validate_finite({k: v.numpy() for k, v in tensors.items()}) == []
