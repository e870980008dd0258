import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.models import M3SA
from keras_msa.models import get_model_class
from keras_msa.models.m3sa import KeyModalitySelector
from keras_msa.testing import assert_beats_text_only_floor
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import assert_savedmodel_roundtrip
from keras_msa.testing import fusion_synthetic
from keras_msa.testing import missing_modality
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.testing import train_briefly
from keras_msa.training.callbacks import EpochSetter

SMALL = dict(hidden_dim=10, num_heads=5, num_scales=3, ratio=2, dropout=0.1)
MODALITIES = ("text", "audio", "vision")


@pytest.fixture(scope="module")
def bench():
    return tiny_synthetic(unimodal_labels=True)


def _targets(split, n):
    return {k: v[:n] for k, v in split.targets.items()}


def test_registry_and_defaults():
    assert get_model_class("m3sa") is M3SA
    model = M3SA()
    # Paper defaults: n = 5 scales, r = 4, 5 heads, text as key (seed 003).
    assert (model.num_scales, model.ratio, model.num_heads, model.key_modality) == (5, 4, 5, "text")


@pytest.mark.parametrize(
    "overrides",
    [{}, {"fusion": "equal"}, {"fusion": "early"}, {"fusion": "late"}, {"multi_scale": False},
     {"key_modality": "auto"}],
)
def test_shapes_dtypes_and_padding_invariance(overrides, bench):
    keras.utils.set_random_seed(0)
    model = M3SA(**SMALL, **overrides)
    batch = small_batch(bench["train"], 4)
    batch["text_mask"][1, 7:] = False
    batch["audio_mask"][1, 7:] = False
    batch["vision_mask"][1, 7:] = False
    out = model(batch)
    for name in ("sentiment",) + tuple(f"sentiment_{m}" for m in MODALITIES):
        assert out[name].shape == (4, 1) and out[name].dtype == "float32", name
    assert out["embedding_text"].shape == (4, 10)
    changed = {k: v.copy() for k, v in batch.items()}
    for m in MODALITIES:
        changed[m][~batch[f"{m}_mask"]] = 55.0
    again = model(changed)
    for k in out:
        np.testing.assert_allclose(np.asarray(again[k]), np.asarray(out[k]), atol=1e-5, err_msg=k)


@pytest.mark.parametrize("overrides", [{}, {"fusion": "equal"}, {"fusion": "early"}, {"fusion": "late"}])
def test_missing_modalities_give_finite_outputs(overrides, bench):
    keras.utils.set_random_seed(0)
    model = M3SA(**SMALL, **overrides)
    batch = small_batch(bench["train"], 4)
    every = batch
    for m in MODALITIES:
        out = model(missing_modality(batch, m))
        assert all(np.isfinite(np.asarray(v)).all() for v in out.values()), m
        every = missing_modality(every, m)
    out = model(every)
    assert all(np.isfinite(np.asarray(v)).all() for v in out.values())
    y = _targets(bench["train"], 4)
    assert np.isfinite(float(model.compute_loss(every, y, out)))


def _numpy_info_nce(q, k, tau, valid):
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-6)
    k = k / np.maximum(np.linalg.norm(k, axis=1, keepdims=True), 1e-6)
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        return 0.0
    logits = q[idx] @ k[idx].T / tau
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    return float(np.mean(lse - np.diag(logits)))


def test_unimodal_label_objective_eq_25_with_weight_decay(bench):
    keras.utils.set_random_seed(0)
    weights = {"text": 1.0, "audio": 0.5, "vision": 2.0}
    model = M3SA(**SMALL, subtask_weights=weights, subtask_decay=0.8, subtask_weight_floor=0.3)
    batch = small_batch(bench["train"], 8)
    y = _targets(bench["train"], 8)
    for epoch in (0, 3):
        model.set_epoch(epoch)
        pred = model(batch)
        total = float(model.compute_loss(batch, y, pred))
        expected = np.abs(np.asarray(pred["sentiment"]) - y["sentiment"]).mean()
        for m in MODALITIES:
            w = max(0.3, weights[m] * 0.8 ** epoch)
            term = w * np.abs(np.asarray(pred[f"sentiment_{m}"]) - y[f"sentiment_{m}"]).mean()
            np.testing.assert_allclose(float(model.loss_components[f"unimodal_{m}"]), term, rtol=1e-5)
            expected += term
        np.testing.assert_allclose(total, expected, rtol=1e-5)
    assert "unimodal_probe" not in model.loss_components


