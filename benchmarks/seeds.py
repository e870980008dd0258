"""Several models, several seeds each, on the synthetic benchmark: one
`recipes/train.py` process per run, and one table of test MAE, Corr, Acc-2
and Acc-7 as mean ± std with the 95% Student-t interval of the mean, beside
the benchmark's Bayes and text-only floors.

    # The five paper models with their paper protocol (`--preset=mosi`).
    python benchmarks/seeds.py --models=ssgdl,crosssent,mulg,m3sa,tecafn --preset=mosi \
        --seeds=1111,1112,1113,1114,1115 --output=runs/seeds/paper.json
    # The baselines with MMSA's protocol (a model's own preset after a colon).
    python benchmarks/seeds.py --models=mult,tfn,lmf,eflstm:mmsa_mosi,lfdnn:mmsa_mosi \
        --preset=mosi --output=runs/seeds/zoo.json

`--models` entries are `name` (takes `--preset`) or `name:preset` (`name:`
for no preset), each optionally followed by `@variant`: a key of
`--variants`, a JSON dict of constructor overrides per variant, so that an
ablation runs beside its full model on the same data and seeds:

    python benchmarks/seeds.py --models=mmim,mmim@no_mi \
        --variants='{"no_mi": {"use_mmilb": false, "use_cpc": false}}'
 `--preset` applies the model's settings *and* its training
protocol (`keras_msa.training.protocol`); `--epochs` (one value for every
model, recorded in the table's caption) replaces the protocol's epoch budget
when the CPU cannot afford it, and every other field stays the protocol's.

Each run writes `<runs_dir>/<name>_<preset>[_<variant>]/seed_<s>/` (`metrics.json`,
`history.csv`, `model.keras`, `train.log`). A run whose `metrics.json`
already holds the same configuration (model, preset, variant overrides, seed, epochs, data) is
read back instead of trained again, so the command can be stopped and run
again. After every run `--output` (JSON: each run's test metrics, the
per-model summary, the floors) and `--output_md` (the Markdown table) are
rewritten atomically from every finished run. A run that fails (its log
is `train.log`) is reported and the grid goes on; the command then exits
non-zero naming every failed run.
"""

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["ssgdl", "crosssent", "mulg", "m3sa", "tecafn"],
                  "Models to run: `name` (with --preset) or `name:preset`, each optionally `@variant`.")
flags.DEFINE_string("variants", None, "JSON {variant: {constructor overrides}} for `@variant` entries, "
                    "e.g. '{\"no_mi\": {\"use_mmilb\": false, \"use_cpc\": false}}'.")
flags.DEFINE_string("preset", "mosi", "Preset (model settings and training protocol) of entries without one.")
flags.DEFINE_list("seeds", ["1111", "1112", "1113", "1114", "1115"], "Training seeds.")
flags.DEFINE_integer("epochs", None, "Epoch budget of every run (default: each protocol's).")
flags.DEFINE_string("synthetic_sizes", None, "JSON split sizes passed to recipes/train.py "
                    "(default: the benchmark's own).")
flags.DEFINE_string("synthetic_options", None, "JSON make_synthetic_benchmark arguments passed to "
                    "recipes/train.py, e.g. '{\"seq_len\": 24, \"text_dim\": 64}'.")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the synthetic data (the same for every run).")
flags.DEFINE_string("runs_dir", "runs/seeds", "Where each run's directory goes.")
flags.DEFINE_string("output", "runs/seeds/results.json", "The JSON results.")
flags.DEFINE_string("output_md", None, "The Markdown table (default: --output with .md).")
flags.DEFINE_bool("table_only", False, "Only collect the finished runs and write the outputs.")

#: Table columns: (metrics.json key, heading). The synthetic labels are never
#: exactly 0, so Acc-2 has-0 and non-0 coincide.
COLUMNS = (("mae", "MAE ↓"), ("corr", "Corr"), ("acc2_has0", "Acc-2"), ("acc7", "Acc-7"))


def parse_models(entries, default_preset, variants=None):
    """`[(name, preset or None, variant or None)]` of `--models` entries;
    every `@variant` must be a key of `variants`."""
    variants = variants or {}
    out = []
    for entry in entries:
        entry, at, variant = entry.partition("@")
        name, sep, preset = entry.partition(":")
        if not name:
            raise ValueError(f"--models: empty model name in {entry!r}.")
        if at and variant not in variants:
            raise ValueError(f"--models: variant {variant!r} of {name!r} is not a key of --variants "
                             f"({sorted(variants)}).")
        out.append((name, (preset or None) if sep else default_preset, variant if at else None))
    if len(set(out)) != len(out):
        raise ValueError(f"--models repeats an entry: {entries}.")
    return out


