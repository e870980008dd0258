import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.models import MulG
from keras_msa.models import get_model_class
from keras_msa.testing import assert_beats_text_only_floor
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import assert_savedmodel_roundtrip
from keras_msa.testing import fusion_synthetic
from keras_msa.testing import missing_modality
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.testing import train_briefly

# One GRU layer per block keeps graph tracing (the bulk of the test time) short;
# the layer tests cover deeper stacks.
SMALL = {"hidden_dim": 8, "num_layers": 1}


@pytest.fixture(scope="module")
def bench():
    return tiny_synthetic(train=256, valid=32, test=128)


@pytest.fixture(scope="module")
def unaligned():
    return tiny_synthetic(train=8, valid=8, test=8, aligned=False, audio_len=16, vision_len=10)["train"]


def make(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    config = dict(SMALL)
    config.update(kwargs)
    return MulG(**config)


def emotion_labels(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, size=(n, 4)).astype("float32")


def test_registry_and_structure():
    assert get_model_class("mulg") is MulG and MulG.registry_name == "mulg"
    model = make()
    assert sorted(b.name for b in model.blocks) == sorted(
        ["text_from_audio", "text_from_vision", "audio_from_text", "audio_from_vision",
         "vision_from_text", "vision_from_audio"]
    )
    assert all(b.use_attention for b in model.blocks)


def test_output_shapes_dtype_and_padding_invariance(bench):
    model = make()
    batch = small_batch(bench["train"], 4)
    # Give the samples different lengths so padding is exercised.
    for m in ("text", "audio", "vision"):
        batch[m + "_mask"] = batch[m + "_mask"].copy()
        batch[m + "_mask"][0, 7:] = False
        batch[m + "_mask"][1, 3:] = False
    out = model(batch)
    assert set(out) == {"sentiment"}
    assert out["sentiment"].shape == (4, 1) and out["sentiment"].dtype == "float32"
    changed = {k: v.copy() for k, v in batch.items()}
    for m in ("text", "audio", "vision"):
        changed[m][~batch[m + "_mask"]] = 123.0
    np.testing.assert_allclose(
        np.asarray(model(changed)["sentiment"]), np.asarray(out["sentiment"]), atol=1e-5
    )


def test_padding_invariance_with_wide_projection_kernel(bench):
    model = make(kernel_size=3)
    batch = small_batch(bench["train"], 3)
    batch["audio_mask"] = batch["audio_mask"].copy()
    batch["audio_mask"][:, 6:] = False
    out = np.asarray(model(batch)["sentiment"])
    changed = dict(batch)
    changed["audio"] = batch["audio"].copy()
    changed["audio"][:, 6:] = -50.0
    np.testing.assert_allclose(np.asarray(model(changed)["sentiment"]), out, atol=1e-5)


def test_unaligned_inputs_and_attention_maps(unaligned):
    model = make()
    batch = small_batch(unaligned, 4)
    assert model(batch)["sentiment"].shape == (4, 1)
    maps = model.attention_maps(batch)
    lengths = {m: batch[m].shape[1] for m in ("text", "audio", "vision")}
    assert len(maps) == 6
    for name, attn in maps.items():
        source, target = name.split("_from_")
        assert attn.shape == (4, lengths[source], lengths[target]) and attn.dtype == "float32"
        attn = np.asarray(attn)
        t_mask = batch[target + "_mask"]
        # Rows are distributions over the real target steps only.
        np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-5)
        assert np.all(attn[~np.broadcast_to(t_mask[:, None, :], attn.shape)] == 0)


def test_missing_modalities_give_finite_outputs(bench):
    model = make()
    batch = small_batch(bench["train"], 4)
    full = np.asarray(model(batch)["sentiment"])
    for m in ("text", "audio", "vision"):
        out = np.asarray(model(missing_modality(batch, m))["sentiment"])
        assert np.isfinite(out).all()
        assert not np.allclose(out, full)  # a modality that is present matters
    every = batch
    for m in ("text", "audio", "vision"):
        every = missing_modality(every, m)
    assert np.isfinite(np.asarray(model(every)["sentiment"])).all()
    maps = model.attention_maps(missing_modality(batch, "audio"))
    np.testing.assert_array_equal(np.asarray(maps["text_from_audio"]), 0.0)


