"""Ordinal levels, QWK, Jump2+ and MeanAbsJump."""

import numpy as np
import pytest

from keras_msa.metrics import ordinal_levels
from keras_msa.metrics import ordinal_metrics
from keras_msa.metrics import quadratic_weighted_kappa


def qwk_pairwise(a, b):
    """Independent form of quadratic kappa: 1 - observed mean squared
    disagreement / the mean squared disagreement over all (true, pred) pairs."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    observed = np.mean((a - b) ** 2)
    chance = np.mean((a[:, None] - b[None, :]) ** 2)
    return 1.0 - observed / chance


def test_levels_round_half_to_even_and_clip():
    np.testing.assert_array_equal(
        ordinal_levels([0.5, 1.5, 2.5, -2.5, 3.4, -7.0], "mosi"), [0, 2, 2, -2, 3, -3]
    )
    # CH-SIMS 5 levels: round(2y) after clipping to [-1, 1].
    np.testing.assert_array_equal(
        ordinal_levels([0.25, 0.75, -0.25, 1.2, -0.8], "sims"), [0, 2, 0, 2, -2]
    )
    np.testing.assert_array_equal(
        ordinal_levels([0.5, -0.5, 0.51, -3.0], "sims", sims_levels=3), [0, 0, 1, -1]
    )
    with pytest.raises(ValueError, match="5 or 3"):
        ordinal_levels([0.0], "sims", sims_levels=7)


def test_qwk_hand_computed():
    # Observed squared disagreement 1/3; chance: all 9 (t, p) pairs,
    # (0+1+4 + 4+1+0 + 4+1+0) / 9 = 15/9; kappa = 1 - (1/3)/(15/9) = 0.8.
    assert quadratic_weighted_kappa([0, 1, 2], [0, 2, 2]) == pytest.approx(0.8)


def test_qwk_matches_independent_formulas():
    rng = np.random.default_rng(1)
    t = rng.uniform(-3, 3, 60)
    p = t + rng.normal(0, 1.2, 60)
    m = ordinal_metrics(p, t, scale="mosi")
    lp = np.round(np.clip(p, -3, 3))
    lt = np.round(np.clip(t, -3, 3))
    assert m["qwk"] == pytest.approx(qwk_pairwise(lt, lp), abs=1e-12)
    # Also equal to 2 cov / (var + var + mean gap^2) with population moments.
    cov = np.mean((lp - lp.mean()) * (lt - lt.mean()))
    alt = 2 * cov / (lp.var() + lt.var() + (lp.mean() - lt.mean()) ** 2)
    assert m["qwk"] == pytest.approx(alt, abs=1e-12)
    diff = np.abs(lp - lt)
    assert m["jump2plus"] == pytest.approx(np.mean(diff >= 2))
    assert m["mean_abs_jump"] == pytest.approx(np.mean(diff))


def test_perfect_and_reversed():
    t = np.arange(-3, 4, dtype=np.float64)
    perfect = ordinal_metrics(t, t)
    assert perfect == {"qwk": 1.0, "jump2plus": 0.0, "mean_abs_jump": 0.0}
    rev = ordinal_metrics(-t, t)
    assert rev["qwk"] == pytest.approx(-1.0)
    # |level gap| = 2|t|: 0, 2, 2, 4, 4, 6, 6.
    assert rev["jump2plus"] == pytest.approx(6 / 7)
    assert rev["mean_abs_jump"] == pytest.approx(24 / 7)


def test_sims_scale_uses_sims_levels():
    p = np.array([0.9, -0.3, 0.2])
    t = np.array([-0.9, -0.2, 0.3])
    five = ordinal_metrics(p, t, scale="sims")
    # 5 levels: p [2, -1, 0], t [-2, -0, 1] -> gaps 4, 1, 1.
    assert five["jump2plus"] == pytest.approx(1 / 3)
    assert five["mean_abs_jump"] == pytest.approx(2.0)
    three = ordinal_metrics(p, t, scale="sims", sims_levels=3)
    # 3 levels: p [1, -0, 0], t [-1, -0, 0] -> gaps 2, 0, 0.
    assert three["mean_abs_jump"] == pytest.approx(2 / 3)


def test_constant_levels_give_finite_kappa():
    m = ordinal_metrics([0.1, 0.2, -0.3], [0.0, 0.1, 0.2])
    assert m["qwk"] == 0.0
    # Constant predictions against varied truths: no agreement beyond chance.
    assert ordinal_metrics(np.zeros(4), [-2.0, -1.0, 1.0, 2.0])["qwk"] == pytest.approx(0.0)


def test_mismatched_sizes_raise():
    with pytest.raises(ValueError, match="must match"):
        ordinal_metrics([0.0, 1.0], [0.0])
