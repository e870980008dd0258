"""The PyTorch side of the peer benchmark: one MMSA model, timed in this process.

Runs with a Python that has `torch` and `MMSA==2.2.1` installed (not the
keras_msa environment), for example:

    /path/to/mmsa-venv/bin/python benchmarks/peer/torch_peer.py --model=lf_dnn \
        --dataset=mosi --lens=50,375,500 --json_out=/tmp/peer.json

It builds the model exactly as MMSA's `run.py` does (the config of
`MMSA/config/config_regression.json` for the model and dataset, merged in the
same order: dataset, model common, model x dataset; then MMSA's AMIO wrapper
behaviour, which average-pools every modality to the text length for models
that set `need_model_aligned`, and its data loader's, which averages audio
and vision over time for models that set `need_normalized`), with the feature sizes and lengths given here,
and times what MMSA's trainer does per batch: forward, its L1 loss, backward,
gradient clipping where the config asks for it, and the optimizer step (Adam
with the config's learning rate and weight decay). Inference runs in eval mode
under `torch.no_grad()`.

Only the model modules are imported: the MMSA package's `__init__` (which
pulls in its trainers, data loaders and feature extractor) is bypassed by
registering its package folders without executing their `__init__` files.

Prints one JSON object (and writes it to `--json_out`); the numbers mean what
`keras_msa/training/benchmark.py` says the keras_msa side's mean.
"""

import argparse
import importlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import resource
import sys
import time
import types

# The config key of each model in MMSA's config_regression.json, its module
# under MMSA/models/singleTask and its class.
MODELS = {
    "lf_dnn": ("LF_DNN", "LF_DNN"),
    "ef_lstm": ("EF_LSTM", "EF_LSTM"),
    "tfn": ("TFN", "TFN"),
    "lmf": ("LMF", "LMF"),
    "mult": ("MULT", "MULT"),
    "misa": ("MISA", "MISA"),
    "mmim": ("MMIM", "MMIM"),
    "bert_mag": ("BERT_MAG", "BERT_MAG"),
}
FEATURE_DIMS = {"mosi": (768, 5, 20), "mosei": (768, 74, 35), "sims": (768, 33, 709)}


class _Args(dict):
    """MMSA's models read their config both as `args.key` and `args["key"]`."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e

    def __setattr__(self, name, value):
        self[name] = value


def _mmsa_root():
    spec = importlib.util.find_spec("MMSA")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("MMSA is not installed in this Python (pip install MMSA==2.2.1 torch).")
    return list(spec.submodule_search_locations)[0]


def _register_package(name, path):
    # A package object whose __init__ is not run: submodules still import.
    module = types.ModuleType(name)
    module.__path__ = [path]
    module.__package__ = name
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__spec__.submodule_search_locations = [path]
    sys.modules[name] = module
    return module


def load_model_class(model):
    """MMSA's model class `model` (a config key), importing only model code."""
    root = _mmsa_root()
    _register_package("MMSA", root)
    _register_package("MMSA.models", os.path.join(root, "models"))
    _register_package("MMSA.models.singleTask", os.path.join(root, "models", "singleTask"))
    module_name, class_name = MODELS[model]
    module = importlib.import_module(f"MMSA.models.singleTask.{module_name}")
    align = importlib.import_module("MMSA.models.subNets.AlignNets")
    return getattr(module, class_name), align.AlignSubNet


def mmsa_config(model, dataset, lens, feature_dims):
    """The config MMSA's run.py would build for `model` on `dataset`."""
    with open(os.path.join(_mmsa_root(), "config", "config_regression.json")) as f:
        config_all = json.load(f)
    common = config_all[model]["commonParams"]
    per_dataset = config_all[model]["datasetParams"][dataset]
    data_common = config_all["datasetCommonParams"][dataset]
    if common.get("need_data_aligned") and "aligned" in data_common:
        data_args = data_common["aligned"]
    else:
        data_args = data_common["unaligned"]
    args = _Args()
    args.update(model_name=model, dataset_name=dataset)
    args.update(data_args)
    args.update(common)
    args.update(per_dataset)
    # The benchmark's shapes replace the dataset file's (MMSA reads them from the
    # pickle at run time in the same way).
    args.update(seq_lens=list(lens), feature_dims=list(feature_dims), train_mode="regression",
                num_classes=1, device="cpu", use_bert=False)
    return args


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def add_run_arguments(parser):
    """The shape, timing and output options every peer script takes."""
    parser.add_argument("--dims", default=None, help="text,audio,vision feature sizes (default: the dataset's)")
    parser.add_argument("--train_batch", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=64, help="inference throughput batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json_out", default=None)


def write_result(result, opts):
    """Prints the result JSON and writes it to `opts.json_out` if given."""
    text = json.dumps(result, indent=2, default=str)
    if opts.json_out:
        with open(opts.json_out, "w") as f:
            f.write(text)
    print(text)


