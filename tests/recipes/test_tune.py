"""recipes/tune.py and keras_msa.training.tuning: KerasTuner random search and
Hyperband over LF-DNN on a tiny synthetic set, selection on validation only,
trial run directories, and the best config in the form recipes/train.py takes."""

import json
import os
import subprocess
import sys

import pytest

from keras_msa.training.runner import TrainConfig
from keras_msa.training.tuning import SearchSpaceError
from keras_msa.training.tuning import apply_values
from keras_msa.training.tuning import parse_search_space
from keras_msa.training.tuning import tune

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYNTHETIC = {"seq_len": 12, "min_len": 12, "text_dim": 16, "window": 4, "offset": 1,
             "compute_text_only_floor": False}
SIZES = {"train": 96, "valid": 32, "test": 32}
MODEL = {"hidden_dims": {"text": 8, "audio": 4, "vision": 4}, "fusion_dim": 8}


def base_config(tmp_path, **kw):
    values = dict(model="lfdnn", model_config=MODEL, epochs=2, batch_size=16, learning_rate=0.01,
                  synthetic_sizes=SIZES, synthetic_options=SYNTHETIC, output_dir=str(tmp_path / "tune"),
                  verbose=0)
    values.update(kw)
    return TrainConfig(**values)


def flipped_test_data(config):
    """The synthetic splits, except that 'test' holds the validation inputs
    with negated labels: the trial that is best on validation is worst on
    this test split, so a search that looked at test would choose otherwise."""
    from keras_msa.data.synthetic import SyntheticBenchmark
    from keras_msa.data.synthetic import make_synthetic_benchmark

    bench = make_synthetic_benchmark(seed=config.synthetic_seed, splits=config.synthetic_sizes,
                                     **config.synthetic_options)
    valid = bench["valid"]
    flipped = SyntheticBenchmark(valid.inputs, {"sentiment": -valid.targets["sentiment"]}, valid.latents,
                                 valid.bayes_mae, valid.text_only_bayes_mae)
    splits = {"train": bench["train"], "valid": valid, "test": flipped}
    datasets = {s: b.to_tf_dataset(config.batch_size, shuffle=(s == "train"), seed=config.seed)
                for s, b in splits.items()}
    return datasets, {"dataset": "synthetic", "scale": "mosi", "sizes": {s: len(b) for s, b in splits.items()}}


def trial_results(summary):
    out = {}
    for row in summary["trials"]:
        for name in ("model.keras", "metrics.json", "history.csv", "trial.json"):
            assert os.path.isfile(os.path.join(row["dir"], name)), (row["dir"], name)
        with open(os.path.join(row["dir"], "metrics.json")) as f:
            out[row["trial_id"]] = json.load(f)
    return out


def train_config_from_best(tmp_path, summary, load_recipe):
    """The TrainConfig recipes/train.py builds from the written best files."""
    train_recipe = load_recipe("train")
    out = tmp_path / "tune"
    protocol = json.loads((out / "best_protocol.json").read_text())
    argv = ["train.py", "--model=lfdnn", f"--model_config={(out / 'best_model_config.json').read_text()}"]
    argv += [f"--{k}={v}" for k, v in protocol.items()]
    flags = train_recipe.FLAGS
    try:
        flags(argv)
        return train_recipe.config_from_flags()
    finally:
        flags.unparse_flags()


@pytest.mark.slow
def test_random_search_selects_on_validation_only(tmp_path, load_recipe):
    config = base_config(tmp_path)
    space = {"learning_rate": [1e-5, 3e-2], "dropout": 0.1, "hidden_dims.text": [8]}
    summary = tune(config, space, algorithm="random", max_trials=2, data_fn=flipped_test_data)
    runs = trial_results(summary)
    assert len(runs) == 2
    valid = {t: r["valid"]["mae"] for t, r in runs.items()}
    test = {t: r["test"]["mae"] for t, r in runs.items()}
    best = min(valid, key=valid.get)
    # The negated test split ranks the trials the other way round.
    assert min(test, key=test.get) != best
    assert summary["best_trial"] == best and summary["best_valid_mae"] == valid[best]
    assert summary["selection"] == {"split": "valid", "metric": "mae", "mode": "min"}
    assert {r["config"]["learning_rate"] for r in runs.values()} == {1e-5, 3e-2}
    chosen = runs[best]["config"]
    assert chosen["model_config"]["dropout"] == 0.1 and chosen["model_config"]["hidden_dims"]["audio"] == 4
    assert json.loads((tmp_path / "tune" / "best_model_config.json").read_text()) == chosen["model_config"]
    assert json.loads((tmp_path / "tune" / "best_protocol.json").read_text()) == {
        "learning_rate": chosen["learning_rate"], "batch_size": 16, "epochs": 2}
    on_disk = json.loads((tmp_path / "tune" / "tuning_summary.json").read_text())
    assert on_disk["best_trial"] == best and len(on_disk["trials"]) == 2
    # The same search again resumes it: the oracle is reloaded, no trial runs twice.
    again = tune(config, space, algorithm="random", max_trials=2, data_fn=flipped_test_data)
    assert again["best_trial"] == best and len(again["trials"]) == 2
    assert json.loads((tmp_path / "tune" / "trials" / f"trial_{best}" / "metrics.json").read_text()) == runs[best]
    # recipes/train.py takes the two files as they are.
    train_config = train_config_from_best(tmp_path, summary, load_recipe)
    assert train_config.model_config == chosen["model_config"]
    assert (train_config.learning_rate, train_config.batch_size, train_config.epochs) == (
        chosen["learning_rate"], 16, 2)


