"""Hyper-parameter search over a model's training protocol with KerasTuner
(`recipes/tune.py`).

Every trial is an ordinary run of `keras_msa.training.runner.train`, so its
directory (`<output_dir>/trials/trial_<id>/`) holds what `recipes/train.py`
writes (`model.keras`, `metrics.json`, `history.csv`) beside KerasTuner's own
`trial.json`. Trials are scored on the **validation split only**: the run
still evaluates the test split and records it in `metrics.json`, but the
search never reads it, and data without a `valid` split are refused (the
runner would otherwise validate on `test`).

The search space is a JSON object. Keys that are fields of the protocol
(`learning_rate`, `batch_size`, `epochs`, `weight_decay`, `clipnorm`,
`patience`) set the run; every other key is a constructor argument of the
model, and a dotted key reaches into a dict argument (`hidden_dims.text`
sets `model_config["hidden_dims"]["text"]`). Each value is

* a list: one of these values (`[16, 32]`, `[{"text": 8}, {"text": 16}]`);
* an object `{"min": a, "max": b}` with optional `"step"` and
  `"sampling": "linear" | "log"`: an integer range when `a`, `b` (and
  `step`) are integers, else a float range;
* anything else: a fixed value.

For example:

    {"learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
     "batch_size": [16, 32], "dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
     "fusion_dim": [32, 64, 128], "hidden_dims.text": [64, 128]}

`algorithm="random"` samples `max_trials` configurations, each trained for
the protocol's `epochs`. `algorithm="hyperband"` lets KerasTuner's Hyperband
schedule the epochs (up to `max_epochs`, so `epochs` cannot be searched);
a trial that Hyperband promotes is trained again from scratch for its larger
budget (a run directory always holds one complete run).

The outcome: `<output_dir>/best_model_config.json` (the whole
`--model_config` of the best trial, base values included),
`<output_dir>/best_protocol.json` (`learning_rate`, `batch_size`, `epochs`
and any other protocol key searched), both in the form `recipes/train.py`
takes, and `<output_dir>/tuning_summary.json` (every trial: its values,
epochs, validation metric and directory; the best trial; the train command).
Running the same search again with the same `output_dir` resumes it
(KerasTuner reloads its oracle) unless `overwrite=True`.
"""

import copy
import dataclasses
import json
import math
import os
import shlex

PROTOCOL_KEYS = ("learning_rate", "batch_size", "epochs", "weight_decay", "clipnorm", "patience")
ALGORITHMS = ("random", "hyperband")
TRIALS_DIRNAME = "trials"


class SearchSpaceError(ValueError):
    """A search space that cannot be searched; the message names the key."""


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_search_space(space, source="--search_space"):
    """Checks a search space (see the module docstring) and returns it as
    `{key: ("choice", values) | ("int", spec) | ("float", spec) | ("fixed", value)}`.

    Raises `SearchSpaceError` naming `source` and the key at fault.
    """
    if not isinstance(space, dict) or not space:
        raise SearchSpaceError(f"{source} must be a non-empty JSON object of hyper-parameters; got {space!r}.")
    parsed = {}
    for key, value in space.items():
        where = f"{source}: key '{key}'"
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise SearchSpaceError(f"{where}: keys are argument names, dotted for dict arguments "
                                   f"('hidden_dims.text').")
        if key.split(".")[0] in PROTOCOL_KEYS and "." in key:
            raise SearchSpaceError(f"{where}: protocol fields ({', '.join(PROTOCOL_KEYS)}) take no dotted part.")
        if isinstance(value, list):
            if not value:
                raise SearchSpaceError(f"{where}: an empty list of choices.")
            encoded = [json.dumps(v, sort_keys=True) for v in value]
            if len(set(encoded)) != len(encoded):
                raise SearchSpaceError(f"{where}: the choices {value!r} repeat a value.")
            parsed[key] = ("choice", value)
        elif isinstance(value, dict) and ("min" in value or "max" in value):
            unknown = set(value) - {"min", "max", "step", "sampling"}
            if unknown:
                raise SearchSpaceError(f"{where}: a range takes min, max, step and sampling; "
                                       f"got also {sorted(unknown)}.")
            lo, hi, step = value.get("min"), value.get("max"), value.get("step")
            sampling = value.get("sampling", "linear")
            if not (_is_number(lo) and _is_number(hi) and lo < hi):
                raise SearchSpaceError(f"{where}: a range needs numbers min < max; got min={lo!r}, max={hi!r}.")
            if step is not None and not (_is_number(step) and step > 0):
                raise SearchSpaceError(f"{where}: step must be a number > 0; got {step!r}.")
            if sampling not in ("linear", "log"):
                raise SearchSpaceError(f"{where}: sampling must be 'linear' or 'log'; got {sampling!r}.")
            if sampling == "log" and lo <= 0:
                raise SearchSpaceError(f"{where}: log sampling needs min > 0; got min={lo!r}.")
            if sampling == "log" and step is not None:
                raise SearchSpaceError(f"{where}: give either a step or log sampling, not both.")
            kind = "int" if _is_int(lo) and _is_int(hi) and (step is None or _is_int(step)) else "float"
            parsed[key] = (kind, {"min": lo, "max": hi, "step": step, "sampling": sampling})
        else:
            parsed[key] = ("fixed", value)
        if key in ("batch_size", "epochs", "patience"):
            kind, spec = parsed[key]
            values = spec if kind == "choice" else [spec] if kind == "fixed" else None
            if kind == "float" or (values is not None and not all(_is_int(v) and v >= 0 for v in values)):
                raise SearchSpaceError(f"{where}: must take integer values; got {value!r}.")
    return parsed


