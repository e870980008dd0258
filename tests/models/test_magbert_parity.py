"""keras_msa's MAGBERT against MMSA's PyTorch BERT_MAG (fixtures written by
tests/fixtures/mmsa/make_magbert_fixtures.py; no torch needed here)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from keras_msa.convert.mmsa import import_mmsa_checkpoint
from keras_msa.convert.mmsa_magbert import magbert_from_mmsa
from keras_msa.convert.mmsa_magbert import magbert_weight_pairs
from keras_msa.convert.mmsa_mult import CheckpointMismatchError

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "mmsa")
#: make_magbert_fixtures.args() as MMSA's flat parameters, with the tiny
#: BERT's head count (a state dict does not hold it).
MMSA_PARAMS = {"beta_shift": 1.0, "dropout_prob": 0.3, "feature_dims": [16, 5, 4], "num_attention_heads": 2}


@pytest.fixture(scope="module")
def mmsa(mmsa_step):
    return mmsa_step.load("magbert.npz")


def keras_batch(data):
    text = data["text"]
    mask = text[:, 1].astype(bool)
    # Word-aligned audio/vision: their masks are the text's.
    return {"text_token_ids": text[:, 0].astype("int32"), "text_padding_mask": mask,
            "text_segment_ids": text[:, 2].astype("int32"), "audio": data["audio"], "audio_mask": mask,
            "vision": data["vision"], "vision_mask": mask}


@pytest.fixture(scope="module")
def model(mmsa):
    return magbert_from_mmsa(mmsa[0], MMSA_PARAMS)


def test_forward_matches_mmsa(model, mmsa):
    _, _, data = mmsa
    # The fixture exercises both regimes of Eq. 4 (alpha < 1 and clipped to 1).
    real = data["text"][:, 1].astype(bool)
    assert (data["alpha"][real] < 1).any() and (data["alpha"][real] == 1).any()
    out = np.asarray(model(keras_batch(data), training=False)["sentiment"])
    err = np.abs(out - data["M"]).max()
    print(f"MAG-BERT forward max |keras - MMSA| = {err:.2e}")
    assert err < 1e-4, err
    # MMSA's features carry no mask: zeros on padded tokens read the same.
    unmasked = {k: v for k, v in keras_batch(data).items() if k not in ("audio_mask", "vision_mask")}
    np.testing.assert_allclose(np.asarray(model(unmasked)["sentiment"]), data["M"], atol=1e-4)


def test_one_training_step_gradients_match_mmsa(model, mmsa, mmsa_step):
    _, grads, data = mmsa
    batch = keras_batch(data)
    with tf.GradientTape() as tape:
        pred = model(batch, training=False)  # every dropout off, as the fixture
        loss = model.compute_loss(batch, {"sentiment": data["labels"]}, pred)
    np.testing.assert_allclose(float(loss), float(data["loss"]), atol=1e-4)
    # Embedding gradients come as IndexedSlices: dense for the comparison.
    ours = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_weights)]
    pairs, _ = magbert_weight_pairs(model, grads, gradients=True)
    want = {id(var): value for var, value, _ in pairs}
    assert set(want) == {id(v) for v in model.trainable_weights}
    worst = mmsa_step.compare_gradients(model, ours, want)
    print(f"MAG-BERT gradient max |keras - MMSA| = {worst:.2e}")


def test_checkpoint_mismatches_are_refused_by_name(mmsa):
    weights = mmsa[0]
    with pytest.raises(CheckpointMismatchError, match="model.bert.MAG.W_a.bias"):
        magbert_from_mmsa({k: v for k, v in weights.items() if k != "model.bert.MAG.W_a.bias"}, MMSA_PARAMS)
    with pytest.raises(CheckpointMismatchError, match="feature_dims"):
        magbert_from_mmsa(weights, {**MMSA_PARAMS, "feature_dims": [16, 6, 4]})
    with pytest.raises(CheckpointMismatchError, match="attention heads"):
        magbert_from_mmsa(weights, {"beta_shift": 1.0, "pretrained": "my-bert"})
    with pytest.raises(CheckpointMismatchError, match="not an MMSA BERT_MAG"):
        magbert_from_mmsa({k: v for k, v in weights.items() if ".MAG." not in k}, MMSA_PARAMS)


def test_import_recipe_writes_a_model_that_predicts_mmsa_numbers(mmsa, tmp_path, load_recipe):
    _, _, data = mmsa
    pth = os.path.join(FIXTURES, "magbert_tiny.pth")
    # The function, on MMSA's model name, and a tokenizer from a BERT directory.
    bert_dir = tmp_path / "bert"
    bert_dir.mkdir()
    (bert_dir / "config.json").write_text(json.dumps({"num_attention_heads": 2, "hidden_dropout_prob": 0.1}))
    (bert_dir / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good"]))
    imported = import_mmsa_checkpoint(pth, model="bert_mag", config={"pretrained": str(bert_dir), "sequence_length": 8})
    assert imported.text_backbone.sequence_length == 8
    np.testing.assert_allclose(np.asarray(imported(keras_batch(data))["sentiment"]), data["M"], atol=1e-4)
    # The recipe, with MMSA's flat parameters as JSON.
    config = tmp_path / "args.json"
    config.write_text(json.dumps(MMSA_PARAMS))
    out = tmp_path / "magbert.keras"
    recipe = load_recipe("import_mmsa")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["import_mmsa.py", "--model=magbert", f"--checkpoint={pth}", f"--config={config}",
                 f"--output={out}"])
    assert recipe.main([]) == 0
    pred = np.asarray(keras.saving.load_model(str(out))(keras_batch(data))["sentiment"])
    err = np.abs(pred - data["M"]).max()
    print(f"MAG-BERT imported .pth -> .keras: max |keras - MMSA| = {err:.2e}")
    assert err < 1e-4, err
