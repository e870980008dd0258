"""Training protocols: a paper's whole training recipe, field by field, with
where each value comes from.

A model class lists its protocols in `training_presets`, one per paper
preset (`"mosi"`, `"mosei"`, `"sims"`, ...), grouped by source:

    training_presets = {
        "mosi": {
            "paper": {"optimizer": "adamw", "learning_rate": 7.5e-6, ...},
            "our choice": {"patience": 0},
            "notes": {"epochs": "Table 2's '826' read as batch 8, 26 epochs"},
        },
    }

`resolve_protocol(model_cls, preset, overrides)` fills every field of
`PROTOCOL_FIELDS` from (in rising priority) the project defaults (`"our
choice"`), the preset's groups, and `overrides` (the recipe's explicit flags,
`"flag"`), and returns `{field: {"value": .., "source": .., "note": ..}}`.
`recipes/train.py --preset=<name>` prints it at the start of a run and saves
it in `metrics.json` under `"protocol"`.

The optimizer is built by `make_optimizer(protocol, steps_per_epoch,
parameter_groups)`: Adam or AdamW with the protocol's epsilon and weight
decay, gradient clipping by norm or by value, and a learning rate that is a
`WarmupLinearDecay` schedule of the optimizer's own step (so a run resumed
from a checkpoint, which restores `optimizer.iterations`, continues the same
schedule). Parameter groups (e.g. a pretrained text backbone at its own rate)
are learning-rate multipliers of the scheduled rate, applied per variable by
`GroupedAdam` / `GroupedAdamW`.
"""

import math

import keras
from keras import ops

PROTOCOL_FIELDS = (
    "optimizer",
    "learning_rate",
    "backbone_learning_rate",
    "epsilon",
    "weight_decay",
    "l2_weight_decay",
    "gradient_accumulation_steps",
    "warmup_proportion",
    "lr_decay",
    "batch_size",
    "epochs",
    "clipnorm",
    "clipvalue",
    "patience",
    "monitor",
    "seed",
)
#: Where a value comes from. "MMSA": the reference framework's own
#: settings (its config_regression.json and trainer), for the baselines it
#: implements (MulT, LF-DNN and EF-LSTM's `mmsa_*` presets).
SOURCES = ("paper", "MMSA", "ARCHITECTURES.md", "our choice")
OPTIMIZERS = ("adam", "adamw")
LR_DECAYS = ("none", "linear")

#: The project's defaults: what a run uses where neither the paper, the
#: specs nor a flag says otherwise (the recipe's historical defaults; epsilon
#: is Keras's; `monitor=None` is the task's selection metric, e.g. `mae`).
DEFAULT_PROTOCOL = {
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "backbone_learning_rate": None,
    "epsilon": 1e-7,
    "weight_decay": 0.0,
    "l2_weight_decay": 0.0,
    "gradient_accumulation_steps": None,
    "warmup_proportion": 0.0,
    "lr_decay": "none",
    "batch_size": 32,
    "epochs": 30,
    "clipnorm": None,
    "clipvalue": None,
    "patience": 10,
    "monitor": None,
    "seed": 1111,
}

# Metrics where lower is better; every other selection metric is maximised.
_LOWER_IS_BETTER = ("mae", "mse", "rmse", "loss")


def monitor_mode(monitor):
    """`"min"` for an error (`mae`, `mse`, `rmse`, `loss`), else `"max"`."""
    name = monitor[len("val_"):] if monitor.startswith("val_") else monitor
    return "min" if name in _LOWER_IS_BETTER or name.endswith("_mae") else "max"


def check_training_presets(model_cls):
    """Raises `ValueError` naming the model, preset and key of a malformed
    `training_presets` entry (unknown source or field)."""
    for preset, groups in (getattr(model_cls, "training_presets", None) or {}).items():
        for source, fields in groups.items():
            if source not in SOURCES + ("notes",):
                raise ValueError(f"{model_cls.__name__}.training_presets[{preset!r}]: unknown source "
                                 f"{source!r}; expected one of {SOURCES} or 'notes'.")
            unknown = sorted(set(fields) - set(PROTOCOL_FIELDS))
            if unknown:
                raise ValueError(f"{model_cls.__name__}.training_presets[{preset!r}][{source!r}]: unknown "
                                 f"protocol field(s) {unknown}; the fields are {list(PROTOCOL_FIELDS)}.")


