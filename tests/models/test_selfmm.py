"""SelfMM as a keras_msa model: presets and MMSA protocol, the objective and
its ULGM memory in training, learning, the recipe, and saving / export with
a tiny in-process keras-hub BERT (MMSA parity: test_selfmm_parity.py)."""

import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import TextBackbone
from keras_msa.models import SelfMM
from keras_msa.models import get_model_class
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.training.protocol import check_training_presets
from keras_msa.training.protocol import resolve_protocol

SMALL = dict(audio_lstm_dim=4, vision_lstm_dim=4, audio_out=4, vision_out=4, fusion_dim=8, text_dim=6,
             audio_dim=4, vision_dim=4, text_dropout=0.0, audio_dropout=0.0)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "very", "not", "a", "boring", "great"]


def features_model(**kw):
    keras.utils.set_random_seed(0)
    return SelfMM(**{**SMALL, **kw})


def test_presets_protocol_config_and_errors():
    assert get_model_class("selfmm") is SelfMM
    mosi, sims = SelfMM.from_preset("mosi"), SelfMM.from_preset("sims")
    # config_regression.json's self_mm entries.
    assert (mosi.fusion_dim, mosi.text_dim, mosi.audio_dim, mosi.vision_dim) == (128, 32, 16, 32)
    assert (mosi.audio_lstm_dim, mosi.vision_lstm_dim, mosi.label_bound) == (16, 32, 3.0)
    assert (sims.vision_lstm_dim, sims.text_dim, sims.label_bound) == (64, 64, 1.0)
    assert SelfMM.from_preset("mosei").fusion_dropout == 0.1 and mosi.task_loss == "mae"
    for preset, batch in (("mosi", 16), ("mosei", 32), ("sims", 32)):
        p = {k: e["value"] for k, e in resolve_protocol(SelfMM, preset).items()}
        assert (p["batch_size"], p["backbone_learning_rate"], p["gradient_accumulation_steps"]) == (batch, 5e-5, 4)
        assert (p["learning_rate"], p["patience"], p["monitor"], p["optimizer"]) == (1e-3, 8, "loss", "adam")
    assert resolve_protocol(SelfMM, "mosei")["l2_weight_decay"] == {
        "value": 1e-2, "source": "MMSA", "note": resolve_protocol(SelfMM, "mosei")["l2_weight_decay"]["note"]}
    check_training_presets(SelfMM)
    clone = SelfMM.from_config(mosi.get_config())
    assert clone.get_config() == mosi.get_config()

    bench = tiny_synthetic(train=8, valid=4, test=4)
    batch = small_batch(bench["train"], 4)
    y = {"sentiment": bench["train"].targets["sentiment"][:4]}
    model = features_model()
    with pytest.raises(ValueError, match="train_samples"):
        model.compute_loss(batch, y, model(batch), training=True)
    model = features_model(train_samples=8)
    with pytest.raises(KeyError, match="sample_index"):
        model.compute_loss(batch, y, model(batch), training=True)
    # Evaluation needs no index and only has the fusion term.
    model.compute_loss(batch, y, model(batch), training=False)
    assert sorted(model.loss_components) == ["task"]


def test_objective_updates_the_memory_and_ablation():
    bench = tiny_synthetic(train=8, valid=4, test=4)
    batch = dict(small_batch(bench["train"], 4), sample_index=np.array([3, 0, 6, 5]))
    y = bench["train"].targets["sentiment"][:4]
    model = features_model(train_samples=8)
    out = model(batch, training=True)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "sentiment": (4, 1), "sentiment_text": (4, 1), "sentiment_audio": (4, 1), "sentiment_vision": (4, 1),
        "feature_fusion": (4, 8), "feature_text": (4, 6), "feature_audio": (4, 4), "feature_vision": (4, 4)}
    loss = model.compute_loss(batch, {"sentiment": y}, out, training=True)
    terms = model.loss_components
    assert sorted(terms) == ["task", "unimodal_audio", "unimodal_text", "unimodal_vision"]
    # Epoch 1: the unimodal labels are the human ones, so their weights are 0.
    assert all(float(terms[f"unimodal_{m}"]) == 0.0 for m in ("text", "audio", "vision"))
    np.testing.assert_allclose(float(loss), np.abs(np.asarray(out["sentiment"]) - y).mean(), atol=1e-6)
    labels = np.asarray(model.ulgm.labels)
    np.testing.assert_allclose(labels[[3, 0, 6, 5]], np.repeat(y, 4, axis=1))
    np.testing.assert_allclose(np.asarray(model.ulgm.features["fusion"])[3], np.asarray(out["feature_fusion"])[0])
    # Epoch 2: labels move, the unimodal terms weigh in.
    model.set_epoch(1)
    model.compute_loss(batch, {"sentiment": y}, model(batch, training=True), training=True)
    assert not np.allclose(np.asarray(model.ulgm.labels)[[3, 0, 6, 5], 1:], np.repeat(y, 3, axis=1))
    model.compute_loss(batch, {"sentiment": y}, model(batch, training=True), training=True)
    assert float(model.loss_components["unimodal_text"]) > 0
    # Ablation "M" (Table 4): the fusion task alone.
    ablated = features_model(train_samples=8, use_unimodal=False)
    ablated.compute_loss(batch, {"sentiment": y}, ablated(batch, training=True), training=True)
    assert sorted(ablated.loss_components) == ["task"]


