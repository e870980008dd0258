"""Each paper's main component against its ablation, on the synthetic scenario
built for it (`keras_msa.data.synthetic`, module docstring).

    python benchmarks/ablations.py --output_md=runs/ablations/ablations.md

For every component below, the full model and the model with that component
switched off (the paper's own ablation flag) are trained with the same
reduced sizes, data and training budget, with the model's own objective
(`fit`, auxiliary losses included, `model.epoch` set each epoch) and early
stopping on validation MAE (best weights restored), once per seed, and the
test MAE, Corr and Acc-2 are reported as mean ± standard deviation over the
seeds, beside the scenario's Bayes floor and text-only floor. The synthetic
data is the same for every seed (`--synthetic_seed`); the seed drives the
weights, shuffling and dropout.

Every run leaves its results in `<runs_dir>/<component>/<arm>/seed_<s>.json`;
a run whose file already holds the same configuration is read back
instead of trained again, so that the command can be stopped and rerun, or run
for a few components at a time (`--components`), and the table is always
written from every finished run.
"""

import json
import math
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS

# The component, the scenario that gives it something to exploit, the model's
# reduced configuration (the same for both arms) and the ablation flag.
COMPONENTS = {
    "gmra": dict(
        title="CrossSent GMRA (features mode)",
        model="crosssent",
        scenario="default",
        config={"hidden_dim": 64, "num_attention_heads": 4, "intermediate_dim": 128, "gmra_heads": 4,
                "adapter_dim": 16},
        ablation={"use_gmra": False},
        ablation_name="w/o GMRA",
        epochs=12,
    ),
    "psmdl": dict(
        title="SSGDL PS-MDL",
        model="ssgdl",
        preset="mosi",
        scenario="conflict",
        config={"hidden_dim": 32, "num_heads": 4},
        ablation={"use_psmdl": False},
        ablation_name="w/o PS-MDL",
        epochs=8,
    ),
    "xattn": dict(
        title="MulG cross-modal attention",
        model="mulg",
        preset="mosi",
        scenario="conflict",
        config={"hidden_dim": 32},
        ablation={"cross_modal_attention": False},
        ablation_name="w/o cross-modal attention",
        # The full model has 2.5x the ablation's parameters and was still
        # improving at epoch 8; early stopping ends both arms before 20.
        epochs=20,
        learning_rate=2e-3,
    ),
    "replace": dict(
        title="TeCaFN replacement gate",
        model="tecafn",
        preset="mosi",
        scenario="agree",
        config={},
        ablation={"replace_audio": False, "replace_vision": False},
        ablation_name="w/o L_tap+tvp (no replacement)",
        epochs=8,
        learning_rate=2e-3,
    ),
    "multiscale": dict(
        title="M3SA multi-scale / SE",
        model="m3sa",
        preset="mosi",
        scenario="multiscale",
        # The sigmoid SE gate: the paper's ReLU gate starts with about half of
        # its scale weights at exactly 0, where they get no gradient.
        config={"hidden_dim": 32, "se_gate": "sigmoid"},
        ablation={"multi_scale": False},
        ablation_name="w/o multi-scale",
        epochs=8,
        unimodal_labels=True,
    ),
    "csdsa": dict(
        title="SSGDL CS-DSA",
        model="ssgdl",
        preset="mosi",
        scenario="multiscale",
        config={"hidden_dim": 32, "num_heads": 4},
        ablation={"use_csdsa": False},
        ablation_name="w/o CS-DSA",
        epochs=8,
    ),
}

flags.DEFINE_list("components", list(COMPONENTS), f"Components to run, of {list(COMPONENTS)}.")
flags.DEFINE_list("seeds", ["1111", "1112", "1113", "1114", "1115"], "Training seeds.")
flags.DEFINE_string("sizes", '{"train": 400, "valid": 100, "test": 200}', "JSON synthetic split sizes.")
flags.DEFINE_integer("seq_len", 24, "Synthetic sequence length.")
flags.DEFINE_integer("min_len", 20, "Shortest valid length (room for the widest multiscale window).")
flags.DEFINE_integer("text_dim", 64, "Synthetic text feature width.")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the synthetic data (the same for every run).")
flags.DEFINE_integer("epochs", None, "Override every component's epoch budget.")
flags.DEFINE_integer("batch_size", 50, "Batch size (both arms).")
flags.DEFINE_integer("patience", 3, "Early-stopping patience in epochs on validation MAE.")
flags.DEFINE_string("runs_dir", "runs/ablations", "Where each run's files go.")
flags.DEFINE_string("output_md", None, "Write the Markdown table here (default <runs_dir>/ablations.md).")
flags.DEFINE_string("model_config", None, "JSON merged into both arms' model config of every component run "
                    "(e.g. '{\"scale_norm\": \"none\"}' for M3SA); part of each run's cache key.")
flags.DEFINE_bool("table_only", False, "Only collect finished runs and write the table.")


