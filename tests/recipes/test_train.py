"""recipes/train.py and the runner: reproducibility, mixed precision, seeds,
history, and resuming after SIGKILL."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_msa.training.checkpointing import CheckpointDirectory
from keras_msa.training.checkpointing import latest_checkpoint
from keras_msa.training.history import read_history_csv
from keras_msa.training.runner import TrainConfig
from keras_msa.training.runner import train
from keras_msa.training.runner import train_seeds

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYNTHETIC = {"seq_len": 12, "min_len": 12, "text_dim": 16, "window": 4, "offset": 1,
             "compute_text_only_floor": False}
MODEL = {"hidden_dims": {"text": 8, "audio": 4, "vision": 4}, "fusion_dim": 8}


def tiny_config(tmp_path, **kw):
    base = dict(model="lfdnn", model_config=MODEL, epochs=3, batch_size=16, learning_rate=0.01,
                synthetic_sizes={"train": 96, "valid": 32, "test": 32}, synthetic_options=SYNTHETIC,
                output_dir=str(tmp_path / "run"), verbose=0)
    base.update(kw)
    return TrainConfig(**base)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update({"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"})
    env.pop("TF_CONFIG", None)
    return env


def _cli(tmp_path, name, extra):
    return [sys.executable, os.path.join(ROOT, "recipes", "train.py"), f"--output_dir={tmp_path / name}",
            "--batch_size=16", "--learning_rate=0.01", "--verbose=0",
            f"--synthetic_options={json.dumps(SYNTHETIC)}", f"--model_config={json.dumps(MODEL)}"] + extra


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_same_seed_gives_same_metrics(tmp_path, loop):
    runs = []
    # The fit variant also runs another seed, to show that the check can fail.
    for i, seed in enumerate((1111, 1111, 1112) if loop == "fit" else (1111, 1111)):
        keras.backend.clear_session()
        config = tiny_config(tmp_path, seed=seed, loop=loop, output_dir=str(tmp_path / f"r{i}"))
        runs.append(train(config)[0])
    a, b = runs[:2]
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    h = [read_history_csv(os.path.join(r["output_dir"], "history.csv")) for r in runs]
    assert h[0]["loss"] == h[1]["loss"] and h[0]["val_mae"] == h[1]["val_mae"]
    if loop == "fit":
        assert runs[2]["test"]["mae"] != a["test"]["mae"]
    assert a["loop"] == loop and a["epochs_run"] == 3 and len(h[0]["epoch"]) == 3


def test_history_csv_columns(tmp_path):
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    results, _ = train(tiny_config(tmp_path, epochs=2))
    # Op determinism is switched on for the run only.
    assert tf_config.is_op_determinism_enabled() == before
    h = read_history_csv(os.path.join(results["output_dir"], "history.csv"))
    assert h["epoch"] == [1, 2]
    assert {"loss", "val_mae", "epoch_seconds"} <= set(h)
    assert h["val_mae"][-1] == pytest.approx(results["valid"]["mae"], abs=1e-6) or results["best_epoch"] != 2


@pytest.mark.parametrize("policy,loop", [("mixed_float16", "fit"), ("mixed_bfloat16", "custom")])
def test_mixed_precision_run(tmp_path, policy, loop):
    results, model = train(tiny_config(tmp_path, mixed_precision=policy, loop=loop, epochs=2))
    assert keras.mixed_precision.global_policy().name == "float32"
    assert results["mixed_precision"] == policy and model.compute_dtype == policy.split("_")[1]
    assert all(np.isfinite(v) for v in results["test"].values() if isinstance(v, float))
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    loss = read_history_csv(os.path.join(results["output_dir"], "history.csv"))["loss"]
    assert np.all(np.isfinite(loss))


def test_train_seeds_writes_summary(tmp_path):
    config = tiny_config(tmp_path, epochs=1, output_dir=str(tmp_path / "seeds"))
    summary, runs = train_seeds(config, [1111, 1112])
    maes = [r["test"]["mae"] for r in runs]
    assert len(set(maes)) == 2
    s = summary["test"]["mae"]
    assert s["mean"] == pytest.approx(np.mean(maes)) and s["std"] == pytest.approx(np.std(maes, ddof=1))
    half = 12.706205 * np.std(maes, ddof=1) / np.sqrt(2)
    assert s["ci_low"] == pytest.approx(np.mean(maes) - half, rel=1e-6)
    on_disk = json.loads((tmp_path / "seeds" / "seeds_summary.json").read_text())
    assert on_disk["seeds"] == [1111, 1112] and on_disk["test"]["mae"]["values"] == maes
    md = (tmp_path / "seeds" / "seeds_summary.md").read_text()
    assert "| mae |" in md and "95% CI" in md
    for seed in (1111, 1112):
        assert (tmp_path / "seeds" / f"seed_{seed}" / "metrics.json").exists()
    with pytest.raises(ValueError, match="Seeds repeat"):
        train_seeds(config, [1, 1])


def test_configuration_errors(tmp_path):
    with pytest.raises(ValueError, match="keras-team/keras#20585"):
        train(tiny_config(tmp_path, strategy="multi_worker", loop="fit"))
    with pytest.raises(ValueError, match="custom loop"):
        train(tiny_config(tmp_path, loop="fit", checkpoint_every_steps=5))
    with pytest.raises(ValueError, match="Unknown precision policy"):
        train(tiny_config(tmp_path, mixed_precision="float8"))


@pytest.mark.slow
def test_seeds_flag(tmp_path):
    proc = subprocess.run(
        _cli(tmp_path, "s", ["--seeds=1111,1112", "--epochs=1",
                             '--synthetic_sizes={"train": 64, "valid": 32, "test": 32}']),
        capture_output=True, text=True, timeout=240, cwd=ROOT, env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| mae |" in proc.stdout
    summary = json.loads((tmp_path / "s" / "seeds_summary.json").read_text())
    assert summary["n_runs"] == 2 and summary["test"]["mae"]["n"] == 2


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    """A run killed with SIGKILL mid-epoch and restarted with the same command
    ends with the metrics of an uninterrupted run: equal to 1e-6 (the
    tolerance we state; on CPU with op determinism they are in fact equal)."""
    flags = ["--epochs=3", "--checkpoint_every_steps=1", "--patience=0",
             '--synthetic_sizes={"train": 320, "valid": 32, "test": 32}']  # 20 steps per epoch
    subprocess.run(_cli(tmp_path, "full", flags), check=True, capture_output=True, timeout=300,
                   cwd=ROOT, env=_env())
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())

    cmd = _cli(tmp_path, "killed", flags)
    ckpt_dir = tmp_path / "killed" / "checkpoints"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=_env())
    killed_at = None
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            latest = latest_checkpoint(str(ckpt_dir))
            if latest and int(os.path.basename(latest)[5:15]) >= 25:  # epoch 2, step 5
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = latest
                break
            time.sleep(0.005)
    finally:
        proc.wait(timeout=60)
    assert killed_at is not None, "the run finished or stalled before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "metrics.json").exists()
    latest = latest_checkpoint(str(ckpt_dir))
    _, meta = CheckpointDirectory.load(latest)
    assert meta["step_in_epoch"] > 0 and meta["epoch"] < 3, meta  # mid-epoch

    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert resumed["resumed_from"] == os.path.basename(latest)
    for split in ("valid", "test"):
        for k, v in full[split].items():
            assert resumed[split][k] == pytest.approx(v, abs=1e-6), (split, k)
    h_full = read_history_csv(str(tmp_path / "full" / "history.csv"))
    h_res = read_history_csv(str(tmp_path / "killed" / "history.csv"))
    assert h_res["epoch"] == h_full["epoch"] == [1, 2, 3]
    np.testing.assert_allclose(h_res["loss"], h_full["loss"], atol=1e-6, rtol=0)


def test_empty_or_tiny_validation_split_is_refused_before_the_first_epoch(tmp_path):
    config = tiny_config(tmp_path, synthetic_sizes={"train": 32, "valid": 1, "test": 8},
                         output_dir=str(tmp_path / "v1"))
    with pytest.raises(ValueError, match=r"validation split 'valid' of --data=synthetic holds 1 sample; .*"
                                         r"at least 2"):
        train(config)
    assert not (tmp_path / "v1" / "history.csv").exists()  # no epoch ran
    with pytest.raises(ValueError, match=r"--synthetic_sizes must be split sizes that are integers >= 1 \('valid'\)"):
        train(tiny_config(tmp_path, synthetic_sizes={"train": 32, "valid": 0, "test": 8}))
    # Datasets handed in without sizes are counted.
    from keras_msa.training.runner import load_data

    config = tiny_config(tmp_path, synthetic_sizes={"train": 32, "valid": 8, "test": 8})
    datasets, info = load_data(config)
    datasets["valid"] = datasets["valid"].take(0)
    info = dict(info, sizes={})
    with pytest.raises(ValueError, match=r"split 'valid' of --data=synthetic holds 0 samples"):
        train(config, datasets, info)
    # A training split too small to carve a validation split from (issue 15: never validate on test).
    with pytest.raises(ValueError, match=r"carving 2 for validation .* would leave none to train on"):
        train(config, {"train": datasets["train"].take(1).unbatch().take(2).batch(2)}, info)


def test_flags_that_cannot_make_a_run_are_named(tmp_path):
    from keras_msa.training.runner import check_config
    from keras_msa.training.runner import parse_json_flag

    with pytest.raises(ValueError, match=r"--synthetic_sizes is not valid JSON \(Expecting property name"):
        parse_json_flag("synthetic_sizes", "{train: 3}")
    with pytest.raises(ValueError, match=r"--model_config must be a JSON object; got list"):
        parse_json_flag("model_config", "[1, 2]")
    assert parse_json_flag("synthetic_sizes", "") is None
    bad = {"batch_size": 0, "epochs": -1, "learning_rate": float("nan"), "keep_checkpoints": 0,
           "synthetic_sizes": {"train": -4}, "model_config": [1]}
    for field, value in bad.items():
        with pytest.raises(ValueError, match=rf"^--{field} must be"):
            check_config(tiny_config(tmp_path, **{field: value}))
    with pytest.raises(ValueError, match=r"--synthetic_sizes must be split sizes that are integers >= 1 \('valid'\)"):
        train(tiny_config(tmp_path, synthetic_sizes={"train": 32, "valid": "many"}))



def test_output_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "taken").write_text("a file of the user's")
    with pytest.raises(NotADirectoryError, match=r"--output_dir=.*taken/run: .*taken is a file"):
        train(tiny_config(tmp_path, output_dir=str(tmp_path / "taken" / "run")))
    assert (tmp_path / "taken").read_text() == "a file of the user's"


def test_train_recipe_names_a_bad_json_flag(load_recipe):
    from absl import app
    from absl import flags

    module = load_recipe("train")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.py", "--synthetic_sizes={train: 64}"])
    with pytest.raises(app.UsageError, match=r"--synthetic_sizes is not valid JSON \(Expecting property name"):
        module.config_from_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.py", '--synthetic_sizes={"train": -4}'])
    with pytest.raises(app.UsageError, match=r"--synthetic_sizes must be split sizes that are integers >= 1"):
        module.config_from_flags()


def test_epoch_line_shows_loss_and_selection_metric_only(tmp_path, capsys):
    results, _ = train(tiny_config(tmp_path, epochs=2, verbose=1))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 2, lines
    assert re.fullmatch(r"epoch 1/2  loss \d+\.\d{4}  val_mae \d+\.\d{4} \*best\*", lines[0]), lines[0]
    assert re.fullmatch(r"epoch 2/2  loss \d+\.\d{4}  val_mae \d+\.\d{4}( \*best\*)?", lines[1]), lines[1]
    # The full metrics still go to history.csv.
    h = read_history_csv(os.path.join(results["output_dir"], "history.csv"))
    every = {f"val_{k}" for k in results["valid"]}
    assert len(every) > 5 and every <= set(h)


def test_epoch_line_shows_loss_terms_and_marks_improvements():
    from keras_msa.training.callbacks import EpochLine

    line = EpochLine(monitor="val_mae", mode="min", epochs=30)
    logs = {"loss": 0.812, "task_loss": 0.70, "mpr_loss": 0.11, "val_mae": 0.803, "val_corr": 0.5,
            "val_acc7": 0.3, "val_task_loss": 0.9}
    assert line.format_line(2, logs) == "epoch 3/30  loss 0.8120 (task 0.7000, mpr 0.1100)  val_mae 0.8030 *best*"
    assert line.format_line(3, dict(logs, val_mae=0.9)).endswith("val_mae 0.9000")
    assert line.format_line(4, dict(logs, val_mae=0.7)).endswith("*best*")
    acc = EpochLine(monitor="val_acc2", mode="max")
    assert acc.format_line(0, {"loss": 1.0, "val_acc2": 0.6}) == "epoch 1  loss 1.0000  val_acc2 0.6000 *best*"
    # A single term is the loss itself.
    assert acc.format_line(0, {"loss": 1.0, "task_loss": 1.0}) == "epoch 1  loss 1.0000"
    assert not acc.format_line(1, {"loss": 1.0, "val_acc2": 0.5}).endswith("*best*")


def test_tensorboard_dir_and_metrics_json_provenance(tmp_path):
    pytest.importorskip("tensorboard")
    import platform

    import tensorflow as tf

    import keras_msa

    tb = tmp_path / "tb"
    results, _ = train(tiny_config(tmp_path, epochs=2, tensorboard_dir=str(tb)))
    events = [os.path.join(d, f) for d, _, files in os.walk(tb) for f in files if "tfevents" in f]
    assert any(os.sep + "train" + os.sep in e for e in events), events
    assert any(os.sep + "validation" + os.sep in e for e in events), events
    # Each term of the objective reaches TensorBoard (train and validation) and history.csv.
    tags = {"train": set(), "validation": set()}
    for e in events:
        part = "train" if os.sep + "train" + os.sep in e else "validation"
        for record in tf.compat.v1.train.summary_iterator(e):
            tags[part].update(v.tag for v in record.summary.value)
    assert {"epoch_loss", "epoch_task_loss"} <= tags["train"], tags
    assert {"epoch_loss", "epoch_task_loss", "epoch_mae"} <= tags["validation"], tags
    with open(os.path.join(results["output_dir"], "history.csv")) as f:
        header = f.readline().strip().split(",")
    assert {"loss", "task_loss", "val_loss", "val_task_loss", "val_mae"} <= set(header), header

    with open(os.path.join(results["output_dir"], "metrics.json")) as f:
        saved = json.load(f)
    v = saved["versions"]
    assert v["tensorflow"] == tf.__version__ and v["keras"] == keras.__version__
    assert v["numpy"] == np.__version__ and v["python"] == platform.python_version()
    assert v["keras_msa"] == keras_msa.__version__ and "keras-hub" in v
    assert saved["machine"]["cpu"] and saved["machine"]["gpus"] == [
        tf.config.experimental.get_device_details(d).get("device_name") or d.name
        for d in tf.config.list_physical_devices("GPU")]
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert saved["git"]["commit"] == head.stdout.strip() and isinstance(saved["git"]["dirty"], bool)
    else:
        assert "git" not in saved


def test_git_info_commit_dirty_and_absent(tmp_path):
    from keras_msa.training.runner import git_info

    package = tmp_path / "repo" / "keras_msa"
    package.mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    # Not a checkout (yet): no git entry.
    assert git_info(str(package)) is None

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path / "repo"), "-c", "user.name=t", "-c", "user.email=t@t",
                        *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", "keras_msa/a.py")
    git("commit", "-q", "-m", "one")
    sha = subprocess.run(["git", "-C", str(tmp_path / "repo"), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert git_info(str(package)) == {"commit": sha, "dirty": False}
    (package / "a.py").write_text("x = 2\n")
    assert git_info(str(package)) == {"commit": sha, "dirty": True}
    # A package inside another repository's folder (a virtual environment) is no checkout of it.
    nested = tmp_path / "repo" / "venv" / "site" / "keras_msa"
    nested.mkdir(parents=True)
    assert git_info(str(nested)) is None


def test_model_keras_keeps_the_optimizer_only_with_save_optimizer(tmp_path):
    import zipfile

    def holds_optimizer(path):
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
        return bool(config.get("compile_config"))

    lean, _ = train(tiny_config(tmp_path, epochs=1, output_dir=str(tmp_path / "lean")))
    full, _ = train(tiny_config(tmp_path, epochs=1, output_dir=str(tmp_path / "full"), save_optimizer=True))
    lean_path = os.path.join(lean["output_dir"], "model.keras")
    full_path = os.path.join(full["output_dir"], "model.keras")
    assert not holds_optimizer(lean_path) and holds_optimizer(full_path)
    assert os.path.getsize(lean_path) < os.path.getsize(full_path)
    restored = keras.saving.load_model(full_path)
    assert restored.optimizer is not None and restored.optimizer.iterations.numpy() > 0
