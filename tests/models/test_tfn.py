import keras
import numpy as np
import pytest

from keras_msa.models import TFN
from keras_msa.models import get_model_class
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import assert_savedmodel_roundtrip
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.testing import train_briefly

TINY = dict(hidden_dims={"text": 8, "audio": 4, "vision": 4}, text_out=4, post_fusion_dim=8,
            dropouts={"audio": 0.0, "vision": 0.0, "post_fusion": 0.0})


def _model(**overrides):
    keras.utils.set_random_seed(0)
    return TFN(**{**TINY, **overrides})


def test_padding_changes_nothing_and_the_output_stays_in_range():
    rng = np.random.default_rng(0)
    dims = {"text": 6, "audio": 5, "vision": 3}
    lengths = {"text": 4, "audio": 6, "vision": 3}
    alone = {m: rng.normal(size=(1, lengths[m], d)).astype("float32") for m, d in dims.items()}
    model = _model()
    want = np.asarray(model(alone)["sentiment"])[0]
    padded = {}
    for m, d in dims.items():
        x = np.full((2, lengths[m] + 2, d), 50.0, "float32")
        x[0, :lengths[m]] = alone[m][0]
        mask = np.ones(x.shape[:2], bool)
        mask[0, lengths[m]:] = False
        padded[m], padded[f"{m}_mask"] = x, mask
    out = np.asarray(model(padded)["sentiment"])
    np.testing.assert_allclose(out[0], want, atol=1e-5)
    # MMSA's head: sigmoid * 6 - 3, whatever the features.
    assert (np.abs(out) < 3.0).all()
    linear = _model(output_range=None)
    assert linear(alone)["sentiment"].shape == (1, 1)


def test_presets_protocol_ablation_and_config():
    assert get_model_class("tfn") is TFN
    mosei = TFN.from_preset("mosei")
    assert (mosei.hidden_dims, mosei.text_out, mosei.post_fusion_dim) == (
        {"text": 128, "audio": 16, "vision": 128}, 128, 16)
    from keras_msa.training.protocol import resolve_protocol

    assert resolve_protocol(TFN, "mosei")["learning_rate"] == {"value": 5e-3, "source": "MMSA"}
    assert resolve_protocol(TFN, "sims")["batch_size"]["value"] == 32
    clone = TFN.from_config(mosei.get_config())
    assert clone.get_config() == mosei.get_config()
    # Bimodal TFN (the paper's ablation): the fusion of text and audio only.
    bimodal = _model(modalities=("text", "audio"))
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 2)
    assert bimodal(batch)["sentiment"].shape == (2, 1)
    assert bimodal.post_fusion_1.kernel.shape == ((4 + 1) * (4 + 1), 8)
    with pytest.raises(ValueError, match="modalities"):
        TFN(modalities=("text",))
    with pytest.raises(ValueError, match="dropouts"):
        TFN(dropouts={"audio": 0.1})
    with pytest.raises(KeyError, match="vision"):
        _model()({"text": np.zeros((1, 3, 4), "float32"), "audio": np.zeros((1, 3, 2), "float32")})


@pytest.mark.slow
def test_learns_and_round_trips(tmp_path):
    bench = tiny_synthetic(train=256, valid=32, test=96)
    model = _model()
    mae, mean_mae = train_briefly(model, bench, epochs=6)
    assert mae < 0.85 * mean_mae, (mae, mean_mae)
    batch = small_batch(bench["train"], 4)
    assert_keras_roundtrip(model, batch, tmp_path, train_data=bench["valid"].to_tf_dataset(32))
    assert_savedmodel_roundtrip(model, batch, tmp_path)