def _run_config(name, spec, arm):
    """Everything a run of one arm depends on (the cache key of its results)."""
    model_config = dict(spec["config"])
    if FLAGS.model_config:
        model_config.update(json.loads(FLAGS.model_config))
    if arm == "ablation":
        model_config.update(spec["ablation"])
    return {
        "component": name,
        "arm": arm,
        "model": spec["model"],
        "preset": spec.get("preset"),
        "model_config": model_config,
        "epochs": FLAGS.epochs or spec["epochs"],
        "batch_size": FLAGS.batch_size,
        "learning_rate": spec.get("learning_rate", 1e-3),
        "patience": FLAGS.patience,
        "data": _data_options(spec),
    }


def _data_options(spec):
    return {
        "seed": FLAGS.synthetic_seed,
        "splits": json.loads(FLAGS.sizes),
        "scenario": spec["scenario"],
        "seq_len": FLAGS.seq_len,
        "min_len": FLAGS.min_len,
        "text_dim": FLAGS.text_dim,
        "unimodal_labels": spec.get("unimodal_labels", False),
    }


def _result_path(name, arm, seed):
    return os.path.join(FLAGS.runs_dir, name, arm, f"seed_{seed}.json")


def _finished(name, spec, arm, seed):
    """The results of an earlier run of exactly this configuration, or None."""
    path = _result_path(name, arm, seed)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)
    return results if results.get("config") == _run_config(name, spec, arm) else None


def _evaluate(model, split):
    """Test metrics through the compiled `predict` (one trace per model, not an
    eager pass per batch as `evaluate_model` does)."""
    from keras_msa.metrics import regression_metrics

    pred = model.predict(split.inputs, batch_size=128, verbose=0)["sentiment"].reshape(-1)
    out = regression_metrics(pred, split.targets["sentiment"].reshape(-1), scale="mosi")
    return {k: float(v) for k, v in out.items()}


def _train_arm(name, spec, arm, seeds, data):
    """Trains one arm once per seed; yields `(seed, results)`.

    Tracing a model's train and predict steps costs more than its training
    here (minutes on a loaded 2-core CPU), so one compiled model is kept per
    arm: for each seed its variables (weights, BatchNorm statistics, dropout
    seed states) are copied from a model freshly built under that seed, the
    optimizer's state is reset to its initial values and the training data is
    shuffled with that seed, which is the same as a fresh run of that seed.
    """
    import keras

    from keras_msa.models import get_model_class
    from keras_msa.training.callbacks import BestWeights
    from keras_msa.training.callbacks import EpochSetter
    from keras_msa.training.callbacks import ValidationMetrics

    config = _run_config(name, spec, arm)
    cls = get_model_class(config["model"])
    first = {k: v[: FLAGS.batch_size] for k, v in data["train"].inputs.items()}

    def build(seed):
        keras.utils.set_random_seed(int(seed))
        if config["preset"]:
            m = cls.from_preset(config["preset"], **config["model_config"])
        else:
            m = cls(**config["model_config"])
        m(first)
        return m

    model = build(seeds[0])
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]))
    model.optimizer.build(model.trainable_variables)
    optimizer_start = [v.numpy() for v in model.optimizer.variables]
    for seed in seeds:
        start = time.time()
        fresh = build(seed)
        if [tuple(v.shape) for v in fresh.variables] != [tuple(v.shape) for v in model.variables]:
            raise RuntimeError(f"{name}/{arm}: a model rebuilt for seed {seed} has other variables.")
        for v, f in zip(model.variables, fresh.variables):
            v.assign(f.value)
        for v, init in zip(model.optimizer.variables, optimizer_start):
            v.assign(init)
        del fresh
        best = BestWeights(monitor="val_mae", mode="min", patience=config["patience"])
        callbacks = [EpochSetter(), ValidationMetrics(data["valid"], _evaluate), best]
        callbacks += list(model.training_callbacks(validation_data=data["valid"].to_tf_dataset(128)))
        history = model.fit(
            data["train"].to_tf_dataset(config["batch_size"], shuffle=True, seed=int(seed)),
            epochs=config["epochs"],
            callbacks=callbacks,
            # The dataset is already shuffled per seed.
            shuffle=False,
            verbose=0,
        )
        yield seed, {
            "config": config,
            "seed": int(seed),
            "test": _evaluate(model, data["test"]),
            "valid_best_mae": best.best,
            "best_epoch": None if best.best_epoch is None else best.best_epoch + 1,
            "epochs_run": len(history.history.get("loss", [])),
            "seconds": round(time.time() - start, 1),
            "params": int(model.count_params()),
            "bayes_mae": data["test"].bayes_mae,
            "text_only_bayes_mae": data["test"].text_only_bayes_mae,
        }


def _mean_std(values):
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def _row_cells(runs):
    cells = []
    for key in ("mae", "corr", "acc2_has0"):
        mean, std = _mean_std([r["test"][key] for r in runs])
        cells.append(f"{mean:.4f} ± {std:.4f}")
    epochs = sorted(r["best_epoch"] for r in runs)
    return cells, f"{min(epochs)}–{max(epochs)}"


