"""keras_msa's SelfMM against MMSA's PyTorch SELF_MM and its trainer's label
generation (fixtures written by tests/fixtures/mmsa/make_selfmm_fixtures.py;
no torch needed here)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_selfmm import mmsa_selfmm_inputs
from keras_msa.convert.mmsa_selfmm import selfmm_config_from_mmsa
from keras_msa.convert.mmsa_selfmm import selfmm_from_mmsa
from keras_msa.convert.mmsa_selfmm import selfmm_weight_pairs
from keras_msa.layers.unimodal_label_generator import ULGM_MODES
from keras_msa.layers.unimodal_label_generator import UnimodalLabelGenerator
from keras_msa.models import SelfMM

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "mmsa")
#: make_selfmm_fixtures.selfmm_args() as MMSA's flat parameters (+ the tiny BERT's heads).
MMSA_PARAMS = {"a_lstm_hidden_size": 4, "v_lstm_hidden_size": 3, "a_lstm_layers": 1, "v_lstm_layers": 1,
               "audio_out": 3, "video_out": 5, "a_lstm_dropout": 0.0, "post_fusion_dim": 6, "post_text_dim": 5,
               "post_audio_dim": 3, "post_video_dim": 4, "post_fusion_dropout": 0.1, "post_text_dropout": 0.1,
               "post_audio_dropout": 0.1, "post_video_dropout": 0.1, "H": 3.0, "excludeZero": True,
               "num_heads": 2}
OUTPUTS = {"M": "sentiment", "T": "sentiment_text", "A": "sentiment_audio", "V": "sentiment_vision",
           "Feature_f": "feature_fusion", "Feature_t": "feature_text", "Feature_a": "feature_audio",
           "Feature_v": "feature_vision"}


def load(name):
    with np.load(os.path.join(FIXTURES, name)) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def mmsa():
    return load("selfmm_weights.npz"), load("selfmm_io.npz"), load("selfmm_grads.npz")


@pytest.fixture(scope="module")
def model(mmsa):
    return selfmm_from_mmsa(mmsa[0], MMSA_PARAMS)


def batch_of(io):
    return mmsa_selfmm_inputs(io["text"], io["audio"], io["audio_lengths"], io["vision"], io["vision_lengths"])


def test_forward_matches_mmsa(model, mmsa):
    _, io, _ = mmsa
    out = model(batch_of(io), training=False)
    worst = 0.0
    for theirs, ours in OUTPUTS.items():
        worst = max(worst, float(np.abs(np.asarray(out[ours]) - io[theirs]).max()))
        np.testing.assert_allclose(np.asarray(out[ours]), io[theirs], atol=1e-4, err_msg=ours)
    print(f"SelfMM forward max |keras - MMSA| = {worst:.2e}")


def with_memory(model, io):
    """A training copy of the converted model whose ULGM memory is the
    fixture's state before the step."""
    config = model.get_config()
    trainable = SelfMM.from_config({**config, "train_samples": len(io["pre/labels_fusion"])})
    batch = batch_of(io)
    trainable(batch)
    for src, dst in zip([v for v in model.weights if v is not model.epoch],
                        [v for v in trainable.weights if v is not trainable.epoch and "ulgm" not in v.path]):
        dst.assign(src)
    ulgm = trainable.ulgm
    ulgm.labels.assign(np.stack([io[f"pre/labels_{m}"] for m in ULGM_MODES], -1))
    ulgm.initialized.assign(np.ones(ulgm.train_samples, "float32"))
    for m in ULGM_MODES:
        ulgm.features[m].assign(io[f"pre/features_{m}"])
    ulgm.update_centers()
    trainable.set_epoch(int(io["epoch"]) - 1)  # MMSA counts epochs from 1
    return trainable, batch


def test_one_training_step_loss_label_update_and_gradients_match_mmsa(model, mmsa, mmsa_step):
    _, io, grads = mmsa
    trainable, batch = with_memory(model, io)
    batch["sample_index"] = io["index"]
    y = {"sentiment": io["pre/labels_fusion"][io["index"]][:, None]}
    with tf.GradientTape() as tape:
        pred = trainable(batch, training=False)  # dropout off, as the fixture
        loss = trainable.compute_loss(batch, y, pred)
    terms = trainable.loss_components
    np.testing.assert_allclose(float(loss), float(io["loss"]), atol=1e-4)
    for key, term in (("loss_M", "task"), ("loss_T", "unimodal_text"), ("loss_A", "unimodal_audio"),
                      ("loss_V", "unimodal_vision")):
        np.testing.assert_allclose(float(terms[term]), float(io[key]), atol=1e-4, err_msg=term)
    # Embedding gradients come as IndexedSlices: made dense to compare.
    ours = [tf.convert_to_tensor(g) for g in tape.gradient(loss, trainable.trainable_weights)]
    pairs, _ = selfmm_weight_pairs(trainable, grads, gradients=True)
    want = {id(var): value for var, value, _ in pairs}
    assert {id(v) for v in trainable.trainable_weights} <= set(want)
    worst = mmsa_step.compare_gradients(trainable, ours, want)
    print(f"SelfMM gradient max |keras - MMSA| = {worst:.2e}")
    ulgm = trainable.ulgm
    worst = 0.0
    for k, m in enumerate(ULGM_MODES):
        for got, key in ((np.asarray(ulgm.labels)[:, k], f"post/labels_{m}"),
                         (ulgm.features[m], f"post/features_{m}"), (ulgm.center_pos[m], f"post/center_pos_{m}"),
                         (ulgm.center_neg[m], f"post/center_neg_{m}")):
            worst = max(worst, float(np.abs(np.asarray(got) - io[key]).max()))
            np.testing.assert_allclose(np.asarray(got), io[key], atol=1e-4, err_msg=key)
    print(f"SelfMM label/feature/centre update max |keras - MMSA| = {worst:.2e}")


