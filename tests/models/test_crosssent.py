import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import TextBackbone
from keras_msa.models import CrossSent
from keras_msa.models import get_model_class
from keras_msa.testing import assert_beats_text_only_floor
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import assert_savedmodel_roundtrip
from keras_msa.testing import fusion_synthetic
from keras_msa.testing import missing_modality
from keras_msa.testing import small_batch
from keras_msa.testing import train_briefly

SMALL = dict(hidden_dim=16, num_layers=2, num_attention_heads=2, gmra_heads=2, adapter_dim=4, warmup_proportion=0)


def features_model(**kw):
    keras.utils.set_random_seed(0)
    return CrossSent(**{**SMALL, **kw})


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "very", "not", "a", "boring", "great"]


def backbone_model(**kw):
    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB)
    pre = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=3, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=8,
    )
    return CrossSent(text_backbone=TextBackbone(bert, pre), gmra_heads=2, adapter_dim=4, warmup_proportion=0, **kw)


def text_batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "film", "very", "not", "a", "boring", "great"]
    sentences = np.array([" ".join(rng.choice(words, rng.integers(1, 6))) for _ in range(n)])
    batch = {
        "text_raw": sentences,
        "audio": rng.standard_normal((n, 7, 5)).astype("float32"),
        "audio_mask": rng.random((n, 7)) < 0.8,
        "vision": rng.standard_normal((n, 6, 4)).astype("float32"),
        "vision_mask": rng.random((n, 6)) < 0.8,
    }
    return batch, rng.uniform(-3, 3, (n, 1)).astype("float32")


def test_registered_and_presets():
    assert get_model_class("crosssent") is CrossSent
    for name, (lm, le) in {"mosi": (0.5, 0.06), "mosei": (0.4, 0.05), "sims": (0.7, 0.07)}.items():
        m = CrossSent.from_preset(name, hidden_dim=16, num_attention_heads=2, gmra_heads=2)
        assert (m.lambda_mpr, m.lambda_eioi) == (lm, le)
        assert m.dropout == 0.28 and m.injection_index == 1 and m.adapter_dim == 48
    with pytest.raises(ValueError, match="no preset"):
        CrossSent.from_preset("iemocap")


def test_features_mode_shapes_and_float32(tiny_benchmark):
    model = features_model()
    out = model(small_batch(tiny_benchmark["test"]))
    assert tuple(out["sentiment"].shape) == (4, 1) and out["sentiment"].dtype == "float32"
    assert tuple(out["gmra_gate"].shape) == (4, 1)
    assert model.mode == "features"


@pytest.fixture(scope="module")
def fusion():
    return fusion_synthetic()


@pytest.fixture(scope="module")
def fused_mae(fusion):
    """Test MAE of the features-mode model trained briefly on `fusion`
    (shared by the floor and the GMRA ablation tests)."""
    mae, mean_mae = train_briefly(features_model(dropout=0.1), fusion, epochs=12)
    return mae, mean_mae


def test_features_mode_learns_to_fuse_beyond_the_text_only_floor(fusion, fused_mae):
    """Audio and vision carry as much of the label as the text: only a model
    that reads them through GMRA gets far below the best text-only MAE."""
    mae, mean_mae = fused_mae
    assert mae < 0.7 * mean_mae, (mae, mean_mae)
    assert_beats_text_only_floor(mae, fusion, margin=0.25)


@pytest.mark.slow
def test_gmra_beats_its_ablation(fusion, fused_mae):
    """GMRA is the only path of audio and vision into the text encoder, so
    without it (`use_gmra=False`, trained identically) CrossSent is a
    text-only model: it stays at the text-only floor, far above the full
    model."""
    ablated, _ = train_briefly(features_model(dropout=0.1, use_gmra=False), fusion, epochs=12)
    mae = fused_mae[0]
    assert ablated > fusion["test"].text_only_bayes_mae - 0.1, ablated
    assert mae < ablated - 0.3, (mae, ablated)


