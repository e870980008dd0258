"""keras_msa's MISA against MMSA's (tests/fixtures/mmsa/make_misa_fixtures.py):
eval-mode outputs and codes to 1e-4, the loss terms and every gradient of one
training step to 1e-3, and the `.pth` imported without torch."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_msa.convert.mmsa import import_mmsa_checkpoint
from keras_msa.convert.mmsa_misa import misa_from_mmsa
from keras_msa.convert.mmsa_misa import misa_weight_pairs
from keras_msa.convert.mmsa_mult import CheckpointMismatchError

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "mmsa")

ORDER = ("text", "vision", "audio")
#: MMSA's MOSI config at the fixture's sizes (`bert_num_heads`: the tiny BERT's 2).
PARAMS = {"hidden_size": 8, "dropout": 0.2, "diff_weight": 0.1, "sim_weight": 0.3, "recon_weight": 1.0,
          "use_cmd_sim": True, "rnncell": "lstm", "transformers": "bert", "bert_num_heads": 2}


def _batch(io):
    text = io["text"]
    return {"text_token_ids": text[:, 0].astype("int32"), "text_padding_mask": text[:, 1].astype(bool),
            "text_segment_ids": text[:, 2].astype("int32"), "audio": io["audio"], "vision": io["vision"]}


@pytest.fixture(scope="module")
def converted(mmsa_step):
    weights, _, _ = mmsa_step.load("misa_weights.npz")
    _, grads, _ = mmsa_step.load("misa_grads.npz")
    with np.load(os.path.join(FIXTURES, "misa_io.npz")) as f:
        io = {k: f[k] for k in f.files}
    return misa_from_mmsa(weights, PARAMS), weights, grads, io


def test_eval_outputs_and_codes_match_mmsa(converted):
    model, _, _, io = converted
    out = model(_batch(io))
    worst = float(np.abs(np.asarray(out["sentiment"]) - io["M"]).max())
    assert worst < 1e-4, worst
    for m in ORDER:
        for ours, theirs in (("private", "private"), ("shared", "shared"), ("projected", "orig"),
                             ("reconstructed", "recon")):
            np.testing.assert_allclose(np.asarray(out[f"misa_{ours}_{m}"]), io[f"{theirs}_{m}"], atol=1e-4,
                                       err_msg=f"{ours} {m}")
    # MMSA reads audio/vision for the text's length: steps past it are never read.
    batch = _batch(io)
    text_mask = batch["text_padding_mask"]
    batch["audio_mask"] = batch["vision_mask"] = text_mask
    batch["audio"] = np.where(text_mask[..., None], batch["audio"], np.inf).astype("float32")
    np.testing.assert_allclose(np.asarray(model(batch)["sentiment"]), io["M"], atol=1e-4)


def test_training_step_loss_terms_and_gradients_match_mmsa(converted, mmsa_step):
    model, _, grads, io = converted
    batch = _batch(io)
    with tf.GradientTape() as tape:
        # MMSA's step in eval mode (no dropout), with the trainer's objective.
        pred = model(batch, training=False)
        loss = model.compute_loss(batch, {"sentiment": io["labels"]}, pred, training=True)
    terms = {k: float(v) for k, v in model.loss_components.items()}
    np.testing.assert_allclose(float(loss), float(io["loss"]), atol=1e-4)
    np.testing.assert_allclose(terms["task"], io["cls_loss"], atol=1e-4)
    np.testing.assert_allclose(terms["diff"], PARAMS["diff_weight"] * io["diff_loss"], atol=1e-4)
    np.testing.assert_allclose(terms["similarity"], PARAMS["sim_weight"] * io["cmd_loss"], atol=1e-4)
    np.testing.assert_allclose(terms["reconstruction"], PARAMS["recon_weight"] * io["recon_loss"], atol=1e-4)
    # BERT's embedding gradients come as IndexedSlices.
    ours = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_weights)]
    pairs, _ = misa_weight_pairs(model, grads, gradients=True)
    want = {id(var): value for var, value, _ in pairs}
    assert len(want) == len(model.trainable_weights)
    assert mmsa_step.compare_gradients(model, ours, want) < 1e-3


def test_pth_import_predicts_mmsa_numbers_and_mismatches_are_named(converted, tmp_path):
    _, weights, _, io = converted
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"num_attention_heads": 2}))
    # MMSA's config_regression.json layout; the BERT's heads come from `pretrained`'s config.json.
    config = {"misa": {"commonParams": {"use_cmd_sim": True, "rnncell": "lstm", "use_bert": True},
                       "datasetParams": {"mosi": {**{k: PARAMS[k] for k in ("hidden_size", "dropout", "diff_weight",
                                                                            "sim_weight", "recon_weight")},
                                                  "transformers": "bert", "pretrained": str(bert)}}}}
    path = tmp_path / "config_regression.json"
    path.write_text(json.dumps(config))
    model = import_mmsa_checkpoint(os.path.join(FIXTURES, "misa_tiny.pth"), model="misa", config=str(path))
    np.testing.assert_allclose(np.asarray(model(_batch(io))["sentiment"]), io["M"], atol=1e-4)

    with pytest.raises(CheckpointMismatchError, match="hidden_size = 16"):
        misa_from_mmsa(weights, {**PARAMS, "hidden_size": 16})
    with pytest.raises(CheckpointMismatchError, match="use_cmd_sim"):
        misa_from_mmsa(weights, {**PARAMS, "use_cmd_sim": False})
    extra = {**weights, "discriminator.discriminator_layer_1.weight": np.zeros((8, 8), "float32")}
    with pytest.raises(CheckpointMismatchError, match="discriminator_layer_1"):
        misa_from_mmsa(extra, PARAMS)
