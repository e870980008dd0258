import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.models import SSGDL
from keras_msa.models import get_model_class
from keras_msa.testing import assert_beats_text_only_floor
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import assert_savedmodel_roundtrip
from keras_msa.testing import fusion_synthetic
from keras_msa.testing import missing_modality
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.testing import train_briefly

SMALL = {"hidden_dim": 8, "num_heads": 2, "min_width": 4, "dropout": 0.0}


@pytest.fixture(scope="module")
def bench():
    return tiny_synthetic(train=256, valid=32, test=128)


def make(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    config = dict(SMALL)
    config.update(kwargs)
    return SSGDL(**config)


def wake_gammas(model, value=0.5):
    """Criss-cross attention starts as the identity (gamma = 0), which zeroes
    the gradients of its projections; a non-zero gamma exposes them."""
    for w in model.weights:
        if w.path.endswith("gamma") and len(w.shape) == 0:
            w.assign(value)


def avec_fixture(split):
    """A synthetic AVEC-2019-format split: the batch dict plus a PHQ-8 total
    (0-24 integers) driven by the features through the synthetic latents."""
    phq8 = np.clip(np.round(12.0 - 3.5 * split.targets["sentiment"]), 0, 24).astype("float32")
    return split.inputs, {"phq8": phq8}


def ragged(batch):
    batch = {k: v.copy() for k, v in batch.items()}
    for m in ("text", "audio", "vision"):
        batch[m + "_mask"][0, 7:] = False
        batch[m + "_mask"][1, 3:] = False
    return batch


def test_registry_structure_and_ablation_flags(bench):
    assert get_model_class("ssgdl") is SSGDL and SSGDL.registry_name == "ssgdl"
    batch = small_batch(bench["train"], 4)
    full = make()
    full(batch)
    assert [c.kernel.shape[:2] for c in full.csdsa.convs] == [(3, 3), (5, 5)]
    assert full.psmdl is not None and full.csdsa.map_layout == "cross"
    no_csdsa = make(use_csdsa=False)
    no_csdsa(batch)
    assert no_csdsa.csdsa is None and not any("csdsa" in w.path for w in no_csdsa.weights)
    no_psmdl = make(use_psmdl=False)
    no_psmdl(batch)
    assert no_psmdl.psmdl is None and not any("psmdl" in w.path for w in no_psmdl.weights)
    assert no_psmdl.lstm.weights[0].shape[0] == 8  # the LSTM reads f alone
    assert full.lstm.weights[0].shape[0] == 16  # [f, PS-MDL]
    single = make(dynamic_scale=False)
    single(batch)
    assert single.csdsa.kernel_sizes == (3,) and single.csdsa.selects == []
    timed = make(map_layout="time", discrepancy_mode="attention")
    timed(batch)
    assert timed.csdsa.modality_logits is None and timed.psmdl.mode == "attention"
    outs = [np.asarray(m(batch)["sentiment"]) for m in (full, no_csdsa, no_psmdl, single, timed)]
    assert all(o.shape == (4, 1) and np.isfinite(o).all() for o in outs)


def test_output_shapes_dtype_and_padding_invariance(bench):
    model = make()
    batch = ragged(small_batch(bench["train"], 4))
    model(batch)
    wake_gammas(model)
    out = np.asarray(model(batch)["sentiment"])
    assert out.shape == (4, 1) and model(batch)["sentiment"].dtype == "float32"
    changed = {k: v.copy() for k, v in batch.items()}
    for m in ("text", "audio", "vision"):
        changed[m][~batch[m + "_mask"]] = 1e4
    np.testing.assert_allclose(np.asarray(model(changed)["sentiment"]), out, atol=1e-5)


def test_unaligned_inputs(bench):
    data = tiny_synthetic(train=8, valid=8, test=8, aligned=False, audio_len=16, vision_len=10)["train"]
    model = make()
    batch = small_batch(data, 4)
    assert batch["audio"].shape[1] == 16 and batch["vision"].shape[1] == 10
    assert np.isfinite(np.asarray(model(batch)["sentiment"])).all()


def test_missing_modalities_give_finite_outputs(bench):
    model = make()
    batch = small_batch(bench["train"], 4)
    model(batch)
    wake_gammas(model)
    full = np.asarray(model(batch)["sentiment"])
    for m in ("text", "audio", "vision"):
        out = np.asarray(model(missing_modality(batch, m))["sentiment"])
        assert np.isfinite(out).all()
        assert not np.allclose(out, full)
    every = batch
    for m in ("text", "audio", "vision"):
        every = missing_modality(every, m)
    assert np.isfinite(np.asarray(model(every, training=True)["sentiment"])).all()


def test_gradients_reach_every_weight(bench):
    model = make()
    batch = small_batch(bench["train"], 8)
    y = {"sentiment": bench["train"].targets["sentiment"][:8]}
    model(batch)
    wake_gammas(model)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, y, model(batch, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    for w, g in zip(model.trainable_weights, grads):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path
        if w.path.endswith("key_bias"):
            # q . (k_j + b) adds q . b to every logit of a query's row, which
            # the softmax cancels: the key bias's gradient is 0 up to
            # round-off, whether it comes out as exactly 0 or as noise.
            continue
        assert np.abs(np.asarray(g)).max() > 0, w.path


def test_sentiment_loss_is_mse(bench):
    model = make()
    batch = small_batch(bench["train"], 8)
    y = {"sentiment": bench["train"].targets["sentiment"][:8]}
    pred = model(batch)
    expected = np.square(np.asarray(pred["sentiment"]) - y["sentiment"]).mean()
    np.testing.assert_allclose(float(model.compute_loss(batch, y, pred)), expected, rtol=1e-5)


@pytest.fixture(scope="module")
def fusion():
    return fusion_synthetic(train=256, valid=32)


def test_learns_to_fuse_beyond_the_text_only_floor(fusion):
    """Audio and vision carry as much of the label as the text, so only a
    model that reads them gets far below the best text-only MAE (trained on
    the same data with audio and vision missing, SSGDL stays above it)."""
    model = make(hidden_dim=16)
    mae, mean_mae = train_briefly(model, fusion, epochs=6, learning_rate=3e-3)
    assert mae < 0.85 * mean_mae, (mae, mean_mae)
    assert_beats_text_only_floor(mae, fusion, margin=0.3)


def test_phq8_head_and_one_minus_ccc_loss(bench):
    model = make(task="phq8")
    x, y = avec_fixture(bench["train"])
    batch = {k: v[:16] for k, v in x.items()}
    y = {k: v[:16] for k, v in y.items()}
    pred = model(batch)
    assert set(pred) == {"sentiment", "phq8"}
    assert pred["phq8"].dtype == "float32" and pred["phq8"].shape == (16, 1)
    np.testing.assert_allclose(np.asarray(pred["phq8"]), 25 * np.asarray(pred["sentiment"]), rtol=1e-6)
    p = np.asarray(pred["phq8"], np.float64).ravel() / 25
    t = y["phq8"].astype(np.float64).ravel() / 25
    ccc = 2 * np.mean((p - p.mean()) * (t - t.mean())) / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)
    np.testing.assert_allclose(float(model.compute_loss(batch, y, pred)), 1 - ccc, atol=1e-5)
    with pytest.raises(KeyError, match="'phq8'"):
        model.compute_loss(batch, {"sentiment": y["phq8"]}, pred)


@pytest.mark.slow
def test_keras_and_savedmodel_roundtrips(bench, tmp_path):
    """One export covers both heads: the PHQ-8 model also returns "sentiment"."""
    model = make(task="phq8")
    batch = ragged(small_batch(bench["train"], 4))
    model(batch)
    wake_gammas(model, 0.3)
    x, y = avec_fixture(bench["train"])
    train_data = tf.data.Dataset.from_tensor_slices((x, y)).batch(64).take(2)
    restored = assert_keras_roundtrip(model, batch, tmp_path, train_data=train_data)
    assert restored.get_config() == model.get_config()
    assert_savedmodel_roundtrip(model, batch, tmp_path)


def test_mixed_precision_outputs_float32(bench):
    batch = small_batch(bench["train"], 4)
    model = make(task="phq8", dtype="mixed_float16")
    out = model(batch, training=True)
    assert out["sentiment"].dtype == "float32" and out["phq8"].dtype == "float32"
    assert np.isfinite(np.asarray(out["phq8"])).all()


def test_presets():
    assert set(SSGDL.presets) == {"mosi", "mosei", "sims", "avec2019"}
    mosi = SSGDL.from_preset("mosi")
    assert (mosi.hidden_dim, mosi.num_heads, mosi.kernel_sizes, mosi.num_loops) == (128, 8, (3, 5), 2)
    assert (mosi.task, mosi.task_loss, mosi.reduction, mosi.min_width) == ("sentiment", "mse", 16, 32)
    avec = SSGDL.from_preset("avec2019", hidden_dim=16)
    assert avec.task == "phq8" and avec.hidden_dim == 16 and avec.modalities == ("audio", "vision")
    clone = SSGDL.from_config(avec.get_config())
    assert clone.get_config() == avec.get_config()
    with pytest.raises(ValueError, match="no preset"):
        SSGDL.from_preset("iemocap")


def test_two_modalities_anchor_on_the_first(bench):
    """AVEC 2019 as converted by default has audio and vision only: audio is
    the anchor timeline, the CS-DSA map has 2 rows, PS-MDL 2 secondaries."""
    model = make(task="phq8", modalities=("audio", "vision"))
    batch = ragged(small_batch(bench["train"], 4))
    del batch["text"], batch["text_mask"]
    out = model(batch)
    assert out["phq8"].shape == (4, 1) and np.isfinite(np.asarray(out["phq8"])).all()
    assert model.csdsa.modality_logits.shape == (2,) and len(model.psmdl.cross_attentions) == 2
    assert sorted(model.aligners) == ["vision"] and not any("text" in w.path for w in model.weights)
    wake_gammas(model)
    ref = np.asarray(model(batch)["phq8"])
    changed = {k: v.copy() for k, v in batch.items()}
    for m in ("audio", "vision"):
        changed[m][~batch[m + "_mask"]] = 1e4
    np.testing.assert_allclose(np.asarray(model(changed)["phq8"]), ref, atol=1e-4)
    assert SSGDL.from_config(model.get_config()).modalities == ("audio", "vision")
    with pytest.raises(ValueError, match="modalities"):
        SSGDL(modalities=("text", "text"))


def test_clear_errors(bench):
    # Built first: Keras warns when the call that would build a model fails.
    model = make()
    model(small_batch(bench["train"], 2))
    batch = small_batch(bench["train"], 2)
    del batch["vision"]
    with pytest.raises(KeyError, match="'vision'"):
        model(batch)
    with pytest.raises(ValueError, match="task 'emotions'"):
        SSGDL(task="emotions")
    flat = small_batch(bench["train"], 2)
    flat["audio"] = flat["audio"][:, 0]
    with pytest.raises(ValueError, match=r"'audio' must be \[batch, time, dim\]"):
        model(flat)


@pytest.mark.slow
def test_depression_run_through_the_recipe_runner_learns(bench, tmp_path):
    """`recipes/train.py --model=ssgdl --model_config='{"task": "phq8"}'` goes
    through this runner: with PHQ-8 targets it trains on 1 - CCC and reports
    the AVEC metrics (CCC, RMSE, MAE on 0-24); the fixture's PHQ-8 is driven
    by the features, so the model must beat the mean predictor."""
    import json
    import os

    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import train

    def dataset(split, shuffle):
        x, y = avec_fixture(bench[split])
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        return (ds.shuffle(len(bench[split]), seed=0) if shuffle else ds).batch(32)

    datasets = {"train": dataset("train", True), "valid": dataset("valid", False), "test": dataset("test", False)}
    info = {"dataset": "avec_fixture", "scale": "mosi", "sizes": {s: len(bench[s]) for s in datasets}}
    config = TrainConfig(
        model="ssgdl",
        preset="avec2019",
        # This fixture carries text (the sentiment signal is mostly there);
        # the avec2019 preset reads audio and vision only, as converted AVEC.
        model_config=dict(SMALL, hidden_dim=16, modalities=("text", "audio", "vision")),
        epochs=6,
        learning_rate=3e-3,
        batch_size=32,
        output_dir=str(tmp_path / "run"),
        verbose=0,
    )
    results, model = train(config, datasets=datasets, info=info)
    assert isinstance(model, SSGDL) and model.task == "phq8" and model.hidden_dim == 16
    assert results["task"] == "phq8" and set(results["test"]) == {"ccc", "rmse", "mae"}
    t = avec_fixture(bench["test"])[1]["phq8"].ravel()
    mean_mae = np.abs(t - avec_fixture(bench["train"])[1]["phq8"].mean()).mean()
    assert results["test"]["ccc"] > 0.5, results["test"]
    assert results["test"]["mae"] < mean_mae, (results["test"], mean_mae)
    with open(tmp_path / "run" / "metrics.json") as f:
        assert json.load(f)["task"] == "phq8"
    assert os.path.exists(tmp_path / "run" / "model.keras")


@pytest.mark.slow
def test_depression_on_avec_format_fixture_through_train_recipe(tmp_path):
    """The AVEC 2019 path end to end, through the command-line recipes: an
    AVEC-format directory (label split CSVs, openSMILE / OpenFace feature
    CSVs) with a known PHQ-8 signal, `recipes/convert.py --format=avec`, then
    `recipes/train.py --model=ssgdl --preset=avec2019` (1 - CCC on PHQ-8 / 25).
    It must beat the mean predictor on CCC (the mean's CCC is 0) and on MAE
    (0-24 scale)."""
    import json
    import os
    import subprocess
    import sys

    from keras_msa.data.avec import write_synthetic_avec

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")

    def recipe(name, *args):
        proc = subprocess.run([sys.executable, os.path.join(root, "recipes", name), *args],
                              capture_output=True, text=True, env=env, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    raw, data, out = tmp_path / "avec", tmp_path / "avec_tfr", tmp_path / "run"
    labels = write_synthetic_avec(str(raw), n_train=160, n_dev=40, n_test=40, seed=0)
    recipe("convert.py", "--format=avec", f"--input={raw}", f"--output={data}", "--noprogress")
    recipe("train.py", "--model=ssgdl", "--preset=avec2019", f"--data={data}", f"--output_dir={out}",
           '--model_config={"hidden_dim": 16, "num_heads": 2, "min_width": 4}',
           "--epochs=12", "--patience=12", "--learning_rate=3e-3", "--batch_size=32", "--verbose=0")
    with open(out / "metrics.json") as f:
        results = json.load(f)
    assert results["task"] == "phq8" and set(results["test"]) == {"ccc", "rmse", "mae"}
    train_mean = np.mean(list(labels["train"].values()))
    test = np.array(list(labels["test"].values()), np.float64)
    mean_mae = np.abs(test - train_mean).mean()
    assert results["test"]["ccc"] > 0.3, results["test"]
    assert results["test"]["mae"] < mean_mae, (results["test"], mean_mae)
