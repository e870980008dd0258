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

Paper protocols: `--preset=<dataset>` applies the model's settings from its
paper's tables *and* its training protocol (optimizer, epsilon, weight decay,
learning rate per parameter group, warm-up and decay, batch, epochs,
clipping, patience, selection metric, seed); any flag given explicitly
replaces that one field. The run prints the resolved protocol, each field
marked "paper", "ARCHITECTURES.md", "our choice" or "flag", and saves it in
metrics.json under "protocol".

    python recipes/train.py --model=crosssent --preset=mosi --epochs=5

Data without a 'valid' split get one carved from train (--validation_fraction,
--validation_seed; the size is printed and saved under "validation_split"):
the test split is only read for the final evaluation.

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

from keras_msa.data import DATA_PLACE  # noqa: E402  (light: no TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lfdnn", "Registered model name (lfdnn, eflstm, mulg, mult, tfn, lmf, misa, selfmm, magbert, "
                    "mmim, m3sa, tecafn, crosssent, ssgdl).")
flags.DEFINE_string("preset", None, "Paper preset of the model (e.g. mosi, mosei, sims).")
flags.DEFINE_string("model_config", "{}", "JSON dict of constructor overrides.")
flags.DEFINE_string("data", "synthetic", "'synthetic' or a converted TFRecord directory."
                    f" Converted data live in {DATA_PLACE} by convention (e.g. data/mosi_unaligned).")
flags.DEFINE_enum("scale", None, ["mosi", "mosei", "sims"], "Metric scale (default from the data).")
# The training protocol: unset = the --preset's protocol (the paper's table,
# keras_msa/training/protocol.py), else the project default shown in [].
flags.DEFINE_integer("epochs", None, "Maximum epochs [protocol, else 30].")
flags.DEFINE_integer("batch_size", None, "Batch size [protocol, else 32].")
flags.DEFINE_float("learning_rate", None, "Peak learning rate [protocol, else 1e-3].")
flags.DEFINE_float("backbone_learning_rate", None, "Learning rate of a pretrained text backbone "
                   "[protocol, else --learning_rate].")
flags.DEFINE_enum("optimizer", None, ["adam", "adamw"], "Optimizer [protocol, else adam].")
flags.DEFINE_float("epsilon", None, "Adam/AdamW epsilon [protocol, else 1e-7].")
flags.DEFINE_float("weight_decay", None, "AdamW decoupled weight decay; > 0 without --optimizer "
                   "selects AdamW [protocol, else 0].")
flags.DEFINE_float("warmup_proportion", None, "Linear LR warm-up over this share of all steps "
                   "[protocol, else 0].")
flags.DEFINE_enum("lr_decay", None, ["none", "linear"], "LR after the warm-up: constant or linear "
                  "to 0 [protocol, else none].")
flags.DEFINE_float("clipnorm", None, "Clip the gradients to this global norm [protocol, else none].")
flags.DEFINE_float("clipvalue", None, "Clip each gradient element to +-this [protocol, else none].")
flags.DEFINE_float("l2_weight_decay", None, "Coupled L2: wd * w added to each gradient, as PyTorch's "
                   "Adam(weight_decay=wd) in MMSA's trainers [protocol, else 0].")
flags.DEFINE_integer("gradient_accumulation_steps", None, "Batches whose gradients make one update "
                     "[protocol, else 1].")
flags.DEFINE_integer("patience", None, "Early-stopping patience in epochs on the validation metric; "
                     "0 = never stop [protocol, else 10].")
flags.DEFINE_string("monitor", None, "Validation metric that selects the best epoch, e.g. mae, mse, "
                    "acc2_non0 [protocol, else the task's].")
flags.DEFINE_integer("seed", None, "Training seed (weights, shuffling, dropout) [protocol, else 1111].")
flags.DEFINE_float("validation_fraction", 0.1, "Share of train carved off (seeded) as the validation "
                   "split when the data have none; the test split is never validated on.")
flags.DEFINE_integer("validation_seed", 0, "Seed of that carve.")
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
        optimizer=FLAGS.optimizer,
        epsilon=FLAGS.epsilon,
        backbone_learning_rate=FLAGS.backbone_learning_rate,
        warmup_proportion=FLAGS.warmup_proportion,
        lr_decay=FLAGS.lr_decay,
        clipvalue=FLAGS.clipvalue,
        l2_weight_decay=FLAGS.l2_weight_decay,
        gradient_accumulation_steps=FLAGS.gradient_accumulation_steps,
        monitor=FLAGS.monitor,
        validation_fraction=FLAGS.validation_fraction,
        validation_seed=FLAGS.validation_seed,
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


def main(argv):
    del argv
    # Before anything imports TensorFlow (`import keras_msa` does not).
    from keras_msa.utils.quiet import quiet_start

    quiet_start(FLAGS.verbosity)
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