def time_model(net, train_step, predict, batch, opts):
    """Times `train_step()` in train mode (first step, `opts.warmup - 1`
    more untimed, `opts.steps` timed) and `predict(x)` in eval mode under
    `torch.no_grad()` at batch 1 and `opts.batch_size` (`opts.warmup`
    untimed calls, `opts.repeats` timed); `batch(n)` makes an input batch.
    Returns the timing keys of the result JSON."""
    import numpy as np
    import torch

    net.train()
    start = time.perf_counter()
    train_step()
    first_step_s = time.perf_counter() - start
    for _ in range(max(opts.warmup - 1, 0)):
        train_step()
    times = []
    for _ in range(opts.steps):
        start = time.perf_counter()
        train_step()
        times.append(time.perf_counter() - start)
    times = np.asarray(times)

    net.eval()
    x1, xb = batch(1), batch(opts.batch_size)
    with torch.no_grad():
        for _ in range(opts.warmup):
            predict(x1)
            predict(xb)
        latency, batch_times = [], []
        for _ in range(opts.repeats):
            start = time.perf_counter()
            predict(x1)
            latency.append(time.perf_counter() - start)
        for _ in range(opts.repeats):
            start = time.perf_counter()
            predict(xb)
            batch_times.append(time.perf_counter() - start)
    latency, batch_times = np.asarray(latency), np.asarray(batch_times)
    return {
        "first_train_step_s": float(first_step_s),
        "train_samples_per_s": float(opts.train_batch * len(times) / times.sum()),
        "train_step_ms_median": float(np.median(times) * 1e3),
        "latency_b1_ms_median": float(np.median(latency) * 1e3),
        "throughput_samples_per_s": float(opts.batch_size * len(batch_times) / batch_times.sum()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, choices=sorted(MODELS))
    parser.add_argument("--dataset", default="mosi", choices=sorted(FEATURE_DIMS))
    parser.add_argument("--lens", default="50,50,50", help="text,audio,vision steps")
    add_run_arguments(parser)
    opts = parser.parse_args()

    import numpy as np
    import torch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    lens = [int(v) for v in opts.lens.split(",")]
    dims = [int(v) for v in opts.dims.split(",")] if opts.dims else list(FEATURE_DIMS[opts.dataset])
    args = mmsa_config(opts.model, opts.dataset, lens, dims)
    model_class, align_class = load_model_class(opts.model)
    align = None
    if args.get("need_model_aligned"):
        align = align_class(args, "avg_pool")
        args["seq_lens"] = align.get_seq_len()
    net = model_class(args)
    params = sum(p.numel() for p in net.parameters())

    rng = np.random.default_rng(opts.seed)

    def batch(n):
        x = [rng.standard_normal((n, length, dim)).astype("float32")
             for length, dim in zip(lens, dims)]
        if args.get("need_normalized"):
            # MMSA's data loader averages audio and vision over time once, at
            # load time, for these models: they never see the sequences.
            x[1], x[2] = x[1].mean(1, keepdims=True), x[2].mean(1, keepdims=True)
        return [torch.tensor(v) for v in x]

    def forward(x):
        t, a, v = x
        if align is not None:
            t, a, v = align(t, a, v)
        return net(t, a, v)["M"]

    x_train = batch(opts.train_batch)
    y_train = torch.tensor(rng.standard_normal((opts.train_batch, 1)).astype("float32"))
    optimizer = torch.optim.Adam(net.parameters(), lr=args.get("learning_rate", 1e-3),
                                 weight_decay=args.get("weight_decay", 0.0))
    criterion = torch.nn.L1Loss()
    clip = args.get("grad_clip", -1.0)

    def train_step():
        optimizer.zero_grad()
        loss = criterion(forward(x_train), y_train)
        loss.backward()
        if clip != -1.0:
            torch.nn.utils.clip_grad_value_(net.parameters(), clip)
        optimizer.step()
        return float(loss)

    timings = time_model(net, train_step, lambda x: forward(x).numpy(), batch, opts)

    settings = {k: args[k] for k in sorted(args) if k not in ("featurePath",)}
    write_result(mmsa_result(opts, lens, dims, params, settings, timings), opts)


def mmsa_result(opts, lens, dims, params, settings, timings, **extra):
    """The result JSON of an MMSA peer run (`extra` keys go after `params`)."""
    import torch

    return {
        "side": "MMSA (PyTorch)",
        "model": opts.model,
        "dataset": opts.dataset,
        "lens": lens,
        "dims": dims,
        "params": int(params),
        **extra,
        "settings": settings,
        "train_batch": opts.train_batch,
        "batch_size": opts.batch_size,
        **timings,
        "peak_rss_mb": float(_peak_rss_mb()),
        "versions": {"torch": torch.__version__, "python": platform.python_version(),
                     "MMSA": _mmsa_version()},
        "threads": torch.get_num_threads(),
    }


def _mmsa_version():
    try:
        from importlib.metadata import version

        return version("MMSA")
    except Exception:  # noqa: BLE001 - a version is informative only
        return "unknown"


if __name__ == "__main__":
    main()