def test_gradients_reach_every_weight(bench):
    model = make()
    batch = small_batch(bench["train"], 8)
    y = {"sentiment": bench["train"].targets["sentiment"][:8]}
    model(batch)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, y, model(batch, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    for w, g in zip(model.trainable_weights, grads):
        assert g is not None and np.abs(np.asarray(g)).max() > 0, w.path


def test_ablation_flags(bench):
    batch = small_batch(bench["train"], 4)
    no_attn = make(cross_modal_attention=False)
    assert [b.name for b in no_attn.blocks] == ["text_unimodal", "audio_unimodal", "vision_unimodal"]
    assert no_attn(batch)["sentiment"].shape == (4, 1)
    assert no_attn.attention_maps(batch) == {}
    assert not any("bilinear" in w.path for w in no_attn.weights)
    two = make(modalities=("text", "audio"))
    assert sorted(b.name for b in two.blocks) == ["audio_from_text", "text_from_audio"]
    # A dropped modality is never read: the batch may lack it entirely.
    text_only = make(modalities=("text",))
    reduced = {k: v for k, v in batch.items() if k.startswith("text")}
    assert text_only(reduced)["sentiment"].shape == (4, 1)
    assert [b.name for b in text_only.blocks] == ["text_unimodal"]
    for bad in [(), ("text", "text"), ("speech",)]:
        with pytest.raises(ValueError, match="modalities"):
            MulG(modalities=bad)


def test_residual_variant_reaches_every_block(bench):
    # The variants' math is checked against NumPy in the layer tests.
    for residual in ("post_ln", "pre_ln", "none"):
        assert all(b.residual == residual for b in MulG(residual=residual).blocks)
    model = make(residual="residual", num_layers=2)
    out = model(small_batch(bench["train"], 2))["sentiment"]
    assert np.isfinite(np.asarray(out)).all()
    assert all(b.residual == "residual" and b.num_layers == 2 for b in model.blocks)


@pytest.fixture(scope="module")
def fusion():
    return fusion_synthetic(train=256, valid=32)


def fused_mae(fusion, seed=0, **kwargs):
    """Test MAE (and the mean predictor's) of MulG, hidden 16, trained
    briefly on `fusion` with `seed` (weights, shuffling, dropout)."""
    # Padding and missing modalities slow MulG's GRUs down: with hidden 12
    # and 8 epochs one seed in three ended just below the floor (gap 0.02).
    model = make(seed=seed, hidden_dim=16, **kwargs)
    return train_briefly(model, fusion, epochs=12, learning_rate=5e-3, seed=seed)


@pytest.fixture(scope="module")
def full_maes(fusion):
    """The full model's results for seeds 0 and 1 (shared by the floor and
    the ablation tests)."""
    return [fused_mae(fusion, seed) for seed in (0, 1)]


def test_learns_to_fuse_beyond_the_text_only_floor(fusion, full_maes):
    """Audio and vision carry as much of the label as the text, so only a
    model that reads them gets far below the best text-only MAE (trained on
    the same data with audio and vision missing, MulG stays at the floor)."""
    mae, mean_mae = full_maes[0]
    assert mae < 0.85 * mean_mae, (mae, mean_mae)
    assert_beats_text_only_floor(mae, fusion, margin=0.15)


@pytest.mark.slow
def test_cross_modal_attention_beats_its_ablation(fusion, full_maes):
    """The paper's main component against its own ablation
    (`cross_modal_attention=False`: one unimodal GRU per modality, the
    paper's "alternative GRU module"), trained identically, seeds 0 and 1.

    On this split the sign of the text's contribution flips when the tone
    disagrees strongly (the benchmark's sarcasm rule), and the label weighs
    the three modalities equally: attention lets each modality's GRU read
    the others step by step, where the ablation can only combine three
    separately pooled states in its head. Measured (12 epochs, hidden 16),
    seeds 0-5: full 0.751, 0.777, 0.698, 0.768, 0.717, 0.722 (mean 0.739)
    vs ablation 0.799, 0.808, 0.810, 0.817, 0.739, 0.827 (mean 0.800): the
    full model better in every seed, by 0.021 to 0.112."""
    ablated = [fused_mae(fusion, seed, cross_modal_attention=False)[0] for seed in (0, 1)]
    full = [mae for mae, _ in full_maes]
    assert all(f < a for f, a in zip(full, ablated)), (full, ablated)
    assert np.mean(full) < np.mean(ablated) - 0.02, (full, ablated)


@pytest.mark.slow
def test_keras_and_savedmodel_roundtrips(bench, tmp_path):
    model = make()
    batch = small_batch(bench["train"], 4)
    model(batch)
    restored = assert_keras_roundtrip(
        model, batch, tmp_path, train_data=bench["train"].to_tf_dataset(64).take(2)
    )
    assert restored.get_config() == model.get_config()
    assert_savedmodel_roundtrip(model, batch, tmp_path)


@pytest.mark.slow
def test_savedmodel_with_free_time_and_emotion_head(unaligned, tmp_path):
    from keras_msa.export import export_saved_model
    from keras_msa.export import load_serving_fn
    from keras_msa.export import serve_numpy

    model = make(task="emotions")
    batch = small_batch(unaligned, 4)
    model(batch)
    export_dir = str(tmp_path / "sm" / "1")
    export_saved_model(model, export_dir, batch)
    serve = load_serving_fn(export_dir)
    shorter = {k: v[:, :5] for k, v in batch.items()}  # another sequence length
    for b in (batch, shorter):
        served = serve_numpy(serve, b)
        expected = model(b)
        assert set(served) == {"sentiment", "emotions"}
        for k in served:
            np.testing.assert_allclose(served[k], np.asarray(expected[k]), atol=1e-5, rtol=0)


def test_presets_follow_table_1():
    assert set(MulG.presets) == {"mosi", "mosei", "iemocap"}
    mosi = MulG.from_preset("mosi")
    assert (mosi.hidden_dim, mosi.text_dropout, mosi.attention_dropout, mosi.output_dropout) == (40, 0.2, 0.1, 0.1)
    mosei = MulG.from_preset("mosei", residual="post_ln")
    assert (mosei.text_dropout, mosei.attention_dropout, mosei.residual) == (0.3, 0.1, "post_ln")
    iemocap = MulG.from_preset("iemocap")
    assert (iemocap.task, iemocap.text_dropout, iemocap.attention_dropout) == ("emotions", 0.3, 0.2)
    clone = MulG.from_config(iemocap.get_config())
    assert clone.get_config() == iemocap.get_config()
    with pytest.raises(ValueError, match="no preset"):
        MulG.from_preset("sims")


def test_regression_loss_is_mae_by_default(bench):
    model = make()
    batch = small_batch(bench["train"], 8)
    y = {"sentiment": bench["train"].targets["sentiment"][:8]}
    pred = model(batch)
    loss = float(model.compute_loss(batch, y, pred))
    np.testing.assert_allclose(loss, np.abs(np.asarray(pred["sentiment"]) - y["sentiment"]).mean(), rtol=1e-5)


def _np_emotion_ce(logits, labels):
    logits = logits.astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -(labels * logp[..., 1] + (1 - labels) * logp[..., 0]).mean()


def test_emotion_head_and_loss(bench):
    model = make(task="emotions")
    batch = small_batch(bench["train"], 8)
    pred = model(batch)
    assert pred["emotions"].shape == (8, 4, 2) and pred["emotions"].dtype == "float32"
    labels = emotion_labels()
    logits = np.asarray(pred["emotions"])
    expected = _np_emotion_ce(logits, labels)
    np.testing.assert_allclose(float(model.compute_loss(batch, {"emotions": labels}, pred)), expected, rtol=1e-5)
    # MulT's one-hot layout [B, 4, 2] gives the same loss.
    onehot = np.stack([1 - labels, labels], -1)
    np.testing.assert_allclose(float(model.compute_loss(batch, {"emotions": onehot}, pred)), expected, rtol=1e-5)
    # All-equal labels (every emotion absent) are a valid batch too.
    zeros = np.zeros_like(labels)
    np.testing.assert_allclose(
        float(model.compute_loss(batch, {"emotions": zeros}, pred)), _np_emotion_ce(logits, zeros), rtol=1e-5
    )
    # A sentiment target next to the emotions adds its task loss.
    y_sent = bench["train"].targets["sentiment"][:8]
    both = float(model.compute_loss(batch, {"emotions": labels, "sentiment": y_sent}, pred))
    np.testing.assert_allclose(both, expected + np.abs(np.asarray(pred["sentiment"]) - y_sent).mean(), rtol=1e-5)
    with pytest.raises(KeyError, match="'emotions'"):
        model.compute_loss(batch, {"sentiment": y_sent}, pred)


@pytest.mark.slow
def test_emotion_head_learns_with_fit(bench):
    """The IEMOCAP head trains through `fit` (its objective is `compute_loss`):
    emotions derived from the synthetic latents become predictable."""
    train, test = bench["train"], bench["test"]

    def with_emotions(split):
        lat = split.latents
        emo = np.stack([lat["s_t"] > 0.5, lat["s_t"] < -0.5, lat["s_a"] > 0.5, np.abs(lat["s_v"]) < 0.5], -1)
        return split.inputs, {"emotions": emo.astype("float32")}

    keras.utils.set_random_seed(0)
    model = make(task="emotions", hidden_dim=12)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    x, y = with_emotions(train)
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=6, verbose=0, shuffle=False)
    xt, yt = with_emotions(test)
    pred = np.asarray(model.predict(tf.data.Dataset.from_tensor_slices(xt).batch(64), verbose=0)["emotions"])
    acc = (pred.argmax(-1) == yt["emotions"]).mean(0)
    majority = np.maximum(yt["emotions"].mean(0), 1 - yt["emotions"].mean(0))
    assert acc.mean() > majority.mean() + 0.05, (acc, majority)


