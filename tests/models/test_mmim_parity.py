"""MMIM against MMSA's own PyTorch MMIM (tests/fixtures/mmsa/mmim_*.npz,
written by tests/fixtures/mmsa/make_mmim_fixtures.py): eval outputs, and
the gradients of MMSA's two training stages reproduced by one compute_loss
(the estimator's stage on the `mi_*` weights, the main stage on the rest)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.convert.mmsa import import_mmsa_checkpoint
from keras_msa.convert.mmsa_mmim import mmim_from_mmsa
from keras_msa.convert.mmsa_mmim import mmim_weight_pairs
from keras_msa.convert.mmsa_mult import CheckpointMismatchError

#: make_mmim_fixtures.mmim_args: MMSA's MOSI MMIM settings at tiny widths.
MMSA_PARAMS = {"d_vh": 4, "d_ah": 3, "d_vout": 8, "d_aout": 8, "n_layer": 1, "dropout_a": 0.1, "dropout_v": 0.1,
               "dropout_prj": 0.1, "bidirectional": True, "mmilb_mid_activation": "ReLU",
               "mmilb_last_activation": "Tanh", "d_prjh": 12, "cpc_layers": 1, "cpc_activation": "Tanh",
               "add_va": False, "mem_size": 1, "contrast": True, "alpha": 0.1, "beta": 0.1, "bert_num_heads": 2}


def _batch(io, prefix=""):
    """keras_msa's batch from MMSA's: token ids / mask / segments from
    `text [B, 3, L]`, masks from the lengths, inf and NaN under them."""
    text = io[f"{prefix}text"]
    batch = {"text_token_ids": text[:, 0].astype("int32"), "text_padding_mask": text[:, 1].astype(bool),
             "text_segment_ids": text[:, 2].astype("int32")}
    for m in ("audio", "vision"):
        x = io[f"{prefix}{m}"].copy()
        mask = np.arange(x.shape[1])[None, :] < io[f"{prefix}{m}_lengths"][:, None]
        x[~mask] = np.where(np.arange(x[~mask].size).reshape(x[~mask].shape) % 2, np.inf, np.nan)
        batch[m], batch[f"{m}_mask"] = x.astype("float32"), mask
    return batch


@pytest.fixture(scope="module")
def parity(mmsa_step):
    sd, _, _ = mmsa_step.load("mmim_weights.npz")
    _, _, io = mmsa_step.load("mmim_io.npz")
    _, _, raw = mmsa_step.load("mmim_grads.npz")
    grads = {k[3:]: v for k, v in raw.items()}
    keras.utils.set_random_seed(0)
    model = mmim_from_mmsa(sd, MMSA_PARAMS)
    return model, sd, io, grads


def test_eval_outputs_match_mmsa(parity):
    model, _, io, _ = parity
    batch = _batch(io)
    out = np.asarray(model(batch)["sentiment"])
    np.testing.assert_allclose(out, io["M"], atol=1e-4)
    print(f"max |keras - MMSA| output: {np.abs(out - io['M']).max():.2e}")
    h = model.encode(batch)
    for m, key in (("text", "Feature_t"), ("audio", "Feature_a"), ("vision", "Feature_v")):
        np.testing.assert_allclose(np.asarray(h[m]), io[key], atol=1e-4, err_msg=m)
    lld = sum(float(model.bounds[p](h[x], h[y])) for p, (x, y) in (("tv", ("text", "vision")), ("ta", ("text", "audio"))))
    np.testing.assert_allclose(lld, float(io["lld"]), atol=1e-4)


def test_one_objective_gives_each_weight_its_mmsa_stage_gradient(parity, mmsa_step):
    model, _, io, grads = parity
    # MMSA's fixture steps run in eval mode: dropout off here too.
    rates = {}
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Dropout):
            rates[id(layer)], layer.rate = layer.rate, 0.0
    try:
        memory = _batch(io, "mem_")
        y_mem = {"sentiment": io["mem_labels"]}
        # Batches 0 and 1 of the epoch fill the memory with batch A; MMSA counts H from batch 2.
        for _ in range(2):
            model.compute_loss(memory, y_mem, model(memory, training=True))
        batch = _batch(io)
        with tf.GradientTape() as tape:
            pred = model(batch, training=True)
            loss = model.compute_loss(batch, {"sentiment": io["labels"]}, pred)
    finally:
        for layer in model._flatten_layers():
            if id(layer) in rates:
                layer.rate = rates[id(layer)]
    terms = {k: float(v) for k, v in model.loss_components.items()}
    alpha, beta = float(io["alpha"]), float(io["beta"])
    np.testing.assert_allclose(np.asarray(pred["mmim_fusion"]), io["Feature_f"], atol=1e-4)
    np.testing.assert_allclose(terms["task"], float(io["y_loss"]), atol=1e-4)
    np.testing.assert_allclose(terms["nce"], alpha * float(io["train_nce"]), atol=1e-4)
    np.testing.assert_allclose(terms["lld"], -beta * float(io["train_lld"]), atol=1e-4)
    np.testing.assert_allclose(terms["mmilb_estimator"], float(io["loss_mmilb"]), atol=1e-4)
    np.testing.assert_allclose(terms["entropy"], -beta * float(io["H"]), atol=1e-4)
    np.testing.assert_allclose(float(loss), float(io["loss_main"]) + float(io["loss_mmilb"]), atol=1e-4)
    # BERT's embedding gradients come as IndexedSlices.
    ours = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_weights)]
    pairs, _ = mmim_weight_pairs(model, grads, gradients=True)
    want = {id(var): value for var, value, _ in pairs}
    assert {id(v) for v in model.trainable_weights} == set(want)
    worst = mmsa_step.compare_gradients(model, ours, want)
    print(f"max |keras - MMSA| gradient: {worst:.2e}")


def test_pth_import_predicts_mmsa_numbers_without_torch(parity, tmp_path):
    from tests.models.conftest import FIXTURES

    _, _, io, _ = parity
    out = os.path.join(str(tmp_path), "mmim.keras")
    model = import_mmsa_checkpoint(os.path.join(FIXTURES, "mmim_tiny.pth"), model="mmim", config=MMSA_PARAMS,
                                   output=out)
    np.testing.assert_allclose(np.asarray(model(_batch(io))["sentiment"]), io["M"], atol=1e-4)
    assert os.path.getsize(out) > 0


def test_mismatched_config_and_checkpoint_are_named(parity):
    _, sd, _, _ = parity
    with pytest.raises(CheckpointMismatchError, match="d_prjh"):
        mmim_from_mmsa(sd, {**MMSA_PARAMS, "d_prjh": 16})
    broken = {k: v for k, v in sd.items() if k != "mi_ta.mlp_logvar.2.bias"}
    with pytest.raises(CheckpointMismatchError, match="mi_ta.mlp_logvar.2.bias"):
        mmim_from_mmsa(broken, MMSA_PARAMS)
