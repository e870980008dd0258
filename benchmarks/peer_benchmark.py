"""keras_msa beside the PyTorch reference framework, timed in one run.

    python benchmarks/peer_benchmark.py --pair=lfdnn --peer_python=/path/to/mmsa-venv/bin/python
    python benchmarks/peer_benchmark.py --pair=eflstm --aligned --peer_python=...
    python benchmarks/peer_benchmark.py --pair=mult --lens=50,375,500 --peer_python=...
    python benchmarks/peer_benchmark.py --pair=misa --peer_python=... \
        --bert_config='{"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2}'

Each side runs in its own process, one after the other, on the same machine,
so each peak memory figure is that side's alone:

* the peer: `benchmarks/peer/torch_peer.py` under `--peer_python` (a Python
  with `torch` and `MMSA==2.2.1`; make one with
  `python3 -m venv mmsa-venv && mmsa-venv/bin/pip install torch MMSA==2.2.1`),
  which builds MMSA's model from MMSA's own `config_regression.json` for the
  dataset and times MMSA's training step (forward, L1 loss, backward, its
  clipping, Adam with its learning rate and weight decay);
* keras_msa: `recipes/benchmark.py`, once per XLA mode and dtype policy, at
  the same shapes (the same lengths and feature sizes; for models MMSA feeds
  time-averaged audio and vision, length 1), the same batch sizes and Adam at
  the same learning rate.

Printed: training samples/s at batch `--train_batch` (32), inference latency
at batch 1 (median ms), throughput at batch `--batch_size` (64), peak resident
memory of the process (MB), and each keras_msa column's ratio to the peer
(speed: keras/peer, higher is better; latency and memory: keras/peer, lower is
better). `--json_out` keeps every number, `--markdown` prints the README table.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# keras_msa model and construction beside the MMSA model it is compared with.
# `normalized`: MMSA's data loader averages audio and vision over time for
# this model, so both sides get length-1 audio and vision. `text_aligned`:
# MMSA average-pools audio and vision to the text length inside the model
# (AMIO's alignment, timed on its side); keras_msa's model is given inputs
# already at the text length. `preset`: the keras_msa preset that is MMSA's
# configuration of the model.
PAIRS = {
    "lfdnn": {"keras": "lfdnn", "peer": "lf_dnn", "normalized": True, "preset": "mmsa_{dataset}"},
    "eflstm": {"keras": "eflstm", "peer": "ef_lstm", "normalized": False, "text_aligned": True,
               "preset": "mmsa_{dataset}"},
    "mult": {"keras": "mult", "peer": "mult", "normalized": False, "preset": "{dataset}"},
    "tfn": {"keras": "tfn", "peer": "tfn", "normalized": True, "preset": "{dataset}"},
    "lmf": {"keras": "lmf", "peer": "lmf", "normalized": True, "preset": "{dataset}"},
}
# TeCaFN against its authors' code instead of MMSA: `benchmarks/peer/tecafn_peer.py`
# builds their model from the checkout given by `--src` (their BERT replaced by
# BERT features, as keras_msa's TeCaFN reads them).
PAIRS["tecafn"] = {"keras": "tecafn", "peer": "tecafn", "normalized": False, "preset": "{dataset}",
                   "peer_script": "tecafn_peer.py", "peer_label": "authors' TeCaFN", "needs_src": True}

# MMSA's BERT models (`benchmarks/peer/bert_peer.py`): both sides get a BERT of
# the same shape with random weights (`--bert_config`, default bert-base-uncased's,
# which MMSA's configs name) and token ids as text; the keras_msa side trains
# with the optimizer of its preset's training protocol (`--optimizer=protocol`),
# MMSA's with its trainer's. `data_aligned`: MMSA's loader feeds the model its
# word-aligned data, so every modality has the text's length on both sides.
# `keras_config`: constructor arguments that make keras_msa's model read what
# MMSA's does (MISA packs audio and vision with the text's lengths);
# `peer_keras_config`: ones taken from the peer's settings (the label memory of
# Self-MM has the training split's `train_samples` rows).
_BERT = {"normalized": False, "preset": "{dataset}", "peer_script": "bert_peer.py", "bert": True}
PAIRS["misa"] = dict(_BERT, keras="misa", peer="misa", keras_config={"av_lengths": "text"})
PAIRS["selfmm"] = dict(_BERT, keras="selfmm", peer="self_mm", peer_keras_config={"train_samples": "train_samples"})
PAIRS["magbert"] = dict(_BERT, keras="magbert", peer="bert_mag", data_aligned=True)
PAIRS["mmim"] = dict(_BERT, keras="mmim", peer="mmim")

FEATURE_DIMS = {"mosi": (768, 5, 20), "mosei": (768, 74, 35), "sims": (768, 33, 709)}
ROWS = (
    ("train samples/s", "train_samples_per_s", "{:.1f}", "higher"),
    ("latency batch 1 ms (median)", "latency_b1_ms_median", "{:.2f}", "lower"),
    ("throughput samples/s", "throughput_samples_per_s", "{:.1f}", "higher"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}", "lower"),
)


def bert_configs(text):
    """`--bert_config` (JSON transformers `BertConfig` arguments over
    bert-base-uncased's shape) -> (the peer's BertConfig arguments, the
    matching keras-hub `BertBackbone` arguments)."""
    peer_dir = os.path.join(ROOT, "benchmarks", "peer")
    if peer_dir not in sys.path:
        sys.path.insert(0, peer_dir)
    from bert_peer import BERT_BASE  # stdlib only: no torch in this process

    try:
        given = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"--bert_config is not valid JSON ({e}): {text}") from e
    if not isinstance(given, dict):
        raise ValueError(f"--bert_config must be a JSON object; got {text}")
    unknown = sorted(set(given) - set(BERT_BASE))
    if unknown:
        raise ValueError(f"--bert_config: unknown keys {unknown}; known: {sorted(BERT_BASE)}")
    bert = {**BERT_BASE, **given}
    keras_bert = {
        "vocabulary_size": bert["vocab_size"], "num_layers": bert["num_hidden_layers"],
        "num_heads": bert["num_attention_heads"], "hidden_dim": bert["hidden_size"],
        "intermediate_dim": bert["intermediate_size"], "max_sequence_length": bert["max_position_embeddings"],
        "num_segments": bert["type_vocab_size"], "dropout": bert["hidden_dropout_prob"],
    }
    return bert, keras_bert


def _lens(opts, pair, lens):
    """The lengths both sides are given (MMSA's aligned data for `data_aligned`)."""
    return (lens[0],) * 3 if opts.aligned or pair.get("data_aligned") else tuple(lens)


def keras_model_config(opts, pair, peer_settings=None):
    """The keras_msa constructor overrides of a pair: its `keras_config`, the
    peer settings named by `peer_keras_config`, then `--keras_config`."""
    config = dict(pair.get("keras_config", {}))
    for key, setting in pair.get("peer_keras_config", {}).items():
        if peer_settings and setting in peer_settings:
            config[key] = peer_settings[setting]
    config.update(json.loads(opts.keras_config) if opts.keras_config else {})
    return config


def _run_json(command, env=None):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        proc = subprocess.run(command + [f"--json_out={out}"], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(out):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise SystemExit(f"{' '.join(command[:3])} ... failed (exit {proc.returncode}):\n{tail}")
        with open(out) as f:
            return json.load(f)


def run_peer(opts, pair, lens, dims):
    command = [
        opts.peer_python, os.path.join(ROOT, "benchmarks", "peer", pair.get("peer_script", "torch_peer.py")),
        f"--dataset={opts.dataset}",
        "--lens=" + ",".join(map(str, lens)), "--dims=" + ",".join(map(str, dims)),
        f"--train_batch={opts.train_batch}", f"--batch_size={opts.batch_size}",
        f"--steps={opts.steps}", f"--warmup={opts.warmup}", f"--repeats={opts.repeats}",
        f"--seed={opts.seed}",
    ]
    if pair.get("needs_src"):
        command.append(f"--src={opts.src}")
    else:
        command.append(f"--model={pair['peer']}")
    if pair.get("bert"):
        command.append("--bert_config=" + json.dumps(bert_configs(opts.bert_config)[0]))
    return _run_json(command)


def run_keras(opts, pair, lens, dims, xla, dtype, learning_rate, peer_settings=None):
    keras_lens = _keras_lens(pair, lens)
    command = [
        sys.executable, os.path.join(ROOT, "recipes", "benchmark.py"),
        f"--model={pair['keras']}", "--lens=" + ",".join(map(str, keras_lens)),
        f"--text_dim={dims[0]}", f"--audio_dim={dims[1]}", f"--vision_dim={dims[2]}",
        f"--train_batch_size={opts.train_batch}", f"--batch_size={opts.batch_size}",
        f"--steps={opts.steps}", f"--warmup={opts.warmup}", f"--repeats={opts.repeats}",
        f"--xla={xla}", f"--mixed_precision={dtype}", f"--seed={opts.seed}",
        f"--learning_rate={learning_rate}",
    ]
    preset = opts.keras_preset or pair.get("preset", "").format(dataset=opts.dataset)
    if preset:
        command.append(f"--preset={preset}")
    model_config = keras_model_config(opts, pair, peer_settings)
    if model_config:
        command.append("--model_config=" + json.dumps(model_config))
    if pair.get("bert"):
        command += ["--bert_config=" + json.dumps(bert_configs(opts.bert_config)[1]), "--optimizer=protocol"]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = _run_json(command, env=env)
    mode = result["modes"][f"xla_{xla}"]
    mode["params"] = result["params"]
    mode["trainable_params"] = result["trainable_params"]
    return mode


def _keras_lens(pair, lens):
    if pair["normalized"]:
        return (lens[0], 1, 1)
    if pair.get("text_aligned"):
        return (lens[0],) * 3
    return tuple(lens)


def _columns(result):
    label = PAIRS.get(result.get("pair"), {}).get("peer_label", "MMSA")
    return [(label, result["peer"])] + [(name, col) for name, col in result["keras"].items()]


def format_table(result, markdown=False):
    cols = _columns(result)
    header = ["", f"{cols[0][0]} (PyTorch)"] + [f"keras_msa {n}" for n, _ in cols[1:]] + [
        f"ratio {n}" for n, _ in cols[1:]
    ]
    lines = []
    body = []
    for label, key, fmt, better in ROWS:
        peer = result["peer"][key]
        cells = [label, fmt.format(peer)]
        cells += [fmt.format(c[key]) for _, c in cols[1:]]
        cells += [f"{c[key] / peer:.2f}x" if peer else "n/a" for _, c in cols[1:]]
        body.append(cells)
    body.append(["parameters", f"{result['peer']['params']:,}"]
                + [f"{c['params']:,}" for _, c in cols[1:]] + [""] * (len(cols) - 1))
    if "trainable_params" in result["peer"]:
        # keras_msa counts non-trainable state as parameters too (Self-MM's
        # label memory, which MMSA keeps in its trainer; a frozen unused pooler).
        body.append(["trainable parameters", f"{result['peer']['trainable_params']:,}"]
                    + [f"{c.get('trainable_params', 0):,}" for _, c in cols[1:]] + [""] * (len(cols) - 1))
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(row) + " |" for row in body]
    else:
        widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
        for row in [header] + body:
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--pair", required=True, choices=sorted(PAIRS))
    parser.add_argument("--peer_python", default=os.environ.get("KERAS_MSA_PEER_PYTHON"),
                        help="Python with torch and MMSA==2.2.1 (or $KERAS_MSA_PEER_PYTHON).")
    parser.add_argument("--dataset", default="mosi", choices=sorted(FEATURE_DIMS))
    parser.add_argument("--lens", default="50,375,500",
                        help="text,audio,vision steps (MOSI unaligned: 50,375,500)")
    parser.add_argument("--aligned", action="store_true", help="every modality at the text length")
    parser.add_argument("--train_batch", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--xla", default="both", choices=["both", "on", "off"])
    parser.add_argument("--dtypes", default="float32",
                        help="comma list of keras dtype policies: float32,mixed_float16,mixed_bfloat16")
    parser.add_argument("--keras_preset", default=None, help="keras_msa preset of the model")
    parser.add_argument("--keras_config", default=None, help="JSON constructor overrides")
    parser.add_argument("--bert_config", default=None,
                        help="BERT pairs (misa, selfmm, magbert, mmim): JSON transformers BertConfig arguments "
                             "over bert-base-uncased's shape, for both sides, e.g. "
                             "'{\"num_hidden_layers\": 2, \"hidden_size\": 16, \"num_attention_heads\": 2}'")
    parser.add_argument("--src", default=None,
                        help="--pair=tecafn: checkout of TheShy-Dream/MSA-TeCaFN (the authors' code)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json_out", default=None)
    parser.add_argument("--markdown", action="store_true")
    opts = parser.parse_args(argv)

    if not opts.peer_python or not os.path.exists(opts.peer_python):
        parser.error("--peer_python must name a Python with torch and MMSA==2.2.1 installed "
                     "(python3 -m venv mmsa-venv && mmsa-venv/bin/pip install torch MMSA==2.2.1); "
                     f"got {opts.peer_python!r}.")
    pair = PAIRS[opts.pair]
    if pair.get("needs_src") and not (opts.src and os.path.isfile(os.path.join(opts.src, "model.py"))):
        parser.error(f"--pair={opts.pair} needs --src, a checkout of TheShy-Dream/MSA-TeCaFN "
                     f"(git clone https://github.com/TheShy-Dream/MSA-TeCaFN); got {opts.src!r}.")
    # Parsed here rather than with keras_msa's parser: this process only
    # orchestrates and never imports TensorFlow, so it adds nothing to either
    # side's memory or start-up.
    try:
        lens = tuple(int(v) for v in opts.lens.split(","))
    except ValueError:
        lens = ()
    if len(lens) != 3 or min(lens) < 1:
        parser.error(f"--lens must be three positive integers text,audio,vision; got {opts.lens!r}.")
    lens = _lens(opts, pair, lens)
    if pair.get("bert"):
        try:
            bert_configs(opts.bert_config)
        except ValueError as e:
            parser.error(str(e))
    elif opts.bert_config:
        parser.error(f"--bert_config is for the BERT pairs (misa, selfmm, magbert, mmim), not --pair={opts.pair}.")
    dims = FEATURE_DIMS[opts.dataset]

    print(f"peer: {pair.get('peer_label', 'MMSA')} {pair['peer']} ({opts.dataset} config) ...", flush=True)
    peer = run_peer(opts, pair, lens, dims)
    learning_rate = peer["settings"].get("learning_rate", 1e-3)
    keras_cols = {}
    xla_modes = ["off", "on"] if opts.xla == "both" else [opts.xla]
    for dtype in opts.dtypes.split(","):
        for xla in xla_modes:
            name = f"xla_{xla}" + ("" if dtype == "float32" else f" {dtype}")
            print(f"keras_msa: {pair['keras']} {name} ...", flush=True)
            keras_cols[name] = run_keras(opts, pair, lens, dims, xla, dtype, learning_rate, peer["settings"])

    result = {
        "pair": opts.pair,
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
        "lens": list(lens),
        "keras_lens": list(_keras_lens(pair, lens)),
        "dims": list(dims),
        "train_batch": opts.train_batch,
        "batch_size": opts.batch_size,
        "peer": peer,
        "keras": keras_cols,
    }
    print()
    print(f"{opts.pair} at lengths {','.join(map(str, lens))} (text,audio,vision)"
          + (" [audio/vision time-averaged on both sides]" if pair["normalized"] else "")
          + (" [MMSA pools audio/vision to the text length in its forward; keras_msa gets them"
             " at that length]" if pair.get("text_aligned") else "")
          + (" [MMSA's word-aligned data]" if pair.get("data_aligned") else "")
          + (f" [random BERT {peer['settings'].get('bert')} on both sides; keras_msa: its training"
             " protocol's optimizer]" if pair.get("bert") else "")
          + f"; train batch {opts.train_batch}, inference batch {opts.batch_size}; "
          f"{result['machine']['cpu']}, {result['machine']['cores']} cores, {result['date']}")
    print(format_table(result, markdown=opts.markdown))
    print("\npeer settings (" + ("their config.py defaults" if pair.get("needs_src") else "MMSA config_regression.json") + "):",
          json.dumps({k: v for k, v in peer["settings"].items()
                      if k not in ("missing_rate", "missing_seed")}, default=str))
    if opts.json_out:
        with open(opts.json_out, "w") as f:
            json.dump(result, f, indent=2, default=str)
        print(f"\nWrote {opts.json_out}")
    return result


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
