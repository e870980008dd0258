"""Evaluate a saved model on one split and print its metrics as JSON.

    python recipes/evaluate.py --model_path=runs/lfdnn/model.keras --data=synthetic --split=test
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "A .keras file written by recipes/train.py.", required=True)
flags.DEFINE_string("data", "synthetic", "'synthetic' or a converted TFRecord directory.")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_enum("scale", None, ["mosi", "mosei", "sims"], "Metric scale (default from the data).")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the synthetic benchmark's data.")
flags.DEFINE_string("synthetic_sizes", None, "JSON split sizes of the synthetic data.")
flags.DEFINE_bool("synthetic_unimodal_labels", False, "Synthetic unimodal labels.")


def main(argv):
    del argv
    import keras

    import keras_msa  # noqa: F401  (registers the model classes)
    from keras_msa.data.validation import expected_dims_from_model
    from keras_msa.data.validation import validate_batch
    from keras_msa.models.base import MODALITIES
    from keras_msa.training.evaluation import evaluate_model
    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import load_data

    if not os.path.exists(FLAGS.model_path):
        raise app.UsageError(f"--model_path={FLAGS.model_path} does not exist.")
    model = keras.saving.load_model(FLAGS.model_path)
    config = TrainConfig(
        data=FLAGS.data,
        scale=FLAGS.scale,
        batch_size=FLAGS.batch_size,
        synthetic_seed=FLAGS.synthetic_seed,
        synthetic_sizes=json.loads(FLAGS.synthetic_sizes) if FLAGS.synthetic_sizes else None,
        synthetic_unimodal_labels=FLAGS.synthetic_unimodal_labels,
    )
    datasets, info = load_data(config, splits=(FLAGS.split,))
    if FLAGS.split not in datasets:
        raise app.UsageError(f"{FLAGS.data} has no split '{FLAGS.split}'.")
    first = next(iter(datasets[FLAGS.split]))[0]
    expected = expected_dims_from_model(model)
    validate_batch(
        {k: v.numpy() for k, v in first.items()},
        expected_dims=expected,
        # The modalities the model was built with (AVEC 2019 data has no text).
        modalities=list(expected) or MODALITIES,
        source=f"{FLAGS.data}:{FLAGS.split}",
    )
    metrics = evaluate_model(model, datasets[FLAGS.split], info["scale"])
    report = {"model_path": FLAGS.model_path, "data": FLAGS.data, "split": FLAGS.split, "metrics": metrics}
    if "bayes_mae" in info:
        report["bayes_mae"] = info["bayes_mae"][FLAGS.split]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    app.run(main)
