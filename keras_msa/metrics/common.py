"""Input checking and small statistics shared by the metric families.

Everything here is pure NumPy. Undefined statistics (a correlation or an
agreement coefficient of a constant series) are returned as ``0.0``, never
NaN, so that a collapsed model scores "no association" instead of poisoning
averages over seeds.
"""

import numpy as np


def as_float_array(x, name):
    """`x` as a flat floating array, keeping float32/float64 as given.

    The dtype is kept on purpose: docs/metrics.md bins values at exact edges
    (e.g. SIMS -0.7) and MMSA compares float32 predictions against those edges
    in float32; widening to float64 first would move ``float32(-0.7)`` above the
    edge and into the next bin. Integer and boolean inputs become float64.
    """
    a = np.asarray(x)
    if a.dtype == object:
        raise TypeError(f"`{name}` must be numeric; got an object array.")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    a = a.reshape(-1)
    if a.size == 0:
        raise ValueError(f"`{name}` is empty; metrics need at least one sample.")
    if not np.all(np.isfinite(a)):
        bad = int(np.sum(~np.isfinite(a)))
        raise ValueError(f"`{name}` holds {bad} non-finite value(s) (NaN or inf).")
    return a


def paired(y_pred, y_true):
    """Flat `(y_pred, y_true)` arrays with the same number of elements."""
    p = as_float_array(y_pred, "y_pred")
    t = as_float_array(y_true, "y_true")
    if p.size != t.size:
        raise ValueError(
            f"`y_pred` has {p.size} elements (shape {np.shape(y_pred)}) but `y_true` "
            f"has {t.size} (shape {np.shape(y_true)}); they must match one to one."
        )
    return p, t


def mae(y_pred, y_true):
    """Mean absolute error, no clipping."""
    p, t = paired(y_pred, y_true)
    return float(np.mean(np.abs(p.astype(np.float64) - t.astype(np.float64))))


def rmse(y_pred, y_true):
    """Root mean squared error, no clipping."""
    p, t = paired(y_pred, y_true)
    d = p.astype(np.float64) - t.astype(np.float64)
    return float(np.sqrt(np.mean(d * d)))


def pearson_corr(y_pred, y_true):
    """Pearson correlation; ``0.0`` when either series is constant.

    A constant series has zero variance, so the correlation is 0/0. We define
    it as 0.0 (no linear association can be shown) rather than NaN.
    """
    p, t = paired(y_pred, y_true)
    p = p.astype(np.float64) - np.mean(p, dtype=np.float64)
    t = t.astype(np.float64) - np.mean(t, dtype=np.float64)
    denom = np.sqrt(np.sum(p * p) * np.sum(t * t))
    if denom == 0.0 or not np.isfinite(denom):
        return 0.0
    # Rounding can push |r| a hair past 1 for (anti-)identical series.
    return float(np.clip(np.sum(p * t) / denom, -1.0, 1.0))
