"""Ordinal-consistency metrics of seed 001 (docs/metrics.md, "Ordinal consistency").

A regression output is read as an ordinal level and compared with the true
level: how well the two orderings agree (quadratic weighted kappa), how often
the prediction skips two or more levels (Jump2+), and by how many levels it
misses on average (MeanAbsJump).

Levels: MOSI / MOSEI round `clip(y, -3, 3)` to {-3..3}; CH-SIMS clips to
[-1, 1] and uses 5 levels `round(2 y)` in {-2..2} or 3 levels `round(y)` in
{-1, 0, 1}. Rounding is numpy's half-to-even, as for Acc-7.
"""

import numpy as np

from keras_msa.metrics.common import paired
from keras_msa.metrics.regression import check_scale
from keras_msa.metrics.regression import clip_round


def ordinal_levels(y, scale="mosi", sims_levels=5):
    """Integer ordinal level of each value of `y` (see the module docstring)."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.float64)
    if check_scale(scale) != "sims":
        return clip_round(y, 3)
    y = np.clip(y, y.dtype.type(-1), y.dtype.type(1))
    if sims_levels == 5:
        # 2*y is exact in binary floating point, so ties stay ties.
        return np.round(2 * y).astype(np.int64)
    if sims_levels == 3:
        return np.round(y).astype(np.int64)
    raise ValueError(f"CH-SIMS ordinal levels are 5 or 3; got sims_levels={sims_levels}.")


def quadratic_weighted_kappa(pred_levels, true_levels):
    """Cohen's kappa with quadratic disagreement weights between two integer
    level arrays.

    kappa = 1 - sum_ij w_ij O_ij / sum_ij w_ij E_ij with O the confusion
    counts, E = outer(true histogram, predicted histogram) / N (the counts
    expected if the two were independent) and w_ij = (i - j)^2. The usual
    1 / (K - 1)^2 normalisation of w cancels in the ratio, so the result does
    not depend on how many empty levels the scale has. When the expected
    disagreement is zero (both arrays constant at the same level) kappa is 0/0;
    we return 0.0 (no agreement beyond chance can be shown), never NaN.

    Example:

    >>> quadratic_weighted_kappa([0, 1, 2], [0, 1, 2])
    1.0
    """
    p = np.asarray(pred_levels).reshape(-1).astype(np.int64)
    t = np.asarray(true_levels).reshape(-1).astype(np.int64)
    if p.size != t.size or p.size == 0:
        raise ValueError(f"Need equal, non-empty level arrays; got {p.size} and {t.size}.")
    lo = min(p.min(), t.min())
    k = int(max(p.max(), t.max()) - lo + 1)
    observed = np.zeros((k, k), np.float64)
    np.add.at(observed, (t - lo, p - lo), 1.0)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / p.size
    idx = np.arange(k)
    weights = (idx[:, None] - idx[None, :]).astype(np.float64) ** 2
    denom = np.sum(weights * expected)
    if denom == 0.0:
        return 0.0
    return float(1.0 - np.sum(weights * observed) / denom)


def ordinal_metrics(y_pred, y_true, scale="mosi", sims_levels=5):
    """QWK, Jump2+ and MeanAbsJump between predicted and true levels.

    Args:
        y_pred: predictions, any shape (flattened).
        y_true: truths, same number of elements.
        scale: `"mosi"`, `"mosei"` or `"sims"`.
        sims_levels: 5 or 3, the CH-SIMS level set (ignored otherwise).

    Returns:
        dict of floats: `qwk` (quadratic weighted kappa; 0.0 when undefined),
        `jump2plus` (share of samples whose level is off by 2 or more) and
        `mean_abs_jump` (mean |level difference|).

    Example:

    >>> ordinal_metrics([3.0, 0.2, -2.6], [-3.0, 0.0, -3.0])["jump2plus"]
    0.3333333333333333
    """
    p, t = paired(y_pred, y_true)
    lp = ordinal_levels(p, scale, sims_levels)
    lt = ordinal_levels(t, scale, sims_levels)
    jump = np.abs(lp - lt)
    return {
        "qwk": quadratic_weighted_kappa(lp, lt),
        "jump2plus": float(np.mean(jump >= 2)),
        "mean_abs_jump": float(np.mean(jump)),
    }