def resolve_protocol(model_cls, preset=None, overrides=None):
    """The run's protocol: every field of `PROTOCOL_FIELDS` as `{"value",
    "source"}` (plus `"note"` where the preset explains its reading).

    Args:
        model_cls: the model class (its `training_presets` are read).
        preset: a paper preset name (a trained preset directory or `None`
            gives the defaults).
        overrides: `{field: value}` of explicit flags; `None` values are
            ignored (flag not given).

    Example:

    >>> from keras_msa.models import CrossSent
    >>> p = resolve_protocol(CrossSent, "mosi", {"epochs": 3})
    >>> p["batch_size"], p["epochs"]["source"]
    ({'value': 8, 'source': 'paper'}, 'flag')
    """
    check_training_presets(model_cls)
    protocol = {f: {"value": DEFAULT_PROTOCOL[f], "source": "our choice"} for f in PROTOCOL_FIELDS}
    groups = (getattr(model_cls, "training_presets", None) or {}).get(preset) if isinstance(preset, str) else None
    if groups:
        for source in ("our choice", "ARCHITECTURES.md", "MMSA", "paper"):
            for field, value in (groups.get(source) or {}).items():
                protocol[field] = {"value": value, "source": source}
        for field, note in (groups.get("notes") or {}).items():
            protocol[field]["note"] = note
    for field, value in (overrides or {}).items():
        if field not in protocol:
            raise ValueError(f"Unknown protocol field {field!r}; the fields are {list(PROTOCOL_FIELDS)}.")
        if value is not None:
            protocol[field] = {"value": value, "source": "flag"}
    check_protocol(protocol)
    return protocol


def protocol_values(protocol):
    """`{field: value}` of a resolved protocol."""
    return {k: v["value"] for k, v in protocol.items()}


def check_protocol(protocol):
    """Raises `ValueError` naming the flag of the first value that cannot
    make a run."""
    v = protocol_values(protocol)

    def need(ok, field, what):
        if not ok:
            raise ValueError(f"--{field} must be {what}; got {v[field]!r} ({protocol[field]['source']}).")

    def number(x, low=0.0, strict=True):
        return (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                and (x > low if strict else x >= low))

    def integer(x, low):
        return isinstance(x, int) and not isinstance(x, bool) and x >= low

    need(v["optimizer"] in OPTIMIZERS, "optimizer", f"one of {OPTIMIZERS}")
    need(number(v["learning_rate"]), "learning_rate", "a finite number > 0")
    need(v["backbone_learning_rate"] is None or number(v["backbone_learning_rate"]), "backbone_learning_rate",
         "a finite number > 0 (or unset: the main rate)")
    need(number(v["epsilon"]), "epsilon", "a finite number > 0")
    need(number(v["weight_decay"], strict=False), "weight_decay", "a finite number >= 0")
    need(number(v["l2_weight_decay"], strict=False), "l2_weight_decay", "a finite number >= 0")
    need(v["gradient_accumulation_steps"] is None or integer(v["gradient_accumulation_steps"], 1),
         "gradient_accumulation_steps", "an integer >= 1 (or unset)")
    need(v["weight_decay"] == 0 or v["optimizer"] == "adamw", "weight_decay",
         "0 with --optimizer=adam (decoupled weight decay is AdamW's; use --optimizer=adamw)")
    need(number(v["warmup_proportion"], strict=False) and v["warmup_proportion"] < 1, "warmup_proportion",
         "a number in [0, 1)")
    need(v["lr_decay"] in LR_DECAYS, "lr_decay", f"one of {LR_DECAYS}")
    need(integer(v["batch_size"], 1), "batch_size", "an integer >= 1")
    need(integer(v["epochs"], 1), "epochs", "an integer >= 1")
    need(v["clipnorm"] is None or number(v["clipnorm"]), "clipnorm", "a number > 0 (or unset)")
    need(v["clipvalue"] is None or number(v["clipvalue"]), "clipvalue", "a number > 0 (or unset)")
    need(v["clipnorm"] is None or v["clipvalue"] is None, "clipvalue",
         "unset when --clipnorm is set (clip by norm or by value, not both)")
    need(integer(v["patience"], 0), "patience", "an integer >= 0 (0 = never stop early)")
    need(v["monitor"] is None or isinstance(v["monitor"], str), "monitor", "a metric name such as 'mae'")
    need(integer(v["seed"], 0), "seed", "an integer >= 0")


