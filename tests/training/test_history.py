import math
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_msa.training.history import HistoryCSV
from keras_msa.training.history import plot_histories
from keras_msa.training.history import read_history_csv
from keras_msa.training.history import write_history_csv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_callback_writes_one_row_per_epoch(tmp_path):
    path = str(tmp_path / "history.csv")
    cb = HistoryCSV(path)
    for epoch, (loss, mae) in enumerate([(2.0, 1.5), (1.5, 1.2), (1.2, float("nan"))]):
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, {"loss": loss, "val_mae": mae, "note": "not a number"})
        h = read_history_csv(path)
        assert h["epoch"] == list(range(1, epoch + 2))
    assert h["loss"] == [2.0, 1.5, 1.2]
    assert h["val_mae"][:2] == [1.5, 1.2] and math.isnan(h["val_mae"][2])
    assert "note" not in h and "epoch_seconds" in h
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []


def test_rows_of_a_resumed_run_are_kept_and_replaced(tmp_path):
    path = str(tmp_path / "h.csv")
    cb = HistoryCSV(path, rows=[{"epoch": 1, "loss": 3.0}, {"epoch": 2, "loss": 2.5}])
    cb.on_epoch_end(1, {"loss": 2.4, "val_corr": 0.3})  # epoch 2 again after a restart
    h = read_history_csv(path)
    assert h["epoch"] == [1, 2] and h["loss"] == [3.0, 2.4]
    assert math.isnan(h["val_corr"][0]) and h["val_corr"][1] == 0.3


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No history file"):
        read_history_csv(str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("loss\n1.0\n")
    with pytest.raises(ValueError, match="no 'epoch' column"):
        read_history_csv(str(bad))


def test_plot_history_writes_png(tmp_path):
    a, b = tmp_path / "seed_1" / "history.csv", tmp_path / "seed_2" / "history.csv"
    for p, shift in ((a, 0.0), (b, 0.1)):
        write_history_csv(str(p), [{"epoch": e, "loss": 2.0 / e + shift, "val_mae": 1.0 / e, "val_corr": 0.1 * e}
                                   for e in range(1, 6)])
    out = str(tmp_path / "plots" / "curves.png")
    drawn = plot_histories([str(a), str(b)], out)
    assert drawn == ["val_mae", "val_corr"]
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.shape[0] > 100 and img.shape[1] > 300
    assert np.std(img[..., :3]) > 0.01  # something was drawn
    assert plot_histories([str(a)], out, metrics=["mae"]) == ["val_mae"]
    with pytest.raises(ValueError, match="no column"):
        plot_histories([str(a)], out, metrics=["acc7"])


def test_plot_history_recipe_cli(tmp_path):
    path = tmp_path / "history.csv"
    write_history_csv(str(path), [{"epoch": 1, "loss": 1.0, "val_mae": 0.9}, {"epoch": 2, "loss": 0.8, "val_mae": 0.85}])
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "recipes", "plot_history.py"), f"--history={path}"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.getsize(tmp_path / "history.png") > 1000
