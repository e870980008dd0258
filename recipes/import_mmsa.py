"""Turn a checkpoint trained with MMSA (PyTorch) into a keras_msa model.

    python recipes/import_mmsa.py --model=mult --checkpoint=mult-mosi.pth \
        --config=mosi --output=runs/mult_mosi/model.keras
    # or with MMSA's own config file (the dataset entry is found from the
    # checkpoint's sizes, or named with --dataset):
    python recipes/import_mmsa.py --model=mult --checkpoint=mult-mosi.pth \
        --config=MMSA/config/config_regression.json --dataset=mosi --output=model.keras

The `.pth` is read without torch and without running anything from it (see
keras_msa/convert/mmsa.py); a file whose pickle would import code is refused.
The written model predicts MMSA's numbers on the same inputs (to 1e-4) and
exports like any other (`recipes/export.py --model_path=model.keras ...`).
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "mult", "keras_msa model name: mult, eflstm (or ef_lstm), lfdnn (or lf_dnn), tfn, lmf, "
                    "selfmm (or self_mm), magbert (or bert_mag), mmim, misa.")
flags.DEFINE_string("checkpoint", None, "The .pth MMSA's training saved.", required=True)
flags.DEFINE_string("config", "mosi", "A dataset name (mosi, mosei, sims), MMSA's config_regression.json, "
                    "or a JSON object of MMSA's parameters.")
flags.DEFINE_string("dataset", None, "The datasetParams entry of --config (default: the one that fits).")
flags.DEFINE_string("output", None, "Where the .keras model goes.", required=True)


def main(argv):
    del argv
    # Before anything imports TensorFlow (`import keras_msa` does not).
    from keras_msa.utils.quiet import quiet_start

    quiet_start(FLAGS.verbosity)
    from keras_msa.convert.mmsa import import_mmsa_checkpoint
    from keras_msa.convert.mmsa_mult import CheckpointMismatchError
    from keras_msa.data.errors import DataFormatError

    if not FLAGS.output.endswith(".keras"):
        raise app.UsageError(f"--output must end with .keras; got {FLAGS.output}.")
    print(f"Reading {FLAGS.checkpoint} (no torch, no code run) ...", flush=True)
    try:
        model = import_mmsa_checkpoint(FLAGS.checkpoint, model=FLAGS.model, config=FLAGS.config,
                                       dataset=FLAGS.dataset, output=FLAGS.output)
    except (DataFormatError, CheckpointMismatchError, ValueError, OSError) as e:
        print(f"import_mmsa: {e}", file=sys.stderr)
        return 1
    print(f"Wrote {FLAGS.output}: {type(model).__name__}, {model.count_params():,} parameters.")
    return 0


if __name__ == "__main__":
    app.run(main)
