"""Callbacks shared by every training recipe."""

import math

import keras
import numpy as np


_UNSET = object()


def _model_trace_key(model):
    trace_key = getattr(model, "trace_key", None)
    return trace_key() if callable(trace_key) else None


class EpochSetter(keras.callbacks.Callback):
    """Sets `model.epoch` at the start of each epoch so that losses can follow
    schedules (ramp-ups, decaying weights) inside compiled train steps."""

    def on_epoch_begin(self, epoch, logs=None):
        if hasattr(self.model, "set_epoch"):
            self.model.set_epoch(epoch)


class ValidationMetrics(keras.callbacks.Callback):
    """Computes the task's paper metrics on the validation set after each epoch
    and adds them to the logs as `val_<name>` (so that `EarlyStopping` and the
    history can use `val_mae`, `val_acc2_non0`, ...).

    Args:
        dataset: validation `tf.data.Dataset` of `(inputs, targets)`.
        evaluate_fn: `fn(model, dataset) -> dict of floats`.
    """

    def __init__(self, dataset, evaluate_fn):
        super().__init__()
        self.dataset = dataset
        self.evaluate_fn = evaluate_fn
        self.last = {}

    def on_epoch_end(self, epoch, logs=None):
        metrics = self.evaluate_fn(self.model, self.dataset)
        self.last = metrics
        if logs is not None:
            for k, v in metrics.items():
                logs[f"val_{k}"] = float(v) if v is not None else math.nan


class BestWeights(keras.callbacks.Callback):
    """Early stopping on a validation metric that always restores the best
    epoch's weights at the end (also when training runs to the last epoch).

    Args:
        monitor: log key, e.g. `"val_mae"`.
        mode: `"min"` or `"max"`.
        patience: epochs without improvement before stopping (0 = never stop).
    """

    def __init__(self, monitor="val_mae", mode="min", patience=10):
        super().__init__()
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.best = None
        self.best_epoch = None
        self.best_weights = None
        self.wait = 0
        # The model's `trace_key()` the current best was measured under.
        self.trace_key = _UNSET

    def on_train_begin(self, logs=None):
        if self.trace_key is _UNSET:  # not restored from a checkpoint
            self.trace_key = _model_trace_key(self.model)

    def _better(self, value):
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        key = _model_trace_key(self.model)
        if key != self.trace_key:
            # The model now computes something else (M3SA fixed its key
            # modality): earlier epochs measured another function, so the
            # selection and the patience start again.
            self.best, self.best_epoch, self.best_weights, self.wait = None, None, None, 0
            self.trace_key = key
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value):
            return
        if self._better(value):
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
            self.best_weights = [np.array(w) for w in self.model.get_weights()]
        else:
            self.wait += 1
            if self.patience and self.wait >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class EpochLine(keras.callbacks.Callback):
    """Prints one short line per epoch: the training objective, its terms
    when the logs hold several (`<term>_loss`), and the selection metric, marked
    `*best*` when it improves. Every other metric goes to history.csv (and
    TensorBoard), where thirteen numbers a line can be read.

    Args:
        monitor: the selection metric's log key, e.g. `"val_mae"`.
        mode: `"min"` or `"max"`.
        epochs: the run's epoch budget (shown as `epoch 3/30`).
        print_fn: where the line goes (default: stdout, flushed).
    """

    def __init__(self, monitor="val_mae", mode="min", epochs=None, print_fn=None):
        super().__init__()
        self.monitor = monitor
        self.mode = mode
        self.epochs = epochs
        # Flushed: a recipe's stdout is often a pipe (CI logs, `tee`).
        self.print_fn = print_fn or (lambda line: print(line, flush=True))
        self.best = None

    def format_line(self, epoch, logs):
        logs = logs or {}
        total = f"/{self.epochs}" if self.epochs else ""
        parts = [f"epoch {epoch + 1}{total}"]
        if "loss" in logs:
            terms = [(k[: -len("_loss")], v) for k, v in logs.items()
                     if k.endswith("_loss") and not k.startswith("val_")]
            shown = f"loss {float(logs['loss']):.4f}"
            # One term is the loss itself: shown only when there are several.
            if len(terms) > 1:
                shown += " (" + ", ".join(f"{name} {float(v):.4f}" for name, v in terms) + ")"
            parts.append(shown)
        value = logs.get(self.monitor)
        if value is not None:
            value = float(value)
            improved = np.isfinite(value) and (
                self.best is None or (value < self.best if self.mode == "min" else value > self.best)
            )
            if improved:
                self.best = value
            parts.append(f"{self.monitor} {value:.4f}" + (" *best*" if improved else ""))
        return "  ".join(parts)

    def on_epoch_end(self, epoch, logs=None):
        self.print_fn(self.format_line(epoch, logs))
