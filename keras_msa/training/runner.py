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
    # The training protocol (issue 15): `None` = from the model's
    # `training_presets[preset]`, else the project default
    # (keras_msa/training/protocol.py); a value set here is a "flag".
    epochs: int = None
    batch_size: int = None
    learning_rate: float = None
    weight_decay: float = None
    clipnorm: float = None
    patience: int = None
    seed: int = None
    optimizer: str = None
    epsilon: float = None
    backbone_learning_rate: float = None
    warmup_proportion: float = None
    lr_decay: str = None
    clipvalue: float = None
    l2_weight_decay: float = None
    gradient_accumulation_steps: int = None
    monitor: str = None
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
    # Issue 15: data without a validation split get one carved from train
    # (this fraction, drawn with this seed); the test split is never validated on.
    validation_fraction: float = 0.1
    validation_seed: int = 0


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

    need(config.batch_size is None or (is_int(config.batch_size) and config.batch_size >= 1), "batch_size",
         "an integer >= 1", config.batch_size)
    need(config.epochs is None or (is_int(config.epochs) and config.epochs >= 1), "epochs", "an integer >= 1",
         config.epochs)
    need(config.patience is None or (is_int(config.patience) and config.patience >= 0), "patience",
         "an integer >= 0", config.patience)
    need(config.learning_rate is None or (isinstance(config.learning_rate, (int, float))
                                          and 0 < config.learning_rate < float("inf")),
         "learning_rate", "a finite number > 0", config.learning_rate)
    need(isinstance(config.validation_fraction, (int, float)) and 0 < config.validation_fraction < 1,
         "validation_fraction", "a number in (0, 1)", config.validation_fraction)
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
    from keras_msa.training.protocol import DEFAULT_PROTOCOL

    # A config not yet resolved by `train` (evaluation) batches as the default protocol.
    batch_size = config.batch_size or DEFAULT_PROTOCOL["batch_size"]
    seed = DEFAULT_PROTOCOL["seed"] if config.seed is None else config.seed
    include_index = _needs_sample_index(config)
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
                batch_size, shuffle=(s == "train" and shuffle_train), seed=seed, include_index=include_index
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
                config.data, s, batch_size=batch_size, shuffle=(s == "train" and shuffle_train),
                seed=seed, include_index=include_index,
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
    a validation split too small to validate on: after an epoch of training
    would be too late to say so. (The test split is not read here: nothing
    looks at it before the final evaluation.)"""
    sizes = dict((info or {}).get("sizes") or {})
    where = f"--data={config.data}"
    for split, least in (("train", 1), ("valid", MIN_VALIDATION_SAMPLES)):
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


def carve_validation(train, n_train, fraction, seed, batch_size):
    """Splits a validation set off a training split that has none.

    `round(fraction * n_train)` examples (at least `MIN_VALIDATION_SAMPLES`),
    chosen by `numpy.random.default_rng(seed)` from the example positions of
    `train` (a batched `tf.data.Dataset` that must read in the same order
    every time: `load_data(..., shuffle_train=False)`), become the validation
    split; the rest stay in train. Returns `(train, valid, n_valid)`, both
    batched with `batch_size`, train unshuffled.
    """
    import tensorflow as tf

    n_train = int(n_train)
    n_valid = max(MIN_VALIDATION_SAMPLES, int(round(fraction * n_train)))
    if n_train - n_valid < 1:
        raise ValueError(
            f"The training split holds {n_train} samples and no validation split exists: carving "
            f"{n_valid} for validation (--validation_fraction={fraction}) would leave none to train on. "
            f"Convert the data with a 'valid' split or more training samples."
        )
    is_valid = np.zeros(n_train, bool)
    is_valid[np.random.default_rng(int(seed)).choice(n_train, n_valid, replace=False)] = True
    table = tf.constant(is_valid)
    base = train.unbatch().enumerate()

    def take(want, n):
        picked = base.filter(lambda i, example: tf.equal(tf.gather(table, i), want))
        batches = picked.map(lambda i, example: example).batch(batch_size)
        # A filter hides the length; Keras needs it to know where an epoch ends.
        return batches.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))

    return take(False, n_train - n_valid), take(True, n_valid), n_valid


def _needs_sample_index(config):
    """Whether the model keeps per-sample state (SelfMM's label memory), so
    its batches carry `sample_index`."""
    from keras_msa.models import get_model_class

    try:
        cls = get_model_class(config.model)
    except (ValueError, AttributeError):
        # Evaluation and plotting read a saved model; the name may be unset.
        return False
    return bool(getattr(cls, "needs_sample_index", False))


def build_model(config, train_samples=None):
    """The model of `config`; `train_samples` (the training split's size
    before any validation carve, so every `sample_index` has a row) sizes
    the per-sample memory of a model that has one, unless the model config
    sets it."""
    from keras_msa.models.base import build_registered_model

    return build_registered_model(config.model, config.preset, config.model_config, train_samples)


def resolve_run_protocol(config):
    """The training protocol of `config` (`keras_msa.training.protocol`):
    the model's `training_presets[config.preset]` under the project defaults,
    and every protocol field `config` sets as a `"flag"`. A `--weight_decay`
    > 0 without `--optimizer` on an Adam protocol means AdamW (as the recipe
    always did)."""
    from keras_msa.models import get_model_class
    from keras_msa.training.protocol import PROTOCOL_FIELDS
    from keras_msa.training.protocol import resolve_protocol

    overrides = {f: getattr(config, f) for f in PROTOCOL_FIELDS if getattr(config, f) is not None}
    cls = get_model_class(config.model)
    if overrides.get("weight_decay") and "optimizer" not in overrides:
        if resolve_protocol(cls, config.preset)["optimizer"]["value"] == "adam":
            overrides["optimizer"] = "adamw"
    return resolve_protocol(cls, config.preset, overrides)


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

    from keras_msa.training.protocol import protocol_values

    check_policy(config.mixed_precision or "float32")
    check_config(config)
    try:
        protocol = resolve_run_protocol(config)
    except ValueError as e:
        raise ValueError(f"--model={config.model} --preset={config.preset}: {e}") from None
    config = dataclasses.replace(config, **protocol_values(protocol))
    with precision_policy(config.mixed_precision or "float32"), determinism(config.seed, config.deterministic):
        return _train(config, datasets, info, protocol)


def _train(config, datasets, info, protocol):
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

    from keras_msa.training.protocol import format_protocol
    from keras_msa.training.protocol import make_optimizer
    from keras_msa.training.protocol import monitor_mode

    loaded = datasets is None
    if loaded:
        datasets, info = load_data(config, shuffle_train=not use_custom)
    if "train" not in datasets:
        raise ValueError(f"--data={config.data} has no 'train' split; it has {sorted(datasets)}.")
    info = dict(info or {})
    info["sizes"] = dict(info.get("sizes") or {})
    # Rows of a per-sample memory: `sample_index` counts the whole training
    # split, a carved validation part included.
    index_rows = info["sizes"].get("train")
    validation_split = {"source": "data", "size": info["sizes"].get("valid")}
    if "valid" not in datasets:
        # Never validate on test: carve a validation split off train instead.
        if loaded:
            # A fixed order, so that the carve is the same every epoch.
            datasets.update(load_data(config, splits=("train",), shuffle_train=False)[0])
        n_all = info["sizes"].get("train") or _count_samples(datasets["train"])
        train_part, valid_part, n_valid = carve_validation(
            datasets["train"], n_all, config.validation_fraction, config.validation_seed, config.batch_size)
        if loaded and not use_custom:
            n_left = n_all - n_valid
            train_part = train_part.unbatch().shuffle(n_left, seed=config.seed, reshuffle_each_iteration=True)
            train_part = train_part.batch(config.batch_size).apply(
                tf.data.experimental.assert_cardinality(-(-n_left // config.batch_size)))
        datasets = dict(datasets, train=train_part, valid=valid_part)
        info["sizes"].update(train=n_all - n_valid, valid=n_valid)
        validation_split = {"source": "carved from train", "size": n_valid, "train_size": n_all - n_valid,
                            "fraction": config.validation_fraction, "seed": config.validation_seed}
        if config.verbose:
            print(f"--data={config.data} has no 'valid' split: {n_valid} of its {n_all} training samples "
                  f"(--validation_fraction={config.validation_fraction}, --validation_seed="
                  f"{config.validation_seed}) are the validation split; the test split is only evaluated "
                  f"at the end.", flush=True)
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

    n_train = info["sizes"].get("train")
    if not n_train:
        n_train = _count_samples(datasets["train"])
    drop_remainder = use_custom and strategy.num_replicas_in_sync > 1
    steps_per_epoch = steps_for(n_train, config.batch_size, drop_remainder)

    monitor = config.monitor
    if monitor is None:
        monitor = monitor_for(task)[0][len("val_"):]
        protocol["monitor"] = {"value": monitor, "source": "our choice",
                               "note": "the task's selection metric (validation)"}
    mode = monitor_mode(monitor)
    monitor = f"val_{monitor}"
    if config.verbose:
        print(f"{config.model} training protocol (preset {config.preset or 'none'}):\n"
              f"{format_protocol(protocol)}", flush=True)

    with strategy.scope():
        model = build_model(config, index_rows or n_train)
        model(first_inputs)  # build with the data's shapes
        optimizer = make_optimizer(protocol, steps_per_epoch, model.parameter_groups())
        model.compile(
            optimizer=maybe_loss_scale(optimizer, policy),
            jit_compile=config.jit_compile and not use_custom,
        )

    valid = datasets["valid"]
    # The validation pass also gives the objective and each of its terms
    # (`val_loss`, `val_<term>_loss`), beside the training ones.
    eval_fn = lambda m, ds: _evaluate_with_mse(m, ds, scale, losses=True)  # noqa: E731
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
        base = datasets["train"].unbatch()
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
            steps_per_epoch=steps_per_epoch,
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
        # What the loop was actually given (Keras passes it to every callback).
        "epochs_budget": history_cb.params.get("epochs") if history_cb.params else None,
        "steps_per_epoch": steps_per_epoch,
        "train_batch_size": int(tf.shape(first_targets[next(iter(first_targets))])[0])
        if isinstance(first_targets, dict) else int(tf.shape(first_targets)[0]),
        "protocol": protocol,
        "validation_split": validation_split,
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
            results[split] = _evaluate_with_mse(model, datasets[split], scale)
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


def _evaluate_with_mse(model, dataset, scale, losses=False):
    """The task's metrics plus, for a sentiment score, the MSE (the
    selection metric CrossSent's paper names); with `losses=True` also the
    objective and its terms (`loss`, `<term>_loss`), from the same pass."""
    from keras_msa.training.evaluation import predict_dataset
    from keras_msa.training.evaluation import task_metrics

    if losses:
        from keras_msa.training.evaluation import _run

        predictions, targets, loss_values = _run(model, dataset, with_losses=True)
    else:
        predictions, targets = predict_dataset(model, dataset)
        loss_values = {}
    metrics = task_metrics(predictions, targets, scale)
    metrics.update(loss_values)
    if "sentiment" in predictions and "sentiment" in targets and "mae" in metrics:
        diff = predictions["sentiment"].reshape(-1).astype(np.float64) - targets["sentiment"].reshape(-1)
        metrics["mse"] = float(np.mean(diff * diff))
    return metrics


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