def test_contrastive_objective_eq_27(bench):
    keras.utils.set_random_seed(0)
    model = M3SA(**SMALL, contrastive_weights={"text_audio": 0.2, "text_vision": 0.1, "audio_vision": 0.05},
                 subtask_decay=0.5, contrastive_temperature=0.2)
    batch = missing_modality(small_batch(bench["train"], 8), "vision")
    batch["audio_mask"][2] = False  # one sample without audio drops out of its pairs
    y = {"sentiment": bench["train"].targets["sentiment"][:8]}
    model.set_epoch(1)
    pred = model(batch)
    total = float(model.compute_loss(batch, y, pred, training=False))
    emb = {m: np.asarray(pred[f"embedding_{m}"], np.float64) for m in MODALITIES}
    valid = {m: batch[f"{m}_mask"].any(1) for m in MODALITIES}
    expected = np.abs(np.asarray(pred["sentiment"]) - y["sentiment"]).mean()
    for (a, b), w in (( ("text", "audio"), 0.2), (("text", "vision"), 0.1), (("audio", "vision"), 0.05)):
        term = w * 0.5 * _numpy_info_nce(emb[a], emb[b], 0.2, valid[a] & valid[b])
        np.testing.assert_allclose(float(model.loss_components[f"contrastive_{a}_{b}"]), term, rtol=1e-4, atol=1e-6)
        expected += term
    # With vision missing everywhere its pairs have no valid sample: exactly 0.
    assert float(model.loss_components["contrastive_text_vision"]) == 0.0
    probe = float(model.loss_components["unimodal_probe"])
    np.testing.assert_allclose(
        probe, sum(np.abs(np.asarray(pred[f"sentiment_{m}"]) - y["sentiment"]).mean() for m in MODALITIES), rtol=1e-5
    )
    np.testing.assert_allclose(total, expected + probe, rtol=1e-5)


def test_probe_loss_trains_heads_only(bench):
    keras.utils.set_random_seed(0)
    model = M3SA(**SMALL, multi_task="none")
    batch = small_batch(bench["train"], 8)
    y = {"sentiment": tf.constant(bench["train"].targets["sentiment"][:8])}
    model(batch)
    with tf.GradientTape() as tape:
        pred = model(batch, training=False)
        model.compute_loss(batch, y, pred)
        probe = model.loss_components["unimodal_probe"]
    assert set(model.loss_components) == {"task", "unimodal_probe"}
    grads = dict(zip([w.path for w in model.trainable_weights], tape.gradient(probe, model.trainable_weights)))
    assert all(g is None for p, g in grads.items() if "extractor" in p)
    assert any(g is not None and np.abs(np.asarray(g)).max() > 0 for p, g in grads.items() if "text_head" in p)


def test_gradient_reaches_every_weight(bench):
    keras.utils.set_random_seed(0)
    model = M3SA(**SMALL)
    # An odd batch: under MAE an output bias gets mean(sign(error)), which an
    # even batch split half above, half below the labels makes exactly 0.
    batch = small_batch(bench["train"], 7)
    y = _targets(bench["train"], 7)
    model(batch)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, y, model(batch, training=False))
    grads = tape.gradient(loss, model.trainable_weights)
    dead = [w.path for w, g in zip(model.trainable_weights, grads)
            if (g is None or np.abs(np.asarray(g)).max() == 0) and not w.path.endswith("key/bias")]
    assert not dead, dead