@pytest.mark.slow
def test_hyperband_promotes_and_picks_best_validation(tmp_path):
    config = base_config(tmp_path)
    space = {"learning_rate": [1e-5, 1e-2, 3e-2], "batch_size": [16, 32], "fusion_dim": [4, 8]}
    summary = tune(config, space, algorithm="hyperband", max_epochs=2, factor=2, tuner_seed=3)
    runs = trial_results(summary)
    epochs = {t: r["config"]["epochs"] for t, r in runs.items()}
    assert set(epochs.values()) == {1, 2}
    for t, r in runs.items():
        row = next(x for x in summary["trials"] if x["trial_id"] == t)
        assert row["values"]["tuner/epochs"] == r["epochs_run"] == r["config"]["epochs"]
    promoted = [x for x in summary["trials"] if "tuner/trial_id" in x["values"]]
    assert promoted, "Hyperband ran no second round"
    for row in promoted:
        parent = runs[row["values"]["tuner/trial_id"]]["config"]
        child = runs[row["trial_id"]]["config"]
        assert child["learning_rate"] == parent["learning_rate"] and child["batch_size"] == parent["batch_size"]
    valid = {t: r["valid"]["mae"] for t, r in runs.items()}
    best = min(valid, key=valid.get)
    assert summary["best_trial"] == best
    protocol = json.loads((tmp_path / "tune" / "best_protocol.json").read_text())
    chosen = runs[best]["config"]
    assert protocol == {"learning_rate": chosen["learning_rate"], "batch_size": chosen["batch_size"],
                        "epochs": chosen["epochs"]}
    assert json.loads((tmp_path / "tune" / "best_model_config.json").read_text())["fusion_dim"] == \
        chosen["model_config"]["fusion_dim"]


def test_search_space_parsing_and_errors():
    parsed = parse_search_space({"learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
                                 "batch_size": [16, 32], "fusion_dim": {"min": 8, "max": 32, "step": 8},
                                 "hidden_dims": [{"text": 8}, {"text": 16}], "dropout": 0.3})
    assert parsed["learning_rate"][0] == "float" and parsed["fusion_dim"][0] == "int"
    assert parsed["hidden_dims"] == ("choice", [{"text": 8}, {"text": 16}]) and parsed["dropout"] == ("fixed", 0.3)
    bad = [({}, "non-empty"), ({"lr": []}, "'lr': an empty list"),
           ({"learning_rate": {"min": 1e-2, "max": 1e-4}}, "min < max"),
           ({"learning_rate": {"min": 0.0, "max": 1.0, "sampling": "log"}}, "min > 0"),
           ({"batch_size": [16, 2.5]}, "'batch_size': must take integer"),
           ({"dropout": {"min": 0, "max": 1, "stride": 2}}, "stride"),
           ({"learning_rate.x": [1]}, "no dotted part"), ({"x": [1, 1]}, "repeat")]
    for space, message in bad:
        with pytest.raises(SearchSpaceError, match=message):
            parse_search_space(space)


def test_apply_values_sets_protocol_and_nested_model_arguments(tmp_path):
    config = base_config(tmp_path)
    out = apply_values(config, {"learning_rate": 0.05, "hidden_dims.text": 32, "dropout": 0.4})
    assert out.learning_rate == 0.05 and out.batch_size == 16
    assert out.model_config == {"hidden_dims": {"text": 32, "audio": 4, "vision": 4}, "fusion_dim": 8,
                                "dropout": 0.4}
    assert config.model_config == MODEL and MODEL["hidden_dims"]["text"] == 8
    with pytest.raises(SearchSpaceError, match="'fusion_dim' is 8 in --model_config, not a dict"):
        apply_values(config, {"fusion_dim.x": 1})


def test_refusals_before_any_training(tmp_path):
    config = base_config(tmp_path)
    with pytest.raises(SearchSpaceError, match="'hidden_size' is not an argument of LFDNN"):
        tune(config, {"hidden_size": [8, 16]})
    with pytest.raises(SearchSpaceError, match="Hyperband sets each trial's epochs"):
        tune(config, {"epochs": [1, 2]}, algorithm="hyperband")
    with pytest.raises(ValueError, match="--algorithm must be one of"):
        tune(config, {"dropout": [0.1]}, algorithm="grid")

    def no_valid(c):
        datasets, info = flipped_test_data(c)
        del datasets["valid"]
        return datasets, info

    with pytest.raises(ValueError, match="no 'valid' split; tuning selects on validation only"):
        tune(config, {"dropout": [0.1, 0.2]}, data_fn=no_valid)
    assert not os.path.exists(tmp_path / "tune" / "trials")


def test_help_is_fast_and_imports_no_tensorflow():
    code = ("import sys; sys.path.insert(0, 'recipes'); import tune; "
            "bad = [m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules]; "
            "assert not bad, bad")
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "recipes", "tune.py"), "--help"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    # absl exits with status 1 after printing --help.
    assert out.returncode == 1 and not out.stderr, out.stderr
    assert "--search_space" in out.stdout and "validation split only" in out.stdout
    out = subprocess.run([sys.executable, os.path.join(ROOT, "recipes", "tune.py"), "--search_space=nosuch.json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "--search_space='nosuch.json' is neither a JSON object nor an existing file" \
        in out.stderr