def format_protocol(protocol):
    """The protocol as aligned lines `field  value  (source: note)`."""
    width = max(len(f) for f in protocol)
    lines = []
    for field, entry in protocol.items():
        value = entry["value"]
        shown = "-" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
        extra = f": {entry['note']}" if entry.get("note") else ""
        lines.append(f"  {field:<{width}}  {shown:<10}  ({entry['source']}{extra})")
    return "\n".join(lines)


@keras.saving.register_keras_serializable(package="keras_msa")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `learning_rate` over the first `warmup_steps`
    optimizer steps, then constant (`decay="none"`) or a linear decay to 0 at
    `total_steps` (`decay="linear"`), as a function of the step alone.

    `lr(s) = base * (s + 1) / warmup_steps` for `s < warmup_steps`; then
    `base` or `base * max(0, (total_steps - s - 1) / (total_steps - warmup_steps))`.
    (`s` is `optimizer.iterations` before the update, 0-based.)

    Args:
        learning_rate: the peak rate.
        warmup_steps: steps of the linear warm-up (0 = none).
        total_steps: the run's steps (epochs x steps per epoch); needed by
            `decay="linear"`.
        decay: `"none"` or `"linear"`.

    Example:

    >>> s = WarmupLinearDecay(1.0, warmup_steps=2, total_steps=4, decay="linear")
    >>> [round(float(s(i)), 2) for i in range(4)]
    [0.5, 1.0, 0.5, 0.0]
    """

    def __init__(self, learning_rate, warmup_steps=0, total_steps=None, decay="none"):
        if decay not in LR_DECAYS:
            raise ValueError(f"decay must be one of {LR_DECAYS}; got {decay!r}.")
        if decay == "linear" and not total_steps:
            raise ValueError("decay='linear' needs total_steps (epochs x steps per epoch).")
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = None if total_steps is None else int(total_steps)
        self.decay = decay

    def __call__(self, step):
        s = ops.cast(step, "float32")
        base = ops.cast(self.learning_rate, "float32")
        rate = base
        if self.decay == "linear":
            span = float(max(1, self.total_steps - self.warmup_steps))
            rate = base * ops.maximum(0.0, (float(self.total_steps) - s - 1.0) / span)
        if self.warmup_steps > 0:
            warm = base * (s + 1.0) / float(self.warmup_steps)
            rate = ops.where(s < float(self.warmup_steps), warm, rate)
        return rate

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "decay": self.decay}


class _GroupedLearningRates:
    """Per-variable learning-rate multipliers for a Keras optimizer.

    `group_multipliers={"text_backbone": 0.05}` and `group_paths=
    {"text_backbone": [variable paths]}` scale the (scheduled) learning rate
    of those variables, in the update step and in AdamW's decoupled weight
    decay (which also scales with the rate); every other variable uses the
    rate itself. The multipliers are looked up by each variable's index in
    the optimizer, fixed when the optimizer is built.
    """

    def __init__(self, *args, group_multipliers=None, group_paths=None, l2_weight_decay=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        # PyTorch's `Adam(weight_decay=wd)` (MMSA's baselines): `wd * w` added
        # to the gradient after clipping, before the moments (coupled L2),
        # unlike AdamW's decoupled decay.
        self.l2_weight_decay = float(l2_weight_decay or 0.0)
        self.group_multipliers = {str(k): float(v) for k, v in (group_multipliers or {}).items()}
        self.group_paths = {str(k): list(v) for k, v in (group_paths or {}).items()}
        unknown = sorted(set(self.group_multipliers) ^ set(self.group_paths))
        if unknown:
            raise ValueError(f"Parameter groups {unknown} need both a multiplier and variable paths.")
        self._factor_by_index = None
        self._lr_factor = 1.0

    def build(self, variables):
        super().build(variables)
        by_path = {}
        for group, paths in self.group_paths.items():
            for path in paths:
                by_path[path] = self.group_multipliers[group]
        self._factor_by_index = [by_path.get(v.path, 1.0) for v in self._trainable_variables]
        missing = set(by_path) - {v.path for v in self._trainable_variables}
        if missing:
            raise ValueError(f"Parameter-group variables not among the optimizer's: {sorted(missing)[:3]}.")

    def variable_multiplier(self, variable):
        """The learning-rate multiplier of `variable` (1 outside any group)."""
        if not self._factor_by_index:
            return 1.0
        return self._factor_by_index[self._get_variable_index(variable)]

    def group_learning_rates(self):
        """`{group: current rate}` (the optimizer's own rate as `"main"`)."""
        lr = float(ops.convert_to_numpy(self.learning_rate))
        rates = {"main": lr}
        rates.update({g: lr * m for g, m in self.group_multipliers.items()})
        return rates

    def update_step(self, gradient, variable, learning_rate):
        if self.l2_weight_decay:
            gradient = gradient + ops.cast(self.l2_weight_decay, gradient.dtype) * ops.convert_to_tensor(
                variable, gradient.dtype)
        factor = self.variable_multiplier(variable)
        if factor != 1.0:
            learning_rate = ops.cast(learning_rate, "float32") * factor
        return super().update_step(gradient, variable, learning_rate)

    def _get_current_learning_rate(self):
        rate = super()._get_current_learning_rate()
        # Set only while AdamW's weight decay runs over one group.
        return rate if self._lr_factor == 1.0 else rate * self._lr_factor

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None or not self.group_multipliers:
            return super()._apply_weight_decay(variables)
        by_factor = {}
        for v in variables:
            by_factor.setdefault(self.variable_multiplier(v), []).append(v)
        for factor, group in by_factor.items():
            self._lr_factor = factor
            try:
                super()._apply_weight_decay(group)
            finally:
                self._lr_factor = 1.0

    def get_config(self):
        config = super().get_config()
        config.update({"l2_weight_decay": self.l2_weight_decay,
                       "group_multipliers": dict(self.group_multipliers),
                       "group_paths": {k: list(v) for k, v in self.group_paths.items()}})
        return config


@keras.saving.register_keras_serializable(package="keras_msa")
class GroupedAdam(_GroupedLearningRates, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with per-group learning-rate multipliers
    (`group_multipliers`, `group_paths`; see `make_optimizer`)."""


@keras.saving.register_keras_serializable(package="keras_msa")
class GroupedAdamW(_GroupedLearningRates, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with per-group learning-rate multipliers
    (`group_multipliers`, `group_paths`; see `make_optimizer`)."""


def make_optimizer(protocol, steps_per_epoch=None, parameter_groups=None):
    """The optimizer of a resolved `protocol`.

    Args:
        protocol: from `resolve_protocol` (or a plain `{field: value}` dict).
        steps_per_epoch: optimizer steps per epoch (warm-up and decay are
            proportions of `epochs x steps_per_epoch`).
        parameter_groups: `{group: [variables]}` from the model's
            `parameter_groups()`; the group `"text_backbone"` learns at
            `backbone_learning_rate`.

    Returns:
        `GroupedAdam` or `GroupedAdamW`: Adam / AdamW with the protocol's
        epsilon, weight decay and clipping, and a `WarmupLinearDecay`
        learning rate.
    """
    v = protocol_values(protocol) if all(isinstance(x, dict) for x in protocol.values()) else dict(protocol)
    v = {**DEFAULT_PROTOCOL, **v}
    total = None if not steps_per_epoch else int(steps_per_epoch) * int(v["epochs"])
    warmup = 0
    if v["warmup_proportion"]:
        if not total:
            raise ValueError("A warm-up needs the number of steps per epoch (steps_per_epoch).")
        warmup = max(1, int(round(v["warmup_proportion"] * total)))
    schedule = WarmupLinearDecay(v["learning_rate"], warmup_steps=warmup, total_steps=total, decay=v["lr_decay"])
    multipliers, paths = {}, {}
    backbone_lr = v["backbone_learning_rate"]
    for group, variables in (parameter_groups or {}).items():
        if group == "text_backbone" and backbone_lr is not None and variables:
            multipliers[group] = float(backbone_lr) / float(v["learning_rate"])
            paths[group] = [w.path for w in variables]
    kwargs = {"learning_rate": schedule, "epsilon": float(v["epsilon"]),
              "group_multipliers": multipliers, "group_paths": paths,
              "l2_weight_decay": float(v["l2_weight_decay"] or 0.0)}
    if v["gradient_accumulation_steps"] and int(v["gradient_accumulation_steps"]) > 1:
        kwargs["gradient_accumulation_steps"] = int(v["gradient_accumulation_steps"])
    if v["clipnorm"]:
        # The papers' max-norm clipping is PyTorch's clip_grad_norm_: one norm
        # over all gradients (Keras's `clipnorm` clips each tensor alone).
        kwargs["global_clipnorm"] = float(v["clipnorm"])
    if v["clipvalue"]:
        kwargs["clipvalue"] = float(v["clipvalue"])
    if v["optimizer"] == "adamw":
        return GroupedAdamW(weight_decay=float(v["weight_decay"]), **kwargs)
    return GroupedAdam(**kwargs)