def test_labels_mode_needs_unimodal_targets(bench):
    model = M3SA(**SMALL, multi_task="labels")
    batch = small_batch(bench["train"], 4)
    with pytest.raises(KeyError, match="sentiment_text"):
        model.compute_loss(batch, {"sentiment": bench["train"].targets["sentiment"][:4]}, model(batch))


def test_constructor_errors_and_early_fusion_needs_alignment():
    with pytest.raises(ValueError, match="key_modality"):
        M3SA(key_modality="smell")
    with pytest.raises(ValueError, match="fusion"):
        M3SA(fusion="middle")
    with pytest.raises(ValueError, match="Unknown subtask"):
        M3SA(subtask_weights={"txt": 1.0})
    with pytest.raises(ValueError, match="only key_modality='auto'"):
        M3SA().select_key_modality("audio")
    unaligned = tiny_synthetic(train=8, valid=8, test=8, aligned=False, audio_len=16, vision_len=10)["train"]
    early = M3SA(**SMALL, fusion="early")
    early(small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"]))  # built first: a failed building call also warns
    with pytest.raises(ValueError, match="aligned"):
        early(small_batch(unaligned))
    out = M3SA(**SMALL)(small_batch(unaligned))  # key fusion handles unaligned inputs
    assert out["sentiment"].shape == (4, 1)


def test_presets_and_config_roundtrip():
    model = M3SA.from_preset("sims", hidden_dim=20, key_modality="auto")
    assert model.dropout == 0.3 and model.hidden_dim == 20 and model.num_heads == 5
    assert M3SA.from_preset("mosi").dropout == 0.4
    assert M3SA.training_presets["mosi"]["paper"]["learning_rate"] == 5e-5
    clone = M3SA.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    with pytest.raises(ValueError, match="no preset"):
        M3SA.from_preset("mosei")


def test_learns_with_unimodal_labels_beyond_the_text_only_floor():
    """Audio and vision carry as much of the label as the text, so only a
    model that reads them gets far below the best text-only MAE (trained on
    the same data with audio and vision missing, M3SA stays at the floor)."""
    fusion = fusion_synthetic(unimodal_labels=True)
    model = M3SA(**SMALL)
    mae, mean_mae = train_briefly(model, fusion, epochs=5, batch_size=16, learning_rate=5e-3)
    assert mae < 0.8 * mean_mae, (mae, mean_mae)
    assert_beats_text_only_floor(mae, fusion, margin=0.2)


@pytest.mark.slow
def test_learns_with_contrastive_multitask():
    data = tiny_synthetic()
    model = M3SA(**SMALL)
    mae, mean_mae = train_briefly(model, data, epochs=6, batch_size=16, learning_rate=5e-3)
    assert mae < 0.8 * mean_mae, (mae, mean_mae)


def test_auto_key_is_chosen_recorded_and_reloaded(bench, tmp_path):
    keras.utils.set_random_seed(0)
    model = M3SA(**SMALL, key_modality="auto", key_warmup_epochs=2)
    batch = small_batch(bench["test"], 6)
    warm = model(batch)
    # Warm-up: the prediction is the mean of the three key branches.
    feats, masks = {}, {}
    for m in MODALITIES:
        feats[m], _ = model.extractors[m](batch[m], mask=batch[f"{m}_mask"])
        masks[m] = batch[f"{m}_mask"]
    branch = {k: np.asarray(model.fused_heads[k](model.fusions[k](feats, masks=masks))) for k in MODALITIES}
    np.testing.assert_allclose(np.asarray(warm["sentiment"]), np.mean(list(branch.values()), 0), atol=1e-5)

    valid = bench["valid"].to_tf_dataset(64)
    callbacks = model.training_callbacks(validation_data=valid)
    assert len(callbacks) == 1 and isinstance(callbacks[0], KeyModalitySelector)
    selector = callbacks[0]
    selector.set_model(model)
    selector.on_epoch_end(0)  # before the end of the warm-up: nothing happens
    assert model.selected_key_modality is None and model.get_config()["selected_key_modality"] is None
    selector.on_epoch_end(1)
    chosen = model.get_config()["selected_key_modality"]
    assert chosen == selector.chosen and chosen in MODALITIES
    scores = model.get_config()["key_selection_scores"]
    assert chosen == max(scores, key=scores.get)
    # The scores are the correlations of each head with the overall label.
    y = bench["valid"].targets["sentiment"].reshape(-1)
    pred = model.predict(valid, verbose=0)
    for m in MODALITIES:
        np.testing.assert_allclose(scores[m], np.corrcoef(pred[f"sentiment_{m}"].reshape(-1), y)[0, 1], atol=1e-5)
    # After the choice only the chosen branch makes the prediction.
    np.testing.assert_allclose(np.asarray(model(batch)["sentiment"]), branch[chosen], atol=1e-5)
    assert model.training_callbacks(valid) == []
    restored = assert_keras_roundtrip(model, batch, tmp_path)
    assert restored.selected_key_modality == chosen and restored.key_selection_scores == scores
    with pytest.raises(ValueError, match="validation_data"):
        M3SA(**SMALL, key_modality="auto").training_callbacks(None)


@pytest.mark.slow
def test_auto_key_switches_inside_fit(bench):
    keras.utils.set_random_seed(0)
    model = M3SA(**SMALL, key_modality="auto", key_warmup_epochs=1)
    valid = bench["valid"].to_tf_dataset(64)
    callbacks = model.training_callbacks(validation_data=valid)
    model.compile(optimizer=keras.optimizers.Adam(5e-3))
    model.fit(bench["train"].to_tf_dataset(64, shuffle=True), epochs=2, verbose=0, shuffle=False,
              callbacks=[EpochSetter()] + callbacks)
    chosen = model.selected_key_modality
    assert chosen == callbacks[0].chosen
    # The second epoch trained the chosen branch only (the retraced step).
    others = [k for k in MODALITIES if k != chosen]
    before = {w.path: np.array(w) for k in others for w in model.fusions[k].trainable_weights}
    model.fit(bench["train"].to_tf_dataset(64), epochs=1, verbose=0, shuffle=False)
    for k in others:
        for w in model.fusions[k].trainable_weights:
            np.testing.assert_array_equal(np.array(w), before[w.path])


def test_keras_and_savedmodel_roundtrips(bench, tmp_path):
    keras.utils.set_random_seed(0)
    model = M3SA(**SMALL)
    batch = small_batch(bench["train"], 4)
    model(batch)
    assert_keras_roundtrip(model, batch, tmp_path, train_data=bench["train"].to_tf_dataset(128))
    assert_savedmodel_roundtrip(model, batch, tmp_path)


def test_mixed_precision_outputs_float32(bench):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = M3SA(**SMALL)
        out = model(small_batch(bench["train"], 4))
    finally:
        keras.config.set_dtype_policy("float32")
    for k, v in out.items():
        assert v.dtype == "float32", k
        assert np.isfinite(np.asarray(v)).all(), k


@pytest.mark.slow
def test_trains_through_the_recipe_runner(tmp_path):
    import json
    import os

    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import train

    config = TrainConfig(
        model="m3sa", preset="sims", model_config={"hidden_dim": 10, "num_scales": 2, "key_modality": "auto",
                                                   "key_warmup_epochs": 1},
        epochs=2, batch_size=32, synthetic_sizes={"train": 64, "valid": 32, "test": 32},
        synthetic_unimodal_labels=True, output_dir=str(tmp_path / "run"), verbose=0,
    )
    results, model = train(config)
    assert np.isfinite(results["test"]["mae"])
    assert model.selected_key_modality in MODALITIES
    with open(os.path.join(tmp_path, "run", "metrics.json")) as f:
        assert json.load(f)["model"] == "m3sa"
    restored = keras.saving.load_model(os.path.join(tmp_path, "run", "model.keras"))
    assert restored.selected_key_modality == model.selected_key_modality
