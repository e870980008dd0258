"""keras_msa's TFN against MMSA's PyTorch TFN (fixtures written by
tests/fixtures/mmsa/make_fusion_fixtures.py; no torch needed here)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_tfn import tfn_config_from_mmsa
from keras_msa.convert.mmsa_tfn import tfn_from_mmsa
from keras_msa.convert.mmsa_tfn import tfn_weight_pairs

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "mmsa")
#: make_fusion_fixtures.tfn_args() as MMSA's flat parameters.
MMSA_PARAMS = {"hidden_dims": [6, 3, 4], "text_out": 3, "post_fusion_dim": 5, "dropouts": [0.3, 0.3, 0.3, 0.5]}
MODALITIES = ("text", "audio", "vision")


def load(name):
    with np.load(os.path.join(FIXTURES, name)) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def mmsa():
    return load("tfn_weights.npz"), load("tfn_io.npz"), load("tfn_grads.npz")


@pytest.fixture(scope="module")
def model(mmsa):
    return tfn_from_mmsa(mmsa[0], MMSA_PARAMS)


def test_forward_matches_mmsa(model, mmsa):
    _, io, _ = mmsa
    out = np.asarray(model({m: io[m] for m in MODALITIES}, training=False)["sentiment"])
    err = np.abs(out - io["M"]).max()
    print(f"TFN forward max |keras - MMSA| = {err:.2e}")
    assert err < 1e-4, err
    # The output head is MMSA's sigmoid scaled to (-3, 3).
    assert model.output_range == 6.0 and model.output_shift == -3.0
    h, _ = model.encoders({m: io[m] for m in MODALITIES})
    for m, key in (("text", "Feature_t"), ("audio", "Feature_a"), ("vision", "Feature_v")):
        np.testing.assert_allclose(np.asarray(h[m]), io[key], atol=1e-4, err_msg=m)


def test_one_training_step_gradients_match_mmsa(model, mmsa, mmsa_step):
    _, io, grads = mmsa
    batch = {m: io[m] for m in MODALITIES}
    with tf.GradientTape() as tape:
        pred = model(batch, training=False)  # dropout off, as the fixture
        loss = model.compute_loss(batch, {"sentiment": io["labels"]}, pred)
    np.testing.assert_allclose(float(loss), float(io["loss"]), atol=1e-4)
    ours = tape.gradient(loss, model.trainable_weights)
    pairs, _ = tfn_weight_pairs(model, grads, gradients=True)
    want = {id(var): value for var, value, _ in pairs}
    assert set(want) == {id(v) for v in model.trainable_weights}
    worst = mmsa_step.compare_gradients(model, ours, want)
    print(f"TFN gradient max |keras - MMSA| = {worst:.2e}")


def test_a_checkpoint_of_other_settings_is_refused_by_name(mmsa):
    weights = mmsa[0]
    with pytest.raises(CheckpointMismatchError, match="audio_subnet.linear_1.weight"):
        tfn_config_from_mmsa({**MMSA_PARAMS, "hidden_dims": [6, 4, 4]}, weights)
    with pytest.raises(CheckpointMismatchError, match="post_fusion_dim"):
        tfn_config_from_mmsa({**MMSA_PARAMS, "post_fusion_dim": 6}, weights)
    with pytest.raises(CheckpointMismatchError, match="post_fusion_layer_2.bias"):
        tfn_from_mmsa({k: v for k, v in weights.items() if k != "post_fusion_layer_2.bias"}, MMSA_PARAMS)


def test_import_recipe_writes_a_model_that_predicts_mmsa_numbers(tmp_path, load_recipe):
    import json

    config = tmp_path / "args.json"
    config.write_text(json.dumps(MMSA_PARAMS))
    out = tmp_path / "tfn.keras"
    recipe = load_recipe("import_mmsa")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["import_mmsa.py", "--model=tfn", f"--checkpoint={os.path.join(FIXTURES, 'tfn_tiny.pth')}",
                 f"--config={config}", f"--output={out}"])
    assert recipe.main([]) == 0
    io = load("tfn_io.npz")
    pred = np.asarray(keras.saving.load_model(str(out))({m: io[m] for m in MODALITIES})["sentiment"])
    err = np.abs(pred - io["M"]).max()
    print(f"TFN imported .pth -> .keras: max |keras - MMSA| = {err:.2e}")
    assert err < 1e-4, err
