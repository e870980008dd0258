"""Classification metrics: weighted F1, IEMOCAP per-emotion, UR-FUNNY.

Pure NumPy re-implementations (no scikit-learn): `weighted_f1` follows the
usual "weighted" average, i.e. the per-class F1 averaged with each class's
support in `y_true` as its weight, a class with no true or predicted sample
contributing F1 = 0 (weight 0 when it has no support).
"""

import numpy as np

from keras_msa.metrics.common import as_float_array

IEMOCAP_EMOTIONS = ("happy", "sad", "angry", "neutral")


def _labels(x, name):
    a = np.asarray(x).reshape(-1)
    if a.size == 0:
        raise ValueError(f"`{name}` is empty; metrics need at least one sample.")
    return a


def accuracy(y_pred_labels, y_true_labels):
    """Share of positions where the two label arrays agree."""
    p = _labels(y_pred_labels, "y_pred_labels")
    t = _labels(y_true_labels, "y_true_labels")
    if p.size != t.size:
        raise ValueError(f"{p.size} predicted labels but {t.size} true labels; they must match.")
    return float(np.mean(p == t))


def weighted_f1(y_pred_labels, y_true_labels):
    """Support-weighted mean of per-class F1 over the classes of both arrays.

    Per class c: F1 = 2 TP / (2 TP + FP + FN) (0 when that is 0/0), weighted by
    the number of true samples of c.

    Example:

    >>> round(weighted_f1([1, 1, 0, 0], [1, 0, 0, 0]), 4)
    0.7667
    """
    p = _labels(y_pred_labels, "y_pred_labels")
    t = _labels(y_true_labels, "y_true_labels")
    if p.size != t.size:
        raise ValueError(f"{p.size} predicted labels but {t.size} true labels; they must match.")
    total = 0.0
    for c in np.union1d(p, t):
        tp = np.sum((p == c) & (t == c))
        fp = np.sum((p == c) & (t != c))
        fn = np.sum((p != c) & (t == c))
        denom = 2 * tp + fp + fn
        f1 = 0.0 if denom == 0 else 2.0 * tp / denom
        total += f1 * np.sum(t == c)
    return float(total / t.size)


def binary_decisions(scores, two_way, from_logits=None, name="scores"):
    """0/1 decisions from 2-way outputs or from single scores.

    With `two_way=True` the last axis (size 2) holds (negative, positive)
    logits or probabilities, decided by argmax. Otherwise each value is one score:
    a logit (positive iff > 0) when `from_logits=True`, a probability (positive
    iff > 0.5) when `from_logits=False`. With `from_logits=None` the scores are
    taken as probabilities when every value lies in [0, 1], else as logits;
    pass the flag explicitly when logits might all fall inside [0, 1].
    """
    s = np.asarray(scores)
    if two_way:
        if s.ndim == 0 or s.shape[-1] != 2:
            raise ValueError(f"`{name}` must end in a 2-way axis; got shape {s.shape}.")
        as_float_array(s, name)
        return np.argmax(s, axis=-1).astype(np.int64)
    flat = as_float_array(s, name).reshape(s.shape)
    if from_logits is None:
        from_logits = not bool(np.all((flat >= 0.0) & (flat <= 1.0)))
    return (flat > (0.0 if from_logits else 0.5)).astype(np.int64)


def _binary_labels(labels, name):
    y = np.asarray(labels)
    if y.size == 0:
        raise ValueError(f"`{name}` is empty; metrics need at least one sample.")
    if not np.all(np.isin(y, (0, 1))):
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise ValueError(f"`{name}` must hold 0/1 labels; found values such as {bad.tolist()}.")
    return y.astype(np.int64)


def iemocap_metrics(y_pred, y_true, emotion_names=None, from_logits=None):
    """IEMOCAP: per-emotion binary accuracy and weighted F1 (docs/metrics.md).

    Each emotion is its own binary decision (present / absent), as in the
    papers that report "Happy Acc / F1, Sad Acc / F1, ...".

    Args:
        y_pred: `[N, E, 2]` logits or probabilities (decided by argmax) or
            `[N, E]` single scores (see `binary_decisions` for `from_logits`).
        y_true: `[N, E]` 0/1 labels.
        emotion_names: names of the E emotions; default the IEMOCAP four
            (happy, sad, angry, neutral) when E == 4, else `emotion_<i>`.
        from_logits: how to read `[N, E]` scores; `None` decides from the range.

    Returns:
        dict of floats: `acc_<emotion>`, `f1_<emotion>` for every emotion, and
        their means `acc_mean`, `f1_mean`.

    Example:

    >>> import numpy as np
    >>> y = np.array([[1, 0, 0, 0], [0, 1, 0, 0]])
    >>> iemocap_metrics(y.astype("float32"), y)["acc_mean"]
    1.0
    """
    y = _binary_labels(y_true, "y_true")
    if y.ndim != 2:
        raise ValueError(f"`y_true` must be [N, E] 0/1 labels; got shape {y.shape}.")
    decisions = binary_decisions(
        y_pred, two_way=np.ndim(y_pred) == 3, from_logits=from_logits, name="y_pred"
    )
    if decisions.shape != y.shape:
        raise ValueError(
            f"`y_pred` of shape {np.shape(y_pred)} gives decisions {decisions.shape}, "
            f"but `y_true` has shape {y.shape}; expected [N, E, 2] or [N, E]."
        )
    num = y.shape[1]
    if emotion_names is None:
        emotion_names = IEMOCAP_EMOTIONS if num == 4 else [f"emotion_{i}" for i in range(num)]
    if len(emotion_names) != num:
        raise ValueError(f"{len(emotion_names)} emotion names for {num} emotions.")
    out = {}
    for i, name in enumerate(emotion_names):
        out[f"acc_{name}"] = accuracy(decisions[:, i], y[:, i])
        out[f"f1_{name}"] = weighted_f1(decisions[:, i], y[:, i])
    out["acc_mean"] = float(np.mean([out[f"acc_{n}"] for n in emotion_names]))
    out["f1_mean"] = float(np.mean([out[f"f1_{n}"] for n in emotion_names]))
    return out


def humor_metrics(y_pred, y_true, from_logits=None):
    """UR-FUNNY: binary accuracy of humour detection.

    Args:
        y_pred: `[N]`/`[N, 1]` scores or `[N, 2]` two-way outputs (see
            `binary_decisions`).
        y_true: `[N]` or `[N, 1]` 0/1 labels.

    Returns:
        `{"acc": float}`.

    Example:

    >>> humor_metrics([2.0, -1.0, 0.5], [1, 0, 0], from_logits=True)["acc"]
    0.6666666666666666
    """
    y = _binary_labels(y_true, "y_true").reshape(-1)
    two_way = np.ndim(y_pred) == 2 and np.shape(y_pred)[-1] == 2
    decisions = binary_decisions(
        y_pred, two_way=two_way, from_logits=from_logits, name="y_pred"
    ).reshape(-1)
    if decisions.size != y.size:
        raise ValueError(
            f"`y_pred` of shape {np.shape(y_pred)} gives {decisions.size} decisions but "
            f"`y_true` has {y.size} labels."
        )
    return {"acc": accuracy(decisions, y)}
