import keras
from keras import ops

from keras_msa.utils.masks import masked_softmax


@keras.saving.register_keras_serializable(package="keras_msa")
class CrossShapedAttention(keras.layers.Layer):
    """Recurrent criss-cross ("cross-shaped") attention over a 2-D map.

    The Cross-Interact step of CS-DSA in seed 000 (SSGDL, Sec. III-D; the seed
    text stops before its equations, docs/architectures.md completes them from
    criss-cross attention, Huang et al., CCNet). The input is a map
    ``x`` `[B, H, W, C]`, channels last; in SSGDL the rows are modalities and
    the columns time steps. With 1x1 projections

        q = x W_q + b_q  (C -> C / reduction),  k = x W_k + b_k,  v = x W_v + b_v (C -> C)

    the position (i, j) scores every position of its cross, i.e. its row
    ``{(i, j') : j'}`` (same modality, all times: intra-modal global context)
    and its column ``{(i', j) : i' != i}`` (same time, other modalities:
    inter-modal context), ``e = q_{ij} . k_{i'j'}`` (no 1/sqrt(d) scaling, as
    in CCNet), takes **one** softmax over that union (the centre counted once,
    hence i' != i in the column) and returns

        y_{ij} = gamma * sum_{(i', j') in cross(i, j)} A_{ij,i'j'} v_{i'j'} + x_{ij}

    with ``gamma`` a scalar initialised to 0 (the block starts as the identity).
    The step is applied ``num_loops`` times (R = 2, the "dual loop") with shared
    weights, so after two loops every position has seen the whole map.

    Masking: `mask` `[B, W]` marks real time steps (columns). Padded columns
    are never attended to (neither in rows nor in columns); positions in
    padded columns produce zeros; a row with no real step at all (an
    all-padding sample) gets all-zero weights, so the output is finite and
    equals the input there (then zeroed). Scores and softmax run in float32.

    Args:
        reduction: query/key width is ``max(C // reduction, 1)`` (8).
        num_loops: R, the number of recurrent applications (2).
        gamma_initializer: initialiser of the residual scale (zeros).
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        x: float `[B, H, W, C]`.
        mask: optional boolean `[B, W]`.

    Example:

    >>> import numpy as np
    >>> cca = CrossShapedAttention(reduction=8, num_loops=2)
    >>> tuple(cca(np.ones((2, 3, 5, 16), "float32"), mask=np.ones((2, 5), bool)).shape)
    (2, 3, 5, 16)
    """

    def __init__(self, reduction=8, num_loops=2, gamma_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.reduction = int(reduction)
        self.num_loops = int(num_loops)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        if self.num_loops < 1:
            raise ValueError(f"num_loops must be >= 1, got {num_loops}.")
        # The time mask is consumed here (see `compute_mask`), not propagated.
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None or input_shape[1] is None:
            raise ValueError(
                "CrossShapedAttention expects a map [batch, rows, time, channels] "
                f"with known rows and channels; got shape {tuple(input_shape)}."
            )
        c = int(input_shape[-1])
        dq = max(c // self.reduction, 1)
        self.query_kernel = self.add_weight(name="query_kernel", shape=(c, dq), initializer="glorot_uniform")
        self.query_bias = self.add_weight(name="query_bias", shape=(dq,), initializer="zeros")
        self.key_kernel = self.add_weight(name="key_kernel", shape=(c, dq), initializer="glorot_uniform")
        self.key_bias = self.add_weight(name="key_bias", shape=(dq,), initializer="zeros")
        self.value_kernel = self.add_weight(name="value_kernel", shape=(c, c), initializer="glorot_uniform")
        self.value_bias = self.add_weight(name="value_bias", shape=(c,), initializer="zeros")
        self.gamma = self.add_weight(name="gamma", shape=(), initializer=self.gamma_initializer)
        self.built = True

    def _weights_and_values(self, x, mask):
        """Cross attention weights split as (column [B,H,W,H], row [B,H,W,W])
        plus the values."""
        rows = x.shape[1]
        q = ops.einsum("bhwc,cd->bhwd", x, self.query_kernel) + self.query_bias
        k = ops.einsum("bhwc,cd->bhwd", x, self.key_kernel) + self.key_bias
        v = ops.einsum("bhwc,cd->bhwd", x, self.value_kernel) + self.value_bias
        q32, k32 = ops.cast(q, "float32"), ops.cast(k, "float32")
        col = ops.einsum("bhwd,bgwd->bhwg", q32, k32)
        row = ops.einsum("bhwd,bhvd->bhwv", q32, k32)
        # The centre belongs to the row; leaving it out of the column keeps
        # it from being counted twice in the joint softmax.
        not_self = ops.logical_not(ops.cast(ops.eye(rows), "bool"))[None, :, None, :]
        col_valid = ops.broadcast_to(not_self, ops.shape(col))
        if mask is None:
            row_valid = ops.ones_like(row, dtype="bool")
        else:
            tm = ops.cast(mask, "bool")
            col_valid = ops.logical_and(col_valid, tm[:, None, :, None])
            row_valid = ops.broadcast_to(tm[:, None, None, :], ops.shape(row))
        weights = masked_softmax(
            ops.concatenate([col, row], axis=-1),
            ops.concatenate([col_valid, row_valid], axis=-1),
            axis=-1,
        )
        return weights[..., :rows], weights[..., rows:], v

    def _step(self, x, mask):
        a_col, a_row, v = self._weights_and_values(x, mask)
        a_col = ops.cast(a_col, v.dtype)
        a_row = ops.cast(a_row, v.dtype)
        attended = ops.einsum("bhwg,bgwc->bhwc", a_col, v) + ops.einsum("bhwv,bhvc->bhwc", a_row, v)
        y = ops.cast(self.gamma, x.dtype) * attended + x
        if mask is not None:
            y = ops.where(ops.cast(mask, "bool")[:, None, :, None], y, 0)
        return y

    def call(self, x, mask=None):
        if mask is not None:
            x = ops.where(ops.cast(mask, "bool")[:, None, :, None], x, 0)
        for _ in range(self.num_loops):
            x = self._step(x, mask)
        return x

    def attention_map(self, x, mask=None):
        """The first loop's weights as a full map `[B, H, W, H, W]` (float32):
        entry (b, i, j, i', j') is how much position (i, j) attends to
        (i', j'); it is zero off the cross of (i, j)."""
        x = ops.convert_to_tensor(x, self.compute_dtype)
        if mask is not None:
            x = ops.where(ops.cast(mask, "bool")[:, None, :, None], x, 0)
        a_col, a_row, _ = self._weights_and_values(x, mask)
        rows, steps = x.shape[1], ops.shape(x)[2]
        full = ops.einsum("bhwg,wv->bhwgv", a_col, ops.eye(steps, dtype="float32"))
        return full + ops.einsum("bhwv,hg->bhwgv", a_row, ops.eye(rows, dtype="float32"))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "num_loops": self.num_loops,
                "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
            }
        )
        return config
