"""Mask helpers written with `keras.ops`.

Conventions (docs/data.md): a mask is boolean `[B, T]`, True marks a real step. A
modality that is missing for a sample has an all-False mask; every helper here
returns finite values for such rows (zeros for pooling, a uniform-free zero
attention row for softmax) instead of NaN.

Masking is done by selection (`ops.where`), never by multiplying with the
mask: padded steps may hold -inf, inf or NaN (MMSA audio holds -inf), and
`0 * inf` is NaN. Selecting also keeps gradients finite, provided the
selection happens before any arithmetic touches the padded values (the
gradient of a product with an inf operand is NaN even where the product is
discarded afterwards), which is why layers zero their inputs first.
"""

from keras import ops


def _expand_like(mask, x):
    """Boolean `mask` `[B, T]` with trailing unit axes up to the rank of `x`."""
    m = ops.cast(mask, "bool")
    while len(m.shape) < len(x.shape):
        m = ops.expand_dims(m, -1)
    return m


def zero_masked(x, mask=None):
    """`x` `[B, T, ...]` with every step where `mask` `[B, T]` is False set to
    exactly 0 (by selection, so inf/NaN under the mask cannot survive).

    A None mask returns `x` unchanged.
    """
    if mask is None:
        return x
    x = ops.convert_to_tensor(x)
    return ops.where(_expand_like(mask, x), x, ops.zeros_like(x))


def masked_mean(x, mask=None, axis=1):
    """Mean of `x` over `axis`, counting only steps where `mask` is True.

    Args:
        x: tensor `[B, T, ...]`.
        mask: boolean `[B, T]` or None (plain mean).
        axis: the time axis (1).

    Returns:
        `x` reduced over `axis`; rows whose mask is all False give zeros.
        Values under the mask (inf and NaN included) change nothing, in the
        output or in its gradient.
    """
    if mask is None:
        return ops.mean(x, axis=axis)
    x = ops.convert_to_tensor(x)
    m = _expand_like(mask, x)
    total = ops.sum(ops.where(m, x, ops.zeros_like(x)), axis=axis)
    count = ops.sum(ops.cast(m, x.dtype), axis=axis)
    # max(count, 1) keeps an all-padding row at exactly zero instead of 0/0.
    return total / ops.maximum(count, ops.ones_like(count))


def last_valid_step(x, mask=None):
    """The state at the last True step of each row of `x` `[B, T, D]`.

    Rows with no True step return zeros. Masks need not be left-aligned: the
    last True position is used. The step is selected (not weighted by a
    one-hot), so values at other steps, inf and NaN included, never reach the
    result or its gradient.
    """
    if mask is None:
        return x[:, -1, :]
    x = ops.convert_to_tensor(x)
    m = ops.cast(mask, "bool")
    steps = ops.shape(x)[1]
    positions = ops.arange(steps, dtype="int32")[None, :]
    # Index of the last real step; -1 when there is none (selects nothing).
    last = ops.max(ops.where(m, positions, -ops.ones_like(positions)), axis=1)
    chosen = ops.equal(positions, last[:, None])
    return ops.sum(ops.where(chosen[:, :, None], x, ops.zeros_like(x)), axis=1)


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


def softmax(scores, axis=-1):
    """`ops.softmax`, except over an axis of static size 1 (one key: a
    modality stored as a single step), where it is computed as 1 + 0 * x:
    the same value (NaN for NaN, as softmax) and the same zero gradient,
    still connected, so the weights behind the scores keep a gradient and
    optimizers do not warn about missing ones. Keras warns about such
    softmaxes as likely mistakes, which here they are not."""
    if scores.shape[axis] == 1:
        return ops.ones_like(scores) + ops.zeros_like(scores) * scores
    return ops.softmax(scores, axis=axis)


def masked_softmax(scores, mask=None, axis=-1):
    """Softmax of `scores` over `axis` ignoring positions where `mask` is False.

    A row with no valid position gives all zeros (not NaN, not uniform), so an
    all-padding modality contributes nothing.
    """
    if mask is None:
        return softmax(scores, axis=axis)
    mask = ops.cast(mask, "bool")
    neg = ops.full_like(scores, -1e9) if scores.dtype == "float32" else ops.full_like(scores, -3e4)
    logits = ops.where(mask, scores, neg)
    weights = softmax(logits, axis=axis)
    weights = ops.where(mask, weights, ops.zeros_like(weights))
    # Renormalise only where something is valid; all-masked rows stay zero.
    denom = ops.sum(weights, axis=axis, keepdims=True)
    return weights / ops.maximum(denom, ops.full_like(denom, 1e-9))


