"""benchmarks/seeds.py: the per-model statistics must be NumPy's mean and
sample std and SciPy's Student-t interval, and a rerun must train only the
runs that are missing or were made with another configuration."""

import importlib.util
import json
import os

import numpy as np
import pytest
from scipy import stats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS = [1111, 1112, 1113, 1114, 1115]


@pytest.fixture
def bench(tmp_path):
    from absl import flags

    before = set(flags.FLAGS)
    spec = importlib.util.spec_from_file_location("bench_seeds", os.path.join(ROOT, "benchmarks", "seeds.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    flags.FLAGS([
        "seeds.py", "--models=lfdnn,mult:", f"--seeds={','.join(map(str, SEEDS))}", "--epochs=3",
        '--synthetic_sizes={"train": 8, "valid": 4, "test": 4}', f"--runs_dir={tmp_path / 'runs'}",
        f"--output={tmp_path / 'out' / 'results.json'}",
    ])
    yield module
    for name in sorted(set(flags.FLAGS) - before):
        delattr(flags.FLAGS, name)


def _metrics(rng, config, seed):
    return {
        "config": dict(config, output_dir="x"), "seed": seed, "best_epoch": 2, "epochs_run": 3,
        "train_seconds": 1.0, "params": 123,
        "test": {"mae": float(rng.uniform(0.5, 1)), "corr": float(rng.uniform(0, 1)),
                 "acc2_has0": float(rng.uniform(0.5, 1)), "acc7": float(rng.uniform(0, 0.5))},
        "bayes_mae": {"test": 0.25}, "text_only_bayes_mae": {"test": 0.85}, "mean_predictor_mae_test": 1.3,
    }


def _write(bench, name, preset, seed, metrics):
    path = bench.run_dir(bench.FLAGS.runs_dir, name, preset, seed)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "metrics.json"), "w") as f:
        json.dump(metrics, f)


def test_summary_matches_numpy_and_scipy(bench):
    rng = np.random.default_rng(0)
    runs = [_metrics(rng, {}, s) for s in SEEDS]
    summary = bench.summarize_model(runs)
    for key, _ in bench.COLUMNS:
        x = np.array([r["test"][key] for r in runs])
        s = summary[key]
        low, high = stats.t.interval(0.95, df=len(x) - 1, loc=x.mean(), scale=stats.sem(x))
        np.testing.assert_allclose([s["mean"], s["std"], s["ci_low"], s["ci_high"]],
                                   [x.mean(), x.std(ddof=1), low, high], rtol=1e-10)


def test_rerun_trains_only_missing_or_changed_runs(bench, monkeypatch):
    rng = np.random.default_rng(1)
    sizes = {"train": 8, "valid": 4, "test": 4}

    def config(name, preset, seed, epochs=3):
        return bench.expected_config(name, preset, seed, epochs, sizes, None, 0)

    # lfdnn (preset mosi) is finished but for seed 1113, which ran with 5 epochs.
    for seed in SEEDS:
        _write(bench, "lfdnn", "mosi", seed, _metrics(rng, config("lfdnn", "mosi", seed, 5 if seed == 1113 else 3), seed))
    calls = []

    def fake_run(cmd, out_dir):
        args = dict(a[2:].split("=", 1) for a in cmd[2:])
        name, seed = args["model"], int(args["seed"])
        preset = args.get("preset")
        assert args["epochs"] == "3" and json.loads(args["synthetic_sizes"]) == sizes
        calls.append((name, preset, seed))
        _write(bench, name, preset, seed, _metrics(rng, config(name, preset, seed), seed))

    monkeypatch.setattr(bench, "run_one", fake_run)
    bench.FLAGS.table_only = True
    bench.main([])
    partial = open(os.path.splitext(bench.FLAGS.output)[0] + ".md").read()
    assert calls == [] and "| lfdnn (mosi, 4 of 5 seeds) |" in partial and "| mult" not in partial
    bench.FLAGS.table_only = False
    bench.main([])
    assert calls == [("lfdnn", "mosi", 1113)] + [("mult", None, s) for s in SEEDS]
    out = json.load(open(bench.FLAGS.output))
    assert out["finished_runs"] == out["total_runs"] == 10
    assert set(out["models"]) == {"lfdnn_mosi", "mult"}
    assert out["bayes_mae_test"] == 0.25 and out["text_only_bayes_mae_test"] == 0.85
    table = open(os.path.splitext(bench.FLAGS.output)[0] + ".md").read()
    assert "| lfdnn (mosi) |" in table and "| mult (no preset) |" in table and "| Bayes floor" in table
    calls.clear()
    bench.main([])
    assert calls == []


