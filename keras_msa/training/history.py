"""Per-epoch training history as CSV (`<output_dir>/history.csv`).

One row per epoch: `epoch` (1-based), `loss` (mean training objective of the
epoch), every `val_*` metric the validation callback adds, and the wall time.
The file is rewritten atomically after each epoch, so a run killed at any
moment leaves a complete, readable history of its finished epochs.
"""

import csv
import io
import math
import os
import time

import keras

from keras_msa.utils.files import atomic_write_text


def write_history_csv(path, rows):
    """Writes `rows` (list of dicts) as CSV through a temporary file renamed
    over `path`. Columns: `epoch`, `loss`, then the other keys in order of
    first appearance; a value missing in a row is written empty."""
    columns = ["epoch", "loss"]
    for row in rows:
        for k in row:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue(), newline="")


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return v


def read_history_csv(path):
    """Reads a history CSV back as `{column: [values]}` (floats; empty cells
    become NaN, `epoch` stays an int)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"No history file at {path} (train with recipes/train.py first).")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = {k: [] for k in (reader.fieldnames or [])}
        for row in reader:
            for k in columns:
                v = row.get(k, "")
                if k == "epoch":
                    columns[k].append(int(v))
                else:
                    columns[k].append(float(v) if v not in ("", None) else math.nan)
    if "epoch" not in columns:
        raise ValueError(f"{path} has no 'epoch' column; columns: {sorted(columns)}.")
    return columns


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


def plot_histories(paths, output, metrics=None, title=None):
    """Draws loss and validation-metric curves of the history files `paths`
    into the PNG `output`; returns the list of validation columns drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    histories = [(p, read_history_csv(p)) for p in paths]
    if metrics:
        wanted = [m if m.startswith("val_") else f"val_{m}" for m in metrics]
        for p, h in histories:
            missing = [m for m in wanted if m not in h]
            if missing:
                raise ValueError(f"{p} has no column(s) {missing}; it holds {sorted(h)}.")
    else:
        wanted = []
        for _, h in histories:
            wanted += [k for k in h if k.startswith("val_") and k not in wanted]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for p, h in histories:
        label = os.path.basename(os.path.dirname(os.path.abspath(p))) or p
        if "loss" in h:
            ax_loss.plot(h["epoch"], h["loss"], marker="o", ms=3, label=label)
        for m in wanted:
            if m in h:
                name = m[len("val_"):]
                ax_val.plot(h["epoch"], h[m], marker="o", ms=3,
                            label=name if len(histories) == 1 else f"{label}: {name}")
    ax_loss.set(xlabel="epoch", ylabel="training objective", title="loss")
    ax_val.set(xlabel="epoch", ylabel="value", title="validation metrics")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return wanted
