"""Draw a run's training curves from its `history.csv`.

    python recipes/plot_history.py --history=runs/lfdnn/history.csv --output=runs/lfdnn/history.png

Three panels, one above the other: the loss terms (`loss` and each
`<term>_loss` of the objective; training solid, validation dashed), the
validation error metrics (MAE, RMSE), and the accuracy / correlation family
(Acc-2, F1, Acc-7, Pearson r, CCC, ...). The best epoch of the selection
metric (`--monitor`, default val_mae, else val_ccc / val_acc / val_loss) is
marked in every panel. `--metrics=mae,corr` draws only those validation
metrics. Several `--history` files (e.g. the seeds of one model) are drawn on
the same axes, labelled by their directory.

Needs matplotlib (`pip install keras_msa[plot]`), not TensorFlow.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_list("history", None, "history.csv file(s) written by recipes/train.py.")
flags.DEFINE_string("output", None, "PNG to write (default: history.png beside the first file).")
flags.DEFINE_list("metrics", None, "Validation metrics to draw, without the val_ prefix (default: all).")
flags.DEFINE_string("monitor", None, "Selection metric whose best epoch is marked (default: val_mae, else "
                    "val_ccc, val_acc, val_loss).")
flags.DEFINE_string("title", None, "Figure title.")


def main(argv):
    del argv
    if not FLAGS.history:
        raise app.UsageError("--history is required (a history.csv written by recipes/train.py).")
    # Here, not at the top: --help answers without loading matplotlib.
    from keras_msa.training.history_plot import plot_histories

    output = FLAGS.output or os.path.join(os.path.dirname(os.path.abspath(FLAGS.history[0])), "history.png")
    drawn = plot_histories(FLAGS.history, output, FLAGS.metrics, FLAGS.title, FLAGS.monitor)
    print(f"Wrote {output} (loss terms and {', '.join(drawn) or 'no validation metrics'}).")


if __name__ == "__main__":
    app.run(main)
