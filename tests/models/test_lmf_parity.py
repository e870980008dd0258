"""keras_msa's LMF against MMSA's PyTorch LMF (fixtures written by
tests/fixtures/mmsa/make_fusion_fixtures.py; no torch needed here)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_lmf import lmf_config_from_mmsa
from keras_msa.convert.mmsa_lmf import lmf_from_mmsa
from keras_msa.convert.mmsa_lmf import lmf_weight_pairs

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "mmsa")
#: make_fusion_fixtures.lmf_args() as MMSA's flat parameters.
MMSA_PARAMS = {"hidden_dims": [6, 3, 4], "rank": 3, "dropouts": [0.3, 0.3, 0.3, 0.3]}
MODALITIES = ("text", "audio", "vision")


def load(name):
    with np.load(os.path.join(FIXTURES, name)) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def mmsa():
    return load("lmf_weights.npz"), load("lmf_io.npz"), load("lmf_grads.npz")


@pytest.fixture(scope="module")
def model(mmsa):
    return lmf_from_mmsa(mmsa[0], MMSA_PARAMS)


def test_forward_matches_mmsa(model, mmsa):
    _, io, _ = mmsa
    out = np.asarray(model({m: io[m] for m in MODALITIES}, training=False)["sentiment"])
    err = np.abs(out - io["M"]).max()
    print(f"LMF forward max |keras - MMSA| = {err:.2e}")
    assert err < 1e-4, err
    # MMSA never trains lambda and b: here they are not trainable either.
    assert not model.fusion.fusion_weights.trainable and not model.fusion.fusion_bias.trainable
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
    pairs, _ = lmf_weight_pairs(model, grads, gradients=True)
    want = {id(var): value for var, value, _ in pairs}
    assert set(want) >= {id(v) for v in model.trainable_weights}
    # The fixed lambda and b do get a gradient in MMSA; it is just never applied.
    assert id(model.fusion.fusion_weights) not in {id(v) for v in model.trainable_weights}
    worst = mmsa_step.compare_gradients(model, ours, want)
    print(f"LMF gradient max |keras - MMSA| = {worst:.2e}")


def test_a_checkpoint_of_other_settings_is_refused_by_name(mmsa):
    weights = mmsa[0]
    with pytest.raises(CheckpointMismatchError, match="audio_subnet.linear_1.weight"):
        lmf_config_from_mmsa({**MMSA_PARAMS, "hidden_dims": [6, 4, 4]}, weights)
    with pytest.raises(CheckpointMismatchError, match="rank"):
        lmf_config_from_mmsa({**MMSA_PARAMS, "rank": 4}, weights)
    with pytest.raises(CheckpointMismatchError, match="fusion_bias"):
        lmf_from_mmsa({k: v for k, v in weights.items() if k != "fusion_bias"}, MMSA_PARAMS)


def test_factor_learning_rate_scale_keeps_mmsa_numbers(mmsa):
    weights, io, grads = mmsa
    # MMSA's SIMS setting: factor_lr / learning_rate = 0.25.
    model = lmf_from_mmsa(weights, {**MMSA_PARAMS, "learning_rate": 2e-3, "factor_lr": 5e-4})
    assert model.fusion.factor_scale == 0.25
    out = np.asarray(model({m: io[m] for m in MODALITIES})["sentiment"])
    np.testing.assert_allclose(out, io["M"], atol=1e-4)
    np.testing.assert_allclose(model.fusion.factor_values()[0], weights["audio_factor"], atol=1e-6)


def test_import_recipe_writes_a_model_that_predicts_mmsa_numbers(tmp_path, load_recipe):
    import json

    config = tmp_path / "args.json"
    config.write_text(json.dumps(MMSA_PARAMS))
    out = tmp_path / "lmf.keras"
    recipe = load_recipe("import_mmsa")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["import_mmsa.py", "--model=lmf", f"--checkpoint={os.path.join(FIXTURES, 'lmf_tiny.pth')}",
                 f"--config={config}", f"--output={out}"])
    assert recipe.main([]) == 0
    io = load("lmf_io.npz")
    pred = np.asarray(keras.saving.load_model(str(out))({m: io[m] for m in MODALITIES})["sentiment"])
    err = np.abs(pred - io["M"]).max()
    print(f"LMF imported .pth -> .keras: max |keras - MMSA| = {err:.2e}")
    assert err < 1e-4, err