def test_variants_run_beside_their_model_with_their_overrides(bench, monkeypatch):
    from absl import app

    rng = np.random.default_rng(2)
    sizes = {"train": 8, "valid": 4, "test": 4}
    overrides = {"use_mmilb": False, "use_cpc": False}
    bench.FLAGS.models = ["mmim", "mmim@no_mi"]
    bench.FLAGS.variants = json.dumps({"no_mi": overrides})
    calls = []

    def fake_run(cmd, out_dir):
        args = dict(a[2:].split("=", 1) for a in cmd[2:])
        config = json.loads(args.get("model_config", "{}"))
        calls.append((args["model"], int(args["seed"]), config, os.path.basename(os.path.dirname(out_dir))))
        os.makedirs(out_dir, exist_ok=True)
        expected = bench.expected_config(args["model"], "mosi", int(args["seed"]), 3, sizes, None, 0, config)
        with open(os.path.join(out_dir, "metrics.json"), "w") as f:
            json.dump(_metrics(rng, expected, int(args["seed"])), f)

    monkeypatch.setattr(bench, "run_one", fake_run)
    bench.main([])
    assert [c for c in calls if c[3] == "mmim_mosi"] == [("mmim", s, {}, "mmim_mosi") for s in SEEDS]
    assert [c for c in calls if c[3] != "mmim_mosi"] == [("mmim", s, overrides, "mmim_mosi_no_mi") for s in SEEDS]
    out = json.load(open(bench.FLAGS.output))
    assert out["models"]["mmim_mosi_no_mi"]["model_config"] == overrides
    assert out["models"]["mmim_mosi"]["model_config"] == {}
    table = open(os.path.splitext(bench.FLAGS.output)[0] + ".md").read()
    assert "| mmim (mosi) |" in table and "| mmim (mosi, no_mi) |" in table
    assert 'no_mi = `{"use_mmilb": false, "use_cpc": false}`' in table
    # A rerun with the variant's overrides changed retrains only the variant.
    calls.clear()
    bench.FLAGS.variants = json.dumps({"no_mi": {"use_mmilb": False}})
    bench.main([])
    assert [c[3] for c in calls] == ["mmim_mosi_no_mi"] * len(SEEDS)
    bench.FLAGS.models = ["mmim@nope"]
    with pytest.raises(app.UsageError, match="variant 'nope'"):
        bench.main([])


def test_one_seed_claims_no_spread(bench):
    caption = bench.caption([1111], 30, None, None, 0, "a machine", "cmd")
    assert "one seed (1111), one run per model" in caption
    assert "Student-t" not in caption and "mean ± std" not in caption
    five = bench.caption(SEEDS, 30, None, None, 0, "a machine", "cmd")
    assert "5 seeds (1111, 1112, 1113, 1114, 1115): mean ± std [95% Student-t interval of the mean, n=5]" in five


def test_best_epoch_is_one_number_when_the_seeds_agree(bench):
    rng = np.random.default_rng(3)
    runs = [_metrics(rng, {}, 1111)]
    table = bench.markdown_table([("lfdnn", "mosi", None, runs)], [1111], "caption")
    assert "| 3 (2) | 123 |" in table and "(2–2)" not in table


def test_without_epochs_a_run_with_its_protocols_budget_counts_as_finished(bench, monkeypatch):
    # No --epochs: train.py runs the protocol's own budget and records it as a
    # number in "config" and, with its source, in "protocol". Such a run is
    # finished; one whose epochs came from a flag is not.
    rng = np.random.default_rng(3)
    sizes = {"train": 8, "valid": 4, "test": 4}
    bench.FLAGS.epochs = None
    bench.FLAGS.models = ["lfdnn"]
    expected = bench.expected_config("lfdnn", "mosi", 1111, None, sizes, None, 0)
    run = _metrics(rng, dict(expected, epochs=30), 1111)
    _write(bench, "lfdnn", "mosi", 1111, dict(run, protocol={"epochs": {"value": 30, "source": "our choice"}}))
    path = bench.run_dir(bench.FLAGS.runs_dir, "lfdnn", "mosi", 1111)
    assert bench.finished(path, expected)["seed"] == 1111
    _write(bench, "lfdnn", "mosi", 1111, dict(run, protocol={"epochs": {"value": 30, "source": "flag"}}))
    assert bench.finished(path, expected) is None

    calls = []

    def fake_run(cmd, out_dir):
        args = dict(a[2:].split("=", 1) for a in cmd[2:])
        assert "epochs" not in args
        calls.append(int(args["seed"]))
        seed = int(args["seed"])
        _write(bench, "lfdnn", "mosi", seed,
               dict(_metrics(rng, dict(bench.expected_config("lfdnn", "mosi", seed, None, sizes, None, 0), epochs=30),
                             seed), protocol={"epochs": {"value": 30, "source": "our choice"}}))

    monkeypatch.setattr(bench, "run_one", fake_run)
    bench.main([])
    assert calls == SEEDS
    out = json.load(open(bench.FLAGS.output))
    assert out["finished_runs"] == out["total_runs"] == 5
    calls.clear()
    bench.main([])
    assert calls == []
