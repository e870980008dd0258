"""Sentiment-regression metrics of MOSI, MOSEI and CH-SIMS (docs/metrics.md).

The definitions are the ones the MMSA framework uses, so numbers can be put
beside the seeds' tables:

* MOSI / MOSEI (labels in [-3, 3]): MAE, Pearson Corr, Acc-7/5/3 (clip to
  +-3/+-2/+-1, then numpy's half-to-even rounding), Acc-2 and weighted F1 in
  the "has-zero" form (p >= 0 vs t >= 0 over all samples, "NN/N") and the
  "non-zero" form (drop t == 0, then p > 0 vs t > 0, "P/N").
* CH-SIMS (labels in [-1, 1]): clip both to [-1, 1] (MAE and Corr use the
  clipped values too), then bin with right-closed intervals: 2 classes cut at
  0, 3 classes cut at +-0.1, 5 classes cut at -0.7, -0.1, 0.1, 0.7.

All values are fractions (0.8 means 80 %). Corr of a constant series is 0.0.
"""

import numpy as np

from keras_msa.metrics.classification import weighted_f1
from keras_msa.metrics.common import mae
from keras_msa.metrics.common import paired
from keras_msa.metrics.common import pearson_corr

SCALES = ("mosi", "mosei", "sims")

# Right-closed bin edges of CH-SIMS: a value equal to an edge falls in the
# lower class.
SIMS_EDGES = {2: (0.0,), 3: (-0.1, 0.1), 5: (-0.7, -0.1, 0.1, 0.7)}


def check_scale(scale):
    key = str(scale).lower()
    if key not in SCALES:
        raise ValueError(f"Unknown scale '{scale}'; expected one of {SCALES}.")
    return key


def clip_round(x, bound):
    """Class of `x` among {-bound..bound}: clip, then round half to even."""
    x = np.asarray(x)
    return np.round(np.clip(x, x.dtype.type(-bound), x.dtype.type(bound))).astype(np.int64)


def sims_bins(x, num_classes):
    """CH-SIMS class index in [0, num_classes) with right-closed intervals.

    `x` is clipped to [-1, 1]; a value exactly on an edge goes to the lower
    class. Edges are compared in `x`'s own dtype so that float32(-0.7) counts
    as being on the -0.7 edge.
    """
    if num_classes not in SIMS_EDGES:
        raise ValueError(f"CH-SIMS has 2, 3 or 5 classes; got {num_classes}.")
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    x = np.clip(x, x.dtype.type(-1), x.dtype.type(1))
    edges = np.asarray(SIMS_EDGES[num_classes], dtype=x.dtype)
    # Index i means edges[i-1] < x <= edges[i].
    return np.searchsorted(edges, x, side="left").astype(np.int64)


def mosi_metrics(y_pred, y_true):
    """MOSI / MOSEI metrics; see `regression_metrics`."""
    p, t = paired(y_pred, y_true)
    out = {"mae": mae(p, t), "corr": pearson_corr(p, t)}
    for name, bound in (("acc7", 3), ("acc5", 2), ("acc3", 1)):
        out[name] = float(np.mean(clip_round(p, bound) == clip_round(t, bound)))
    # "Has-zero": a neutral (0) truth counts as non-negative.
    pred_nn, true_nn = p >= 0, t >= 0
    out["acc2_has0"] = float(np.mean(pred_nn == true_nn))
    out["f1_has0"] = weighted_f1(pred_nn, true_nn)
    nonzero = t != 0
    if np.any(nonzero):
        pred_pos, true_pos = p[nonzero] > 0, t[nonzero] > 0
        out["acc2_non0"] = float(np.mean(pred_pos == true_pos))
        out["f1_non0"] = weighted_f1(pred_pos, true_pos)
    else:
        # Every truth is neutral: the positive/negative split has no samples.
        out["acc2_non0"] = float("nan")
        out["f1_non0"] = float("nan")
    return out


def sims_metrics(y_pred, y_true):
    """CH-SIMS metrics; see `regression_metrics`."""
    p, t = paired(y_pred, y_true)
    p = np.clip(p, p.dtype.type(-1), p.dtype.type(1))
    t = np.clip(t, t.dtype.type(-1), t.dtype.type(1))
    out = {}
    for k in (2, 3, 5):
        out[f"acc{k}"] = float(np.mean(sims_bins(p, k) == sims_bins(t, k)))
    out["f1"] = weighted_f1(sims_bins(p, 2), sims_bins(t, 2))
    out["mae"] = mae(p, t)
    out["corr"] = pearson_corr(p, t)
    return out


def regression_metrics(y_pred, y_true, scale="mosi"):
    """All sentiment-regression metrics of a dataset, as in MMSA (docs/metrics.md).

    Args:
        y_pred: predictions, any shape (flattened), float32 or float64.
        y_true: truths, same number of elements.
        scale: `"mosi"` or `"mosei"` (labels in [-3, 3]) or `"sims"`
            (labels in [-1, 1]).

    Returns:
        dict of Python floats (fractions, not percents). MOSI/MOSEI: `mae, corr,
        acc7, acc5, acc3, acc2_has0, f1_has0, acc2_non0, f1_non0`
        (`acc2_non0`/`f1_non0` are NaN when every truth is 0). CH-SIMS: `acc2,
        acc3, acc5, f1, mae, corr`. `corr` is 0.0 when either series is constant.

    Example:

    >>> m = regression_metrics([0.5, -1.0, 2.6], [0.0, -1.4, 3.0])
    >>> m["acc7"], m["acc2_has0"], m["acc2_non0"]
    (1.0, 1.0, 1.0)
    """
    if check_scale(scale) == "sims":
        return sims_metrics(y_pred, y_true)
    return mosi_metrics(y_pred, y_true)
