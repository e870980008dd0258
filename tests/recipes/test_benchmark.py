"""recipes/benchmark.py and keras_msa.training.benchmark on tiny shapes."""

import json
import os
import subprocess
import sys

import pytest

from keras_msa.training.benchmark import format_table
from keras_msa.training.benchmark import make_batches
from keras_msa.training.benchmark import run_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POSITIVE = (
    "params",
    "trainable_params",
    "first_train_step_s",
    "train_step_ms_median",
    "train_samples_per_s",
    "latency_b1_ms_median",
    "latency_b1_ms_p90",
    "throughput_samples_per_s",
    "peak_rss_mb",
)
TINY = dict(batch_size=4, seq_len=6, steps=2, warmup=1, repeats=2, text_dim=8)


def _check_mode(mode, jit):
    assert mode["jit_compile"] is jit
    for key in POSITIVE:
        assert mode[key] > 0, (key, mode[key])
    assert mode["rss_growth_mb"] >= 0
    assert mode["latency_b1_ms_p90"] >= mode["latency_b1_ms_median"]


def test_make_batches_shapes():
    x, y, x1 = make_batches(batch_size=5, seq_len=7, text_dim=8, seed=1)
    assert x["text"].shape == (5, 7, 8) and x["audio"].shape == (5, 7, 5)
    assert x["vision"].shape == (5, 7, 20) and x["text_mask"].shape == (5, 7)
    assert y["sentiment"].shape == (5, 1)
    assert x1["text"].shape == (1, 7, 8)
    with pytest.raises(ValueError, match="seq_len"):
        make_batches(seq_len=2)


def test_run_benchmark_in_process_xla_off():
    result = run_benchmark("lfdnn", model_config={"fusion_dim": 16}, xla="off", **TINY)
    assert list(result["modes"]) == ["xla_off"]
    _check_mode(result["modes"]["xla_off"], False)
    assert result["shapes"] == {"text": [6, 8], "audio": [6, 5], "vision": [6, 20]}
    assert result["params"] == result["modes"]["xla_off"]["params"]
    table = format_table(result)
    assert "train samples/s" in table and "xla_off" in table
    json.dumps(result)  # JSON-ready
    with pytest.raises(ValueError, match="xla must be"):
        run_benchmark("lfdnn", xla="maybe", **TINY)
    with pytest.raises(ValueError, match="Unknown model"):
        run_benchmark("no_such_model", xla="off", **TINY)


@pytest.mark.slow
def test_recipe_writes_json_for_both_modes(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable, os.path.join(ROOT, "recipes", "benchmark.py"), "--model=lfdnn",
        "--preset=mosi", "--model_config={\"dropout\": 0.1}", "--steps=2", "--warmup=1",
        "--repeats=2", "--batch_size=4", "--seq_len=6", "--text_dim=8", "--xla=both",
        f"--json_out={out}",
    ]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "latency batch 1 ms (median)" in proc.stdout
    result = json.loads(out.read_text())
    assert result["model"] == "lfdnn" and result["preset"] == "mosi"
    assert result["model_config"] == {"dropout": 0.1}
    assert set(result["modes"]) == {"xla_off", "xla_on"}
    _check_mode(result["modes"]["xla_off"], False)
    _check_mode(result["modes"]["xla_on"], True)
    # Same seed, same architecture: both modes build the same parameters.
    assert result["modes"]["xla_on"]["params"] == result["modes"]["xla_off"]["params"] > 0


def test_self_mm_gets_a_label_memory_of_the_timed_batch():
    # Self-MM trains with a per-sample label memory; the benchmark must size it
    # (recipes/train.py does from the split) instead of failing in compute_loss.
    result = run_benchmark("selfmm", model_config={"fusion_dim": 8}, xla="off", **TINY)
    _check_mode(result["modes"]["xla_off"], False)
    explicit = run_benchmark("selfmm", model_config={"fusion_dim": 8, "train_samples": 9},
                             xla="off", **TINY)
    assert explicit["model_config"]["train_samples"] == 9
