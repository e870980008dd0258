"""The base class every keras_msa model derives from.

A model takes the batch dict of docs/data.md (`text`, `text_mask`, `audio`, ...)
and returns a dict of named outputs, always including `"sentiment"`. Its whole
training objective lives in `compute_loss`, so that `Model.fit` and the custom
distributed loop of `keras_msa.training` optimise exactly the same thing.
"""

import copy
import os

import keras
from keras import ops

from keras_msa.utils.masks import zero_masked

MODALITIES = ("text", "audio", "vision")

_MODEL_REGISTRY = {}


def register_model(name):
    """Class decorator: makes a model reachable as `--model=<name>` in recipes."""

    def decorator(cls):
        _MODEL_REGISTRY[name.lower()] = cls
        cls.registry_name = name.lower()
        return cls

    return decorator


def get_model_class(name):
    """Returns the model class registered under `name` (case-insensitive)."""
    key = name.lower()
    if key not in _MODEL_REGISTRY:
        raise ValueError(
            f"Unknown model '{name}'. Available models: "
            f"{', '.join(sorted(_MODEL_REGISTRY))}."
        )
    return _MODEL_REGISTRY[key]


def build_registered_model(name, preset=None, overrides=None, train_samples=None):
    """An unbuilt instance of the model registered under `name`: its `preset`
    (if any) with the constructor `overrides`. `train_samples` sizes the
    per-sample memory of a model that has one (`needs_sample_index`, e.g.
    Self-MM's label memory) unless `overrides` sets it; the recipes pass the
    training split's size, a benchmark the rows it trains on."""
    cls = get_model_class(name)
    overrides = dict(overrides or {})
    if getattr(cls, "needs_sample_index", False) and train_samples and "train_samples" not in overrides:
        overrides["train_samples"] = int(train_samples)
    if preset:
        return cls.from_preset(preset, **overrides)
    return cls(**overrides)


def available_models():
    return sorted(_MODEL_REGISTRY)


def get_modality(inputs, name, required=True):
    """Returns `(features, mask)` for modality `name` from a batch dict.

    A missing `<name>_mask` means every step is real. A missing feature key
    raises a `KeyError` that names the key and lists what the batch holds.

    The features come back with every padded step set to exactly 0, by
    selection (`where`), not by multiplying with the mask: real data holds
    non-finite values under its masks (MMSA audio has -inf) and `0 * inf` is
    NaN, in the forward pass and in every gradient that flows through a
    layer reading those steps. Doing it here covers every model at once; the
    layers also protect themselves when used on their own.
    """
    if name not in inputs:
        if not required:
            return None, None
        raise KeyError(
            f"The batch has no '{name}' features (expected a float tensor "
            f"[batch, time, dim]); it holds: {sorted(inputs)}."
        )
    x = inputs[name]
    mask = inputs.get(f"{name}_mask")
    if mask is None:
        mask = ops.ones(ops.shape(x)[:2], dtype="bool")
        return x, mask
    mask = ops.cast(mask, "bool")
    # Other ranks are left to the model's own shape checks.
    if len(mask.shape) == 2 and len(x.shape) >= 3:
        steps, mask_steps = x.shape[1], mask.shape[1]
        if steps is not None and mask_steps is not None and steps != mask_steps:
            raise ValueError(
                f"'{name}_mask' has {mask_steps} steps but '{name}' has {steps} "
                f"(expected '{name}_mask' [batch, time] matching '{name}' "
                f"[batch, time, dim]); got shapes {tuple(mask.shape)} and {tuple(x.shape)}."
            )
        x = zero_masked(x, mask)
    return x, mask


def regression_loss(kind, y_true, y_pred):
    """Per-batch mean of the task loss `kind` ("mse" | "mae" | "huber")."""
    y_true = ops.cast(ops.reshape(y_true, (-1,)), "float32")
    y_pred = ops.cast(ops.reshape(y_pred, (-1,)), "float32")
    diff = y_pred - y_true
    if kind == "mse":
        return ops.mean(ops.square(diff))
    if kind == "mae":
        return ops.mean(ops.abs(diff))
    if kind == "huber":
        a = ops.abs(diff)
        return ops.mean(ops.where(a <= 1.0, 0.5 * ops.square(diff), a - 0.5))
    raise ValueError(f"Unknown task loss '{kind}': use 'mse', 'mae' or 'huber'.")