def label(name, preset, variant=None):
    base = f"{name}_{preset}" if preset else name
    return f"{base}_{variant}" if variant else base


def run_dir(runs_dir, name, preset, seed, variant=None):
    return os.path.join(runs_dir, label(name, preset, variant), f"seed_{seed}")


def expected_config(name, preset, seed, epochs, sizes, options, synthetic_seed, model_config=None):
    """The fields of `metrics.json`'s `"config"` a run must match to count as
    finished (everything the run's result depends on that this runner sets)."""
    return {"model": name, "preset": preset, "seed": int(seed), "epochs": epochs, "data": "synthetic",
            "synthetic_seed": synthetic_seed, "synthetic_sizes": sizes, "synthetic_options": options,
            "model_config": model_config or {}}


def finished(path, expected):
    """The `metrics.json` at `path` when it records `expected`, else None."""
    path = os.path.join(path, "metrics.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)
    config = results.get("config", {})

    def matches(key, value):
        if key == "epochs" and value is None:
            # No --epochs: the run had its protocol's own budget, which
            # metrics.json records as a number (not given by a flag).
            recorded = results.get("protocol", {}).get("epochs")
            return isinstance(recorded, dict) and recorded.get("source") != "flag"
        return config.get(key) == value

    return results if all(matches(k, v) for k, v in expected.items()) else None


def train_command(name, preset, seed, out_dir, epochs, sizes, options, synthetic_seed, model_config=None):
    cmd = [sys.executable, os.path.join(ROOT, "recipes", "train.py"), f"--model={name}", f"--seed={seed}",
           f"--output_dir={out_dir}", "--data=synthetic", f"--synthetic_seed={synthetic_seed}"]
    if model_config:
        cmd.append(f"--model_config={json.dumps(model_config)}")
    if preset:
        cmd.append(f"--preset={preset}")
    if epochs is not None:
        cmd.append(f"--epochs={epochs}")
    if sizes is not None:
        cmd.append(f"--synthetic_sizes={json.dumps(sizes)}")
    if options is not None:
        cmd.append(f"--synthetic_options={json.dumps(options)}")
    return cmd


def run_one(cmd, out_dir):
    """Runs one training process, its output in `<out_dir>/train.log`;
    raises `RuntimeError` naming the log when it fails."""
    os.makedirs(out_dir, exist_ok=True)
    log = os.path.join(out_dir, "train.log")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    with open(log, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        with open(log) as f:
            tail = "".join(f.readlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd)} exited with {code}; its log is {log}:\n{tail}")


def summarize_model(runs):
    """`{metric: summarize(values)}` over the runs' test metrics, plus the
    epochs and parameter counts."""
    from keras_msa.training.statistics import summarize

    out = {key: dict(summarize([r["test"].get(key) for r in runs]), values=[r["test"].get(key) for r in runs])
           for key, _ in COLUMNS}
    out["seeds"] = [r["seed"] for r in runs]
    out["best_epoch"] = [r.get("best_epoch") for r in runs]
    out["epochs_run"] = [r.get("epochs_run") for r in runs]
    out["train_seconds"] = [r.get("train_seconds") for r in runs]
    out["params"] = runs[0].get("params")
    return out


def _cell(s, bold=False):
    if s["mean"] is None:
        return "n/a"
    if s["std"] is None:
        return f"{s['mean']:.4f}"
    mean = f"**{s['mean']:.4f}**" if bold else f"{s['mean']:.4f}"
    return f"{mean} ± {s['std']:.4f} [{s['ci_low']:.4f}, {s['ci_high']:.4f}]"


def markdown_table(collected, seeds, caption):
    """`collected`: `[(name, preset, variant, [metrics.json of each finished seed])]`;
    a model with fewer runs than `seeds` says how many it has (its interval
    is over those). Bold: the best mean of each column."""
    lines = [caption, "",
             "| model (preset) | " + " | ".join(h for _, h in COLUMNS) + " | epochs run (best) | params |",
             "| --- | " + " | ".join("---" for _ in COLUMNS) + " | --- | --- |"]
    summaries = [(name, preset, variant, runs, summarize_model(runs)) for name, preset, variant, runs in collected]
    best = {}
    for key, _ in COLUMNS:
        means = [s[key]["mean"] for *_, s in summaries if s[key]["mean"] is not None]
        if means:
            best[key] = min(means) if key == "mae" else max(means)
    for name, preset, variant, runs, s in summaries:
        cells = [_cell(s[key], bold=s[key]["mean"] == best.get(key)) for key, _ in COLUMNS]
        epochs = f"{min(s['epochs_run'])}–{max(s['epochs_run'])}" if min(s["epochs_run"]) != max(s["epochs_run"]) \
            else str(s["epochs_run"][0])
        best_epochs = sorted(b for b in s["best_epoch"] if b is not None)
        shown_best = ("" if not best_epochs else f" ({best_epochs[0]})" if best_epochs[0] == best_epochs[-1]
                      else f" ({best_epochs[0]}–{best_epochs[-1]})")
        params = f"{s['params']:,}" if s["params"] is not None else "n/a"
        partial = f", {len(runs)} of {len(seeds)} seeds" if len(runs) < len(seeds) else ""
        shown_variant = f", {variant}" if variant else ""
        lines.append(f"| {name} ({preset or 'no preset'}{shown_variant}{partial}) | " + " | ".join(cells)
                     + f" | {epochs}{shown_best} | {params} |")
    if collected:
        first = collected[0][-1][0]
        blank = " | ".join("" for _ in COLUMNS[1:])
        lines.append(f"| Bayes floor (best possible) | {first['bayes_mae']['test']:.4f} | {blank} | | |")
        lines.append(f"| best from the text alone | {first['text_only_bayes_mae']['test']:.4f} | {blank} | | |")
        if "mean_predictor_mae_test" in first:
            lines.append(f"| mean predictor | {first['mean_predictor_mae_test']:.4f} | {blank} | | |")
    return "\n".join(lines) + "\n"


def caption(seeds, epochs, sizes, options, synthetic_seed, machine, command):
    budget = (f"every run given {epochs} epochs (`--epochs={epochs}`, the same for every model: the "
              "protocols' own budgets do not fit the CPU time)" if epochs else "each protocol's own epoch budget")
    data = (f"synthetic benchmark seed {synthetic_seed}, splits {json.dumps(sizes) if sizes else 'default'}"
            + (f", options `{json.dumps(options)}`" if options else ""))
    # One seed has no spread to show: say so rather than promise a mean ± std and an interval.
    runs = (f"one seed ({seeds[0]}), one run per model" if len(seeds) == 1 else
            f"{len(seeds)} seeds ({', '.join(str(s) for s in seeds)}): mean ± std "
            f"[95% Student-t interval of the mean, n={len(seeds)}]")
    return (f"Test split, {runs}; {data}; {budget}; best validation epoch "
            f"restored. Measured {datetime.date.today().isoformat()} on {machine}. Regenerate: `{command}`.")


def collect(models, seeds, expect):
    """`[(name, preset, variant, runs)]` of the models with at least one finished
    seed (their finished runs only), and the number of finished runs."""
    collected, done = [], 0
    for name, preset, variant in models:
        runs = [finished(run_dir(FLAGS.runs_dir, name, preset, s, variant), expect(name, preset, s, variant))
                for s in seeds]
        runs = [r for r in runs if r is not None]
        done += len(runs)
        if runs:
            collected.append((name, preset, variant, runs))
    return collected, done


def write_outputs(models, seeds, expect, machine, command):
    from keras_msa.utils.files import atomic_write_text

    collected, done = collect(models, seeds, expect)
    recorded = collected[0][-1][0].get("machine") if collected else None
    if recorded:
        # What the runs themselves recorded (keras_msa.training.runner).
        gpus = ", ".join(recorded.get("gpus") or []) or "no GPU"
        machine = f"{recorded.get('cpu')}, {recorded.get('cpu_count')} CPUs shared with other jobs, {gpus}"
    sizes = json.loads(FLAGS.synthetic_sizes) if FLAGS.synthetic_sizes else None
    options = json.loads(FLAGS.synthetic_options) if FLAGS.synthetic_options else None
    text = caption(seeds, FLAGS.epochs, sizes, options, FLAGS.synthetic_seed, machine, command)
    used = sorted({v for *_, v in models if v})
    if used:
        variants = json.loads(FLAGS.variants)
        text += " Variants (constructor overrides): " + "; ".join(
            f"{v} = `{json.dumps(variants[v])}`" for v in used) + "."
    table = markdown_table(collected, seeds, text)
    payload = {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "seeds": seeds,
        "epochs": FLAGS.epochs,
        "finished_runs": done,
        "total_runs": len(models) * len(seeds),
        "models": {
            label(name, preset, variant): dict(
                summarize_model(runs), model=name, preset=preset, variant=variant,
                model_config=json.loads(FLAGS.variants)[variant] if variant else {}, complete=len(runs) == len(seeds),
                runs=[{"seed": r["seed"], "test": r["test"], "valid": r.get("valid"),
                       "best_epoch": r.get("best_epoch"), "output_dir": r.get("output_dir")} for r in runs])
            for name, preset, variant, runs in collected
        },
    }
    if collected:
        first = collected[0][-1][0]
        payload["bayes_mae_test"] = first["bayes_mae"]["test"]
        payload["text_only_bayes_mae_test"] = first["text_only_bayes_mae"]["test"]
        payload["mean_predictor_mae_test"] = first.get("mean_predictor_mae_test")
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    atomic_write_text(FLAGS.output, json.dumps(payload, indent=2, default=float))
    md = FLAGS.output_md or os.path.splitext(FLAGS.output)[0] + ".md"
    atomic_write_text(md, table)
    return table


def main(argv):
    del argv
    try:
        variants = json.loads(FLAGS.variants) if FLAGS.variants else {}
        if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
            raise ValueError(f"--variants must be a JSON object of objects, got {FLAGS.variants!r}.")
        models = parse_models(FLAGS.models, FLAGS.preset, variants)
        seeds = [int(s) for s in FLAGS.seeds]
        sizes = json.loads(FLAGS.synthetic_sizes) if FLAGS.synthetic_sizes else None
        options = json.loads(FLAGS.synthetic_options) if FLAGS.synthetic_options else None
    except ValueError as e:
        raise app.UsageError(str(e))
    if len(set(seeds)) != len(seeds):
        raise app.UsageError(f"--seeds repeat: {seeds}.")

    def expect(name, preset, seed, variant=None):
        return expected_config(name, preset, seed, FLAGS.epochs, sizes, options, FLAGS.synthetic_seed,
                               variants.get(variant) if variant else None)

    machine = f"{platform.machine()}, {os.cpu_count()} logical CPUs (shared), Python {platform.python_version()}"
    command = "python benchmarks/seeds.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:] if not a.startswith("--table_only"))
    todo = [(n, p, v, s) for n, p, v in models for s in seeds
            if finished(run_dir(FLAGS.runs_dir, n, p, s, v), expect(n, p, s, v)) is None]
    total = len(models) * len(seeds)
    print(f"{total - len(todo)} of {total} runs finished before; {len(todo)} to run.", flush=True)
    if not FLAGS.table_only:
        start = time.time()
        failed = []
        for i, (name, preset, variant, seed) in enumerate(todo, 1):
            out_dir = run_dir(FLAGS.runs_dir, name, preset, seed, variant)
            t0 = time.time()
            try:
                run_one(train_command(name, preset, seed, out_dir, FLAGS.epochs, sizes, options,
                                      FLAGS.synthetic_seed, variants.get(variant) if variant else None), out_dir)
                results = finished(out_dir, expect(name, preset, seed, variant))
                if results is None:
                    raise RuntimeError(f"{out_dir}/metrics.json does not record the run asked for "
                                       f"({expect(name, preset, seed, variant)}).")
            except RuntimeError as e:
                # One broken model must not cost the rest of the grid; the
                # command exits non-zero at the end, naming each failure.
                failed.append(f"{label(name, preset, variant)} seed {seed}: {e}")
                print(f"[{i}/{len(todo)}] FAILED {failed[-1]}", flush=True)
                continue
            t = results["test"]
            elapsed = time.time() - start
            eta = elapsed / i * (len(todo) - i)
            print(f"[{i}/{len(todo)}] {label(name, preset, variant)} seed {seed}: test MAE {t['mae']:.4f} Corr "
                  f"{t['corr']:.4f} Acc-2 {t['acc2_has0']:.4f} Acc-7 {t['acc7']:.4f} (best epoch "
                  f"{results['best_epoch']} of {results['epochs_run']}, {time.time() - t0:.0f} s; about "
                  f"{eta / 60:.0f} min left)", flush=True)
            write_outputs(models, seeds, expect, machine, command)
    print(write_outputs(models, seeds, expect, machine, command))
    if not FLAGS.table_only and failed:
        raise SystemExit(f"{len(failed)} run(s) failed:\n" + "\n".join(failed))


if __name__ == "__main__":
    app.run(main)
