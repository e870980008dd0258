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


def test_plot_panels_and_best_epoch():
    from keras_msa.training.history_plot import best_epoch
    from keras_msa.training.history_plot import panel_of

    assert [panel_of(c) for c in ("loss", "mpr_loss", "val_task_loss", "val_mae", "val_rmse", "val_acc2_non0",
                                  "val_corr", "val_ccc", "epoch", "epoch_seconds")] == [
        "loss terms", "loss terms", "loss terms", "error", "error", "accuracy / correlation",
        "accuracy / correlation", "accuracy / correlation", None, None]
    rng = np.random.default_rng(0)
    h = {"epoch": list(range(1, 9)), "val_mae": list(rng.uniform(0.5, 1.0, 8)), "val_acc2": list(rng.uniform(size=8))}
    h["val_mae"][2] = float("nan")
    mae = np.array(h["val_mae"])
    assert best_epoch(h) == ("val_mae", "min", int(np.nanargmin(mae)) + 1)
    assert best_epoch(h, "acc2") == ("val_acc2", "max", int(np.argmax(h["val_acc2"])) + 1)
    assert best_epoch({"epoch": [1], "loss": [1.0]}) == (None, None, None)
    with pytest.raises(ValueError, match="no column 'val_ccc'"):
        best_epoch(h, "ccc")


def _no_tensorflow_run(args, cwd):
    # The recipe as `python recipes/plot_history.py ARGS` runs it, then what it imported.
    code = (
        "import runpy, sys, time\n"
        "start = time.time()\n"
        f"sys.argv = [{os.path.join(ROOT, 'recipes', 'plot_history.py')!r}] + {list(args)!r}\n"
        "try:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "else:\n"
        "    code = 0\n"
        "print('SECONDS', time.time() - start, 'TF', 'tensorflow' in sys.modules, 'KERAS', 'keras' in sys.modules,"
        " 'MPL', 'matplotlib' in sys.modules, 'CODE', code)\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_plot_history_recipe_help_is_instant_and_plots_without_tensorflow(tmp_path):
    out = _no_tensorflow_run(["--help"], ROOT)
    assert "--history" in out and "--monitor" in out
    seconds = float(out.split("SECONDS ")[1].split()[0])
    # Nothing heavy behind --help: absl alone.
    assert "TF False KERAS False MPL False" in out and seconds < 5.0, out[-500:]

    path = tmp_path / "run" / "history.csv"
    write_history_csv(str(path), [{"epoch": e, "loss": 2.0 / e, "task_loss": 1.5 / e, "mpr_loss": 0.5 / e,
                                   "val_loss": 2.2 / e, "val_task_loss": 1.7 / e, "val_mae": abs(e - 3) + 0.5,
                                   "val_rmse": abs(e - 3) + 0.7, "val_corr": 0.1 * e, "val_acc2": 0.5 + 0.01 * e,
                                   "epoch_seconds": 1.0} for e in range(1, 6)])
    out = _no_tensorflow_run([f"--history={path}"], str(tmp_path))
    # absl's app.run exits with main's return value, None on success.
    assert "TF False KERAS False" in out and "CODE None" in out, out[-500:]
    png = tmp_path / "run" / "history.png"
    assert "val_mae, val_rmse, val_corr, val_acc2" in out
    import matplotlib.image

    img = matplotlib.image.imread(str(png))
    # Three panels stacked, legends to their right.
    assert img.shape[0] > img.shape[1] > 600, img.shape
