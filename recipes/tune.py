"""Search a model's training protocol and constructor arguments with KerasTuner.

    python recipes/tune.py --model=lfdnn --algorithm=random --max_trials=20 --epochs=30 \\
        --search_space='{"learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
                         "batch_size": [16, 32, 64], "dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
                         "fusion_dim": [32, 64, 128], "hidden_dims.text": [64, 128]}' \\
        --output_dir=runs/tune_lfdnn
    python recipes/tune.py --model=lfdnn --algorithm=hyperband --max_epochs=27 --factor=3 \\
        --search_space=space.json --output_dir=runs/tune_lfdnn_hb

Needs KerasTuner (`pip install keras-tuner`, or the `[tune]` extra).

Each trial is a normal run directory, `<output_dir>/trials/trial_<id>/`, with
`model.keras`, `metrics.json` and `history.csv` as `recipes/train.py` writes
them. Trials are chosen on the validation split only (MAE for sentiment,
as for early stopping): the test metrics in each `metrics.json` are never
read by the search, and data without a `valid` split are refused.

`--search_space` is a JSON object (inline, or the path of a `.json` file).
`learning_rate`, `batch_size`, `epochs`, `weight_decay`, `clipnorm` and
`patience` set the protocol; any other key is a model argument, dotted keys
reach into dict arguments (`hidden_dims.text`). A list is a choice, an object
`{"min", "max", "step", "sampling": "linear"|"log"}` a range (integer when
its bounds are integers), anything else a fixed value. Hyperband sets the
epochs itself (up to `--max_epochs`); a promoted trial is trained again from
scratch for its larger budget.

Writes `<output_dir>/best_model_config.json` (pass it to `recipes/train.py
--model_config`), `<output_dir>/best_protocol.json` (`learning_rate`,
`batch_size`, `epochs`: the `recipes/train.py` flags of the same names) and
`<output_dir>/tuning_summary.json`, and prints the train command that repeats
the best trial. The same command again resumes the search; `--overwrite`
starts afresh.
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_msa.data import DATA_PLACE  # noqa: E402  (light: no TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lfdnn", "Registered model name (lfdnn, eflstm, mulg, m3sa, tecafn, crosssent, ssgdl).")
flags.DEFINE_string("preset", None, "Paper preset of the model (e.g. mosi, mosei, sims).")
flags.DEFINE_string("model_config", "{}", "JSON dict of constructor arguments every trial starts from.")
flags.DEFINE_string("search_space", None, "JSON object of hyper-parameters to search, or the path of a .json file.")
flags.DEFINE_enum("algorithm", "random", ["random", "hyperband"], "KerasTuner search algorithm.")
flags.DEFINE_integer("max_trials", 10, "Random search: number of configurations.")
flags.DEFINE_integer("max_epochs", None, "Hyperband: the largest epoch budget of a trial (default --epochs).")
flags.DEFINE_integer("factor", 3, "Hyperband: reduction factor between rounds.")
flags.DEFINE_integer("hyperband_iterations", 1, "Hyperband: number of full sweeps.")
flags.DEFINE_integer("tuner_seed", 0, "Seed of the search's sampling.")
flags.DEFINE_bool("overwrite", False, "Start afresh instead of resuming a search in --output_dir.")
flags.DEFINE_string("data", "synthetic", "'synthetic' or a converted TFRecord directory (needs a 'valid' split)."
                    f" Converted data live in {DATA_PLACE} by convention (e.g. data/mosi_unaligned).")
flags.DEFINE_enum("scale", None, ["mosi", "mosei", "sims"], "Metric scale (default from the data).")
flags.DEFINE_integer("epochs", 30, "Epochs of each random-search trial (unless searched).")
flags.DEFINE_integer("batch_size", 32, "Batch size (unless searched).")
flags.DEFINE_float("learning_rate", 1e-3, "Learning rate (unless searched).")
flags.DEFINE_float("weight_decay", 0.0, "AdamW weight decay (0 = Adam; unless searched).")
flags.DEFINE_integer("patience", 10, "Early-stopping patience on the validation metric.")
flags.DEFINE_integer("seed", 1111, "Training seed of every trial.")
flags.DEFINE_string("output_dir", None, "Where the trials and the best config go (default runs/tune_<model>).")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the synthetic benchmark's data.")
flags.DEFINE_string("synthetic_sizes", None,
                    "JSON split sizes, e.g. '{\"train\": 512, \"valid\": 128, \"test\": 256}'.")
flags.DEFINE_string("synthetic_options", None, "JSON dict of extra make_synthetic_benchmark arguments.")
flags.DEFINE_integer("verbose", 0, "Keras fit verbosity inside each trial.")
flags.DEFINE_integer("tuner_verbose", 1, "KerasTuner's progress lines (0 = quiet).")


def search_space_from_flag(value):
    """The search space of `--search_space`: inline JSON or a `.json` file."""
    if not value:
        raise app.UsageError("--search_space is required: a JSON object or the path of a .json file.")
    text = value
    if not value.lstrip().startswith("{"):
        if not os.path.isfile(value):
            raise app.UsageError(f"--search_space={value!r} is neither a JSON object nor an existing file.")
        with open(value) as f:
            text = f.read()
    try:
        space = json.loads(text)
    except json.JSONDecodeError as e:
        where = "" if text is value else f" (file {value})"
        raise app.UsageError(f"--search_space is not valid JSON{where}: {e}.")
    if not isinstance(space, dict):
        raise app.UsageError(f"--search_space must be a JSON object; got {type(space).__name__}.")
    return space


def main(argv):
    del argv
    space = search_space_from_flag(FLAGS.search_space)
    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import parse_json_flag
    from keras_msa.training.tuning import SearchSpaceError
    from keras_msa.training.tuning import tune

    try:
        model_config = parse_json_flag("model_config", FLAGS.model_config) or {}
        sizes = parse_json_flag("synthetic_sizes", FLAGS.synthetic_sizes)
        options = parse_json_flag("synthetic_options", FLAGS.synthetic_options)
    except ValueError as e:
        raise app.UsageError(str(e))
    config = TrainConfig(
        model=FLAGS.model, preset=FLAGS.preset, model_config=model_config, data=FLAGS.data, scale=FLAGS.scale,
        epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
        weight_decay=FLAGS.weight_decay, patience=FLAGS.patience, seed=FLAGS.seed,
        output_dir=FLAGS.output_dir or os.path.join("runs", f"tune_{FLAGS.model}"),
        synthetic_seed=FLAGS.synthetic_seed, synthetic_sizes=sizes, synthetic_options=options,
        verbose=FLAGS.verbose,
    )
    try:
        summary = tune(config, space, algorithm=FLAGS.algorithm, max_trials=FLAGS.max_trials,
                       max_epochs=FLAGS.max_epochs, factor=FLAGS.factor,
                       hyperband_iterations=FLAGS.hyperband_iterations, tuner_seed=FLAGS.tuner_seed,
                       overwrite=FLAGS.overwrite, verbose=FLAGS.tuner_verbose)
    except SearchSpaceError as e:
        raise app.UsageError(str(e))
    metric = summary["selection"]["metric"]
    print(f"\n{len(summary['trials'])} trials; best: trial {summary['best_trial']} "
          f"(valid {metric} = {summary[f'best_valid_{metric}']:.4f}) in {summary['best_dir']}")
    print(f"Wrote {os.path.join(config.output_dir, 'best_model_config.json')}, best_protocol.json "
          f"and tuning_summary.json. Train it with:\n  {summary['train_command']}")


if __name__ == "__main__":
    app.run(main)
