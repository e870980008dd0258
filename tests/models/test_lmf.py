import keras
import numpy as np
import pytest

from keras_msa.models import LMF
from keras_msa.models import get_model_class
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import assert_savedmodel_roundtrip
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.testing import train_briefly

TINY = dict(hidden_dims={"text": 8, "audio": 4, "vision": 4}, rank=2, dropouts={"audio": 0.0, "vision": 0.0})


def _model(**overrides):
    keras.utils.set_random_seed(0)
    return LMF(**{**TINY, **overrides})


def test_presets_protocol_quirks_and_config():
    assert get_model_class("lmf") is LMF
    sims = LMF.from_preset("sims")
    assert (sims.hidden_dims, sims.rank, sims.text_out) == ({"text": 64, "audio": 16, "vision": 64}, 4, 32)
    # MMSA's factor learning rate, kept apart from the sub-networks' one.
    from keras_msa.training.protocol import resolve_protocol

    protocol = resolve_protocol(LMF, "sims")
    assert protocol["learning_rate"]["value"] == 2e-3 and "5e-4" in protocol["learning_rate"]["note"]
    assert protocol["l2_weight_decay"] == {"value": 5e-3, "source": "MMSA"}
    assert sims.fusion.factor_scale == 0.25 and LMF.from_preset("mosi").fusion.factor_scale == 1.0
    assert LMF.from_config(sims.get_config()).get_config() == sims.get_config()
    model = _model()
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 2)
    model(batch)
    trainable = {id(v) for v in model.trainable_weights}
    assert all(id(f) in trainable for f in model.factor_variables())
    assert id(model.fusion.fusion_weights) not in trainable  # MMSA never optimises lambda, b
    free = _model(train_fusion_weights=True)
    free(batch)
    assert len(free.trainable_weights) == len(model.trainable_weights) + 2
    bimodal = _model(modalities=("audio", "text"))
    bimodal(batch)
    assert [tuple(f.shape) for f in bimodal.fusion.factors] == [(2, 5, 1), (2, 5, 1)]
    with pytest.raises(ValueError, match="dropouts"):
        LMF(dropouts={"audio": 0.1, "vision": 0.1, "post_fusion": 0.1})


@pytest.mark.slow
def test_learns_and_round_trips(tmp_path):
    bench = tiny_synthetic(train=256, valid=32, test=96)
    model = _model()
    mae, mean_mae = train_briefly(model, bench, epochs=6)
    assert mae < 0.85 * mean_mae, (mae, mean_mae)
    batch = small_batch(bench["train"], 4)
    assert_keras_roundtrip(model, batch, tmp_path, train_data=bench["valid"].to_tf_dataset(32))
    assert_savedmodel_roundtrip(model, batch, tmp_path)