def _define(hp, key, kind, spec):
    """The value of `key` in this trial, declared to KerasTuner's `hp`."""
    if kind == "choice":
        if all(isinstance(v, (bool, int, float, str)) for v in spec) and len({type(v) for v in spec}) == 1:
            return hp.Choice(key, spec)
        # KerasTuner's Choice holds scalars of one type: other values travel as JSON text.
        return json.loads(hp.Choice(key, [json.dumps(v, sort_keys=True) for v in spec]))
    if kind == "fixed":
        if isinstance(spec, (bool, int, float, str)):
            return hp.Fixed(key, spec)
        return json.loads(hp.Fixed(key, json.dumps(spec, sort_keys=True)))
    fn = hp.Int if kind == "int" else hp.Float
    kwargs = {"min_value": spec["min"], "max_value": spec["max"], "sampling": spec["sampling"]}
    if spec["step"] is not None:
        kwargs["step"] = spec["step"]
    return fn(key, **kwargs)


def apply_values(base_config, values):
    """`base_config` (a `TrainConfig`) with the protocol fields and model
    arguments of `values` (`{key: value}`, dotted keys for nested ones)."""
    model_config = copy.deepcopy(dict(base_config.model_config or {}))
    protocol = {}
    for key, value in values.items():
        if key in PROTOCOL_KEYS:
            protocol[key] = value
            continue
        parts = key.split(".")
        node = model_config
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise SearchSpaceError(
                    f"--search_space: key '{key}': '{'.'.join(parts[:i + 1])}' is {child!r} in --model_config, "
                    f"not a dict to set '{parts[i + 1]}' in.")
            node = child
        node[parts[-1]] = value
    return dataclasses.replace(base_config, model_config=model_config, **protocol)


def _check_model_arguments(model_name, parsed, base_config):
    """Refuses, before any trial, a model argument the model does not take."""
    import inspect

    from keras_msa.models import get_model_class

    cls = get_model_class(model_name)
    params = inspect.signature(cls.__init__).parameters
    names = {p for p in params if p != "self"}
    keras_kwargs = {"name", "dtype", "trainable"}
    for key in list(parsed) + list(base_config.model_config or {}):
        top = key.split(".")[0]
        if top in PROTOCOL_KEYS:
            continue
        if top not in names and top not in keras_kwargs:
            raise SearchSpaceError(
                f"--search_space / --model_config: '{top}' is not an argument of {cls.__name__} "
                f"(--model={model_name}); it takes {sorted(names - {'args', 'kwargs'})} and the protocol "
                f"fields {list(PROTOCOL_KEYS)}.")


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def train_command(config, protocol, model_config_path):
    """The `recipes/train.py` command that repeats the best trial's setting."""
    args = ["python", "recipes/train.py", f"--model={config.model}"]
    if config.preset:
        args.append(f"--preset={config.preset}")
    args.append(f"--data={config.data}")
    if config.scale:
        args.append(f"--scale={config.scale}")
    for key, value in protocol.items():
        args.append(f"--{key}={value}")
    args += [f"--seed={config.seed}"] + ([] if "patience" in protocol else [f"--patience={config.patience}"])
    if config.weight_decay and "weight_decay" not in protocol:
        args.append(f"--weight_decay={config.weight_decay}")
    if config.data == "synthetic":
        args.append(f"--synthetic_seed={config.synthetic_seed}")
        for flag in ("synthetic_sizes", "synthetic_options"):
            if getattr(config, flag):
                args.append(f"--{flag}={json.dumps(getattr(config, flag), sort_keys=True)}")
    cmd = " ".join(shlex.quote(a) for a in args)
    return f"{cmd} --model_config=\"$(cat {shlex.quote(model_config_path)})\""


