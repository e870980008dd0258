"""Gather the results of many runs into one Markdown and one CSV table.

    python recipes/report.py --runs=runs/ --output=report              # report.md, report.csv
    python recipes/report.py --runs=runs/ --paper_units --split=test    # MMSA's names, accuracies x100

Reads every `metrics.json` (a run of recipes/train.py or recipes/tune.py) and
`seeds_summary.json` (recipes/train.py --seeds) under --runs, recursively,
and writes one row per model x preset x data (--group_by adds fields of the
run's config, e.g. learning_rate): mean ± sample standard deviation (ddof=1)
per metric over the runs (seeds), and n. A seeds summary counts only for
seeds whose seed_<s>/metrics.json is not beside it; a seed found twice with
the same metrics counts once, with different metrics it is an error naming
both files. The CSV holds the values at full precision, with the seeds and
the source files of each row.

--paper_units prints the names and units papers and the reference framework
MMSA use: accuracies and F1 x100, MAE and Corr as they are. Metric names,
ours -> MMSA's:

| scale | ours (keras_msa.metrics) | MMSA | paper units |
| --- | --- | --- | --- |
| mosi, mosei | `acc2_has0` | `Has0_acc_2` | x100 |
| mosi, mosei | `f1_has0` | `Has0_F1_score` | x100 |
| mosi, mosei | `acc2_non0` | `Non0_acc_2` | x100 |
| mosi, mosei | `f1_non0` | `Non0_F1_score` | x100 |
| mosi, mosei | `acc5` | `Mult_acc_5` | x100 |
| mosi, mosei | `acc7` | `Mult_acc_7` | x100 |
| mosi, mosei | `mae` | `MAE` | x1 |
| mosi, mosei | `corr` | `Corr` | x1 |
| sims | `acc2` | `Mult_acc_2` | x100 |
| sims | `acc3` | `Mult_acc_3` | x100 |
| sims | `acc5` | `Mult_acc_5` | x100 |
| sims | `f1` | `F1_score` | x100 |
| sims | `mae` | `MAE` | x1 |
| sims | `corr` | `Corr` | x1 |

MMSA reports no 3-class accuracy for MOSI/MOSEI, so our `acc3` there, the
ordinal metrics (`qwk`, `jump2plus`, `mean_abs_jump`) and the metrics of the
other tasks (AVEC, IEMOCAP, UR-FUNNY) keep our names and units in both modes.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("runs", "runs", "Folder searched recursively for metrics.json and seeds_summary.json.")
flags.DEFINE_string("output", "report", "Output path without extension: writes <output>.md and <output>.csv.")
flags.DEFINE_enum("split", "test", ["test", "valid"], "Which split's metrics to report.")
flags.DEFINE_bool("paper_units", False, "MMSA's metric names, accuracies and F1 x100 (see the table above).")
flags.DEFINE_integer("digits", 4, "Decimals in the Markdown table (paper units: 2 for the x100 metrics).")
flags.DEFINE_list("group_by", ["model", "preset", "data"], "Fields that make a row (run or config fields).")


def main(argv):
    del argv
    from keras_msa.data.errors import DataFormatError
    from keras_msa.training.report import write_report

    try:
        md, _, rows = write_report(FLAGS.runs, FLAGS.output, split=FLAGS.split, paper_units=FLAGS.paper_units,
                                   digits=FLAGS.digits, group_by=FLAGS.group_by)
    except (FileNotFoundError, DataFormatError, ValueError) as e:
        # The message names the flag or the file at fault; a traceback adds nothing.
        raise SystemExit(f"recipes/report.py: {e}") from None
    print(md)
    print(f"Wrote {FLAGS.output}.md and {FLAGS.output}.csv ({len(rows)} rows, "
          f"{sum(r['n'] for r in rows)} runs).")


if __name__ == "__main__":
    app.run(main)
