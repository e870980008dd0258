import numpy as np
import pytest

from keras_msa.data.validation import BatchValidationError
from keras_msa.data.validation import expected_dims_from_model
from keras_msa.data.validation import validate_batch
from keras_msa.models import LFDNN
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic


@pytest.fixture(scope="module")
def batch():
    return small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 4)


def test_valid_batch_passes(batch):
    validate_batch(batch, expected_dims={"text": 16, "audio": 5, "vision": 20})


def test_wrong_width_names_key_and_shapes(batch):
    with pytest.raises(BatchValidationError, match=r"'audio'.*expected \[batch, time, 7\].*\[4, 12, 5\]"):
        validate_batch(batch, expected_dims={"audio": 7})


def test_missing_modality_key(batch):
    b = {k: v for k, v in batch.items() if k != "vision"}
    with pytest.raises(BatchValidationError, match="Missing modality key 'vision'"):
        validate_batch(b, source="train.tfrecord")


def test_nan_in_features_is_located(batch):
    b = dict(batch)
    b["audio"] = batch["audio"].copy()
    b["audio"][2, 3, 1] = np.nan
    with pytest.raises(BatchValidationError, match=r"NaN or inf in 'audio'.*batch index 2, step 3, channel 1"):
        validate_batch(b)


def test_bad_mask_shape_and_dtype(batch):
    b = dict(batch)
    b["text_mask"] = batch["text_mask"][:, :5]
    with pytest.raises(BatchValidationError, match="'text_mask' must have shape"):
        validate_batch(b)
    b = dict(batch)
    b["text"] = batch["text"].astype("int32")
    with pytest.raises(BatchValidationError, match="floating point"):
        validate_batch(b)


def test_expected_dims_from_a_built_model(batch):
    model = LFDNN()
    model(batch)
    assert expected_dims_from_model(model) == {"text": 16, "audio": 5, "vision": 20}


def test_nan_check_inside_tf_data(batch):
    import tensorflow as tf

    from keras_msa.data.validation import assert_finite_dataset

    b = dict(batch)
    b["vision"] = batch["vision"].copy()
    b["vision"][0, 0, 0] = np.inf
    ds = assert_finite_dataset(tf.data.Dataset.from_tensors((b, {"sentiment": np.zeros((4, 1), "float32")})))
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or inf in 'vision'"):
        next(iter(ds))
