"""keras_msa's EFLSTM (mmsa options) against MMSA's PyTorch EF_LSTM
(fixtures written by tests/fixtures/mmsa/make_fixtures.py; no torch here)."""

import os

import keras
import numpy as np
import pytest

from keras_msa.convert.mmsa_ef_lstm import ef_lstm_from_mmsa
from keras_msa.convert.mmsa_ef_lstm import ef_lstm_weight_pairs
from keras_msa.convert.mmsa_ef_lstm import load_mmsa_ef_lstm_weights
from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.models.eflstm import EFLSTM

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "mmsa")
#: make_fixtures.make_ef_lstm()'s MMSA config.
MMSA_PARAMS = {"hidden_dims": 8, "num_layers": 3, "dropout": 0.5, "feature_dims": [6, 3, 4]}


@pytest.fixture(scope="module")
def fixture(mmsa_step):
    return mmsa_step.load("ef_lstm.npz")


def batch_of(data):
    return {m: data[m] for m in ("text", "audio", "vision")}


def test_forward_matches_mmsa(fixture):
    weights, _, data = fixture
    model = ef_lstm_from_mmsa(weights, MMSA_PARAMS)
    assert model.num_layers == 3 and model.norm.epsilon == 1e-5 and model.norm.momentum == 0.9
    out = np.asarray(model(batch_of(data), training=False)["sentiment"])
    err = np.abs(out - data["M"]).max()
    print(f"EF-LSTM forward max |keras - MMSA| = {err:.2e}")
    assert err < 1e-4, err


def test_one_training_step_matches_mmsa(fixture, mmsa_step):
    weights, grads, data = fixture
    # Train mode (BatchNorm on batch statistics) with dropout off, as the fixture.
    model = ef_lstm_from_mmsa(weights, {**MMSA_PARAMS, "dropout": 0.0})
    batch = batch_of(data)
    worst = mmsa_step.check_training_step(model, batch, data, grads, ef_lstm_weight_pairs)
    print(f"EF-LSTM gradient max |keras - MMSA| = {worst:.2e}")


def test_presets_are_mmsa_config_and_defaults_unchanged():
    mosi = EFLSTM.from_preset("mmsa_mosi")
    assert (mosi.hidden_dim, mosi.num_layers, mosi.dropout, mosi.time_batchnorm, mosi.head_style) == (
        128, 4, 0.5, True, "mmsa")
    assert EFLSTM.from_preset("mmsa_mosei").hidden_dim == 256 and EFLSTM.from_preset("mmsa_sims").num_layers == 3
    from keras_msa.training.protocol import resolve_protocol

    assert resolve_protocol(EFLSTM, "mmsa_mosi")["l2_weight_decay"] == {"value": 5e-3, "source": "MMSA"}
    default = EFLSTM.from_preset("mosi")
    assert (default.num_layers, default.time_batchnorm, default.head_style) == (1, False, "default")
    clone = EFLSTM.from_config(mosi.get_config())
    assert clone.get_config() == mosi.get_config()


def test_mismatches_are_refused_by_name(fixture):
    weights, _, data = fixture
    with pytest.raises(CheckpointMismatchError, match="3 layers"):
        ef_lstm_from_mmsa(weights, {**MMSA_PARAMS, "num_layers": 4})
    with pytest.raises(CheckpointMismatchError, match="sum to"):
        ef_lstm_from_mmsa(weights, {**MMSA_PARAMS, "feature_dims": [6, 3, 5]})
    model = ef_lstm_from_mmsa(weights, MMSA_PARAMS)
    before = [np.asarray(v).copy() for v in model.weights]
    with pytest.raises(CheckpointMismatchError, match="out.bias"):
        load_mmsa_ef_lstm_weights(model, {k: v for k, v in weights.items() if k != "out.bias"})
    for old, var in zip(before, model.weights):
        np.testing.assert_array_equal(old, np.asarray(var))
    # One BatchNorm channel per step: another time length is an error.
    with pytest.raises(ValueError, match="built on 5 steps"):
        model({m: x[:, :4] for m, x in batch_of(data).items()})


def test_mmsa_checkpoint_import_predicts_mmsa_numbers(fixture, tmp_path):
    import json

    from keras_msa.convert.mmsa import import_mmsa_checkpoint

    _, _, data = fixture
    # MMSA's config layout; the entry that fits the checkpoint is found.
    config = tmp_path / "config_regression.json"
    config.write_text(json.dumps({"ef_lstm": {"commonParams": {"need_data_aligned": True}, "datasetParams": {
        "mosi": {"hidden_dims": 8, "num_layers": 3, "dropout": 0.5},
        "sims": {"hidden_dims": 8, "num_layers": 2, "dropout": 0.5}}}}))
    # The .pth holds MMSA's AMIO wrapper's keys (`Model.norm.weight`, ...).
    model = import_mmsa_checkpoint(os.path.join(FIXTURES, "ef_lstm_tiny.pth"), model="ef_lstm", config=str(config),
                                   output=tmp_path / "ef_lstm.keras")
    np.testing.assert_allclose(np.asarray(model(batch_of(data))["sentiment"]), data["M"], atol=1e-4)
    reloaded = keras.saving.load_model(tmp_path / "ef_lstm.keras")
    np.testing.assert_allclose(np.asarray(reloaded(batch_of(data))["sentiment"]), data["M"], atol=1e-4)


def test_padded_steps_are_skipped(fixture):
    weights, _, data = fixture
    model = ef_lstm_from_mmsa(weights, MMSA_PARAMS)
    batch = batch_of(data)
    mask = np.ones((4, 5), bool)
    mask[0, 3:] = False
    masked = {**{m: x.copy() for m, x in batch.items()}, **{f"{m}_mask": mask for m in batch}}
    for m in batch:
        masked[m][0, 3:] = np.nan  # never reaches the output (selected away, not multiplied)
    out = np.asarray(model(masked)["sentiment"])
    assert np.isfinite(out).all()
    # The unpadded rows are MMSA's; the padded one is the state after its last real step.
    np.testing.assert_allclose(out[1:], data["M"][1:], atol=1e-4)
    # Whatever the padded steps hold, the padded row does not change.
    for m in batch:
        masked[m][0, 3:] = 100.0
    np.testing.assert_allclose(np.asarray(model(masked)["sentiment"]), out, atol=1e-6)
    assert np.abs(out[0] - data["M"][0]).max() > 1e-3  # its padding is not read as MMSA reads it
