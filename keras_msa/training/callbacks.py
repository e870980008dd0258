"""Callbacks shared by every training recipe."""

import math

import keras
import numpy as np


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

    def _better(self, value):
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
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
