"""One training run, shared by `recipes/train.py` and the tests: data, model,
`fit` with the model's own objective, early stopping on validation, test
metrics, and the files a run leaves (`model.keras`, `metrics.json`)."""

import dataclasses
import json
import os
import tempfile
import time

import keras
import numpy as np

from keras_msa.training.callbacks import BestWeights
from keras_msa.training.callbacks import EpochSetter
from keras_msa.training.callbacks import ValidationMetrics
from keras_msa.training.evaluation import evaluate_model
from keras_msa.training.evaluation import infer_task
from keras_msa.training.evaluation import monitor_for


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


def _atomic_write_text(path, text):
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_model_atomic(model, path):
    """`model.save(path)` through a temporary file renamed at the end."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=directory)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_data(config, splits=("train", "valid", "test")):
    """Returns `({split: tf.data.Dataset}, info)` for `config.data`.

    `config.data` is `"synthetic"` (the built-in benchmark) or a directory
    written by `recipes/convert.py` (TFRecord shards + schema.json). `info`
    holds the metric scale and, for synthetic data, the Bayes floors.
    """
    if config.data == "synthetic":
        from keras_msa.data.synthetic import make_synthetic_benchmark

        bench = make_synthetic_benchmark(
            seed=config.synthetic_seed,
            splits=config.synthetic_sizes,
            unimodal_labels=config.synthetic_unimodal_labels,
            aligned=config.synthetic_aligned,
        )
        datasets = {
            s: bench[s].to_tf_dataset(config.batch_size, shuffle=(s == "train"), seed=config.seed)
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
                config.data, s, batch_size=config.batch_size, shuffle=(s == "train"), seed=config.seed
            )
    info = {"dataset": schema.get("dataset"), "scale": scale, "sizes": dict(available)}
    return datasets, info


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


def train(config, datasets=None, info=None):
    """Trains, evaluates and saves one run; returns the metrics dict written
    to `<output_dir>/metrics.json`."""
    keras.utils.set_random_seed(config.seed)
    if datasets is None:
        datasets, info = load_data(config)
    if "train" not in datasets:
        raise ValueError(f"{config.data} has no 'train' split.")
    from keras_msa.data.validation import assert_finite_dataset
    from keras_msa.data.validation import validate_batch

    first_inputs, first_targets = next(iter(datasets["train"]))[:2]
    validate_batch({k: v.numpy() for k, v in first_inputs.items()}, source=f"{config.data}:train")
    task = infer_task(first_targets)
    scale = info["scale"]

    model = build_model(config)
    model(first_inputs)  # build with the data's shapes
    model.compile(optimizer=make_optimizer(config), jit_compile=config.jit_compile)

    valid = datasets.get("valid") or datasets.get("test")
    eval_fn = lambda m, ds: evaluate_model(m, ds, scale)  # noqa: E731
    monitor, mode = monitor_for(task)
    best = BestWeights(monitor=monitor, mode=mode, patience=config.patience)
    callbacks = [EpochSetter(), ValidationMetrics(valid, eval_fn), best]
    callbacks += list(model.training_callbacks(validation_data=valid))

    start = time.time()
    history = model.fit(
        assert_finite_dataset(datasets["train"]),
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=config.verbose,
    )
    train_seconds = time.time() - start

    results = {
        "model": config.model,
        "preset": config.preset,
        "data": config.data,
        "task": task,
        "scale": scale,
        "seed": config.seed,
        "epochs_run": len(history.history.get("loss", [])),
        "best_epoch": None if best.best_epoch is None else best.best_epoch + 1,
        "train_seconds": round(train_seconds, 2),
        "params": int(model.count_params()),
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

    os.makedirs(config.output_dir, exist_ok=True)
    save_model_atomic(model, os.path.join(config.output_dir, "model.keras"))
    _atomic_write_text(
        os.path.join(config.output_dir, "metrics.json"), json.dumps(results, indent=2, default=float)
    )
    return results, model