def test_objective_has_ramped_mpr_and_eioi_and_ablations(tiny_benchmark):
    batch = small_batch(tiny_benchmark["train"], 16)
    y = {"sentiment": tiny_benchmark["train"].targets["sentiment"][:16]}
    model = features_model()
    y_pred = model(batch)
    model.set_epoch(0)
    total0 = float(model.compute_loss(batch, y, y_pred))
    parts0 = {k: float(v) for k, v in model.loss_components.items()}
    assert set(parts0) == {"task", "mpr", "eioi"}
    model.set_epoch(5)
    total5 = float(model.compute_loss(batch, y, y_pred))
    parts5 = {k: float(v) for k, v in model.loss_components.items()}
    # ramp(0) = 0.25 and ramp(5) = 1 with ramp_epochs = 3.
    np.testing.assert_allclose(parts0["mpr"], 0.25 * parts5["mpr"], rtol=1e-5)
    np.testing.assert_allclose(parts0["eioi"], 0.25 * parts5["eioi"], rtol=1e-5)
    np.testing.assert_allclose(total5, sum(parts5.values()), rtol=1e-6)
    assert total5 > total0
    from keras_msa.losses import ErrorIntervalOrdinalInconsistency
    from keras_msa.losses import MonotonicPairwiseRanking

    p = np.asarray(y_pred["sentiment"])
    np.testing.assert_allclose(parts5["mpr"], 0.5 * float(MonotonicPairwiseRanking()(y["sentiment"], p)), rtol=1e-5)
    np.testing.assert_allclose(
        parts5["eioi"], 0.06 * float(ErrorIntervalOrdinalInconsistency(0.5)(y["sentiment"], p)), rtol=1e-5
    )
    no_mpr = features_model(use_mpr=False)
    no_mpr.compute_loss(batch, y, no_mpr(batch))
    assert set(no_mpr.loss_components) == {"task", "eioi"}
    no_eioi = features_model(use_eioi=False)
    no_eioi.compute_loss(batch, y, no_eioi(batch))
    assert set(no_eioi.loss_components) == {"task", "mpr"}


def test_without_gmra_ignores_audio_and_vision(tiny_benchmark):
    model = features_model(use_gmra=False)
    batch = small_batch(tiny_benchmark["test"])
    a = np.asarray(model(batch)["sentiment"])
    text_only = {k: v for k, v in batch.items() if k.startswith("text")}
    np.testing.assert_allclose(np.asarray(model(text_only)["sentiment"]), a, atol=1e-6)
    assert model.gmra is None and "gmra_gate" not in model(batch)
    full = features_model()
    full(batch)
    assert full.count_params() > model.count_params()


def test_masking_and_missing_modalities(tiny_benchmark):
    model = features_model()
    batch = small_batch(tiny_benchmark["test"])
    batch["text_mask"] = batch["text_mask"].copy()
    batch["text_mask"][:, -3:] = False
    batch["audio_mask"] = batch["audio_mask"].copy()
    batch["audio_mask"][:, :2] = False
    base = np.asarray(model(batch)["sentiment"])
    noisy = dict(batch)
    for m in ("text", "audio", "vision"):
        mask = batch[f"{m}_mask"][..., None]
        noisy[m] = np.where(mask, batch[m], 50.0).astype("float32")
    np.testing.assert_allclose(np.asarray(model(noisy)["sentiment"]), base, atol=1e-5)
    both = missing_modality(missing_modality(batch, "audio"), "vision")
    out = model(both)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in out.values())
    assert np.all(np.isfinite(np.asarray(model(missing_modality(batch, "text"))["sentiment"])))


def test_missing_key_errors(tiny_benchmark):
    model = features_model()
    batch = small_batch(tiny_benchmark["test"])
    with pytest.raises(KeyError, match="'audio'"):
        model({k: v for k, v in batch.items() if not k.startswith("audio")})
    with pytest.raises(ValueError, match="injection_index=2"):
        CrossSent(**{**SMALL, "injection_index": 2})


