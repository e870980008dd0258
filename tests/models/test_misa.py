import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import TextBackbone
from keras_msa.models import MISA
from keras_msa.models import get_model_class
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import assert_savedmodel_roundtrip
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.testing import train_briefly
from keras_msa.training.protocol import resolve_protocol

TINY = dict(hidden_size=8, transformer_ff_dim=16, dropout=0.0, transformer_dropout=0.0)
TERMS = {"diff", "similarity", "reconstruction"}


def _model(**overrides):
    keras.utils.set_random_seed(0)
    return MISA(**{**TINY, **overrides})


@pytest.fixture(scope="module")
def bench():
    return tiny_synthetic(train=192, valid=32, test=96)


def test_presets_protocol_and_config():
    assert get_model_class("misa") is MISA
    mosei = MISA.from_preset("mosei")
    assert (mosei.hidden_size, mosei.dropout, mosei.diff_weight, mosei.sim_weight, mosei.recon_weight) == (
        128, 0.5, 0.3, 0.8, 1.0)
    assert (mosei.transformer_heads, mosei.transformer_ff_dim, mosei.cmd_moments) == (2, 2048, 5)
    sims = resolve_protocol(MISA, "sims")
    assert sims["clipvalue"] == {"value": 1.0, "source": "MMSA"}
    assert sims["backbone_learning_rate"]["value"] == 1e-4 and sims["batch_size"]["value"] == 64
    assert resolve_protocol(MISA, "mosi")["gradient_accumulation_steps"]["value"] == 2
    assert MISA.from_config(mosei.get_config()).get_config() == mosei.get_config()
    with pytest.raises(ValueError, match="av_lengths"):
        MISA(av_lengths="audio")
    with pytest.raises(KeyError, match="vision"):
        _model()({"text": np.zeros((1, 3, 4), "float32"), "audio": np.zeros((1, 3, 2), "float32")})


def test_objective_terms_ablations_and_gradients(bench):
    batch = small_batch(bench["train"], 8)
    y = {"sentiment": bench["train"].targets["sentiment"][:8]}
    model = _model()
    with tf.GradientTape() as tape:
        out = model(batch, training=True)
        loss = model.compute_loss(batch, y, out, training=True)
    assert set(model.loss_components) == {"task"} | TERMS
    np.testing.assert_allclose(float(loss), sum(float(v) for v in model.loss_components.values()), rtol=1e-6)
    grads = tape.gradient(loss, model.trainable_weights)
    for w, g in zip(model.trainable_weights, grads):
        assert g is not None and np.any(np.asarray(g) != 0), w.path
    # Validation is the task loss alone (MMSA's KeyEval "Loss").
    model.compute_loss(batch, y, out, training=False)
    assert set(model.loss_components) == {"task"}
    # Ablations (the paper's Table 4 rows): a zero weight removes the term.
    # (Weights are read by compute_loss only: set on the built model.)
    model.diff_weight = model.sim_weight = 0.0
    model.compute_loss(batch, y, out, training=True)
    assert set(model.loss_components) == {"task", "reconstruction"}
    # av_lengths="text" (MMSA's packing) reads audio/vision for the text's length.
    cut = dict(batch)
    for m in ("audio", "vision"):
        cut[f"{m}_mask"] = np.asarray(batch["text_mask"]) & np.asarray(batch[f"{m}_mask"])
    want = np.asarray(model(cut)["sentiment"])
    model.av_lengths = "text"
    np.testing.assert_allclose(np.asarray(model(batch)["sentiment"]), want, atol=1e-6)


@pytest.mark.slow
def test_learns_and_round_trips(bench, tmp_path):
    # One compiled train step (tracing MISA's 12 LSTMs costs most of the
    # time); the reloaded model trains eagerly.
    model = _model()
    mae, mean_mae = train_briefly(model, bench, epochs=12, batch_size=16, learning_rate=5e-3)
    # MODEL_DONE's bar: beat the mean predictor. Measured 0.89 of its MAE
    # with an earlier TensorFlow/Keras install and 0.99 (1.3454 vs 1.3584)
    # with TF 2.21 / Keras 3.15.1 (192 training samples; the auxiliary terms
    # pull against the task early on), so no wider margin is asserted.
    assert mae < mean_mae, (mae, mean_mae)
    batch = small_batch(bench["train"], 4)
    restored = assert_keras_roundtrip(model, batch, tmp_path)
    before = [np.array(w) for w in restored.trainable_weights]
    restored.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    restored.fit(bench["valid"].to_tf_dataset(16).take(1), epochs=1, verbose=0, shuffle=False)
    assert any(not np.allclose(a, np.array(w)) for a, w in zip(before, restored.trainable_weights))
    assert_savedmodel_roundtrip(model, batch, tmp_path)


def test_backbone_mode_token_ids_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    bert = keras_hub.models.BertBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=16,
                                         intermediate_dim=16, max_sequence_length=8)
    model = MISA(text_backbone=TextBackbone(bert), **TINY)
    assert model.mode == "backbone" and set(model.parameter_groups()) == {"text_backbone"}
    rng = np.random.default_rng(0)
    mask = np.arange(6)[None, :] < np.array([[6], [3]])
    batch = {"text_token_ids": np.where(mask, rng.integers(5, 8, (2, 6)), 0).astype("int32"),
             "text_padding_mask": mask, "audio": rng.normal(size=(2, 5, 3)).astype("float32"),
             "vision": rng.normal(size=(2, 4, 2)).astype("float32")}
    out = model(batch)
    assert out["sentiment"].shape == (2, 1) and model.project["text"].kernel.shape == (16, 8)
    assert_keras_roundtrip(model, batch, tmp_path)
