"""keras_msa's MulT against MMSA's PyTorch MulT (fixtures written by
tests/fixtures/mmsa/make_fixtures.py; no torch needed here)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_mult import load_mmsa_mult_weights
from keras_msa.convert.mmsa_mult import mult_config_from_mmsa
from keras_msa.convert.mmsa_mult import mult_weight_pairs
from keras_msa.convert.mmsa_mult import mult_from_mmsa
from keras_msa.convert.mmsa_mult import transformer_weight_pairs
from keras_msa.convert.mmsa_mult import assign_pairs
from keras_msa.layers import CrossModalTransformer

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "mmsa")

#: make_fixtures.mult_args(), as the MMSA config dict it stands for.
MMSA_PARAMS = {"dst_feature_dim_nheads": [4, 2], "nlevels": 2, "attn_dropout": 0.4, "attn_dropout_a": 0.0,
               "attn_dropout_v": 0.0, "relu_dropout": 0.0, "embed_dropout": 0.0, "res_dropout": 0.0,
               "output_dropout": 0.5, "text_dropout": 0.3, "attn_mask": True, "conv1d_kernel_size_l": 5,
               "conv1d_kernel_size_a": 1, "conv1d_kernel_size_v": 3, "use_bert": False}


def load(name):
    with np.load(os.path.join(FIXTURES, name)) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def mmsa():
    return load("mult_weights.npz"), load("mult_io.npz"), load("mult_grads.npz")


@pytest.fixture(scope="module")
def model(mmsa):
    return mult_from_mmsa(mmsa[0], MMSA_PARAMS)


def batch_of(io):
    return {m: io[m] for m in ("text", "audio", "vision")}


def test_forward_matches_mmsa(model, mmsa):
    _, io, _ = mmsa
    out = np.asarray(model(batch_of(io), training=False)["sentiment"])
    err = np.abs(out - io["M"]).max()
    print(f"MulT forward max |keras - MMSA| = {err:.2e}")
    assert err < 1e-4, err
    # The same with explicit all-True masks: masks cost nothing where nothing is padded.
    masked = {**batch_of(io), **{f"{m}_mask": np.ones(io[m].shape[:2], bool) for m in ("text", "audio", "vision")}}
    np.testing.assert_allclose(np.asarray(model(masked)["sentiment"]), io["M"], atol=1e-4)


def test_one_training_step_gradients_match_mmsa(model, mmsa):
    weights, io, grads = mmsa
    # Gradients of the L1 loss with dropout off, as the fixture computed them.
    with tf.GradientTape() as tape:
        pred = model(batch_of(io), training=False)
        loss = model.compute_loss(batch_of(io), {"sentiment": io["labels"]}, pred)
    np.testing.assert_allclose(float(loss), float(io["loss"]), atol=1e-4)
    ours = tape.gradient(loss, model.trainable_weights)
    # MMSA's gradients are keyed and shaped like its weights: the weight
    # mapping places them on the Keras variables.
    pairs, _ = mult_weight_pairs(model, grads)
    want = {id(var): value for var, value, _ in pairs}
    assert {key for _, _, key in pairs} == set(grads)  # every MMSA parameter has its Keras twin
    worst = 0.0
    for var, got in zip(model.trainable_weights, ours):
        got = np.asarray(got)
        worst = max(worst, float(np.abs(got - want[id(var)]).max()))
        np.testing.assert_allclose(got, want[id(var)], atol=1e-3, err_msg=var.path)
    print(f"MulT gradient max |keras - MMSA| = {worst:.2e}")


def test_encoder_with_positions_matches_mmsa():
    data = load("encoder.npz")
    sd = {k[2:]: v for k, v in data.items() if k.startswith("w/")}
    layer = CrossModalTransformer(num_layers=2, num_heads=2, causal=True, positional_embedding=True,
                                  padding_from_first_channel=True)
    layer(data["query"], data["context"])
    assign_pairs(transformer_weight_pairs("", layer, {f".{k}": v for k, v in sd.items()}),
                 {f".{k}": v for k, v in sd.items()}, layer.trainable_weights, "encoder")
    out = np.asarray(layer(data["query"], data["context"]))
    err = np.abs(out - data["output"]).max()
    print(f"CrossModalTransformer (positions, causal) max |keras - MMSA| = {err:.2e}")
    assert err < 1e-4, err


def test_a_checkpoint_of_other_settings_is_refused_by_name(model, mmsa):
    weights = mmsa[0]
    with pytest.raises(CheckpointMismatchError, match="proj_l.weight"):
        mult_config_from_mmsa({**MMSA_PARAMS, "conv1d_kernel_size_l": 3}, weights)
    with pytest.raises(CheckpointMismatchError, match="trans_l_with_a' has 2 layers"):
        mult_config_from_mmsa({**MMSA_PARAMS, "nlevels": 3}, weights)
    with pytest.raises(CheckpointMismatchError, match="use_bert"):
        mult_config_from_mmsa({**MMSA_PARAMS, "use_bert": True}, weights)
    before = [np.asarray(v).copy() for v in model.trainable_weights]
    trimmed = {k: v for k, v in weights.items() if k != "proj2.bias"}
    with pytest.raises(CheckpointMismatchError, match="proj2.bias"):
        load_mmsa_mult_weights(model, trimmed)
    extra = {**weights, "trans_l_with_a.layers.9.fc1.weight": weights["trans_l_with_a.layers.0.fc1.weight"]}
    with pytest.raises(CheckpointMismatchError, match="no place"):
        load_mmsa_mult_weights(model, extra)
    # Refused before anything was assigned.
    for old, var in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(old, np.asarray(var))
