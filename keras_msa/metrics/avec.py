"""AVEC 2019 Detecting Depression Sub-challenge metrics (PHQ-8, 0-24).

The challenge ranks by Lin's concordance correlation coefficient (CCC) and
also reports RMSE and MAE (docs/metrics.md, "Other tasks").
"""

import numpy as np

from keras_msa.metrics.common import mae
from keras_msa.metrics.common import paired
from keras_msa.metrics.common import rmse


def ccc(y_pred, y_true):
    """Lin's concordance correlation coefficient.

    CCC = 2 cov(p, t) / (var(p) + var(t) + (mean(p) - mean(t))^2) with
    population (1/N) moments, as in the AVEC baseline scripts. It is 1 only
    for p == t with non-zero spread and penalises both poor correlation and
    shifts in location or scale. When both series are constant and equal the
    ratio is 0/0; we return 0.0 (like a constant series' Corr), never NaN.

    Example:

    >>> ccc([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    1.0
    """
    p, t = paired(y_pred, y_true)
    p = p.astype(np.float64)
    t = t.astype(np.float64)
    mp, mt = np.mean(p), np.mean(t)
    cov = np.mean((p - mp) * (t - mt))
    denom = np.var(p) + np.var(t) + (mp - mt) ** 2
    if denom == 0.0:
        return 0.0
    return float(2.0 * cov / denom)


def avec_metrics(y_pred, y_true):
    """`{"ccc", "rmse", "mae"}` of PHQ-8 predictions (no clipping).

    Example:

    >>> sorted(avec_metrics([3.0, 10.0], [4.0, 12.0]))
    ['ccc', 'mae', 'rmse']
    """
    return {"ccc": ccc(y_pred, y_true), "rmse": rmse(y_pred, y_true), "mae": mae(y_pred, y_true)}
