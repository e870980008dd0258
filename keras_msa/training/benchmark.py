"""Speed and memory of a registered model at MOSI shapes (`recipes/benchmark.py`).

For each XLA mode (`jit_compile` off / on) a fresh model is built with the
same seed, compiled with `model.compile(optimizer, jit_compile=...)` and timed:

* **train samples/s**: `train_on_batch` steps (the same `compute_loss`
  objective `fit` runs) after warm-up steps that absorb tracing/compilation;
  each step returns the loss to the host, so every step is fully finished.
* **latency at batch 1**: median (and 90th percentile) wall time of one
  inference call (`model(x, training=False)` inside a `tf.function` with the
  same `jit_compile`), output copied to the host, after warm-up.
* **throughput at batch `batch_size`**: samples / s of the same call on a full
  batch, over all repeats.
* **peak memory**: the process's peak resident set size
  (`resource.getrusage`, which only ever grows, so the second mode's value
  includes the first mode's peak; `rss_growth_mb` is how much this mode raised
  it) and, on a GPU, TensorFlow's peak allocator use for this mode
  (`tf.config.experimental.get_memory_info`, reset before each mode).

Numbers, not assertions: they depend on the machine and on whatever else
runs on it.
"""

import json
import resource
import sys
import time

import numpy as np

MOSI_SHAPES = {"text_dim": 768, "audio_dim": 5, "vision_dim": 20}


def _peak_rss_mb():
    # ru_maxrss is in kilobytes on Linux and bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _gpu_name():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("device_name", gpus[0].name)


def bert_text_backbone(bert_config):
    """A `TextBackbone` around a keras-hub `BertBackbone(**bert_config)` with
    random weights, fine-tuned (the text encoder of MISA, Self-MM, MAG-BERT
    and MMIM at a chosen shape, for timing)."""
    import keras_hub

    from keras_msa.layers.text_backbone import TextBackbone

    return TextBackbone(keras_hub.models.BertBackbone(**bert_config), fine_tune=True)


def build_model(model, preset=None, model_config=None, bert_config=None, train_samples=None):
    """An unbuilt instance of the registered model `model` (preset + overrides;
    `bert_config`: `BertBackbone` arguments of a random text backbone;
    `train_samples`: see `keras_msa.models.base.build_registered_model`)."""
    from keras_msa.models.base import build_registered_model

    overrides = dict(model_config or {})
    if bert_config:
        overrides["text_backbone"] = bert_text_backbone(bert_config)
    return build_registered_model(model, preset, overrides, train_samples)


def parse_lens(text):
    """`"50,375,500"` -> `(50, 375, 500)`: text, audio and vision steps."""
    try:
        lens = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        lens = ()
    if len(lens) != 3 or min(lens) < 1:
        raise ValueError(
            f"lens must be three positive integers 'text,audio,vision' (e.g. 50,375,500); got {text!r}."
        )
    return lens


