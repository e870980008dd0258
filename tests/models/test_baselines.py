import keras
import numpy as np
import pytest

from keras_msa.models import EFLSTM
from keras_msa.models import LFDNN
from keras_msa.models import get_model_class
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import assert_savedmodel_roundtrip
from keras_msa.testing import missing_modality
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.testing import train_briefly

BASELINES = [(LFDNN, {"hidden_dims": {"text": 32, "audio": 8, "vision": 16}, "fusion_dim": 32}),
             (EFLSTM, {"hidden_dim": 16, "head_dim": 16})]


@pytest.fixture(scope="module")
def bench():
    return tiny_synthetic()


def test_registry():
    assert get_model_class("LFDNN") is LFDNN
    assert get_model_class("eflstm") is EFLSTM
    with pytest.raises(ValueError, match="Available models"):
        get_model_class("nope")


@pytest.mark.parametrize("cls,kwargs", BASELINES)
def test_output_shapes_and_padding_invariance(cls, kwargs, bench):
    keras.utils.set_random_seed(0)
    model = cls(**kwargs)
    batch = small_batch(bench["train"], 4)
    out = model(batch)
    assert out["sentiment"].shape == (4, 1) and out["sentiment"].dtype == "float32"
    changed = {k: v.copy() for k, v in batch.items()}
    for m in ("text", "audio", "vision"):
        changed[m][~batch[f"{m}_mask"]] = 123.0
    np.testing.assert_allclose(np.asarray(model(changed)["sentiment"]), np.asarray(out["sentiment"]), atol=1e-5)


@pytest.mark.parametrize("cls,kwargs", BASELINES)
def test_missing_modality_is_finite_and_ignored(cls, kwargs, bench):
    keras.utils.set_random_seed(0)
    model = cls(**kwargs)
    batch = small_batch(bench["train"], 4)
    for m in ("audio", "vision"):
        out = np.asarray(model(missing_modality(batch, m))["sentiment"])
        assert np.isfinite(out).all()
    every = batch
    for m in ("text", "audio", "vision"):
        every = missing_modality(every, m)
    assert np.isfinite(np.asarray(model(every)["sentiment"])).all()


def test_missing_key_error_names_the_key(bench):
    batch = small_batch(bench["train"], 2)
    del batch["audio"]
    model = LFDNN()
    model(small_batch(bench["train"], 2))  # built first: a failed building call also warns
    with pytest.raises(KeyError, match="'audio'"):
        model(batch)


def test_eflstm_rejects_unaligned_inputs():
    b = tiny_synthetic(train=8, valid=8, test=8, aligned=False, audio_len=16, vision_len=10)["train"]
    model = EFLSTM(hidden_dim=4)
    model(small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"]))  # built first: a failed building call also warns
    with pytest.raises(ValueError, match="aligned"):
        model(small_batch(b))


@pytest.mark.parametrize("cls,kwargs", BASELINES)
def test_learns_beyond_mean_predictor(cls, kwargs, bench):
    model = cls(**kwargs)
    mae, mean_mae = train_briefly(model, bench, epochs=15)
    assert mae < 0.85 * mean_mae, (mae, mean_mae)


@pytest.mark.parametrize("cls,kwargs", BASELINES)
def test_keras_and_savedmodel_roundtrips(cls, kwargs, bench, tmp_path):
    keras.utils.set_random_seed(0)
    model = cls(**kwargs)
    batch = small_batch(bench["train"], 4)
    model(batch)
    assert_keras_roundtrip(model, batch, tmp_path, train_data=bench["train"].to_tf_dataset(64))
    assert_savedmodel_roundtrip(model, batch, tmp_path)


def test_presets_and_config_roundtrip():
    model = LFDNN.from_preset("mosei", dropout=0.1)
    assert model.hidden_dims["audio"] == 32 and model.dropout == 0.1
    clone = LFDNN.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    with pytest.raises(ValueError, match="no preset"):
        LFDNN.from_preset("iemocap")


def test_compute_loss_is_the_task_loss_plus_auxiliaries(bench):
    model = LFDNN(task_loss="mae")
    batch = small_batch(bench["train"], 8)
    y = {"sentiment": bench["train"].targets["sentiment"][:8]}
    pred = model(batch)
    loss = float(model.compute_loss(batch, y, pred))
    np.testing.assert_allclose(loss, np.abs(np.asarray(pred["sentiment"]) - y["sentiment"]).mean(), rtol=1e-5)