def test_mixed_precision_outputs_float32(bench):
    batch = small_batch(bench["train"], 4)
    keras.utils.set_random_seed(0)
    model = MulG(hidden_dim=8, task="emotions", dtype="mixed_float16")
    out = model(batch)
    assert out["sentiment"].dtype == "float32" and out["emotions"].dtype == "float32"
    assert np.isfinite(np.asarray(out["sentiment"])).all()
    assert all(v.dtype == "float32" for v in model.attention_maps(batch).values())


def test_clear_errors(bench):
    # Built first: Keras warns when the call that would build a model fails.
    model = make()
    model(small_batch(bench["train"], 2))
    batch = small_batch(bench["train"], 2)
    del batch["vision"]
    with pytest.raises(KeyError, match="'vision'"):
        model(batch)
    with pytest.raises(ValueError, match="task 'ordinal'"):
        MulG(task="ordinal")
    flat = small_batch(bench["train"], 2)
    flat["audio"] = flat["audio"][:, 0]
    with pytest.raises(ValueError, match=r"'audio' must be \[batch, time, dim\]"):
        model(flat)


@pytest.mark.slow
def test_trains_through_the_recipe_runner(tmp_path):
    """`recipes/train.py --model=mulg` goes through this runner: the whole
    objective, early stopping, model.keras and metrics.json."""
    import json
    import os

    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import train

    config = TrainConfig(
        model="mulg",
        preset="mosi",
        model_config={"hidden_dim": 8, "num_layers": 1},
        epochs=2,
        batch_size=32,
        synthetic_sizes={"train": 64, "valid": 32, "test": 32},
        output_dir=str(tmp_path / "run"),
        verbose=0,
    )
    results, model = train(config)
    assert isinstance(model, MulG) and model.hidden_dim == 8 and model.text_dropout == 0.2
    assert np.isfinite(results["test"]["mae"])
    assert os.path.exists(tmp_path / "run" / "model.keras")
    with open(tmp_path / "run" / "metrics.json") as f:
        assert "test" in json.load(f)


def test_emotions_without_a_sentiment_target_train_without_a_missing_gradient_warning(bench):
    import warnings

    batch = {k: np.asarray(v)[:8] for k, v in bench["train"].inputs.items()}
    model = make(task="emotions", hidden_dim=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    emotions = {"emotions": np.random.default_rng(0).integers(0, 2, (8, 4)).astype("float32")}
    head_before = np.asarray(model(batch)["sentiment"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.train_on_batch(batch, emotions)
    # The sentiment head has no target: its (zero) gradient leaves it unchanged.
    kernel = np.array(model.sentiment_head.kernel)
    model.train_on_batch(batch, emotions)
    np.testing.assert_array_equal(np.asarray(model.sentiment_head.kernel), kernel)
    assert head_before.shape == (8, 1)
