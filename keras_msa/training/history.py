"""Per-epoch training history as CSV (`<output_dir>/history.csv`).

One row per epoch: `epoch` (1-based), `loss` (mean training objective of the
epoch), every `val_*` metric the validation callback adds, and the wall time.
The file is rewritten atomically after each epoch, so a run killed at any
moment leaves a complete, readable history of its finished epochs.
"""

import time

import keras

# The CSV files and the plots need no Keras (recipes/plot_history.py runs
# without TensorFlow); they live apart and are re-exported here.
from keras_msa.training.history_files import read_history_csv  # noqa: F401
from keras_msa.training.history_files import write_history_csv
from keras_msa.training.history_plot import plot_histories  # noqa: F401


class HistoryCSV(keras.callbacks.Callback):
    """Appends each epoch's logs to a CSV file (rewritten atomically).

    Put it after the callbacks that add validation metrics to the logs.
    `rows` can be pre-filled (resumed runs keep the epochs done before the
    restart).

    Args:
        path: CSV file to write.
        rows: history rows already written (resume), default none.
    """

    def __init__(self, path, rows=None):
        super().__init__()
        self.path = path
        self.rows = list(rows or [])
        self._epoch_start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        for k, v in (logs or {}).items():
            try:
                row[k] = float(v)
            except (TypeError, ValueError):
                continue
        if self._epoch_start is not None:
            row["epoch_seconds"] = round(time.time() - self._epoch_start, 3)
        self.rows = [r for r in self.rows if r["epoch"] != epoch + 1] + [row]
        write_history_csv(self.path, self.rows)