def markdown_table(collected, seeds):
    """`collected`: {component: {arm: [results of each seed]}}."""
    sizes = json.loads(FLAGS.sizes)
    lines = [
        f"Test split, {len(seeds)} seeds ({', '.join(seeds)}), mean ± std; synthetic seed "
        f"{FLAGS.synthetic_seed}, {sizes['train']} / {sizes['valid']} / {sizes['test']} samples, "
        f"sequence length {FLAGS.seq_len} (valid lengths {FLAGS.min_len}–{FLAGS.seq_len}), text "
        f"{FLAGS.text_dim}-d, audio 5-d, vision 20-d; early stopping on validation MAE "
        f"(patience {FLAGS.patience}), best weights restored; batch {FLAGS.batch_size}, Adam. "
        f"Bold: the better arm of each pair.",
        "",
        "| component (scenario) | arm | MAE ↓ | Corr | Acc-2 | Bayes floor | text-only floor | "
        "epochs given (best) | model config |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, spec in COMPONENTS.items():
        arms = collected.get(name, {})
        for arm in ("full", "ablation"):
            runs = arms.get(arm, [])
            if len(runs) < len(seeds):
                continue
            cells, best = _row_cells(runs)
            first = runs[0]
            label = "full" if arm == "full" else spec["ablation_name"]
            cfg = dict(first["config"]["model_config"])
            params = f"{first['params']:,}"
            preset = f"preset {spec['preset']}, " if spec.get("preset") else ""
            mae_cell = cells[0]
            if arm == "full":
                ours = _mean_std([r["test"]["mae"] for r in runs])[0]
                other = arms.get("ablation", [])
                if len(other) >= len(seeds) and ours < _mean_std([r["test"]["mae"] for r in other])[0]:
                    mae_cell = f"**{mae_cell}**"
            elif len(arms.get("full", [])) >= len(seeds):
                full = _mean_std([r["test"]["mae"] for r in arms["full"]])[0]
                if _mean_std([r["test"]["mae"] for r in runs])[0] < full:
                    mae_cell = f"**{mae_cell}**"
            lines.append(
                f"| {spec['title']} (`{spec['scenario']}`) | {label} | {mae_cell} | {cells[1]} | {cells[2]} | "
                f"{first['bayes_mae']:.4f} | {first['text_only_bayes_mae']:.4f} | "
                f"{first['config']['epochs']} ({best}) | {preset}`{json.dumps(cfg)}`, "
                f"lr {first['config']['learning_rate']}"
                f"{', unimodal labels' if first['config']['data']['unimodal_labels'] else ''}, {params} params |"
            )
    return "\n".join(lines) + "\n"


def collect(seeds):
    collected = {}
    for name, spec in COMPONENTS.items():
        for arm in ("full", "ablation"):
            for seed in seeds:
                results = _finished(name, spec, arm, seed)
                if results is not None:
                    collected.setdefault(name, {}).setdefault(arm, []).append(results)
    return collected


def main(argv):
    del argv
    from keras_msa.data.synthetic import make_synthetic_benchmark
    from keras_msa.utils.files import atomic_write_text

    unknown = [c for c in FLAGS.components if c not in COMPONENTS]
    if unknown:
        raise app.UsageError(f"--components: unknown {unknown}; expected some of {list(COMPONENTS)}.")
    seeds = list(FLAGS.seeds)
    output_md = FLAGS.output_md or os.path.join(FLAGS.runs_dir, "ablations.md")
    if not FLAGS.table_only:
        for name in FLAGS.components:
            spec = COMPONENTS[name]
            opts = _data_options(spec)
            data = None
            for arm in ("full", "ablation"):
                todo = [s for s in seeds if _finished(name, spec, arm, s) is None]
                if not todo:
                    print(f"{name} {arm}: all seeds done before, read back", flush=True)
                    continue
                if data is None:
                    data = make_synthetic_benchmark(
                        seed=opts["seed"], splits=opts["splits"], scenario=opts["scenario"],
                        seq_len=opts["seq_len"], min_len=opts["min_len"], text_dim=opts["text_dim"],
                        unimodal_labels=opts["unimodal_labels"],
                    )
                for seed, results in _train_arm(name, spec, arm, todo, data):
                    os.makedirs(os.path.dirname(_result_path(name, arm, seed)), exist_ok=True)
                    atomic_write_text(_result_path(name, arm, seed), json.dumps(results, indent=2))
                    t = results["test"]
                    print(
                        f"{name} {arm} seed {seed}: test MAE {t['mae']:.4f} Corr {t['corr']:.4f} "
                        f"Acc-2 {t['acc2_has0']:.4f} (best epoch {results['best_epoch']} of "
                        f"{results['epochs_run']}, {results['seconds']:.0f} s; Bayes floor "
                        f"{results['bayes_mae']:.4f}, text-only {results['text_only_bayes_mae']:.4f})",
                        flush=True,
                    )
    table = markdown_table(collect(seeds), seeds)
    os.makedirs(os.path.dirname(os.path.abspath(output_md)), exist_ok=True)
    atomic_write_text(output_md, table)
    print(table)


if __name__ == "__main__":
    app.run(main)