def tune(base_config, search_space, algorithm="random", max_trials=3, max_epochs=None, factor=3,
         hyperband_iterations=1, tuner_seed=0, overwrite=False, data_fn=None, verbose=0):
    """Searches `search_space` around `base_config` (a `TrainConfig`; its
    `output_dir` is the search's directory) and writes the best setting.

    Args:
        base_config: the protocol and model every trial starts from.
        search_space: dict (see the module docstring).
        algorithm: `"random"` or `"hyperband"`.
        max_trials: number of configurations of the random search.
        max_epochs: Hyperband's largest epoch budget (default
            `base_config.epochs`).
        factor, hyperband_iterations: Hyperband's reduction factor and
            number of sweeps.
        tuner_seed: seed of KerasTuner's sampling (each trial's training
            uses `base_config.seed`).
        overwrite: start afresh instead of resuming an earlier search in
            `output_dir`.
        data_fn: `config -> (datasets, info)` (default
            `keras_msa.training.runner.load_data`); called per trial,
            because the batch size may be searched.
        verbose: KerasTuner's progress lines (0 = quiet).

    Returns:
        The dict written to `<output_dir>/tuning_summary.json`.
    """
    import keras
    import keras_tuner

    from keras_msa.training.evaluation import infer_task
    from keras_msa.training.evaluation import monitor_for
    from keras_msa.training.precision import determinism
    from keras_msa.training.protocol import DEFAULT_PROTOCOL
    from keras_msa.training.runner import check_config
    from keras_msa.training.runner import load_data
    from keras_msa.training.runner import train
    from keras_msa.utils.files import atomic_write_text

    if algorithm not in ALGORITHMS:
        raise ValueError(f"--algorithm must be one of {ALGORITHMS}; got {algorithm!r}.")
    parsed = parse_search_space(search_space)
    if algorithm == "hyperband" and "epochs" in parsed:
        raise SearchSpaceError("--search_space: key 'epochs': Hyperband sets each trial's epochs itself "
                               "(up to --max_epochs); drop 'epochs' or use --algorithm=random.")
    if algorithm == "random" and not (_is_int(max_trials) and max_trials >= 1):
        raise ValueError(f"--max_trials must be an integer >= 1; got {max_trials!r}.")
    max_epochs = base_config.epochs if max_epochs is None else max_epochs
    if algorithm == "hyperband" and not (_is_int(max_epochs) and max_epochs >= 1):
        raise ValueError(f"--max_epochs must be an integer >= 1; got {max_epochs!r}.")
    check_config(base_config)
    _check_model_arguments(base_config.model, parsed, base_config)
    data_fn = data_fn or (lambda config: load_data(config))
    output_dir = base_config.output_dir
    os.makedirs(output_dir, exist_ok=True)
    # The objective has to exist before the first trial and depends on the
    # task, which the data's targets tell: read one batch, train nothing.
    # Seeded as a trial is: shuffling the training split is a random op, which
    # op determinism (TF_DETERMINISTIC_OPS=1) refuses without a global seed.
    seed = DEFAULT_PROTOCOL["seed"] if base_config.seed is None else base_config.seed
    with determinism(seed, base_config.deterministic):
        probe, _ = data_fn(base_config)
    if "valid" not in probe:
        raise ValueError(
            f"--data={base_config.data} has no 'valid' split; tuning selects on validation only and "
            f"never on 'test'. It has {sorted(probe)}.")
    monitor, mode = monitor_for(infer_task(next(iter(probe["train"]))[1]))
    metric = monitor[len("val_"):]
    del probe
    objective = keras_tuner.Objective(f"val_{metric}", direction=mode)

    # The whole space is declared before the first trial: an oracle that
    # learns it from the trials samples nothing the first time (Hyperband then
    # stops at once, random search runs the defaults).
    space = keras_tuner.HyperParameters()
    for key, (kind, spec) in parsed.items():
        _define(space, key, kind, spec)
    common = dict(objective=objective, hyperparameters=space, tune_new_entries=False, seed=tuner_seed)
    if algorithm == "random":
        oracle = keras_tuner.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    else:
        oracle = keras_tuner.oracles.HyperbandOracle(max_epochs=max_epochs, factor=factor,
                                                     hyperband_iterations=hyperband_iterations, **common)

    class RunTuner(keras_tuner.engine.base_tuner.BaseTuner):
        """One keras_msa run per trial, in KerasTuner's trial directory."""

        def run_trial(self, trial, *args, **kwargs):
            hp = trial.hyperparameters
            values = {key: _define(hp, key, kind, spec) for key, (kind, spec) in parsed.items()}
            if algorithm == "hyperband":
                values["epochs"] = int(hp.values["tuner/epochs"])
            trial_dir = self.get_trial_dir(trial.trial_id)
            try:
                config = dataclasses.replace(apply_values(base_config, values), output_dir=trial_dir)
                check_config(config)
                keras.backend.clear_session()
                datasets, info = data_fn(config)
                if "valid" not in datasets:
                    raise ValueError(f"--data={config.data} has no 'valid' split to select on.")
                results, _ = train(config, datasets, info)
            except Exception as e:
                # A run that cannot start is a mistake in the search, not a bad
                # point of it: stop instead of sampling around it.
                raise keras_tuner.errors.FatalError(f"Trial {trial.trial_id} ({values}): {e}") from e
            score = results["valid"].get(metric)
            if score is None or not math.isfinite(score):
                raise keras_tuner.errors.FailedTrialError(
                    f"Trial {trial.trial_id} ({values}): validation {metric} is {score!r}.")
            return {f"val_{metric}": float(score)}

    tuner = RunTuner(oracle=oracle, directory=output_dir, project_name=TRIALS_DIRNAME, overwrite=overwrite)
    tuner.search(verbose=verbose)

    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        trial_dir = os.path.join(output_dir, TRIALS_DIRNAME, f"trial_{trial_id}")
        metrics_path = os.path.join(trial_dir, "metrics.json")
        status = str(trial.status)
        row = {"trial_id": trial_id, "status": status, "dir": trial_dir,
               "values": {k: v for k, v in trial.hyperparameters.values.items()}}
        if status == "COMPLETED" and os.path.exists(metrics_path):
            results = _read_json(metrics_path)
            row["epochs"] = results["config"]["epochs"]
            row[f"valid_{metric}"] = results["valid"][metric]
            row["config"] = results["config"]
        rows.append(row)
    scored = [r for r in rows if f"valid_{metric}" in r]
    if not scored:
        raise RuntimeError(f"No trial of the search in {output_dir} completed; see the trial.json files "
                           f"under {os.path.join(output_dir, TRIALS_DIRNAME)}.")
    sign = 1.0 if mode == "min" else -1.0
    # The first of equal scores wins, as in KerasTuner.
    best = min(scored, key=lambda r: sign * r[f"valid_{metric}"])
    best_config = best["config"]
    protocol = {"learning_rate": best_config["learning_rate"], "batch_size": best_config["batch_size"],
                "epochs": best_config["epochs"]}
    for key in PROTOCOL_KEYS:
        if key in parsed and key not in protocol:
            protocol[key] = best_config[key]
    model_config_path = os.path.join(output_dir, "best_model_config.json")
    protocol_path = os.path.join(output_dir, "best_protocol.json")
    atomic_write_text(model_config_path, json.dumps(best_config["model_config"], indent=2, sort_keys=True) + "\n")
    atomic_write_text(protocol_path, json.dumps(protocol, indent=2) + "\n")
    for r in rows:
        r.pop("config", None)
    summary = {
        "algorithm": algorithm,
        "model": base_config.model,
        "preset": base_config.preset,
        "data": base_config.data,
        "selection": {"split": "valid", "metric": metric, "mode": mode},
        "search_space": search_space,
        "best_trial": best["trial_id"],
        "best_dir": best["dir"],
        f"best_valid_{metric}": best[f"valid_{metric}"],
        "best_model_config": best_config["model_config"],
        "best_protocol": protocol,
        "train_command": train_command(base_config, protocol, model_config_path),
        "trials": rows,
    }
    atomic_write_text(os.path.join(output_dir, "tuning_summary.json"),
                      json.dumps(summary, indent=2, default=str) + "\n")
    return summary
