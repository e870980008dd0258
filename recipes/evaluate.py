"""Evaluate a saved model on one split and print its metrics as JSON.

    python recipes/evaluate.py --model_path=runs/lfdnn/model.keras --data=synthetic --split=test

The model loads in Keras's safe mode (code stored in a `.keras` file, such as
a Lambda layer, is refused); a missing, truncated or damaged file, a split the
data do not have, or data of other feature widths than the model's is an error
that names the flag, the path and what was expected.
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_msa.data import DATA_PLACE  # noqa: E402  (light: no TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "A .keras file written by recipes/train.py.", required=True)
flags.DEFINE_string("data", "synthetic", "'synthetic' or a converted TFRecord directory."
                    f" Converted data live in {DATA_PLACE} by convention (e.g. data/mosi_unaligned).")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_enum("scale", None, ["mosi", "mosei", "sims"], "Metric scale (default from the data).")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the synthetic benchmark's data.")
flags.DEFINE_string("synthetic_sizes", None, "JSON split sizes of the synthetic data.")
flags.DEFINE_bool("synthetic_unimodal_labels", False, "Synthetic unimodal labels.")
flags.DEFINE_string("synthetic_options", None, "JSON dict of extra make_synthetic_benchmark arguments "
                    "(as given to recipes/train.py, e.g. '{\"text_dim\": 16}').")


def main(argv):
    del argv
    # Before anything imports TensorFlow (`import keras_msa` does not).
    from keras_msa.utils.quiet import quiet_start

    quiet_start(FLAGS.verbosity)
    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import check_config
    from keras_msa.training.runner import evaluate_saved_model
    from keras_msa.training.runner import parse_json_flag

    try:
        config = TrainConfig(
            data=FLAGS.data,
            scale=FLAGS.scale,
            batch_size=FLAGS.batch_size,
            synthetic_seed=FLAGS.synthetic_seed,
            synthetic_sizes=parse_json_flag("synthetic_sizes", FLAGS.synthetic_sizes),
            synthetic_unimodal_labels=FLAGS.synthetic_unimodal_labels,
            synthetic_options=parse_json_flag("synthetic_options", FLAGS.synthetic_options),
        )
        check_config(config)
    except ValueError as e:
        raise app.UsageError(str(e))
    try:
        report = evaluate_saved_model(FLAGS.model_path, config, FLAGS.split)
    except (ValueError, KeyError, FileNotFoundError) as e:
        # Each names the flag, path, split or key at fault.
        raise SystemExit(f"evaluate.py: {e}")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    app.run(main)
