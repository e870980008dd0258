"""Draw a run's training curves from its `history.csv`.

    python recipes/plot_history.py --history=runs/lfdnn/history.csv --output=runs/lfdnn/history.png

Left panel: the training objective per epoch (`loss`). Right panel: the
validation metrics (`val_*` columns; by default every one the file holds, or
those named by `--metrics=mae,corr`). Several `--history` files (e.g. the seeds
of one model) are drawn on the same axes, labelled by their directory.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_msa.training.history import plot_histories  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("history", None, "history.csv file(s) written by recipes/train.py.")
flags.DEFINE_string("output", None, "PNG to write (default: history.png beside the first file).")
flags.DEFINE_list("metrics", None, "Validation metrics to draw, without the val_ prefix (default: all).")
flags.DEFINE_string("title", None, "Figure title.")


def main(argv):
    del argv
    if not FLAGS.history:
        raise app.UsageError("--history is required (a history.csv written by recipes/train.py).")
    output = FLAGS.output or os.path.join(os.path.dirname(os.path.abspath(FLAGS.history[0])), "history.png")
    drawn = plot_histories(FLAGS.history, output, FLAGS.metrics, FLAGS.title)
    print(f"Wrote {output} (loss and {', '.join(drawn) or 'no validation metrics'}).")


if __name__ == "__main__":
    app.run(main)
