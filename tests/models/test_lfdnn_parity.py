"""keras_msa's LFDNN(style="mmsa") against MMSA's PyTorch LF_DNN (fixtures
written by tests/fixtures/mmsa/make_fixtures.py; no torch here)."""


import keras
import numpy as np
import pytest

from keras_msa.convert.mmsa_lf_dnn import lf_dnn_from_mmsa
from keras_msa.convert.mmsa_lf_dnn import lf_dnn_weight_pairs
from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.models.lfdnn import LFDNN

#: make_fixtures.make_lf_dnn()'s MMSA config.
MMSA_PARAMS = {"hidden_dims": [5, 4, 7], "text_out": 6, "post_fusion_dim": 8, "dropouts": [0.2, 0.2, 0.2, 0.2]}


@pytest.fixture(scope="module")
def fixture(mmsa_step):
    return mmsa_step.load("lf_dnn.npz")


def batch_of(data):
    # Audio and vision carry padding; the masked mean must give MMSA's averages.
    return {"text": data["text"], "audio": data["audio"], "audio_mask": data["audio_mask"],
            "vision": data["vision"], "vision_mask": data["vision_mask"]}


def test_forward_matches_mmsa(fixture):
    weights, _, data = fixture
    model = lf_dnn_from_mmsa(weights, MMSA_PARAMS)
    assert model.dropouts == {"audio": 0.2, "vision": 0.2, "text": 0.0, "fusion": 0.2}
    out = np.asarray(model(batch_of(data), training=False)["sentiment"])
    err = np.abs(out - data["M"]).max()
    print(f"LF-DNN forward max |keras - MMSA| = {err:.2e}")
    assert err < 1e-4, err


def test_one_training_step_matches_mmsa(fixture, mmsa_step):
    weights, grads, data = fixture
    model = lf_dnn_from_mmsa(weights, MMSA_PARAMS)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0  # dropout off in train mode, as the fixture
    batch = batch_of(data)
    worst = mmsa_step.check_training_step(model, batch, data, grads, lf_dnn_weight_pairs)
    print(f"LF-DNN gradient max |keras - MMSA| = {worst:.2e}")


def test_presets_are_mmsa_config_and_defaults_unchanged():
    mosi = LFDNN.from_preset("mmsa_mosi")
    assert (mosi.style, mosi.hidden_dims, mosi.text_out, mosi.fusion_dim) == (
        "mmsa", {"text": 128, "audio": 16, "vision": 128}, 256, 128)
    assert LFDNN.from_preset("mmsa_sims").dropouts["fusion"] == 0.5
    assert LFDNN.from_preset("mmsa_mosei").hidden_dims["audio"] == 32
    from keras_msa.training.protocol import resolve_protocol

    assert resolve_protocol(LFDNN, "mmsa_mosi")["l2_weight_decay"] == {"value": 1e-2, "source": "MMSA"}
    assert LFDNN.from_preset("mosi").style == "default"
    clone = LFDNN.from_config(mosi.get_config())
    assert clone.get_config() == mosi.get_config()


def test_mismatches_are_refused_by_name(fixture):
    weights, _, _ = fixture
    with pytest.raises(CheckpointMismatchError, match="differ from the config"):
        lf_dnn_from_mmsa(weights, {**MMSA_PARAMS, "text_out": 7})
    with pytest.raises(CheckpointMismatchError, match="post_fusion_layer_2.bias"):
        lf_dnn_from_mmsa({k: v for k, v in weights.items() if k != "post_fusion_layer_2.bias"}, MMSA_PARAMS)


def test_import_config_forms():
    from keras_msa.convert.mmsa import mmsa_params

    # A dataset name means MMSA's preset; MMSA's model name is accepted.
    assert mmsa_params("sims", "lf_dnn") == LFDNN.presets["mmsa_sims"]
    assert mmsa_params({"hidden_dims": [5, 4, 7]}, "lfdnn") == {"hidden_dims": [5, 4, 7]}
    with pytest.raises(ValueError, match="No MMSA converter for model 'ssgdl'"):
        mmsa_params("mosi", "ssgdl")
