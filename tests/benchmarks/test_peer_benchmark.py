"""The peer benchmark's plumbing, without torch: MMSA's config merge, the
table's ratios, and the keras_msa side at per-modality lengths."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(relpath, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_mmsa(tmp_path):
    # A package folder laid out like MMSA's, holding only its config file.
    package = tmp_path / "MMSA"
    (package / "config").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('the harness must not run MMSA/__init__')\n")
    config = {
        "datasetCommonParams": {
            "dataset_root_dir": "/nowhere",
            "mosi": {
                "aligned": {"featurePath": "a.pkl", "seq_lens": [50, 50, 50], "feature_dims": [768, 5, 20]},
                "unaligned": {"featurePath": "u.pkl", "seq_lens": [50, 500, 375], "feature_dims": [768, 5, 20]},
            },
        },
        "ef_lstm": {
            "commonParams": {"need_data_aligned": True, "need_model_aligned": True, "early_stop": 8},
            "datasetParams": {"mosi": {"hidden_dims": 128, "num_layers": 4, "learning_rate": 0.001,
                                       "early_stop": 5}},
        },
    }
    (package / "config" / "config_regression.json").write_text(json.dumps(config))
    return tmp_path


def test_mmsa_config_merges_like_mmsa_and_takes_the_benchmark_shapes(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_fake_mmsa(tmp_path)))
    peer = _load("benchmarks/peer/torch_peer.py", "torch_peer_under_test")
    args = peer.mmsa_config("ef_lstm", "mosi", (50, 375, 500), (768, 5, 20))
    # need_data_aligned picks the aligned block; model x dataset overrides common.
    assert args.featurePath == "a.pkl"
    assert args.early_stop == 5 and args.num_layers == 4 and args["hidden_dims"] == 128
    assert args.seq_lens == [50, 375, 500] and args.feature_dims == [768, 5, 20]
    assert args.train_mode == "regression" and args.use_bert is False
    with pytest.raises(AttributeError):
        args.no_such_key
    assert "MMSA" not in sys.modules or not hasattr(sys.modules["MMSA"], "MMSA_run")


def test_table_ratios_and_markdown():
    harness = _load("benchmarks/peer_benchmark.py", "peer_benchmark_under_test")
    side = {"train_samples_per_s": 10.0, "latency_b1_ms_median": 4.0,
            "throughput_samples_per_s": 100.0, "peak_rss_mb": 1000.0, "params": 1234}
    ours = {"train_samples_per_s": 25.0, "latency_b1_ms_median": 1.0,
            "throughput_samples_per_s": 50.0, "peak_rss_mb": 250.0, "params": 1234}
    result = {"peer": side, "keras": {"xla_off": ours}}
    text = harness.format_table(result)
    rows = {line.split("  ")[0].strip(): line for line in text.splitlines()}
    assert rows["train samples/s"].split()[-1] == "2.50x"
    assert rows["latency batch 1 ms (median)"].split()[-1] == "0.25x"
    assert rows["throughput samples/s"].split()[-1] == "0.50x"
    assert rows["peak RSS MB"].split()[-1] == "0.25x"
    md = harness.format_table(result, markdown=True).splitlines()
    assert md[0].startswith("| ") and md[1].startswith("|---|")
    assert "| train samples/s | 10.0 | 25.0 | 2.50x |" in md


def test_harness_refuses_a_missing_peer_python():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "peer_benchmark.py"), "--pair=lfdnn",
         "--peer_python=/no/such/python"], capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "--peer_python must name a Python with torch and MMSA==2.2.1" in proc.stderr
    assert "tensorflow" not in proc.stderr.lower()


def test_keras_side_at_per_modality_lengths():
    from keras_msa.training.benchmark import make_batches
    from keras_msa.training.benchmark import parse_lens
    from keras_msa.training.benchmark import run_benchmark

    assert parse_lens("50,375,500") == (50, 375, 500)
    for bad in ("50,375", "a,b,c", "50,0,5"):
        with pytest.raises(ValueError, match="three positive integers"):
            parse_lens(bad)
    x, y, x1 = make_batches(batch_size=3, text_dim=8, lens=(5, 9, 1), seed=2)
    assert x["text"].shape == (3, 5, 8) and x["audio"].shape == (3, 9, 5)
    assert x["vision"].shape == (3, 1, 20) and x["audio_mask"].all()
    assert x1["vision"].shape == (1, 1, 20) and y["sentiment"].shape == (3, 1)
    np.testing.assert_array_equal(x1["audio"], x["audio"][:1])

    result = run_benchmark("lfdnn", model_config={"fusion_dim": 8}, xla="off", batch_size=6,
                           train_batch_size=2, steps=2, warmup=1, repeats=2, text_dim=8,
                           lens=(4, 7, 3))
    assert result["lens"] == [4, 7, 3] and result["train_batch_size"] == 2
    assert result["shapes"] == {"text": [4, 8], "audio": [7, 5], "vision": [3, 20]}
    mode = result["modes"]["xla_off"]
    assert mode["train_samples_per_s"] > 0 and mode["throughput_samples_per_s"] > 0


def test_tecafn_pair_needs_the_authors_checkout_and_names_them_in_the_table(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text("")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "peer_benchmark.py"), "--pair=tecafn",
         f"--peer_python={fake_python}", f"--src={tmp_path}"], capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "--pair=tecafn needs --src, a checkout of TheShy-Dream/MSA-TeCaFN" in proc.stderr
    harness = _load("benchmarks/peer_benchmark.py", "peer_benchmark_tecafn")
    side = {"train_samples_per_s": 2.0, "latency_b1_ms_median": 10.0,
            "throughput_samples_per_s": 4.0, "peak_rss_mb": 800.0, "params": 10}
    table = harness.format_table({"pair": "tecafn", "peer": side, "keras": {"xla_off": side}}, markdown=True)
    assert table.splitlines()[0].startswith("|  | authors' TeCaFN (PyTorch) | keras_msa xla_off |")
