"""Issue 18: a trained preset is config and weights (keras-hub's meaning);
a paper preset name is config only."""

import json
import os

import keras
import numpy as np
import pytest

from keras_msa.models import LFDNN
from keras_msa.models import MSAModel
from keras_msa.models import MulG
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    data = tiny_synthetic(train=8, valid=8, test=8)
    model = LFDNN.from_preset("mosi", fusion_dim=8, hidden_dims={"text": 8, "audio": 4, "vision": 4})
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(data["train"].to_tf_dataset(4), epochs=1, steps_per_epoch=2, shuffle=False, verbose=0)
    return model, small_batch(data["test"], 4)


def test_round_trip_gives_identical_predictions(trained, tmp_path):
    model, batch = trained
    path = model.save_to_preset(str(tmp_path / "lfdnn_mosi"))
    assert sorted(os.listdir(path)) == ["config.json", "metadata.json", "model.weights.h5"]
    with open(os.path.join(path, "metadata.json")) as f:
        metadata = json.load(f)
    import keras_msa

    assert metadata["keras_msa_version"] == keras_msa.__version__
    assert metadata["parameter_count"] == model.count_params()
    want = np.asarray(model(batch)["sentiment"])
    for cls in (LFDNN, MSAModel):
        loaded = cls.from_preset(path)
        assert type(loaded) is LFDNN
        np.testing.assert_array_equal(np.asarray(loaded(batch)["sentiment"]), want)
    # An override that keeps every shape is fine, and takes effect.
    assert LFDNN.from_preset(path, dropout=0.5).dropout == 0.5
    # Saving again replaces the earlier preset.
    model.save_to_preset(path)


def test_paper_preset_name_is_config_only():
    a = LFDNN.from_preset("mosi")
    assert a.fusion_dim == LFDNN.presets["mosi"]["fusion_dim"] and not a.built


def test_clear_errors(trained, tmp_path):
    model, _ = trained
    path = model.save_to_preset(str(tmp_path / "p"))
    with pytest.raises(ValueError, match=r"weight '.*' has shape .* where the preset saved"):
        LFDNN.from_preset(path, fusion_dim=16)
    with pytest.raises(ValueError, match=r"holds a LFDNN .*not a MulG.*LFDNN\.from_preset"):
        MulG.from_preset(path)
    with pytest.raises(ValueError, match=r"has no preset 'mosy'.*\['mmsa_mosei', 'mmsa_mosi', 'mmsa_sims', 'mosei', 'mosi', 'sims'\].*save_to_preset"):
        LFDNN.from_preset("mosy")
    with pytest.raises(ValueError, match=r"holds no config.json"):
        LFDNN.from_preset(str(tmp_path))
    os.remove(os.path.join(path, "model.weights.h5"))
    with pytest.raises(ValueError, match=r"has no model.weights.h5: a trained preset is config and weights"):
        LFDNN.from_preset(path)
    # A directory holding other files is not replaced by accident.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"notes.txt.*overwrite=True"):
        model.save_to_preset(str(tmp_path / "other"))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    unbuilt = LFDNN()
    with pytest.raises(ValueError, match="never built"):
        unbuilt.save_to_preset(str(tmp_path / "u"))