def test_gradients_reach_every_weight(tiny_benchmark):
    model = features_model(layer_scale_init=0.1)
    batch = small_batch(tiny_benchmark["train"], 16)
    y = {"sentiment": tiny_benchmark["train"].targets["sentiment"][:16]}
    model(batch)
    model.set_epoch(3)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, y, model(batch, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    for w, g in zip(model.trainable_weights, grads):
        assert g is not None and np.any(np.asarray(g) != 0), w.path


def _assert_keeps_training(model, dataset):
    # Eager steps: tracing a compiled train step would cost more than the
    # check itself on this tiny model.
    before = [np.array(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    after = [np.array(w) for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after)), "reloaded model did not train"


def test_keras_round_trip_keeps_training_and_saved_model(tiny_benchmark, tmp_path):
    model = features_model()
    batch = small_batch(tiny_benchmark["test"])
    model(batch)
    restored = assert_keras_roundtrip(model, batch, tmp_path)
    _assert_keeps_training(restored, tiny_benchmark["train"].to_tf_dataset(64).take(2))
    assert_savedmodel_roundtrip(model, batch, tmp_path)


def test_mixed_precision_outputs_float32(tiny_benchmark):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = features_model()
        out = model(small_batch(tiny_benchmark["test"]))
        assert out["sentiment"].dtype == "float32"
        assert np.all(np.isfinite(np.asarray(out["sentiment"])))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_backbone_mode_raw_strings_train_save_and_export(tmp_path):
    from keras_msa.export.text_saved_model import export_text_saved_model
    from keras_msa.export.text_saved_model import load_text_serving_fn
    from keras_msa.export.text_saved_model import serve_text_numpy

    model = backbone_model()
    assert model.mode == "backbone" and model.hidden_dim == 16
    batch, y = text_batch()
    out = model(batch)
    assert tuple(out["sentiment"].shape) == (6, 1) and out["sentiment"].dtype == "float32"
    ds = tf.data.Dataset.from_tensor_slices((batch, {"sentiment": y})).batch(3)
    # .keras: weights and the tokenizer vocabulary come back, and it keeps training.
    restored = assert_keras_roundtrip(model, batch, tmp_path)
    _assert_keeps_training(restored, ds)
    export_dir = os.path.join(str(tmp_path), "text_sm", "1")
    export_text_saved_model(model, export_dir, batch)
    fn = load_text_serving_fn(export_dir)
    assert fn.structured_input_signature[1]["text_raw"].dtype == tf.string
    served = serve_text_numpy(fn, batch)
    np.testing.assert_allclose(served["sentiment"], np.asarray(model(batch)["sentiment"]), atol=1e-5, rtol=0)


def test_backbone_mode_injection_and_token_inputs():
    model = backbone_model(injection_index=0)
    batch, _ = text_batch()
    a = np.asarray(model(batch)["sentiment"])
    tokens = model.text_backbone.tokenize(batch["text_raw"])
    token_batch = {k: v for k, v in batch.items() if k != "text_raw"}
    token_batch.update({f"text_{k}": np.asarray(v) for k, v in tokens.items()})
    np.testing.assert_allclose(np.asarray(model(token_batch)["sentiment"]), a, atol=1e-6)
    # Audio/vision reach the output through GMRA only.
    other = dict(batch, audio=batch["audio"] + 1.0)
    assert not np.allclose(np.asarray(model(other)["sentiment"]), a)
    no_gmra = backbone_model(use_gmra=False)
    b = np.asarray(no_gmra(batch)["sentiment"])
    np.testing.assert_allclose(np.asarray(no_gmra(other)["sentiment"]), b, atol=1e-6)


def test_backbone_frozen_and_gradients_reach_every_trainable_weight():
    batch, y = text_batch()
    frozen = backbone_model(fine_tune=False, layer_scale_init=0.1)
    frozen(batch)
    backbone_ids = {id(w) for w in frozen.text_backbone.weights}
    assert not any(id(w) in backbone_ids for w in frozen.trainable_weights)
    model = backbone_model(layer_scale_init=0.1)
    model(batch)
    model.set_epoch(3)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, {"sentiment": y}, model(batch, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    for w, g in zip(model.trainable_weights, grads):
        assert g is not None and np.any(np.asarray(g) != 0), w.path


@pytest.mark.slow
def test_trains_through_the_recipe_runner(tmp_path):
    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import train

    config = TrainConfig(
        model="crosssent",
        model_config={**SMALL, "dropout": 0.1},
        data="synthetic",
        epochs=2,
        batch_size=32,
        learning_rate=1e-3,
        synthetic_sizes={"train": 128, "valid": 32, "test": 32},
        output_dir=str(tmp_path),
        verbose=0,
    )
    results, _ = train(config)
    assert np.isfinite(results["test"]["mae"])
    assert os.path.exists(os.path.join(str(tmp_path), "model.keras"))


def test_linear_warmup_callback_schedule(tiny_benchmark):
    from keras_msa.models.crosssent import LinearWarmupDecay

    model = features_model(warmup_proportion=0.4)
    callbacks = model.training_callbacks()
    assert len(callbacks) == 1 and isinstance(callbacks[0], LinearWarmupDecay)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(self.model.optimizer.learning_rate))

    data = tiny_benchmark["train"].to_tf_dataset(64).take(4)  # 4 steps x 5 epochs
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    model.fit(data, epochs=5, verbose=0, shuffle=False, callbacks=callbacks + [Record()])
    total, warm = 20, 8
    expected = [1e-3 * (s / warm if s <= warm else (total - s) / (total - warm)) for s in range(1, total + 1)]
    np.testing.assert_allclose(seen, expected, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(float(model.optimizer.learning_rate), 1e-3, rtol=1e-6)
    assert features_model(warmup_proportion=0).training_callbacks() == []


@pytest.mark.slow
def test_export_recipe_probes_raw_text_models(tmp_path):
    import subprocess
    import sys

    model = backbone_model()
    batch, _ = text_batch()
    model(batch)
    model_path = str(tmp_path / "model.keras")
    model.save(model_path)
    export_dir = str(tmp_path / "saved_models" / "crosssent" / "1")
    recipe = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "export.py")
    proc = subprocess.run([sys.executable, recipe, f"--model_path={model_path}", f"--export_dir={export_dir}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max |SavedModel - Keras|" in proc.stdout
    from keras_msa.export import load_serving_fn
    from keras_msa.export import serve_numpy

    fn = load_serving_fn(export_dir)
    assert fn.structured_input_signature[1]["text_raw"].dtype == tf.string
    served = serve_numpy(fn, batch)
    np.testing.assert_allclose(served["sentiment"], np.asarray(model(batch)["sentiment"]), atol=1e-5, rtol=0)
