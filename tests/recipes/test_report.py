"""recipes/report.py and keras_msa.training.report: runs of a real tiny
training and hand-written metrics.json files gathered into Markdown and CSV,
exact mean/std, MMSA names and units, and clear errors."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_msa.data.errors import DataFormatError
from keras_msa.training import report
from keras_msa.training.report import collect_runs
from keras_msa.training.report import write_report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOSI_KEYS = ("mae", "corr", "acc7", "acc5", "acc3", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0")


def write_run(path, model="lfdnn", preset=None, data="synthetic", seed=1111, test=None, valid=None,
              scale="mosi", **config):
    os.makedirs(path, exist_ok=True)
    body = {"model": model, "preset": preset, "data": data, "scale": scale, "seed": seed,
            "config": dict(model=model, preset=preset, data=data, seed=seed, **config)}
    if test is not None:
        body["test"] = test
    if valid is not None:
        body["valid"] = valid
    with open(os.path.join(path, "metrics.json"), "w") as f:
        json.dump(body, f)


def mosi(mae, acc2=0.75, **kw):
    out = {k: 0.5 for k in MOSI_KEYS}
    out.update(mae=mae, acc2_has0=acc2, **kw)
    return out


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_report_of_a_real_two_seed_training(tmp_path):
    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import train_seeds

    config = TrainConfig(
        model="lfdnn", model_config={"hidden_dims": {"text": 8, "audio": 4, "vision": 4}, "fusion_dim": 8},
        epochs=1, batch_size=16, learning_rate=0.01, synthetic_sizes={"train": 64, "valid": 16, "test": 16},
        synthetic_options={"seq_len": 8, "min_len": 8, "text_dim": 16, "window": 4, "offset": 1,
                           "compute_text_only_floor": False},
        output_dir=str(tmp_path / "runs" / "lfdnn_seeds"), verbose=0)
    _, runs = train_seeds(config, [1111, 1112])
    maes = [r["test"]["mae"] for r in runs]
    accs = [r["test"]["acc2_has0"] for r in runs]
    assert maes[0] != maes[1]
    out = str(tmp_path / "out" / "report")
    md, table, rows = write_report(str(tmp_path / "runs"), out)
    # The seeds summary holds the same two runs as seed_*/metrics.json: counted once.
    assert len(rows) == 1 and rows[0]["n"] == 2 and rows[0]["seeds"] == [1111, 1112]
    row = read_csv(out + ".csv")[0]
    assert float(row["mae_mean"]) == np.mean(maes) and float(row["mae_std"]) == np.std(maes, ddof=1)
    assert row["n"] == "2" and row["mae_n"] == "2" and row["seeds"] == "1111;1112"
    assert f"| lfdnn | - | synthetic | 2 | {np.mean(maes):.4f} ± {np.std(maes, ddof=1):.4f} |" in md
    assert open(out + ".md").read() == md
    # Without one seed's metrics.json, the summary supplies that seed.
    os.remove(tmp_path / "runs" / "lfdnn_seeds" / "seed_1112" / "metrics.json")
    _, _, rows = write_report(str(tmp_path / "runs"), out, paper_units=True)
    assert rows[0]["n"] == 2 and rows[0]["sources"][1].endswith("seeds_summary.json[seed=1112]")
    row = read_csv(out + ".csv")[0]
    assert float(row["MAE_mean"]) == np.mean(maes)
    assert float(row["Has0_acc_2_mean"]) == np.mean(np.asarray(accs) * 100)


def test_hand_written_runs_exact_mean_std_and_rows(tmp_path):
    runs = tmp_path / "runs"
    for i, (mae, acc) in enumerate([(0.5, 0.70), (0.7, 0.80), (0.9, 0.90)]):
        write_run(runs / "lfdnn" / f"seed_{i}", seed=i, test=mosi(mae, acc), valid=mosi(1.0))
    write_run(runs / "mulg_mosi", model="mulg", preset="mosi", seed=1, test=mosi(0.25, 0.6))
    write_run(runs / "sims" / "a", data="data/sims", scale="sims", seed=1,
              test={"acc2": 0.8, "acc3": 0.6, "acc5": 0.4, "f1": 0.79, "mae": 0.3, "corr": 0.55})
    write_run(runs / "sims" / "b", data="data/sims", scale="sims", seed=2,
              test={"acc2": 0.6, "acc3": 0.5, "acc5": 0.2, "f1": 0.61, "mae": 0.5, "corr": 0.45})
    out = str(tmp_path / "report")
    md, table, rows = write_report(str(runs), out)
    assert [(r["group"]["model"], r["group"]["data"], r["n"]) for r in rows] == [
        ("lfdnn", "data/sims", 2), ("lfdnn", "synthetic", 3), ("mulg", "synthetic", 1)]
    assert "| lfdnn | - | synthetic | 3 | 0.7000 ± 0.2000 |" in md
    # A single run has no spread: mean only, empty std in the CSV.
    assert "| mulg | mosi | synthetic | 1 | 0.2500 |" in md
    by_model = {(r["model"], r["data"]): r for r in read_csv(out + ".csv")}
    lf = by_model[("lfdnn", "synthetic")]
    assert float(lf["mae_mean"]) == np.mean([0.5, 0.7, 0.9])
    assert float(lf["mae_std"]) == np.std([0.5, 0.7, 0.9], ddof=1)
    assert float(lf["acc2_has0_mean"]) == np.mean([0.7, 0.8, 0.9]) and lf["split"] == "test"
    assert by_model[("mulg", "synthetic")]["mae_std"] == "" and by_model[("mulg", "synthetic")]["preset"] == "mosi"
    assert by_model[("lfdnn", "data/sims")]["acc2_mean"] != "" and lf["acc2_mean"] == ""

    md, table, rows = write_report(str(runs), out, paper_units=True)
    header = md.splitlines()[2]
    # MMSA's columns in MMSA's order, then MOSI's acc3, which has no MMSA name.
    assert header == ("| model | preset | data | n | Has0_acc_2 | Has0_F1_score | Non0_acc_2 | "
                      "Non0_F1_score | Mult_acc_2 | Mult_acc_3 | Mult_acc_5 | Mult_acc_7 | F1_score | "
                      "MAE | Corr | acc3 |")
    # Accuracies x100 with two decimals; MAE and Corr as they are; acc3 stays a fraction.
    assert ("| lfdnn | - | synthetic | 3 | 80.00 ± 10.00 | 50.00 ± 0.00 | 50.00 ± 0.00 | 50.00 ± 0.00 "
            "|  |  | 50.00 ± 0.00 | 50.00 ± 0.00 |  | 0.7000 ± 0.2000 | 0.5000 ± 0.0000 | 0.5000 ± 0.0000 |") in md
    by_model = {(r["model"], r["data"]): r for r in read_csv(out + ".csv")}
    sims = by_model[("lfdnn", "data/sims")]
    assert float(sims["Mult_acc_2_mean"]) == np.mean([80.0, 60.0])
    assert float(sims["F1_score_mean"]) == np.mean([79.0, 61.0])
    assert float(sims["MAE_mean"]) == np.mean([0.3, 0.5]) and sims["Has0_acc_2_mean"] == ""
    assert float(by_model[("lfdnn", "synthetic")]["Mult_acc_7_mean"]) == 50.0
    assert float(by_model[("lfdnn", "synthetic")]["acc3_mean"]) == 0.5

    _, _, rows = write_report(str(runs), out, split="valid")
    assert len(rows) == 1 and rows[0]["metrics"]["mae"] == [1.0, 1.0, 1.0]


def test_duplicate_seeds_and_group_by(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "lfdnn", seed=1111, test=mosi(0.8), learning_rate=0.001)
    write_run(runs / "lfdnn_again", seed=1111, test=mosi(0.8), learning_rate=0.001)
    _, _, rows = write_report(str(runs), str(tmp_path / "r"))
    assert rows[0]["n"] == 1
    write_run(runs / "lfdnn_lr", seed=1111, test=mosi(0.6), learning_rate=0.01)
    with pytest.raises(ValueError, match="Seed 1111 appears twice.*lfdnn/metrics.json and .*lfdnn_lr/metrics.json"
                       ".*learning_rate"):
        write_report(str(runs), str(tmp_path / "r"))
    _, _, rows = write_report(str(runs), str(tmp_path / "r"), group_by=["model", "learning_rate"])
    assert [(r["group"]["learning_rate"], r["n"]) for r in rows] == [(0.001, 1), (0.01, 1)]
    with pytest.raises(ValueError, match="--group_by: unknown field"):
        write_report(str(runs), str(tmp_path / "r"), group_by=["model", "colour"])


def test_errors_name_the_flag_or_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="--runs=.*not a directory"):
        collect_runs(str(tmp_path / "nope"))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match="no metrics.json or seeds_summary.json under it"):
        collect_runs(str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    cases = [('{"model": "lfdnn", "test": {"mae": 0.5}', "not valid JSON"),
             ("[1, 2]", "expected a JSON object; got list"),
             ('{"test": {"mae": 0.5}}', "model: has no 'model' name"),
             ('{"model": "lfdnn", "test": {"mae": "0.5"}}', "test.mae: expected a number"),
             ('{"model": "lfdnn", "train": {}}', "holds none of the splits")]
    for text, message in cases:
        (bad / "run").mkdir(parents=True, exist_ok=True)
        (bad / "run" / "metrics.json").write_text(text)
        with pytest.raises(DataFormatError, match=message) as e:
            collect_runs(str(bad))
        assert str(bad / "run" / "metrics.json") in str(e.value)
    (bad / "run" / "metrics.json").unlink()
    (bad / "run" / "seeds_summary.json").write_text(json.dumps(
        {"model": "lfdnn", "seeds": [1, 2], "test": {"mae": {"values": [0.5]}}}))
    with pytest.raises(DataFormatError, match="seeds_summary.json: test.mae.values: expected 'values', one per seed"):
        collect_runs(str(bad))


def test_cli_help_is_fast_documents_the_mapping_and_errors_cleanly(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    code = ("import sys; sys.path.insert(0, 'recipes'); import report; "
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    script = os.path.join(ROOT, "recipes", "report.py")
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    # absl exits with status 1 after printing --help.
    assert out.returncode == 1 and "--paper_units" in out.stdout
    assert report.mapping_markdown() in out.stdout and report.mapping_markdown() in report.__doc__
    out = subprocess.run([sys.executable, script, f"--runs={tmp_path}"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"--runs={tmp_path}: no metrics.json or seeds_summary.json" in out.stderr