def backbone_model(**kw):
    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB)
    pre = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    bert = keras_hub.models.BertBackbone(vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=16,
                                         intermediate_dim=16, max_sequence_length=8)
    return SelfMM(text_backbone=TextBackbone(bert, pre), **{**SMALL, **kw})


def text_batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "film", "very", "not", "a", "boring", "great"]
    batch = {
        "text_raw": np.array([" ".join(rng.choice(words, rng.integers(1, 6))) for _ in range(n)]),
        "audio": rng.standard_normal((n, 7, 5)).astype("float32"),
        "audio_mask": np.arange(7)[None] < rng.integers(0, 8, (n, 1)),
        "vision": rng.standard_normal((n, 6, 4)).astype("float32"),
        "vision_mask": np.arange(6)[None] < rng.integers(1, 7, (n, 1)),
    }
    return batch, rng.uniform(-3, 3, (n, 1)).astype("float32")


@pytest.mark.slow
def test_backbone_mode_trains_saves_and_exports(tmp_path):
    from keras_msa.export.text_saved_model import export_text_saved_model
    from keras_msa.export.text_saved_model import load_text_serving_fn
    from keras_msa.export.text_saved_model import serve_text_numpy

    model = backbone_model(train_samples=6)
    batch, y = text_batch()
    out = model(batch)
    assert out["sentiment"].dtype == "float32" and tuple(out["feature_text"].shape) == (6, 6)
    # The pooler is not read (MMSA takes the [CLS] state): frozen, so every
    # trainable weight gets a gradient.
    assert not model.text_backbone.backbone.get_layer("pooled_dense").trainable
    train = dict(batch, sample_index=np.arange(6, dtype="int32"))

    def step(m):
        with tf.GradientTape() as tape:
            loss = m.compute_loss(train, {"sentiment": y}, m(train, training=True), training=True)
        grads = tape.gradient(loss, m.trainable_weights)
        assert all(g is not None for g in grads)
        keras.optimizers.SGD(0.1).apply(grads, m.trainable_weights)

    model.set_epoch(1)
    step(model)
    assert float(np.asarray(model.ulgm.initialized).sum()) == 6
    # The memory and the epoch travel in the .keras file; the copy keeps training.
    restored = assert_keras_roundtrip(model, batch, tmp_path)
    np.testing.assert_allclose(np.asarray(restored.ulgm.labels), np.asarray(model.ulgm.labels))
    np.testing.assert_allclose(np.asarray(restored.ulgm.center_neg["text"]), np.asarray(model.ulgm.center_neg["text"]))
    assert float(restored.epoch) == 1.0
    before = [np.array(w) for w in restored.trainable_weights]
    step(restored)
    assert any(not np.allclose(a, np.asarray(w)) for a, w in zip(before, restored.trainable_weights))
    export_dir = os.path.join(str(tmp_path), "text_sm", "1")
    export_text_saved_model(model, export_dir, batch)
    served = serve_text_numpy(load_text_serving_fn(export_dir), batch)
    np.testing.assert_allclose(served["sentiment"], np.asarray(model(batch)["sentiment"]), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_train_recipe_learns_with_sample_indices_and_mmsa_protocol(tmp_path):
    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import train

    # MMSA's MOSI protocol (L2, 4-batch accumulation) at a higher rate, so
    # that a few epochs of a tiny split show learning.
    config = TrainConfig(model="selfmm", preset="mosi", model_config=SMALL, output_dir=str(tmp_path), epochs=8,
                         batch_size=8, learning_rate=1e-2, synthetic_sizes={"train": 96, "valid": 16, "test": 64},
                         synthetic_options={"seq_len": 6, "min_len": 6, "text_dim": 8, "audio_dim": 4,
                                            "vision_dim": 4, "window": 2, "missing_rate": 0.1}, verbose=0)
    results, model = train(config)
    assert results["test"]["mae"] < 0.85 * results["mean_predictor_mae_test"], results["test"]
    assert int(model.optimizer.gradient_accumulation_steps) == 4
    # Built from indexed batches, it exports without asking for the index.
    assert "sample_index" not in model.get_build_config()["input_shape"]
    ulgm = model.ulgm
    assert ulgm.train_samples == 96 and float(np.asarray(ulgm.initialized).sum()) == 96
    generated = np.asarray(ulgm.labels)
    assert np.isfinite(generated).all() and not np.allclose(generated[:, 1:], generated[:, :1])