class _Unsaved:
    """Holds per-run state on a model out of Keras's saving walk and
    attribute tracking: it is neither a layer's weight nor saved with it."""

    def __init__(self, value):
        self.value = value


def _batch_size(x):
    """Rows of the batch dict `x` (the per-batch weight Keras gives `loss`)."""
    first = next(v for v in keras.tree.flatten(x) if v is not None)
    return ops.cast(ops.shape(first)[0], "float32")


class MSAModel(keras.Model):
    """Base class: batch dict in, dict of named outputs out.

    Subclasses implement `call(inputs, training=False)` returning at least
    `{"sentiment": [B, 1] float32}` and, when their paper has auxiliary
    objectives, override `auxiliary_losses`. They list their constructor
    arguments in `get_config` and their paper presets in `presets`.

    Args:
        task_loss: loss on the `"sentiment"` output: `"mse"` (default), `"mae"`
            or `"huber"`.
        **kwargs: passed to `keras.Model` (e.g. `name`, `dtype`).
    """

    #: Paper presets: name -> dict of constructor overrides.
    presets = {}
    #: Whether `compile(predict_jit_compile="auto")` may pick XLA for
    #: `predict` (False for models whose inputs may be strings).
    predict_xla_by_default = True
    registry_name = None

    def __init__(self, task_loss="mse", **kwargs):
        super().__init__(**kwargs)
        self.task_loss = task_loss
        # The epoch counter lets losses follow schedules (ramp-ups, decaying
        # weights) inside a compiled train step; `keras_msa.training` sets it.
        self.epoch = keras.Variable(
            0.0, trainable=False, dtype="float32", name="epoch"
        )
        self.loss_components = {}
        # Each term of `compute_loss` as a metric, so `fit`, `evaluate` and
        # the custom loop log `<term>_loss` per epoch. Made here, before any
        # step is traced (and inside the distribution scope the model is built
        # in); kept out of saved files and of `model.variables`: it is a run's
        # state, not the model's.
        from keras_msa.models.loss_terms import LossTerms

        self._loss_terms = _Unsaved(LossTerms())

    @classmethod
    def from_preset(cls, preset, **overrides):
        """Builds the model from a paper preset name or a trained preset directory.

        - A name in `cls.presets` (e.g. `"mosi"`): the constructor arguments
          from the paper's tables plus `overrides`; **config only**, the
          weights are freshly initialised (train the model).
        - A directory written by `save_to_preset`: config *and* weights, as a
          keras-hub preset. `overrides` may change arguments that keep every
          weight's shape (e.g. `dropout`); one that changes a shape is refused
          with an error naming the weight. `MSAModel.from_preset(directory)`
          loads any registered model; a subclass loads only its own kind.
        """
        from keras_msa.models import preset as preset_lib

        if preset_lib.is_preset_dir(preset):
            return preset_lib.load_from_preset(cls, preset, **overrides)
        if isinstance(preset, str) and preset in cls.presets:
            config = copy.deepcopy(cls.presets[preset])
            config.update(overrides)
            return cls(**config)
        if isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset):
            raise preset_lib.PresetError(
                f"{preset} is a directory but holds no {preset_lib.CONFIG_FILE}; a trained preset is "
                f"written by model.save_to_preset(directory)."
            )
        raise ValueError(
            f"{cls.__name__} has no preset '{preset}'. Available paper presets (config only): "
            f"{sorted(cls.presets)}; or pass a directory written by model.save_to_preset()."
        )

    def save_to_preset(self, directory, overwrite=False):
        """Writes config.json, model.weights.h5 and metadata.json (keras_msa
        version, weight shapes) to `directory`, for `from_preset(directory)`."""
        from keras_msa.models import preset as preset_lib

        return preset_lib.save_to_preset(self, directory, overwrite=overwrite)

    def set_epoch(self, epoch):
        self.epoch.assign(float(epoch))

    def compile(self, *args, predict_jit_compile="auto", **kwargs):
        """`keras.Model.compile`, plus XLA for `predict` decided on its own.

        `predict_jit_compile`: True, False or `"auto"` (default). XLA is
        chosen per phase because it pays off differently: measured on a
        2-core CPU at MOSI shapes it made inference of the recurrent models
        2-10x faster (MulG batch 1: 344 -> 36 ms; EF-LSTM 18.0 -> 2.8 ms;
        TFN 12.8 -> 5.6 ms) and their training up to 10x slower (SSGDL 24 ->
        2.3 samples/s, TFN 285 -> 26), while Keras' `jit_compile="auto"`
        turns XLA off for every phase on a CPU. `"auto"` therefore compiles
        the predict step with XLA (TensorFlow backend) unless the model runs
        eagerly, runs under a `tf.distribute` strategy, holds a layer that
        does not support XLA, runs with op determinism enabled (Keras' own
        rule: XLA kernels are not deterministic), or can take raw strings (a `TextBackbone` with
        its tokenizer, a `MediaModel`: XLA compiles no string ops); `fit`
        and `evaluate` keep `jit_compile`.
        """
        super().compile(*args, **kwargs)
        if predict_jit_compile not in (True, False, "auto"):
            raise ValueError(f"predict_jit_compile must be True, False or 'auto'; got {predict_jit_compile!r}.")
        self._predict_jit_compile = predict_jit_compile

    def get_compile_config(self):
        config = super().get_compile_config()
        if config and getattr(self, "_predict_jit_compile", "auto") != "auto":
            config = dict(config, predict_jit_compile=self._predict_jit_compile)
        return config

    def compile_from_config(self, config):
        """Recompiles a loaded model from its saved compile config. Keras'
        own version skips (with a warning) every model whose `compile` is
        overridden, as this one is, so a reloaded `.keras` file would lose
        its optimizer state; this does what Keras' does, plus
        `predict_jit_compile`."""
        config = dict(config)
        predict_jit_compile = config.pop("predict_jit_compile", "auto")
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config, predict_jit_compile=predict_jit_compile)
        if hasattr(self, "optimizer") and self.built:
            self.optimizer.build(self.trainable_variables)

    def predict_uses_xla(self):
        """Whether `predict` compiles its step with XLA (see `compile`)."""
        from keras.src.trainers.trainer import model_supports_jit

        choice = getattr(self, "_predict_jit_compile", "auto")
        if keras.backend.backend() != "tensorflow":
            return bool(self.jit_compile)
        if self.run_eagerly:
            return False
        if choice == "auto":
            import tensorflow as tf

            from keras_msa.layers.text_backbone import TextBackbone

            takes_strings = not self.predict_xla_by_default or any(
                isinstance(layer, TextBackbone) and layer.preprocessor is not None
                for layer in self._flatten_layers())
            return not (takes_strings or tf.distribute.has_strategy()) and model_supports_jit(self)
        return bool(choice)

    def make_predict_function(self, force=False):
        if self.predict_function is not None and not force:
            return self.predict_function
        # Keras reads `jit_compile` while it builds the step; set it for the
        # predict step alone (the private field: the setter would warn).
        saved = self._jit_compile
        self._jit_compile = self.predict_uses_xla()
        try:
            return super().make_predict_function(force)
        finally:
            self._jit_compile = saved

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit` that also keeps `self.epoch` (the clock of the
        loss schedules: CrossSent's ramp, M3SA's decaying weights) at the
        epoch `fit` is in, `initial_epoch` included, so that a plain
        `model.fit(...)` follows the schedules without the project's
        callbacks. The counter is a model variable, so it is saved with the
        weights and restored with a checkpoint."""
        from keras_msa.training.callbacks import EpochSetter

        callbacks = list(callbacks or [])
        if not any(isinstance(cb, EpochSetter) for cb in callbacks):
            callbacks.insert(0, EpochSetter())
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def parameter_groups(self):
        """`{group: [variables]}` trained at their own learning rate (e.g.
        `"text_backbone"`: a pretrained encoder fine-tuned at the protocol's
        `backbone_learning_rate`); none by default."""
        return {}

    def trace_key(self):
        """Python state that changes what a compiled train step computes
        (M3SA's chosen key modality). Training loops rebuild their compiled
        step, and best-weight selection starts again, when it changes."""
        return None

    def checkpoint_state(self):
        """JSON-able Python state a resumable checkpoint must carry besides
        the variables (none by default)."""
        return {}

    def restore_checkpoint_state(self, state):
        """Restores what `checkpoint_state` returned."""
        del state

    def auxiliary_losses(self, x, y, y_pred, training=True):
        """Named scalar losses added to the task loss (none by default)."""
        return {}

    def primary_loss(self, x, y, y_pred):
        """The task loss on the main output."""
        return regression_loss(self.task_loss, y["sentiment"], y_pred["sentiment"])

    @property
    def loss_term_tracker(self):
        """The `LossTerms` metric that logs each term of `compute_loss`."""
        holder = getattr(self, "_loss_terms", None)
        return None if holder is None else holder.value

    @property
    def metrics(self):
        metrics = super().metrics
        tracker = self.loss_term_tracker
        if tracker is not None and self.compiled:
            # Right after `loss`, so logs and history.csv read loss, its terms, metrics.
            at = 1 if metrics and metrics[0] is getattr(self, "_loss_tracker", None) else 0
            metrics.insert(at, tracker)
        return metrics

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__}.compute_loss does not take sample_weight (passed by "
                f"fit(sample_weight=...), fit(class_weight=...) or a dataset of (inputs, "
                f"targets, weights)): its objective holds batch statistics with no per-example "
                f"weight (ranking pairs, InfoNCE, correlation). Drop the weights, or resample "
                f"the training data to weight examples."
            )
        if not isinstance(y, dict):
            y = {"sentiment": y}
        total = self.primary_loss(x, y, y_pred)
        components = {"task": total}
        for name, value in self.auxiliary_losses(x, y, y_pred, training).items():
            value = ops.cast(value, "float32")
            components[name] = value
            total = total + value
        if self.losses:
            reg = ops.cast(ops.sum(ops.stack(self.losses)), "float32")
            components["regularization"] = reg
            total = total + reg
        self.loss_components = components
        tracker = self.loss_term_tracker
        if tracker is not None and x is not None:
            # Weighted by the batch size, as Keras weights `loss`: the terms'
            # epoch means then sum to the epoch's `loss`.
            tracker.update_state(components, sample_weight=_batch_size(x))
        return total

    def training_callbacks(self, validation_data=None):
        """Extra callbacks the model's recipe needs (e.g. key-modality choice)."""
        return []

    # -- Attention maps (issue 18). -----------------------------------------
    def attention_maps(self, inputs):
        """The attention (and gate) weights the model computes on `inputs`,
        in inference mode, for analysis and plots (`recipes/plot_attention.py`).

        Returns `{name: float32 tensor [B, ...]}`; the non-batch axes of each
        map are named by `attention_axes()[name]`. Computing the maps runs the
        model's own layers and changes none of its outputs. Models without
        attention (LF-DNN, EF-LSTM) and ablations that remove it return `{}`.
        """
        return {}

    def attention_axes(self):
        """`{name: (axis, ...)}`: the names of the non-batch axes of each map
        of `attention_maps`, one string per axis:

        - `"time:<m>"`: the time steps of modality `<m>`, padded where
          `<m>_mask` is False (`attention_masks`);
        - `"time:<m1>+<m2>"`: the steps of `<m1>` followed by those of `<m2>`
          on one axis (one softmax over both);
        - `"modality:<m1>,<m2>,..."`: one entry per named modality;
        - `"head"`, `"layer"`: attention heads, stacked layers;
        - `"scale"`: the channels of a squeeze-and-excitation gate.

        The last `time:` axis of an attention map is its key (attended) axis:
        weights there sum to 1 over real steps and are exactly 0 at padded
        ones. The same names and axes are returned for every batch.
        """
        return {}

    def attention_masks(self, inputs):
        """`{modality: boolean [B, T]}`: the masks of the `time:` axes of the
        maps (the batch's `<m>_mask`, all True where a batch has none)."""
        masks = {}
        for m in MODALITIES:
            if m in inputs:
                masks[m] = get_modality(inputs, m)[1]
        return masks

    def get_config(self):
        config = super().get_config()
        config.update({"task_loss": self.task_loss})
        return config

    # -- Input validation hook (issue 13). ---------------------------------
    def __call__(self, *args, **kwargs):
        """Rejects NaN / inf in real (unmasked) input steps before the model
        runs (`keras_msa.data.validation.validate_finite`), so that Keras,
        `predict` and the exported SavedModel behave alike."""
        from keras_msa.data.validation import validate_finite

        validate_finite(args[0] if args else kwargs.get("inputs"))
        return super().__call__(*args, **kwargs)