def numpy_ulgm_update(labels, features, index, y, new_features, n, bound=3.0):
    """Independent NumPy reference of one ULGM update (labels [N, 4])."""
    labels, features = labels.copy(), {m: f.copy() for m, f in features.items()}

    def centres(m, k):
        pos, neg = labels[:, k] > 0, labels[:, k] < 0
        return features[m][pos].mean(0), features[m][neg].mean(0)

    def delta(m, k, f):
        cp, cn = centres(m, k)
        dp, dn = np.linalg.norm(f - cp, axis=-1), np.linalg.norm(f - cn, axis=-1)
        return (dn - dp) / (dp + 1e-8)

    d_f = delta("fusion", 0, new_features["fusion"])
    new = labels[index].copy()
    for k, m in enumerate(ULGM_MODES[1:], start=1):
        d_s = delta(m, k, new_features[m])
        target = np.clip(0.5 * d_s / (d_f + 1e-8) * y + 0.5 * (y + d_s - d_f), -bound, bound)
        new[:, k] = (n - 1) / (n + 1) * labels[index, k] + 2 / (n + 1) * target
    labels[index] = new
    for m in ULGM_MODES:
        features[m][index] = new_features[m]
    return labels, features, {m: centres(m, k) for k, m in enumerate(ULGM_MODES)}


def test_label_generator_matches_numpy_and_is_serializable():
    rng = np.random.default_rng(0)
    dims = {"fusion": 4, "text": 3, "audio": 2, "vision": 3}
    ulgm = UnimodalLabelGenerator(6, dims)
    ulgm.build()
    y_all = np.array([1.5, -2.0, 0.5, -0.3, 2.5, -1.0], "float32")
    labels = np.stack([y_all] + [np.clip(y_all + rng.standard_normal(6), -3, 3) for _ in range(3)], -1)
    features = {m: rng.random((6, d)).astype("float32") for m, d in dims.items()}
    ulgm.labels.assign(labels)
    ulgm.initialized.assign(np.ones(6, "float32"))
    for m in ULGM_MODES:
        ulgm.features[m].assign(features[m])
    ulgm.update_centers()
    index = np.array([4, 1, 3])
    got, weights = ulgm(index, y_all[index])
    for k, m in enumerate(ULGM_MODES):
        np.testing.assert_allclose(np.asarray(got[m]), labels[index, k], atol=1e-6)
        want = np.ones(3) if m == "fusion" else np.tanh(np.abs(labels[index, k] - y_all[index]))
        np.testing.assert_allclose(np.asarray(weights[m]), want, atol=1e-6)
    new_f = {m: rng.random((3, d)).astype("float32") for m, d in dims.items()}
    ulgm.update(index, y_all[index], new_f, epoch=4)
    want_labels, want_features, want_centres = numpy_ulgm_update(labels, features, index, y_all[index], new_f, 4)
    np.testing.assert_allclose(np.asarray(ulgm.labels), want_labels, atol=1e-5)
    for m in ULGM_MODES:
        np.testing.assert_allclose(np.asarray(ulgm.features[m]), want_features[m], atol=1e-6)
        np.testing.assert_allclose(np.asarray(ulgm.center_pos[m]), want_centres[m][0], atol=1e-6)
        np.testing.assert_allclose(np.asarray(ulgm.center_neg[m]), want_centres[m][1], atol=1e-6)
    # Epoch 1 only fills the memory; unseen samples take the human label.
    fresh = UnimodalLabelGenerator.from_config(ulgm.get_config())
    fresh.build()
    fresh.update(index, y_all[index], new_f, epoch=1)
    np.testing.assert_allclose(np.asarray(fresh.labels)[index], np.repeat(y_all[index, None], 4, 1))
    assert np.asarray(fresh.initialized).tolist() == [0, 1, 0, 1, 1, 0]
    # A side with no sample has a zero centre (MMSA's mean of nothing is NaN).
    assert np.all(np.isfinite(np.asarray(fresh.center_neg["text"])))


def test_a_checkpoint_of_other_settings_is_refused_by_name(mmsa):
    weights = mmsa[0]
    with pytest.raises(CheckpointMismatchError, match="post_text_layer_1.weight"):
        selfmm_config_from_mmsa({**MMSA_PARAMS, "post_text_dim": 7}, weights)
    with pytest.raises(CheckpointMismatchError, match="post_video_dim"):
        selfmm_config_from_mmsa({k: v for k, v in MMSA_PARAMS.items() if k != "post_video_dim"}, weights)
    with pytest.raises(CheckpointMismatchError, match="post_fusion_layer_2.bias"):
        selfmm_from_mmsa({k: v for k, v in weights.items() if k != "post_fusion_layer_2.bias"}, MMSA_PARAMS)


def test_import_recipe_writes_a_model_that_predicts_mmsa_numbers(tmp_path, load_recipe):
    config = tmp_path / "args.json"
    config.write_text(json.dumps(MMSA_PARAMS))
    out = tmp_path / "selfmm.keras"
    recipe = load_recipe("import_mmsa")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["import_mmsa.py", "--model=self_mm", f"--checkpoint={os.path.join(FIXTURES, 'selfmm_tiny.pth')}",
                 f"--config={config}", f"--output={out}"])
    assert recipe.main([]) == 0
    io = load("selfmm_io.npz")
    pred = np.asarray(keras.saving.load_model(str(out))(batch_of(io))["sentiment"])
    err = np.abs(pred - io["M"]).max()
    print(f"SelfMM imported .pth -> .keras: max |keras - MMSA| = {err:.2e}")
    assert err < 1e-4, err
