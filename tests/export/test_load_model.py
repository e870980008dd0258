"""`keras_msa.utils.loading.load_model`: a damaged `.keras` file is an error
that names the path and the fault (Keras alone says "File not found")."""

import json
import re
import zipfile

import keras
import numpy as np
import pytest

from keras_msa.models import LFDNN
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.utils.loading import ModelFileError
from keras_msa.utils.loading import load_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 2)
    keras.utils.set_random_seed(0)
    model = LFDNN(hidden_dims={"text": 8, "audio": 4, "vision": 4}, fusion_dim=8)
    model(batch)
    path = str(tmp_path_factory.mktemp("m") / "model.keras")
    model.save(path)
    return path, model, batch


def _rewrite(src, dst, replace):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = replace.get(item.filename, zin.read(item.filename))
            if data is not None:
                zout.writestr(item, data)


def test_a_good_file_loads(saved):
    path, model, batch = saved
    restored = load_model(path, label="--model_path")
    np.testing.assert_allclose(np.asarray(restored(batch)["sentiment"]), np.asarray(model(batch)["sentiment"]),
                               atol=1e-6)


def test_damaged_files_name_the_path_and_the_fault(saved, tmp_path):
    path, _, _ = saved
    data = open(path, "rb").read()
    cases = {
        "truncated.keras": (data[: len(data) // 2], r"not a valid \.keras archive .*truncated or damaged"),
        "random.keras": (np.random.default_rng(0).bytes(4096), r"not a valid \.keras archive"),
        "empty.keras": (b"", r"is empty \(0 bytes\)"),
    }
    for name, (content, message) in cases.items():
        target = tmp_path / name
        target.write_bytes(content)
        with pytest.raises(ModelFileError, match=r"^--model_path=") as e:
            load_model(str(target), label="--model_path")
        assert str(target) in str(e.value)
        assert re.search(message, str(e.value)), str(e.value)
    bad_json = tmp_path / "bad_json.keras"
    _rewrite(path, str(bad_json), {"config.json": b"{not json"})
    with pytest.raises(ModelFileError, match=r"bad_json.keras: its config.json is not valid JSON"):
        load_model(str(bad_json))
    no_weights = tmp_path / "no_weights.keras"
    _rewrite(path, str(no_weights), {"model.weights.h5": None})
    with pytest.raises(ModelFileError, match=r"no_weights.keras is a zip archive but not a \.keras model.*model.weights.h5"):
        load_model(str(no_weights))
    unknown = tmp_path / "unknown.keras"
    config = json.loads(open_config(path))
    config.update(class_name="NoSuchModel", registered_name="keras_msa>NoSuchModel")
    _rewrite(path, str(unknown), {"config.json": json.dumps(config).encode()})
    with pytest.raises(ModelFileError, match=r"unknown.keras: the NoSuchModel model in it could not be rebuilt"):
        load_model(str(unknown))


def open_config(path):
    with zipfile.ZipFile(path) as z:
        return z.read("config.json").decode()


def test_directories_missing_files_and_other_formats(saved, tmp_path):
    with pytest.raises(ModelFileError, match=r"--model_path=.*run is a directory, not a \.keras file"):
        (tmp_path / "run").mkdir()
        load_model(str(tmp_path / "run"), label="--model_path")
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ModelFileError, match="SavedModel export"):
        load_model(str(tmp_path / "sm"))
    with pytest.raises(FileNotFoundError, match=r"nope.keras does not exist"):
        load_model(str(tmp_path / "nope.keras"))
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(ModelFileError, match=r"expected a \.keras file .*'\.h5'"):
        load_model(str(tmp_path / "model.h5"))


def test_code_in_the_file_is_refused_in_safe_mode(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2.0)(inputs))
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    with pytest.raises(ModelFileError, match=r"lambda.keras holds code .*safe mode refuses"):
        load_model(path)
