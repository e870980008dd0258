"""Mask helpers written with `keras.ops`.

Conventions (DATA.md): a mask is boolean `[B, T]`, True marks a real step. A
modality that is missing for a sample has an all-False mask; every helper here
returns finite values for such rows (zeros for pooling, a uniform-free zero
attention row for softmax) instead of NaN.
"""

from keras import ops


def _as_float_mask(mask, dtype):
    return ops.cast(mask, dtype)


def masked_mean(x, mask=None, axis=1):
    """Mean of `x` over `axis`, counting only steps where `mask` is True.

    Args:
        x: tensor `[B, T, ...]`.
        mask: boolean `[B, T]` or None (plain mean).
        axis: the time axis (1).

    Returns:
        `x` reduced over `axis`; rows whose mask is all False give zeros.
    """
    if mask is None:
        return ops.mean(x, axis=axis)
    m = _as_float_mask(mask, x.dtype)
    while len(m.shape) < len(x.shape):
        m = ops.expand_dims(m, -1)
    total = ops.sum(x * m, axis=axis)
    count = ops.sum(m, axis=axis)
    # max(count, 1) keeps an all-padding row at exactly zero instead of 0/0.
    return total / ops.maximum(count, ops.ones_like(count))


def last_valid_step(x, mask=None):
    """The state at the last True step of each row of `x` `[B, T, D]`.

    Rows with no True step return zeros. Masks need not be left-aligned: the
    last True position is used.
    """
    if mask is None:
        return x[:, -1, :]
    m = ops.cast(mask, "int32")
    steps = ops.shape(x)[1]
    positions = ops.arange(steps, dtype="int32")[None, :]
    # Index of the last real step; -1 when there is none.
    last = ops.max(ops.where(m > 0, positions, -ops.ones_like(positions)), axis=1)
    onehot = ops.one_hot(ops.maximum(last, 0), steps, dtype=x.dtype)
    has_any = ops.cast(last >= 0, x.dtype)[:, None]
    return ops.einsum("bt,btd->bd", onehot, x) * has_any


def sequence_mask(lengths, maxlen):
    """Boolean `[B, maxlen]` mask from integer lengths `[B]`."""
    positions = ops.arange(maxlen, dtype="int32")[None, :]
    return positions < ops.cast(lengths, "int32")[:, None]


def attention_mask(query_mask, key_mask):
    """Boolean `[B, Tq, Tk]` mask for attention from the two padding masks.

    A None side counts as all True. The query side is kept in the mask only
    through the key side (padded queries may attend; their outputs are masked
    later), which keeps rows of padded queries finite.
    """
    if key_mask is None:
        return None
    km = ops.cast(key_mask, "bool")[:, None, :]
    if query_mask is None:
        return km
    qm = ops.ones_like(ops.cast(query_mask, "int32"))[:, :, None] > 0
    return ops.logical_and(qm, km)


def masked_softmax(scores, mask=None, axis=-1):
    """Softmax of `scores` over `axis` ignoring positions where `mask` is False.

    A row with no valid position gives all zeros (not NaN, not uniform), so an
    all-padding modality contributes nothing.
    """
    if mask is None:
        return ops.softmax(scores, axis=axis)
    mask = ops.cast(mask, "bool")
    neg = ops.full_like(scores, -1e9) if scores.dtype == "float32" else ops.full_like(scores, -3e4)
    logits = ops.where(mask, scores, neg)
    weights = ops.softmax(logits, axis=axis)
    weights = ops.where(mask, weights, ops.zeros_like(weights))
    # Renormalise only where something is valid; all-masked rows stay zero.
    denom = ops.sum(weights, axis=axis, keepdims=True)
    return weights / ops.maximum(denom, ops.full_like(denom, 1e-9))
