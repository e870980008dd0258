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
    assert not any(line.startswith("trainable") for line in text.splitlines())
    # The BERT peers also report trainable parameters (keras_msa counts Self-MM's label memory).
    result = {"peer": dict(side, trainable_params=1000), "keras": {"xla_off": dict(ours, trainable_params=999)}}
    rows = {line.split("  ")[0].strip(): line for line in harness.format_table(result).splitlines()}
    assert rows["trainable parameters"].split()[-2:] == ["1,000", "999"]


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


TINY_BERT = {"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32,
             "vocab_size": 40, "max_position_embeddings": 32}


def test_bert_pairs_share_one_bert_shape_and_their_keras_config(monkeypatch):
    harness = _load("benchmarks/peer_benchmark.py", "peer_benchmark_bert")
    assert {"misa", "selfmm", "magbert", "mmim"} <= set(harness.PAIRS)
    # Default: bert-base-uncased's shape (MMSA's MOSI configs' `pretrained`), on both sides.
    peer, ours = harness.bert_configs(None)
    assert (peer["num_hidden_layers"], peer["hidden_size"], peer["num_attention_heads"],
            peer["intermediate_size"], peer["vocab_size"], peer["max_position_embeddings"]) == (
        12, 768, 12, 3072, 30522, 512)
    assert ours == {"vocabulary_size": 30522, "num_layers": 12, "num_heads": 12, "hidden_dim": 768,
                    "intermediate_dim": 3072, "max_sequence_length": 512, "num_segments": 2, "dropout": 0.1}
    # A partial config shrinks only what it names.
    peer, ours = harness.bert_configs('{"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2}')
    assert (ours["num_layers"], ours["hidden_dim"], ours["num_heads"]) == (2, 16, 2)
    assert ours["intermediate_dim"] == peer["intermediate_size"] == 3072 and ours["vocabulary_size"] == 30522
    for bad, match in (('{"layers": 2}', "unknown keys"), ("[2]", "JSON object"), ("{", "not valid JSON")):
        with pytest.raises(ValueError, match=match):
            harness.bert_configs(bad)

    opts = harness.argparse.Namespace(keras_config=None, aligned=False)
    assert harness.keras_model_config(opts, harness.PAIRS["misa"]) == {"av_lengths": "text"}
    # Self-MM's label memory: the peer's (MMSA's) train_samples; --keras_config wins.
    assert harness.keras_model_config(opts, harness.PAIRS["selfmm"], {"train_samples": 1284}) == {
        "train_samples": 1284}
    opts.keras_config = '{"train_samples": 7, "fusion_dim": 4}'
    assert harness.keras_model_config(opts, harness.PAIRS["selfmm"], {"train_samples": 1284}) == {
        "train_samples": 7, "fusion_dim": 4}
    # MAG-BERT reads MMSA's word-aligned data: every modality at the text's length.
    assert harness._lens(opts, harness.PAIRS["magbert"], (50, 375, 500)) == (50, 50, 50)
    assert harness._lens(opts, harness.PAIRS["mmim"], (50, 375, 500)) == (50, 375, 500)


def test_bert_config_is_refused_for_a_pair_without_bert(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text("")
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "peer_benchmark.py"),
               f"--peer_python={fake_python}"]
    proc = subprocess.run(command + ["--pair=lfdnn", "--bert_config={}"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "--bert_config is for the BERT pairs" in proc.stderr
    proc = subprocess.run(command + ["--pair=misa", '--bert_config={"layers": 2}'], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 2 and "unknown keys ['layers']" in proc.stderr


def test_keras_side_of_a_bert_pair_at_a_tiny_bert():
    from keras_msa.training.benchmark import build_model
    from keras_msa.training.benchmark import make_batches
    from keras_msa.training.benchmark import run_benchmark

    harness = _load("benchmarks/peer_benchmark.py", "peer_benchmark_bert_keras")
    _, bert = harness.bert_configs(json.dumps(TINY_BERT))
    x, y, x1 = make_batches(batch_size=3, lens=(6, 5, 4), vocabulary_size=40, seed=1)
    assert "text" not in x and x["text_token_ids"].shape == (3, 6) and x["text_token_ids"].dtype == np.int32
    assert (x["text_token_ids"][:, 0] == 2).all() and (x["text_token_ids"][:, -1] == 3).all()
    assert x["text_token_ids"].min() >= 2 and x["text_token_ids"].max() < 40
    assert x["text_padding_mask"].all() and not x["text_segment_ids"].any()
    assert x["audio"].shape == (3, 5, 5) and x1["vision"].shape == (1, 4, 20)

    # Self-MM: its label memory needs `sample_index`, its protocol accumulates 4 batches.
    config = {"train_samples": 5}
    result = run_benchmark("selfmm", preset="mosi", model_config=config, xla="off", batch_size=3,
                           train_batch_size=2, steps=1, warmup=1, repeats=1, lens=(6, 5, 4),
                           bert_config=bert, optimizer="protocol")
    assert result["bert_config"] == bert and result["optimizer"] == "protocol"
    mode = result["modes"]["xla_off"]
    assert mode["train_samples_per_s"] > 0 and mode["throughput_samples_per_s"] > 0
    net = build_model("selfmm", "mosi", config, bert)
    net(x1)
    assert result["params"] == net.count_params()
    assert net.text_backbone.backbone.num_layers == 2 and net.text_backbone.backbone.hidden_dim == 16
    with pytest.raises(ValueError, match="'adam' or 'protocol'"):
        run_benchmark("magbert", preset="mosi", xla="off", batch_size=2, steps=1, warmup=1, repeats=1,
                      lens=(4, 4, 4), bert_config=bert, optimizer="sgd")
