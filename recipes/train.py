"""Train a keras_msa model.

    python recipes/train.py --model=lfdnn --data=synthetic --output_dir=runs/lfdnn

`--data` is `synthetic` (the built-in benchmark with a known Bayes floor) or a
directory written by `recipes/convert.py`. Writes `<output_dir>/model.keras`,
`<output_dir>/metrics.json` (`{"valid": {...}, "test": {...}, ...}`) and
`<output_dir>/history.csv` (one row per epoch; draw it with
`recipes/plot_history.py`), and prints the test metrics beside the Bayes floor
(synthetic data).

Scale and reproducibility:

    # Mixed precision (float16 gets dynamic loss scaling).
    python recipes/train.py --model=mulg --mixed_precision=mixed_bfloat16
    # All GPUs of a machine (or all logical CPUs when there is no GPU).
    python recipes/train.py --model=mulg --strategy=mirrored
    # Several machines: the same command on each, with its own TF_CONFIG
    # (see keras_msa/training/distributed.py); worker 0 writes the results.
    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' \
        python recipes/train.py --model=mulg --strategy=multi_worker
    # Resumable: checkpoint every 50 steps; after a crash or SIGKILL, run the
    # same command again and it continues from the last checkpoint.
    python recipes/train.py --model=mulg --checkpoint_every_steps=50 --output_dir=runs/mulg
    # Five seeds: per-seed runs in <output_dir>/seed_<s>/ plus
    # seeds_summary.json / seeds_summary.md (mean, std, 95% t interval).
    python recipes/train.py --model=lfdnn --seeds=1111,1112,1113,1114,1115

Runs are quiet: TensorFlow's start-up and CUDA-probe lines stay hidden
unless `--verbosity=1` (TensorFlow warnings) or `--verbosity=2` (all its
logs). `--tensorboard_dir=DIR` writes every epoch's metrics for TensorBoard;
`metrics.json` also records the package versions, the machine and the git
commit of the code.

The same `--seed` gives the same metrics twice on the same hardware (op
determinism is on unless `--nodeterministic`).
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lfdnn", "Registered model name (lfdnn, eflstm, mulg, mult, tfn, lmf, m3sa, tecafn, crosssent, ssgdl).")
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
flags.DEFINE_integer("verbose", 2, "Epoch lines: 0 = none, >= 1 = one short line per epoch (loss, its terms, "
                     "the selection metric); every metric goes to history.csv.")
flags.DEFINE_string("tensorboard_dir", None, "Also write every epoch's logs (loss, all val_* metrics) as "
                    "TensorBoard event files here.")
flags.DEFINE_bool("save_optimizer", False, "Keep the optimizer's state in model.keras (to continue training "
                  "from it with fit); by default model.keras holds the weights alone.")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"],
                  "Keras dtype policy of the model (float16 adds dynamic loss scaling).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                  "tf.distribute strategy; multi_worker reads the cluster from TF_CONFIG.")
flags.DEFINE_enum("loop", "auto", ["auto", "fit", "custom"],
                  "Training loop: auto = fit on the default strategy, the custom loop under mirrored/multi_worker "
                  "and for checkpointed runs.")
flags.DEFINE_integer("checkpoint_every_steps", 0,
                     "Checkpoint every N steps (and at each epoch end) to <output_dir>/checkpoints; "
                     "rerunning the same command resumes. 0 = no checkpoints.")
flags.DEFINE_integer("keep_checkpoints", 2, "How many of the newest checkpoints to keep.")
flags.DEFINE_bool("deterministic", True, "Deterministic TensorFlow ops (same seed, same metrics).")
flags.DEFINE_list("seeds", None, "Several training seeds, e.g. 1111,1112,1113,1114,1115: one run each "
                  "plus mean/std/95% CI in <output_dir>/seeds_summary.{json,md}.")
flags.DEFINE_string("synthetic_options", None, "JSON dict of extra make_synthetic_benchmark arguments, "
                    "e.g. '{\"seq_len\": 12, \"min_len\": 12, \"text_dim\": 16}'.")
flags.DEFINE_integer("logical_cpu_devices", 0, "Split the CPU into N logical devices (to try "
                     "--strategy=mirrored without GPUs). 0 = leave it.")


def config_from_flags():
    """The run's `TrainConfig`; a flag that cannot make a run (bad JSON, a
    negative size, ...) is a `UsageError` that names it."""
    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import check_config
    from keras_msa.training.runner import parse_json_flag

    try:
        model_config = parse_json_flag("model_config", FLAGS.model_config) or {}
        sizes = parse_json_flag("synthetic_sizes", FLAGS.synthetic_sizes)
        synthetic_options = parse_json_flag("synthetic_options", FLAGS.synthetic_options)
    except ValueError as e:
        raise app.UsageError(str(e))
    config = TrainConfig(
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
        mixed_precision=FLAGS.mixed_precision,
        strategy=FLAGS.strategy,
        loop=FLAGS.loop,
        checkpoint_every_steps=FLAGS.checkpoint_every_steps,
        keep_checkpoints=FLAGS.keep_checkpoints,
        deterministic=FLAGS.deterministic,
        synthetic_options=synthetic_options,
        tensorboard_dir=FLAGS.tensorboard_dir,
        save_optimizer=FLAGS.save_optimizer,
    )
    try:
        check_config(config)
    except ValueError as e:
        raise app.UsageError(str(e))
    return config


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


def quiet_start():
    """Applies `--verbosity` before TensorFlow loads (keras_msa/utils/quiet.py,
    loaded by path: importing the keras_msa package would import TensorFlow)."""
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "keras_msa", "utils", "quiet.py")
    spec = importlib.util.spec_from_file_location("keras_msa_quiet_start", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.quiet_start(FLAGS.verbosity)


def main(argv):
    del argv
    quiet_start()
    if FLAGS.logical_cpu_devices:
        # Before anything initialises TensorFlow's devices.
        from keras_msa.training.distributed import configure_logical_cpus

        configure_logical_cpus(FLAGS.logical_cpu_devices)
    from keras_msa.training.runner import train
    from keras_msa.training.runner import train_seeds

    config = config_from_flags()
    if FLAGS.seeds:
        try:
            seeds = [int(s) for s in FLAGS.seeds]
        except ValueError:
            raise app.UsageError(f"--seeds must be integers separated by commas; got {FLAGS.seeds}.")
        summary, runs = train_seeds(config, seeds)
        for results in runs:
            print(format_summary(results))
        print()
        with open(os.path.join(config.output_dir, "seeds_summary.md")) as f:
            print(f.read())
        print(f"Wrote {os.path.join(config.output_dir, 'seeds_summary.json')} and seeds_summary.md")
        return
    results, _ = train(config)
    print(format_summary(results))
    print(f"\nWrote {os.path.join(results['output_dir'], 'model.keras')}, metrics.json and history.csv")


if __name__ == "__main__":
    app.run(main)
