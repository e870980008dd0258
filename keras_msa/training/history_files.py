"""history.csv files: written atomically, read back as columns (no Keras)."""

import csv
import io
import math
import os

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
