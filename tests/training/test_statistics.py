import math

import numpy as np
import pytest

from keras_msa.training.statistics import markdown_table
from keras_msa.training.statistics import summarize
from keras_msa.training.statistics import summarize_runs
from keras_msa.training.statistics import t_quantile
from keras_msa.training.statistics import t_two_sided_probability

# Two-sided 95% and 99% Student-t critical values (standard printed tables).
T95 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 9: 2.2622, 10: 2.2281, 29: 2.0452, 30: 2.0423}
T99 = {1: 63.6567, 4: 4.6041, 10: 3.1693}


@pytest.mark.parametrize("df,expected", sorted(T95.items()))
def test_t_quantile_95_matches_tables(df, expected):
    assert t_quantile(0.95, df) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("df,expected", sorted(T99.items()))
def test_t_quantile_99_matches_tables(df, expected):
    assert t_quantile(0.99, df) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 12])
def test_two_sided_probability_matches_sampling(df):
    rng = np.random.default_rng(df)
    draws = np.abs(rng.standard_t(df, size=400_000))
    for t in (0.5, 1.0, 2.0, 3.5):
        assert t_two_sided_probability(t, df) == pytest.approx(np.mean(draws <= t), abs=4e-3)


def test_large_df_approaches_normal():
    # Normal 97.5% quantile.
    assert t_quantile(0.95, 2000) == pytest.approx(1.959964, abs=2e-3)
    assert t_two_sided_probability(0.0, 5) == 0.0
    assert t_two_sided_probability(math.inf, 5) == 1.0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="df"):
        t_two_sided_probability(1.0, 0)
    with pytest.raises(ValueError, match="confidence"):
        t_quantile(1.5, 3)


def test_summarize_against_numpy():
    x = [0.71, 0.74, 0.69, 0.77, 0.72]
    s = summarize(x)
    a = np.asarray(x)
    half = 2.7764451 * a.std(ddof=1) / np.sqrt(5)
    assert s["n"] == 5
    assert s["mean"] == pytest.approx(a.mean(), abs=1e-12)
    assert s["std"] == pytest.approx(a.std(ddof=1), abs=1e-12)
    assert s["ci_low"] == pytest.approx(a.mean() - half, abs=1e-7)
    assert s["ci_high"] == pytest.approx(a.mean() + half, abs=1e-7)
    assert s["min"] == 0.69 and s["max"] == 0.77


def test_summarize_drops_nan_and_handles_one_value():
    s = summarize([1.0, float("nan"), None, 3.0])
    assert s["n"] == 2 and s["mean"] == 2.0
    one = summarize([0.5])
    assert one["n"] == 1 and one["mean"] == 0.5 and one["std"] is None and one["ci_low"] is None
    assert summarize([])["mean"] is None


def test_summarize_runs_and_markdown():
    runs = [
        {"seed": 1111, "test": {"mae": 0.80, "corr": 0.60}, "valid": {"mae": 0.70}},
        {"seed": 1112, "test": {"mae": 0.84, "corr": 0.58}, "valid": {"mae": 0.72}},
        {"seed": 1113, "test": {"mae": 0.82, "corr": 0.62}, "valid": {"mae": 0.71}},
    ]
    summary = summarize_runs(runs)
    assert summary["seeds"] == [1111, 1112, 1113] and summary["n_runs"] == 3
    assert summary["test"]["mae"]["mean"] == pytest.approx(0.82)
    assert summary["test"]["mae"]["values"] == [0.80, 0.84, 0.82]
    assert summary["test"]["corr"]["std"] == pytest.approx(0.02)
    md = markdown_table(summary, "test", title="lfdnn")
    lines = md.strip().splitlines()
    assert lines[0] == "### lfdnn"
    assert "| metric | mean | std | 95% CI | per seed |" in lines
    row = next(line for line in lines if line.startswith("| mae |"))
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert f"[{0.82 - half:.4f}, {0.82 + half:.4f}]" in row
    assert "0.8000, 0.8400, 0.8200" in row
    with pytest.raises(KeyError, match="no split 'train'"):
        markdown_table(summary, "train")