def masked_rnn(rnn, inputs, mask=None, training=None):
    """Runs the Keras RNN layer `rnn` (LSTM, GRU) on `inputs` `[B, T, D]` with
    a mask that every RNN kernel accepts, cuDNN included.

    On a GPU, Keras' TensorFlow backend runs LSTM (and GRU with
    `reset_after=True`) through cuDNN whenever `use_cudnn` is "auto" or True,
    the activations are tanh/sigmoid, `use_bias=True`, `unroll=False` and
    `recurrent_dropout=0` (`keras/src/layers/rnn/lstm.py` `inner_loop`,
    `keras/src/backend/tensorflow/rnn.py` `cudnn_ok`). With a mask, that
    kernel first asserts (`_assert_valid_mask`) that no row is fully masked
    and that every row is right-padded (its True steps form a prefix). In
    eager mode the failed assertion raises at once and Keras falls back to
    the generic loop; inside `tf.function` (`fit`, `predict`, SavedModels) the
    assertion only runs at execution time, outside that fallback, so a sample
    with a missing modality (all-False mask) or a left-padded batch would
    fail on a GPU while passing on CPU.

    This helper makes both conditions true by construction:

    - the real steps of each row are packed to the front, in order (a
      left-padded or holed mask becomes right-padded; the generic kernel
      skips masked steps, so its outputs at real steps are the same either
      way), and unpacked afterwards;
    - a row with no real step gets one real, all-zero step at position 0,
      and its outputs are zeroed afterwards.

    Padded inputs are zeroed (by selection) before the RNN, so inf/NaN under
    the mask reach neither the outputs nor the gradients.

    Args:
        rnn: a Keras RNN layer without `return_state` or `go_backwards`.
        inputs: float `[B, T, D]`.
        mask: boolean `[B, T]` (None: all steps real, passed straight on).
        training: forwarded to the layer.

    Returns:
        What `rnn` returns: `[B, T, H]` with zeros at padded steps when
        `return_sequences=True`, else the state after the last real step
        `[B, H]`; rows with no real step give zeros.
    """
    if mask is None:
        return rnn(inputs, training=training)
    if getattr(rnn, "return_state", False) or getattr(rnn, "go_backwards", False):
        raise ValueError(
            f"masked_rnn supports RNN layers without return_state and go_backwards; "
            f"'{rnn.name}' has return_state={rnn.return_state}, "
            f"go_backwards={rnn.go_backwards}."
        )
    mask = ops.cast(mask, "bool")
    inputs = zero_masked(inputs, mask)
    steps = ops.shape(inputs)[1]
    positions = ops.arange(steps, dtype="int32")[None, :]
    # Real steps sort before padded ones and keep their order (the keys are
    # distinct, so no stable sort is needed).
    order = ops.argsort(ops.where(mask, positions, positions + steps), axis=1)
    count = ops.sum(ops.cast(mask, "int32"), axis=1)
    packed = ops.take_along_axis(inputs, order[:, :, None], axis=1)
    packed_mask = positions < ops.maximum(count, 1)[:, None]
    out = rnn(packed, mask=packed_mask, training=training)
    if getattr(rnn, "return_sequences", False):
        inverse = ops.argsort(order, axis=1)
        out = ops.take_along_axis(out, inverse[:, :, None], axis=1)
        return zero_masked(out, mask)
    return ops.where((count > 0)[:, None], out, ops.zeros_like(out))


def reverse_real_steps(x, mask):
    """The real steps of each row of `x` `[B, T, ...]`, last first, packed to
    the front, and their (right-padded) mask: what a backward RNN over a
    packed sequence (PyTorch's `pack_padded_sequence`) reads.

    Padded steps follow, zeroed by selection (inf/NaN under the mask do not
    survive); the returned mask is True at the first `count` steps of a row.
    """
    mask = ops.cast(mask, "bool")
    x = zero_masked(x, mask)
    steps = ops.shape(x)[1]
    positions = ops.arange(steps, dtype="int32")[None, :]
    # Real steps sort first, latest first; padded ones after, in order.
    order = ops.argsort(ops.where(mask, -positions, positions + steps), axis=1)
    index = order
    while len(index.shape) < len(x.shape):
        index = ops.expand_dims(index, -1)
    reversed_x = ops.take_along_axis(x, index, axis=1)
    count = ops.sum(ops.cast(mask, "int32"), axis=1)
    return reversed_x, positions < count[:, None]
