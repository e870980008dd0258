"""Train a keras_msa model.

    python recipes/train.py --model=lfdnn --data=synthetic --output_dir=runs/lfdnn

`--data` is `synthetic` (the built-in benchmark with a known Bayes floor) or a
directory written by `recipes/convert.py`. Writes `<output_dir>/model.keras`
and `<output_dir>/metrics.json` (`{"valid": {...}, "test": {...}, ...}`) and
prints the test metrics beside the Bayes floor (synthetic data).
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lfdnn", "Registered model name (lfdnn, eflstm, mulg, m3sa, tecafn, crosssent, ssgdl).")
flags.DEFINE_string("preset", None, "Paper preset of the model (e.g. mosi, mosei, sims).")
flags.DEFINE_string("model_config", "{}", "JSON dict of constructor overrides.")
flags.DEFINE_string("data", "synthetic", "'synthetic' or a converted TFRecord directory.")
flags.DEFINE_enum("scale", None, ["mosi", "mosei", "sims"], "Metric scale (default from the data).")
flags.DEFINE_integer("epochs", 30, "Maximum epochs.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Learning rate.")
flags.DEFINE_float("weight_decay", 0.0, "AdamW weight decay (0 = Adam).")
flags.DEFINE_float("clipnorm", None, "Gradient clipping by norm.")
flags.DEFINE_integer("patience", 10, "Early-stopping patience in epochs on the validation metric.")
flags.DEFINE_integer("seed", 1111, "Training seed (weights, shuffling, dropout).")
flags.DEFINE_string("output_dir", None, "Where model.keras and metrics.json go (default runs/<model>).")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the synthetic benchmark's data.")
flags.DEFINE_string("synthetic_sizes", None, "JSON split sizes, e.g. '{\"train\": 512, \"valid\": 128, \"test\": 256}'.")
flags.DEFINE_bool("synthetic_unimodal_labels", False, "Add CH-SIMS-style unimodal labels to the synthetic data.")
flags.DEFINE_bool("synthetic_aligned", True, "Aligned (one T) or unaligned synthetic modalities.")
flags.DEFINE_bool("jit_compile", False, "Compile train steps with XLA.")
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity (2 = one line per epoch).")


def config_from_flags():
    from keras_msa.training.runner import TrainConfig

    try:
        model_config = json.loads(FLAGS.model_config)
    except json.JSONDecodeError as e:
        raise app.UsageError(f"--model_config is not valid JSON: {e}")
    sizes = json.loads(FLAGS.synthetic_sizes) if FLAGS.synthetic_sizes else None
    return TrainConfig(
        model=FLAGS.model,
        preset=FLAGS.preset,
        model_config=model_config,
        data=FLAGS.data,
        scale=FLAGS.scale,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        weight_decay=FLAGS.weight_decay,
        clipnorm=FLAGS.clipnorm,
        patience=FLAGS.patience,
        seed=FLAGS.seed,
        output_dir=FLAGS.output_dir or os.path.join("runs", FLAGS.model),
        synthetic_seed=FLAGS.synthetic_seed,
        synthetic_sizes=sizes,
        synthetic_unimodal_labels=FLAGS.synthetic_unimodal_labels,
        synthetic_aligned=FLAGS.synthetic_aligned,
        jit_compile=FLAGS.jit_compile,
        verbose=FLAGS.verbose,
    )


def format_summary(results):
    lines = [f"\n{results['model']} on {results['data']} (seed {results['seed']}, "
             f"{results['epochs_run']} epochs, best {results['best_epoch']}, "
             f"{results['train_seconds']:.0f} s, {results['params']:,} params)"]
    for split in ("valid", "test"):
        if split in results:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in results[split].items())
            lines.append(f"  {split}: {shown}")
    if "bayes_mae" in results:
        lines.append(
            f"  test MAE {results['test']['mae']:.4f} | Bayes floor {results['bayes_mae']['test']:.4f} "
            f"(gap {results['gap_to_bayes_mae_test']:+.4f}) | text-only floor "
            f"{results['text_only_bayes_mae']['test']:.4f} | mean predictor "
            f"{results['mean_predictor_mae_test']:.4f}"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    from keras_msa.training.runner import train

    config = config_from_flags()
    results, _ = train(config)
    print(format_summary(results))
    print(f"\nWrote {os.path.join(config.output_dir, 'model.keras')} and metrics.json")


if __name__ == "__main__":
    app.run(main)