def make_batches(batch_size=64, seq_len=50, text_dim=768, audio_dim=5, vision_dim=20,
                 aligned=True, seed=0, lens=None, vocabulary_size=None):
    """`(x, y, x1)`: one training batch of `batch_size` synthetic samples, its
    targets, and the first sample alone (batch 1), as numpy dicts.

    With `lens=(text, audio, vision)` every modality gets its own length
    (MOSI unaligned: 50, 375, 500) and the features are standard-normal noise
    with every step real: speed does not depend on the values, and the
    synthetic benchmark's emphasis windows need more steps than a
    time-averaged modality (length 1) has.

    With `vocabulary_size` (a text backbone's), the text is token ids
    instead of features: `text_token_ids` (`[CLS]` = 2 ... `[SEP]` = 3, the
    rest uniform over the vocabulary past the 5 special tokens),
    `text_padding_mask` (every token real) and `text_segment_ids` (zeros),
    `lens[0]` tokens long, as MMSA's BERT models receive them.
    """
    if vocabulary_size is not None and lens is None:
        lens = (seq_len, seq_len, seq_len)
    if lens is not None:
        lens = parse_lens(",".join(str(v) for v in lens))
        rng = np.random.default_rng(seed)
        x = {}
        for name, length, dim in zip(("text", "audio", "vision"), lens,
                                     (text_dim, audio_dim, vision_dim)):
            x[name] = rng.standard_normal((batch_size, length, dim)).astype("float32")
            x[f"{name}_mask"] = np.ones((batch_size, length), bool)
        if vocabulary_size is not None:
            del x["text"], x["text_mask"]
            ids = rng.integers(5, int(vocabulary_size), (batch_size, lens[0])).astype("int32")
            ids[:, 0], ids[:, -1] = 2, 3
            x.update(text_token_ids=ids, text_padding_mask=np.ones(ids.shape, bool),
                     text_segment_ids=np.zeros(ids.shape, "int32"))
        y = {"sentiment": rng.uniform(-3, 3, (batch_size, 1)).astype("float32")}
        return x, y, {k: v[:1] for k, v in x.items()}

    from keras_msa.data.synthetic import make_synthetic_benchmark

    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3; got {seq_len}.")
    # The synthetic generator needs room for its emphasis window and lag.
    window = max(1, min(8, seq_len // 3))
    offset = max(1, min(3, seq_len // 3))
    options = dict(
        seed=seed,
        splits={"train": batch_size},
        seq_len=seq_len,
        min_len=seq_len,
        text_dim=text_dim,
        audio_dim=audio_dim,
        vision_dim=vision_dim,
        aligned=aligned,
        window=window,
        offset=offset,
        compute_text_only_floor=False,
    )
    if not aligned:
        options.update(audio_len=seq_len, vision_len=seq_len)
    split = make_synthetic_benchmark(**options)["train"]
    x = {k: np.asarray(v) for k, v in split.inputs.items()}
    y = {k: np.asarray(v, np.float32) for k, v in split.targets.items()}
    x1 = {k: v[:1] for k, v in x.items()}
    return x, y, x1


def _time_calls(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def benchmark_mode(model, preset, model_config, batches, jit_compile, steps=20, warmup=3,
                   repeats=50, learning_rate=1e-3, seed=0, bert_config=None, optimizer="adam"):
    """Timings and memory of one XLA mode; see the module docstring.

    `optimizer`: `"adam"` (Adam at `learning_rate`) or `"protocol"` (the
    optimizer `recipes/train.py` builds from the model's training preset
    `preset`: its parameter groups' learning rates, weight decay, clipping
    and gradient accumulation)."""
    import keras
    import tensorflow as tf

    # (x, y, x1) or, with a training batch of another size, (x, y, x1, x_infer).
    x, y, x1 = batches[:3]
    x_infer = batches[3] if len(batches) > 3 else x
    gpu = _gpu_name()
    if gpu is not None:
        tf.config.experimental.reset_memory_stats("GPU:0")
    rss_before = _peak_rss_mb()
    keras.utils.set_random_seed(seed)
    net = build_model(model, preset, model_config, bert_config, train_samples=len(y["sentiment"]))
    net(x1)  # builds the weights with the data's shapes
    params = int(net.count_params())
    trainable = int(sum(np.prod(w.shape) for w in net.trainable_weights))
    if getattr(net, "needs_sample_index", False):
        # Self-MM's label memory rows of the batch (recipes/train.py adds them).
        rows = getattr(net, "train_samples", None) or len(y["sentiment"])
        x = dict(x, sample_index=(np.arange(len(y["sentiment"])) % rows).astype("int32"))
    net.compile(optimizer=_optimizer(net, optimizer, preset, learning_rate), jit_compile=jit_compile)

    start = time.perf_counter()
    net.train_on_batch(x, y)
    first_train_step_s = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        net.train_on_batch(x, y)
    step_times = _time_calls(lambda: net.train_on_batch(x, y), steps)
    batch_size = len(y["sentiment"])
    infer_batch = len(next(iter(x_infer.values())))

    infer = tf.function(lambda inputs: net(inputs, training=False)["sentiment"],
                        jit_compile=jit_compile)
    x_tf = {k: tf.constant(v) for k, v in x_infer.items()}
    x1_tf = {k: tf.constant(v) for k, v in x1.items()}
    for _ in range(warmup):
        infer(x1_tf).numpy()
        infer(x_tf).numpy()
    latency = _time_calls(lambda: infer(x1_tf).numpy(), repeats)
    batch_times = _time_calls(lambda: infer(x_tf).numpy(), repeats)

    rss_after = _peak_rss_mb()
    out = {
        "jit_compile": bool(jit_compile),
        "params": params,
        "trainable_params": trainable,
        "first_train_step_s": float(first_train_step_s),
        "train_step_ms_median": float(np.median(step_times) * 1e3),
        "train_samples_per_s": float(batch_size * steps / step_times.sum()),
        "latency_b1_ms_median": float(np.median(latency) * 1e3),
        "latency_b1_ms_p90": float(np.percentile(latency, 90) * 1e3),
        "throughput_samples_per_s": float(infer_batch * repeats / batch_times.sum()),
        "peak_rss_mb": float(rss_after),
        "rss_growth_mb": float(rss_after - rss_before),
        "peak_gpu_mb": None,
    }
    if gpu is not None:
        out["peak_gpu_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return out


def _optimizer(net, optimizer, preset, learning_rate):
    import keras

    if optimizer == "adam":
        return keras.optimizers.Adam(learning_rate)
    if optimizer != "protocol":
        raise ValueError(f"optimizer must be 'adam' or 'protocol'; got {optimizer!r}.")
    from keras_msa.training.protocol import make_optimizer
    from keras_msa.training.protocol import resolve_protocol

    return make_optimizer(resolve_protocol(type(net), preset), None, net.parameter_groups())


def run_benchmark(model, preset=None, model_config=None, batch_size=64, seq_len=50,
                  xla="both", steps=20, warmup=3, repeats=50, text_dim=768, audio_dim=5,
                  vision_dim=20, aligned=True, seed=0, lens=None, train_batch_size=None,
                  learning_rate=1e-3, bert_config=None, optimizer="adam"):
    """Benchmarks `model` in the XLA modes `xla` (`"off"`, `"on"` or `"both"`).

    `lens=(text, audio, vision)` gives each modality its own length (see
    `make_batches`); `train_batch_size` times training on a batch of that
    size while inference throughput uses `batch_size` (default: the same).
    `bert_config` (keras-hub `BertBackbone` arguments) gives the model a
    random BERT text backbone of that shape and feeds it token ids (see
    `make_batches`); `optimizer` is `"adam"` or `"protocol"` (see
    `benchmark_mode`).

    Returns a JSON-ready dict: the setup (model, shapes, device, versions)
    and `modes`, `{"xla_off": {...}, "xla_on": {...}}` with the fields of
    `benchmark_mode`.

    Example:

    >>> r = run_benchmark("lfdnn", batch_size=4, seq_len=6, xla="off", steps=2,
    ...                   warmup=1, repeats=2, text_dim=8)  # doctest: +SKIP
    >>> r["modes"]["xla_off"]["train_samples_per_s"] > 0  # doctest: +SKIP
    True
    """
    import keras
    import tensorflow as tf

    if xla not in ("off", "on", "both"):
        raise ValueError(f"xla must be 'off', 'on' or 'both'; got {xla!r}.")
    for name, value in (("batch_size", batch_size), ("steps", steps), ("repeats", repeats)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1; got {value}.")
    modes = {"off": [False], "on": [True], "both": [False, True]}[xla]
    vocab = bert_config["vocabulary_size"] if bert_config else None
    batches = make_batches(batch_size, seq_len, text_dim, audio_dim, vision_dim, aligned, seed,
                           lens=lens, vocabulary_size=vocab)
    if train_batch_size and int(train_batch_size) != int(batch_size):
        x_train, y_train, _ = make_batches(int(train_batch_size), seq_len, text_dim, audio_dim,
                                           vision_dim, aligned, seed, lens=lens, vocabulary_size=vocab)
        batches = (x_train, y_train, batches[2], batches[0])
    lens = tuple(int(v) for v in lens) if lens is not None else (seq_len, seq_len, seq_len)
    result = {
        "model": model,
        "preset": preset,
        "model_config": dict(model_config or {}),
        "bert_config": dict(bert_config) if bert_config else None,
        "optimizer": optimizer,
        "batch_size": int(batch_size),
        "train_batch_size": int(train_batch_size or batch_size),
        "seq_len": int(seq_len),
        "lens": list(lens),
        "shapes": {
            "text": [lens[0], text_dim], "audio": [lens[1], audio_dim], "vision": [lens[2], vision_dim],
        },
        "steps": int(steps),
        "warmup": int(warmup),
        "repeats": int(repeats),
        "device": _gpu_name() or "CPU",
        "cpu_threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "modes": {},
    }
    for jit in modes:
        key = "xla_on" if jit else "xla_off"
        result["modes"][key] = benchmark_mode(
            model, preset, model_config, batches, jit, steps=steps, warmup=warmup,
            repeats=repeats, seed=seed, learning_rate=learning_rate, bert_config=bert_config,
            optimizer=optimizer,
        )
    first = next(iter(result["modes"].values()))
    result["params"] = first["params"]
    result["trainable_params"] = first["trainable_params"]
    return result


def format_table(result):
    """A readable text table of `run_benchmark`'s result."""
    rows = [
        ("train samples/s", "train_samples_per_s", "{:.1f}"),
        ("train step ms (median)", "train_step_ms_median", "{:.2f}"),
        ("first train step s (trace/compile)", "first_train_step_s", "{:.2f}"),
        ("latency batch 1 ms (median)", "latency_b1_ms_median", "{:.3f}"),
        ("latency batch 1 ms (p90)", "latency_b1_ms_p90", "{:.3f}"),
        (f"throughput batch {result['batch_size']} samples/s", "throughput_samples_per_s", "{:.1f}"),
        ("peak RSS MB (process so far)", "peak_rss_mb", "{:.0f}"),
        ("RSS growth MB (this mode)", "rss_growth_mb", "{:.0f}"),
        ("peak GPU MB", "peak_gpu_mb", "{:.0f}"),
    ]
    modes = list(result["modes"])
    shapes = ", ".join(f"{k} {v[0]}x{v[1]}" for k, v in result["shapes"].items())
    if result.get("bert_config"):
        shapes += f"; text: token ids into a random BERT {json.dumps(result['bert_config'])}"
    lines = [
        f"model {result['model']}"
        + (f" (preset {result['preset']})" if result["preset"] else "")
        + (f" config {json.dumps(result['model_config'])}" if result["model_config"] else ""),
        f"device {result['device']}; train batch {result.get('train_batch_size', result['batch_size'])}, "
        f"inference batch {result['batch_size']}; {shapes}",
        f"parameters {result['params']:,} (trainable {result['trainable_params']:,})",
        "",
    ]
    width = max(len(r[0]) for r in rows)
    lines.append(" " * width + "".join(f"{m:>14}" for m in modes))
    for label, key, fmt in rows:
        cells = []
        for m in modes:
            v = result["modes"][m][key]
            cells.append(f"{'n/a' if v is None else fmt.format(v):>14}")
        lines.append(f"{label:<{width}}" + "".join(cells))
    return "\n".join(lines)
