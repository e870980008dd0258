"""CH-SIMS runs report the ordinal metrics on both of seed 001's level sets:
5 levels (`qwk`, `jump2plus`, `mean_abs_jump`) and 3 levels (`..._l3`), in
`task_metrics`, in `metrics.json` of a training run and in the evaluate
recipe's report; MOSI runs get no `_l3` keys."""

import json
import os

import numpy as np
import pytest

from keras_msa.training.evaluation import task_metrics


def numpy_ordinal_3(pred, true):
    """Independent 3-level ordinal metrics: levels round(clip(y, -1, 1)),
    quadratic weighted kappa from the confusion matrix."""
    lp = np.round(np.clip(pred, -1, 1)).astype(int) + 1
    lt = np.round(np.clip(true, -1, 1)).astype(int) + 1
    observed = np.zeros((3, 3))
    for a, b in zip(lt, lp):
        observed[a, b] += 1
    expected = np.outer(observed.sum(1), observed.sum(0)) / len(lp)
    w = (np.arange(3)[:, None] - np.arange(3)[None, :]) ** 2
    jump = np.abs(lp - lt)
    return {
        "qwk_l3": 1 - (w * observed).sum() / (w * expected).sum(),
        "jump2plus_l3": np.mean(jump >= 2),
        "mean_abs_jump_l3": np.mean(jump),
    }


def test_task_metrics_adds_three_level_ordinal_metrics_on_sims_only():
    rng = np.random.default_rng(0)
    true = rng.uniform(-1, 1, 200).astype("float32")
    pred = (true + rng.normal(0, 0.6, 200)).astype("float32")
    out = task_metrics({"sentiment": pred[:, None]}, {"sentiment": true[:, None]}, scale="sims")
    for key, value in numpy_ordinal_3(pred, true).items():
        np.testing.assert_allclose(out[key], value, rtol=1e-9, atol=1e-12, err_msg=key)
    # The 5-level ones stay under their names (and differ from the 3-level ones).
    assert {"qwk", "jump2plus", "mean_abs_jump"} <= set(out) and out["qwk"] != out["qwk_l3"]
    mosi = task_metrics({"sentiment": pred[:, None]}, {"sentiment": true[:, None]}, scale="mosi")
    assert not any(k.endswith("_l3") for k in mosi)


@pytest.mark.slow
def test_train_and_evaluate_report_three_level_metrics_on_sims(tmp_path):
    import keras

    from keras_msa.training.evaluation import predict_dataset
    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import evaluate_saved_model
    from keras_msa.training.runner import load_data
    from keras_msa.training.runner import train

    synthetic = {"seq_len": 8, "min_len": 8, "text_dim": 8, "window": 4, "offset": 1, "compute_text_only_floor": False}
    config = TrainConfig(
        model="lfdnn", model_config={"hidden_dims": {"text": 4, "audio": 4, "vision": 4}, "fusion_dim": 4},
        epochs=1, batch_size=16, learning_rate=0.01, scale="sims",
        synthetic_sizes={"train": 32, "valid": 16, "test": 24}, synthetic_options=synthetic,
        output_dir=str(tmp_path / "run"), verbose=0,
    )
    results, _ = train(config)
    with open(os.path.join(config.output_dir, "metrics.json")) as f:
        saved = json.load(f)
    model = keras.saving.load_model(os.path.join(config.output_dir, "model.keras"))
    datasets, _ = load_data(config, splits=("test",), shuffle_train=False)
    preds, targets = predict_dataset(model, datasets["test"])
    expected = numpy_ordinal_3(preds["sentiment"].reshape(-1), targets["sentiment"].reshape(-1))
    for key, value in expected.items():
        np.testing.assert_allclose(saved["test"][key], value, rtol=1e-6, err_msg=key)
        np.testing.assert_allclose(results["test"][key], value, rtol=1e-6, err_msg=key)
    report = evaluate_saved_model(os.path.join(config.output_dir, "model.keras"), config, "test")
    for key, value in expected.items():
        np.testing.assert_allclose(report["metrics"][key], value, rtol=1e-6, err_msg=key)
