"""One training run, shared by `recipes/train.py` and the tests: data, model,
`fit` (or the custom loop) with the model's own objective, early stopping on
validation, test metrics, and the files a run leaves (`model.keras`,
`metrics.json`, `history.csv`, `checkpoints/`).

A run is reproducible (`keras.utils.set_random_seed` plus TensorFlow op
determinism), can use mixed precision (`mixed_precision`), any
`tf.distribute` strategy (`strategy`), and, with `checkpoint_every_steps`,
resumes where it was killed when the same command runs again. `train_seeds`
runs several seeds and writes their mean, spread and confidence intervals.
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np

from keras_msa.models.base import MODALITIES
from keras_msa.training.callbacks import BestWeights
from keras_msa.training.callbacks import EpochLine
from keras_msa.training.callbacks import EpochSetter
from keras_msa.training.callbacks import ValidationMetrics
from keras_msa.training.evaluation import evaluate_model
from keras_msa.training.evaluation import infer_task
from keras_msa.training.evaluation import monitor_for
from keras_msa.utils.files import atomic_path
from keras_msa.utils.files import atomic_write_text


@dataclasses.dataclass
class TrainConfig:
    """Everything one run depends on (the recipe's flags)."""

    model: str = "lfdnn"
    preset: str = None
    model_config: dict = dataclasses.field(default_factory=dict)
    data: str = "synthetic"
    scale: str = None
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    clipnorm: float = None
    patience: int = 10
    seed: int = 1111
    output_dir: str = "runs/lfdnn"
    synthetic_seed: int = 0
    synthetic_sizes: dict = None
    synthetic_unimodal_labels: bool = False
    synthetic_aligned: bool = True
    jit_compile: bool = False
    verbose: int = 2
    # Added for issue 9 (scale and reproducibility).
    mixed_precision: str = "float32"
    strategy: str = "default"
    loop: str = "auto"
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 2
    deterministic: bool = True
    synthetic_options: dict = None
    # Issue 18: every epoch's logs as TensorBoard event files (None = none).
    tensorboard_dir: str = None
    # Issue 18: model.keras holds the weights alone unless asked to keep the
    # optimizer (resumable runs use their own checkpoints, not model.keras).
    save_optimizer: bool = False


# Config fields that may change between a run and its resumption.
_RESUME_FREE_FIELDS = ("epochs", "verbose", "output_dir", "checkpoint_every_steps", "keep_checkpoints",
                       "tensorboard_dir", "save_optimizer")

# Validation metrics include a correlation, which needs two samples.
MIN_VALIDATION_SAMPLES = 2


def parse_json_flag(flag, value, kind=dict):
    """The JSON value of `--<flag>` (`None` when empty), or a `ValueError`
    that names the flag, the parse error and the type expected."""
    if value is None or value == "":
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise ValueError(f"--{flag} is not valid JSON ({e}); got {value!r}.") from None
    if not isinstance(parsed, kind):
        raise ValueError(f"--{flag} must be a JSON {'object' if kind is dict else kind.__name__}; "
                         f"got {type(parsed).__name__} {value!r}.")
    return parsed


def check_config(config):
    """Raises `ValueError` naming the flag of the first value of `config`
    that cannot make a run (before any data are read)."""
    def need(ok, flag, what, value):
        if not ok:
            raise ValueError(f"--{flag} must be {what}; got {value!r}.")

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    need(is_int(config.batch_size) and config.batch_size >= 1, "batch_size", "an integer >= 1", config.batch_size)
    need(is_int(config.epochs) and config.epochs >= 1, "epochs", "an integer >= 1", config.epochs)
    need(is_int(config.patience) and config.patience >= 0, "patience", "an integer >= 0", config.patience)
    need(isinstance(config.learning_rate, (int, float)) and 0 < config.learning_rate < float("inf"),
         "learning_rate", "a finite number > 0", config.learning_rate)
    need(is_int(config.checkpoint_every_steps) and config.checkpoint_every_steps >= 0,
         "checkpoint_every_steps", "an integer >= 0", config.checkpoint_every_steps)
    need(is_int(config.keep_checkpoints) and config.keep_checkpoints >= 1, "keep_checkpoints",
         "an integer >= 1", config.keep_checkpoints)
    for flag in ("model_config", "synthetic_options"):
        value = getattr(config, flag)
        need(value is None or isinstance(value, dict), flag, "a JSON object (dict)", value)
    if config.tensorboard_dir:
        import importlib.util

        # Keras's TensorBoard callback fails only at the first epoch's end without it.
        need(importlib.util.find_spec("tensorboard") is not None, "tensorboard_dir",
             "used with the tensorboard package installed (pip install tensorboard)", config.tensorboard_dir)
    sizes = config.synthetic_sizes
    if sizes is not None:
        need(isinstance(sizes, dict) and sizes, "synthetic_sizes",
             'a non-empty JSON object of split sizes, e.g. {"train": 512, "valid": 128, "test": 256}', sizes)
        for split, n in sizes.items():
            # The generator cannot make an empty split (and an empty one could not be used).
            need(is_int(n) and n >= 1, "synthetic_sizes", f"split sizes that are integers >= 1 ('{split}')", n)


def package_versions():
    """Versions of what a run's numbers depend on; a package that is not
    installed is `None`."""
    import platform
    from importlib import metadata

    import tensorflow as tf

    import keras_msa

    versions = {"python": platform.python_version(), "numpy": np.__version__, "tensorflow": tf.__version__,
                "keras": keras.__version__, "keras_msa": keras_msa.__version__}
    try:
        versions["keras-hub"] = metadata.version("keras-hub")
    except metadata.PackageNotFoundError:
        versions["keras-hub"] = None
    return versions


def machine_info():
    """The CPU model (from /proc/cpuinfo, else `platform`) and the names of
    the GPUs TensorFlow sees."""
    import platform

    import tensorflow as tf

    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append(details.get("device_name") or device.name)
    return {"cpu": cpu or platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "gpus": gpus}


def git_info(path=None, timeout=5.0):
    """`{"commit": sha, "dirty": bool}` of the git checkout whose root holds
    the keras_msa package directory `path` (default: this package), or
    `None` when there is none (an installed wheel, no git, git too slow).
    `dirty` counts changes to tracked files only."""
    import subprocess

    if path is None:
        path = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    package_root = os.path.dirname(path)

    def git(*args):
        out = subprocess.run(["git", "-C", package_root, *args], capture_output=True, text=True,
                             timeout=timeout, check=True)
        return out.stdout.strip()

    try:
        top = git("rev-parse", "--show-toplevel")
        # A wheel inside some other repository's ignored folder (a .venv) is no checkout of keras_msa.
        if os.path.realpath(top) != os.path.realpath(package_root):
            return None
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def save_model_atomic(model, path):
    """`model.save(path)` through a temporary file renamed at the end."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def load_data(config, splits=("train", "valid", "test"), shuffle_train=True):
    """Returns `({split: tf.data.Dataset}, info)` for `config.data`.

    `config.data` is `"synthetic"` (the built-in benchmark) or a directory
    written by `recipes/convert.py` (TFRecord shards + schema.json). `info`
    holds the metric scale and, for synthetic data, the Bayes floors.
    `shuffle_train=False` leaves the training split in file order (the custom
    loop shuffles each epoch itself, from the seed and the epoch number).
    """
    if config.data == "synthetic":
        from keras_msa.data.synthetic import make_synthetic_benchmark

        bench = make_synthetic_benchmark(
            seed=config.synthetic_seed,
            splits=config.synthetic_sizes,
            unimodal_labels=config.synthetic_unimodal_labels,
            aligned=config.synthetic_aligned,
            **dict(config.synthetic_options or {}),
        )
        datasets = {
            s: bench[s].to_tf_dataset(
                config.batch_size, shuffle=(s == "train" and shuffle_train), seed=config.seed
            )
            for s in splits
            if s in bench
        }
        info = {
            "dataset": "synthetic",
            "scale": config.scale or "mosi",
            "bayes_mae": {s: bench[s].bayes_mae for s in bench},
            "text_only_bayes_mae": {s: bench[s].text_only_bayes_mae for s in bench},
            "sizes": {s: len(bench[s]) for s in bench},
        }
        return datasets, info

    from keras_msa.data.tfrecord import load_split
    from keras_msa.data.tfrecord import read_schema

    if not os.path.isdir(config.data):
        raise FileNotFoundError(
            f"--data={config.data}: not 'synthetic' and not a directory. Convert a "
            f"dataset first with recipes/convert.py."
        )
    schema = read_schema(config.data)
    name = str(schema.get("dataset", "")).lower()
    scale = config.scale or ("sims" if "sims" in name else "mosi")
    available = schema.get("splits", {})
    datasets = {}
    for s in splits:
        if s in available:
            datasets[s] = load_split(
                config.data, s, batch_size=config.batch_size, shuffle=(s == "train" and shuffle_train),
                seed=config.seed,
            )
    info = {"dataset": schema.get("dataset"), "scale": scale, "sizes": dict(available)}
    return datasets, info


def _count_samples(dataset):
    import tensorflow as tf

    n = 0
    for batch in dataset:
        targets = batch[1]
        first = targets[next(iter(targets))] if isinstance(targets, dict) else targets
        n += int(tf.shape(first)[0])
    return n


def _check_split_sizes(config, datasets, info):
    """Refuses, before the first epoch, a training split without samples and
    a validation split (`valid`, else `test`) too small to validate on: after
    an epoch of training would be too late to say so."""
    sizes = dict((info or {}).get("sizes") or {})
    where = f"--data={config.data}"
    if "valid" in datasets:
        val_split = "valid"
    elif "test" in datasets:
        val_split = "test"
    else:
        raise ValueError(
            f"{where} has no 'valid' (or 'test') split to validate on: early stopping and the "
            f"validation metrics need one. It has {sorted(datasets)}."
        )
    for split, least in (("train", 1), (val_split, MIN_VALIDATION_SAMPLES)):
        n = sizes.get(split)
        if n is None:
            n = _count_samples(datasets[split])
        if n < least:
            role = "training" if split == "train" else "validation"
            raise ValueError(
                f"The {role} split '{split}' of {where} holds {n} sample{'s' if n != 1 else ''}; "
                f"{'training' if split == 'train' else 'validation (metrics with a correlation, early stopping)'} "
                f"needs at least {least}. Convert the data with a larger '{split}' split"
                f"{' (or pass --synthetic_sizes)' if config.data == 'synthetic' else ''}."
            )


def build_model(config):
    from keras_msa.models import get_model_class

    cls = get_model_class(config.model)
    overrides = dict(config.model_config or {})
    if config.preset:
        return cls.from_preset(config.preset, **overrides)
    return cls(**overrides)


def make_optimizer(config):
    kwargs = {"learning_rate": config.learning_rate}
    if config.clipnorm:
        kwargs["clipnorm"] = config.clipnorm
    if config.weight_decay:
        return keras.optimizers.AdamW(weight_decay=config.weight_decay, **kwargs)
    return keras.optimizers.Adam(**kwargs)


def _use_custom_loop(config):
    if config.loop not in ("auto", "fit", "custom"):
        raise ValueError(f"Unknown loop '{config.loop}'; expected 'auto', 'fit' or 'custom'.")
    if config.loop == "fit":
        if config.strategy == "multi_worker":
            raise ValueError(
                "Keras 3's fit does not run under MultiWorkerMirroredStrategy "
                "(keras-team/keras#20585): use --loop=custom (or auto) with --strategy=multi_worker."
            )
        if config.strategy == "mirrored":
            raise ValueError(
                "Keras 3.15's fit under MirroredStrategy averages the first data batch over "
                "replicas to build the model, which fails on the boolean masks of a keras_msa "
                "batch: use --loop=custom (or auto) with --strategy=mirrored."
            )
        if config.checkpoint_every_steps:
            raise ValueError("Resumable checkpoints need the custom loop: use --loop=custom (or auto).")
        return False
    if config.loop == "custom":
        return True
    return config.strategy != "default" or bool(config.checkpoint_every_steps)


def _fingerprint(config):
    """What a checkpoint must agree on to be resumed by `config`."""
    d = dataclasses.asdict(config)
    for k in _RESUME_FREE_FIELDS:
        d.pop(k, None)
    return json.loads(json.dumps(d, default=str, sort_keys=True))


def train(config, datasets=None, info=None):
    """Trains, evaluates and saves one run; returns `(metrics dict, model)`,
    the dict also written to `<output_dir>/metrics.json`.

    The precision policy is set for the run only (models are built under it)
    and restored afterwards.
    """
    from keras_msa.training.precision import check_policy
    from keras_msa.training.precision import determinism
    from keras_msa.training.precision import precision_policy

    check_policy(config.mixed_precision or "float32")
    check_config(config)
    with precision_policy(config.mixed_precision or "float32"), determinism(config.seed, config.deterministic):
        return _train(config, datasets, info)


def _train(config, datasets, info):
    import tensorflow as tf

    from keras_msa.data.validation import assert_finite_dataset
    from keras_msa.data.validation import validate_batch
    from keras_msa.training.checkpointing import CheckpointDirectory
    from keras_msa.training.distributed import CustomLoop
    from keras_msa.training.distributed import epoch_seed
    from keras_msa.training.distributed import make_strategy
    from keras_msa.training.distributed import steps_for
    from keras_msa.training.distributed import worker_info
    from keras_msa.training.history import HistoryCSV
    from keras_msa.training.precision import maybe_loss_scale

    use_custom = _use_custom_loop(config)
    strategy = make_strategy(config.strategy)
    task_index, is_chief = worker_info(strategy)
    # Workers other than the chief keep their own files apart (a shared file
    # system must not see two writers of one path).
    output_dir = config.output_dir if is_chief else os.path.join(config.output_dir, f"worker_{task_index}")
    existing = output_dir
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if existing and not os.path.isdir(existing):
        raise NotADirectoryError(f"--output_dir={config.output_dir}: {existing} is a file, not a directory.")
    os.makedirs(output_dir, exist_ok=True)

    if datasets is None:
        datasets, info = load_data(config, shuffle_train=not use_custom)
    if "train" not in datasets:
        raise ValueError(f"--data={config.data} has no 'train' split; it has {sorted(datasets)}.")
    _check_split_sizes(config, datasets, info)

    first_inputs, first_targets = next(iter(datasets["train"]))[:2]
    # Check the modalities the data holds (AVEC 2019 has no text unless a word
    # feature set was converted); a model that needs an absent one says so itself.
    present = [m for m in MODALITIES if m in first_inputs] or list(MODALITIES)
    validate_batch(
        {k: v.numpy() for k, v in first_inputs.items()}, modalities=present, source=f"{config.data}:train"
    )
    task = infer_task(first_targets)
    scale = info["scale"]
    policy = keras.mixed_precision.global_policy().name

    with strategy.scope():
        model = build_model(config)
        model(first_inputs)  # build with the data's shapes
        model.compile(
            optimizer=maybe_loss_scale(make_optimizer(config), policy),
            jit_compile=config.jit_compile and not use_custom,
        )

    valid = datasets.get("valid") or datasets.get("test")
    # The validation pass also gives the objective and each of its terms
    # (`val_loss`, `val_<term>_loss`), beside the training ones (issue 15).
    eval_fn = lambda m, ds: evaluate_model(m, ds, scale, losses=True)  # noqa: E731
    monitor, mode = monitor_for(task)
    best = BestWeights(monitor=monitor, mode=mode, patience=config.patience)
    history_cb = HistoryCSV(os.path.join(output_dir, "history.csv"))
    callbacks = [ValidationMetrics(valid, eval_fn), best]
    callbacks += list(model.training_callbacks(validation_data=valid))
    # Last, so that their rows hold what the callbacks above added to the logs.
    if config.tensorboard_dir:
        tb_dir = config.tensorboard_dir if is_chief else os.path.join(config.tensorboard_dir, f"worker_{task_index}")
        callbacks.append(keras.callbacks.TensorBoard(log_dir=tb_dir))
    callbacks.append(history_cb)
    if config.verbose:
        callbacks.append(EpochLine(monitor=monitor, mode=mode, epochs=config.epochs))

    resumed_from = None
    start = time.time()
    if use_custom:
        n_train = (info.get("sizes") or {}).get("train")
        if not n_train:
            n_train = int(sum(int(tf.shape(b[1][next(iter(b[1]))])[0]) for b in datasets["train"]))
        base = datasets["train"].unbatch()
        drop_remainder = strategy.num_replicas_in_sync > 1
        buffer = int(min(n_train, 100_000))

        def make_dataset(epoch):
            ds = base.shuffle(buffer, seed=epoch_seed(config.seed, epoch), reshuffle_each_iteration=False)
            ds = ds.batch(config.batch_size, drop_remainder=drop_remainder)
            return assert_finite_dataset(ds).prefetch(tf.data.AUTOTUNE)

        checkpoints = None
        if config.checkpoint_every_steps:
            checkpoints = CheckpointDirectory(os.path.join(output_dir, "checkpoints"), keep=config.keep_checkpoints)
            resumed_from = checkpoints.latest()
            if resumed_from and config.verbose:
                print(f"Resuming from {resumed_from}", flush=True)
        loop = CustomLoop(model, strategy, jit_compile=config.jit_compile)
        loop.fit(
            make_dataset,
            steps_per_epoch=steps_for(n_train, config.batch_size, drop_remainder),
            epochs=config.epochs,
            callbacks=callbacks,
            checkpoints=checkpoints,
            checkpoint_every_steps=config.checkpoint_every_steps,
            fingerprint=_fingerprint(config),
            # EpochLine prints the epoch lines.
            verbose=0,
        )
    else:
        model.fit(
            assert_finite_dataset(datasets["train"]),
            epochs=config.epochs,
            callbacks=[EpochSetter()] + callbacks,
            # load_data shuffled the training split already (seeded); fit's
            # default shuffle=True only warns for a tf.data.Dataset.
            shuffle=False,
            # EpochLine prints a short line per epoch instead of Keras's.
            verbose=0,
        )
    train_seconds = time.time() - start

    results = {
        "model": config.model,
        "preset": config.preset,
        "data": config.data,
        "task": task,
        "scale": scale,
        "seed": config.seed,
        "epochs_run": len(history_cb.rows),
        "best_epoch": None if best.best_epoch is None else best.best_epoch + 1,
        "train_seconds": round(train_seconds, 2),
        "params": int(model.count_params()),
        "mixed_precision": policy,
        "strategy": config.strategy,
        "num_replicas": int(strategy.num_replicas_in_sync),
        "loop": "custom" if use_custom else "fit",
        "resumed_from": None if resumed_from is None else os.path.basename(resumed_from),
        "output_dir": output_dir,
    }
    for split in ("valid", "test"):
        if split in datasets:
            results[split] = evaluate_model(model, datasets[split], scale)
    if "bayes_mae" in info:
        results["bayes_mae"] = info["bayes_mae"]
        results["text_only_bayes_mae"] = info["text_only_bayes_mae"]
        if "test" in results and "mae" in results["test"]:
            results["gap_to_bayes_mae_test"] = results["test"]["mae"] - info["bayes_mae"]["test"]
            y = None
            # The mean predictor's test MAE: the trivial baseline to beat.
            for batch in datasets["test"]:
                t = batch[1]["sentiment"].numpy().reshape(-1)
                y = t if y is None else np.concatenate([y, t])
            train_mean = float(
                np.concatenate([b[1]["sentiment"].numpy().reshape(-1) for b in datasets["train"]]).mean()
            )
            results["mean_predictor_mae_test"] = float(np.abs(y - train_mean).mean())
    results["config"] = dataclasses.asdict(config)
    results["versions"] = package_versions()
    results["machine"] = machine_info()
    git = git_info()
    if git is not None:
        results["git"] = git

    from keras_msa.export.saved_model import save_keras_model  # weights only unless asked (issue 18)
    save_keras_model(model, os.path.join(output_dir, "model.keras"),
                     keep_optimizer=bool(config.save_optimizer))
    atomic_write_text(
        os.path.join(output_dir, "metrics.json"), json.dumps(results, indent=2, default=float)
    )
    return results, model


def evaluate_saved_model(model_path, config, split="test"):
    """Loads the `.keras` file `model_path` (safe mode) and evaluates it on
    `split` of `config.data`; returns the report `recipes/evaluate.py` prints.

    Raises an error naming the flag and the path for a missing or damaged
    model file (`keras_msa.utils.loading.ModelFileError`), a split the data
    do not have or that is empty, and data whose feature widths are not the
    model's (`BatchValidationError`).
    """
    from keras_msa.data.validation import expected_dims_from_model
    from keras_msa.data.validation import validate_batch
    from keras_msa.utils.loading import load_model

    check_config(config)
    model = load_model(model_path, label="--model_path")
    datasets, info = load_data(config, splits=(split,))
    if split not in datasets:
        raise ValueError(f"--data={config.data} has no split '{split}' (--split); it has "
                         f"{sorted((info or {}).get('sizes') or {})}.")
    first = next(iter(datasets[split]), None)
    if first is None:
        raise ValueError(f"--split={split} of --data={config.data} is empty: nothing to evaluate.")
    expected = expected_dims_from_model(model)
    validate_batch(
        {k: v.numpy() for k, v in first[0].items()},
        expected_dims=expected,
        # The modalities the model was built with (AVEC 2019 data has no text).
        modalities=list(expected) or MODALITIES,
        source=f"--data={config.data} split '{split}' (the model {model_path} was built for widths {expected})",
    )
    report = {"model_path": model_path, "data": config.data, "split": split,
              "metrics": evaluate_model(model, datasets[split], info["scale"])}
    if "bayes_mae" in info:
        report["bayes_mae"] = info["bayes_mae"][split]
    return report


def train_seeds(config, seeds):
    """Runs `config` once per seed (`<output_dir>/seed_<seed>/`) and writes
    `<output_dir>/seeds_summary.json` (per split and metric: mean, std, 95%
    Student-t confidence interval, per-seed values) and `seeds_summary.md`.
    Returns `(summary, [metrics of each run])`."""
    from keras_msa.training.statistics import markdown_table
    from keras_msa.training.statistics import summarize_runs

    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"Seeds repeat: {seeds}.")
    runs = []
    for seed in seeds:
        keras.backend.clear_session()
        run_config = dataclasses.replace(
            config, seed=seed, output_dir=os.path.join(config.output_dir, f"seed_{seed}")
        )
        results, _ = train(run_config)
        runs.append(results)
    summary = summarize_runs(runs)
    summary["model"] = config.model
    summary["data"] = config.data
    summary["per_run"] = [
        {k: r.get(k) for k in ("seed", "epochs_run", "best_epoch", "train_seconds")} for r in runs
    ]
    os.makedirs(config.output_dir, exist_ok=True)
    atomic_write_text(
        os.path.join(config.output_dir, "seeds_summary.json"), json.dumps(summary, indent=2, default=float)
    )
    title = f"{config.model} on {config.data}"
    md = "\n".join(markdown_table(summary, split, title=f"{title} ({split})") for split in ("valid", "test")
                   if split in summary)
    atomic_write_text(os.path.join(config.output_dir, "seeds_summary.md"), md)
    return summary, runs
