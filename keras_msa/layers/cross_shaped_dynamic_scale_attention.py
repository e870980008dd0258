import keras
from keras import ops

from keras_msa.layers.cross_shaped_attention import CrossShapedAttention
from keras_msa.utils.masks import zero_masked

MAP_LAYOUTS = ("cross", "time")

#: Keras momentum (weight of the old moving statistic) that matches the
#: PyTorch default `momentum=0.1` (weight of the new batch statistic).
TORCH_BN_MOMENTUM = 0.9


def masked_batch_norm(norm, x, valid=None, training=False):
    """Applies the built `keras.layers.BatchNormalization` `norm` to `x`
    `[..., C]`, with batch statistics taken over the entries where `valid`
    (boolean, `x`'s shape without its channel axis, or broadcastable to it) is
    True.

    In training mode the per-channel mean and (biased) variance are computed
    in float32 over the valid entries only, as Keras computes them, and the
    moving statistics are updated with `norm.momentum` (Keras convention:
    `moving = momentum * moving + (1 - momentum) * batch`). A batch with no
    valid entry leaves the moving statistics alone and is normalised with
    them. In inference mode, or with `valid=None`, this is exactly
    `norm(x, training=training)`. The layer's own variables are used, so
    checkpoints are unchanged.
    """
    if valid is None or not training or not norm.trainable:
        return norm(x, training=training)
    x32 = ops.cast(x, "float32")
    valid = ops.cast(valid, "bool")
    while len(valid.shape) < len(x32.shape):
        valid = ops.expand_dims(valid, -1)
    valid = ops.broadcast_to(valid, ops.shape(x32))
    axes = tuple(range(len(x32.shape) - 1))
    count = ops.sum(ops.cast(valid, "float32"), axis=axes)
    denom = ops.maximum(count, 1.0)
    mean = ops.sum(ops.where(valid, x32, 0.0), axis=axes) / denom
    var = ops.sum(ops.where(valid, ops.square(x32 - mean), 0.0), axis=axes) / denom
    has_any = count > 0
    moving_mean = ops.cast(norm.moving_mean, "float32")
    moving_var = ops.cast(norm.moving_variance, "float32")
    m = float(norm.momentum)
    norm.moving_mean.assign(ops.where(has_any, moving_mean * m + mean * (1.0 - m), moving_mean))
    norm.moving_variance.assign(ops.where(has_any, moving_var * m + var * (1.0 - m), moving_var))
    mean = ops.where(has_any, mean, moving_mean)
    var = ops.where(has_any, var, moving_var)
    out = ops.batch_normalization(
        x32,
        mean,
        var,
        axis=-1,
        offset=None if norm.beta is None else ops.cast(norm.beta, "float32"),
        scale=None if norm.gamma is None else ops.cast(norm.gamma, "float32"),
        epsilon=norm.epsilon,
    )
    return ops.cast(out, norm.compute_dtype)


@keras.saving.register_keras_serializable(package="keras_msa")
class CrossShapedDynamicScaleAttention(keras.layers.Layer):
    """CS-DSA: selective-kernel branches with criss-cross attention (SSGDL).

    Seed 000 (SSGDL), Sec. III-D and Fig. 3: Divide, Cross-Interact, Fuse,
    Select. The seed stops inside Divide; the steps below follow
    docs/architectures.md (SSGDL), which completes them from selective-kernel
    networks (Li et al., SKNet) and criss-cross attention (CCNet).

    The input is the aligned modalities stacked as a map ``X`` `[B, M, T, C]`
    (rows = modalities, columns = time, channels last).

    - *Divide*: K branches ``U_k = CCA_k(ReLU(BN(Conv2D_{k x k}(X))))``, one
      kernel size per branch, same padding.
    - *Cross-Interact*: ``CCA_k`` is a `CrossShapedAttention` (criss-cross
      attention, R loops with shared weights, zero-initialised residual scale).
    - *Fuse*: ``U = sum_k U_k``, ``s = masked mean of U`` over rows and real time
      steps, ``z = ReLU(BN(W_z s))`` of width ``max(C / reduction, min_width)``.
    - *Select*: ``a_k = softmax_k(W_k z)`` per channel and ``V = sum_k a_k * U_k``.
    - Fused modality ``f_t = sum_m w_m V_{m,t}`` with ``w = softmax(omega)``
      learned weights over the rows (docs/architectures.md).

    With a single kernel size (the paper's "single-scale" ablation) Fuse and
    Select reduce to the identity and are not built. `map_layout="time"`
    reproduces the official code's 1 x T map: the modalities are concatenated
    along channels into one row, kernels are 1 x k, and criss-cross attention
    reduces to self-attention over time (our reading of that code: the seed
    does not describe this layout).

    Masking: `mask` `[B, T]` marks real time steps. The map is zeroed at padded
    steps (by selection, so inf/NaN there never become NaN) before each
    convolution (so padded values never leak into real steps through the
    kernel), the criss-cross attention ignores padded columns, the pooled
    descriptor ``s`` averages real positions only, and ``f`` is zero at padded
    steps. An all-padding sample gives zeros.

    BatchNorm (`masked_batch_norm`): in training, the batch statistics of the
    Divide norms come from real (sample, row, step) positions only, and those
    of the Fuse norm from samples with at least one real step only, so adding
    an all-padding sample to a batch changes nothing for the others. Moving
    statistics use `bn_momentum` in Keras' convention (weight of the old
    value); the default 0.9 equals PyTorch's `nn.BatchNorm2d` default
    `momentum=0.1` (there the weight of the new batch value), the framework
    of the MSA reference code bases. Keras' default 0.99 keeps a share 0.99^n of the initial statistics (mean
    0, variance 1) after n steps: 37% after 100 steps, 5% after 300, so after
    a paper-length run of a few hundred steps inference would still use
    moving statistics that are in good part their initial values; with 0.9
    the share is below 1e-4 after 90 steps. Inference uses the moving
    statistics exactly as `keras.layers.BatchNormalization` does.

    Args:
        kernel_sizes: one branch per kernel size ((3, 5); the official code
            uses (1, 3, 5, 7)).
        units: output width C (default: the input width).
        reduction: r of the Fuse width ``max(C / r, min_width)`` (16).
        min_width: L of the Fuse width (32).
        attention_reduction: query/key reduction of the criss-cross attention (8).
        num_loops: R, criss-cross loops (2).
        map_layout: `"cross"` (the [M, T] map, default) or `"time"` (1 x T).
        bn_momentum: momentum of every BatchNorm, Keras convention (0.9 =
            PyTorch's 0.1; Keras' own default is 0.99).
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        x: float `[B, M, T, C_in]`.
        mask: optional boolean `[B, T]`.
        training: BatchNorm mode.

    Returns:
        The fused modality `[B, T, units]`.

    Example:

    >>> import numpy as np
    >>> csdsa = CrossShapedDynamicScaleAttention(kernel_sizes=(3, 5))
    >>> tuple(csdsa(np.ones((2, 3, 6, 16), "float32"), mask=np.ones((2, 6), bool)).shape)
    (2, 6, 16)
    """

    def __init__(
        self,
        kernel_sizes=(3, 5),
        units=None,
        reduction=16,
        min_width=32,
        attention_reduction=8,
        num_loops=2,
        map_layout="cross",
        bn_momentum=TORCH_BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= float(bn_momentum) < 1.0:
            raise ValueError(f"bn_momentum must be in [0, 1); got {bn_momentum}.")
        self.bn_momentum = float(bn_momentum)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if not self.kernel_sizes or any(k < 1 for k in self.kernel_sizes):
            raise ValueError(f"kernel_sizes must be positive integers, got {kernel_sizes}.")
        if map_layout not in MAP_LAYOUTS:
            raise ValueError(f"Unknown map_layout '{map_layout}'; expected one of {MAP_LAYOUTS}.")
        self.units = units
        self.reduction = int(reduction)
        self.min_width = int(min_width)
        self.attention_reduction = int(attention_reduction)
        self.num_loops = int(num_loops)
        self.map_layout = map_layout
        # The time mask is consumed here (see `compute_mask`), not propagated:
        # callers pass it on explicitly.
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[1] is None or input_shape[-1] is None:
            raise ValueError(
                "CrossShapedDynamicScaleAttention expects a map [batch, modalities, "
                f"time, channels] with known modalities and channels; got {tuple(input_shape)}."
            )
        m, c_in = int(input_shape[1]), int(input_shape[-1])
        self._rows = m if self.map_layout == "cross" else 1
        map_channels = c_in if self.map_layout == "cross" else m * c_in
        c = int(self.units or c_in)
        self._channels = c
        policy = self.dtype_policy
        map_shape = (None, self._rows, None, map_channels)
        out_shape = (None, self._rows, None, c)
        self.convs, self.norms, self.attentions = [], [], []
        for k in self.kernel_sizes:
            size = (k, k) if self.map_layout == "cross" else (1, k)
            # No bias: the BatchNorm that follows removes it (its gradient is 0).
            conv = keras.layers.Conv2D(c, size, padding="same", use_bias=False, name=f"conv_{k}", dtype=policy)
            conv.build(map_shape)
            norm = keras.layers.BatchNormalization(momentum=self.bn_momentum, name=f"bn_{k}", dtype=policy)
            norm.build(out_shape)
            cca = CrossShapedAttention(
                reduction=self.attention_reduction, num_loops=self.num_loops, name=f"cca_{k}", dtype=policy
            )
            cca.build(out_shape)
            self.convs.append(conv)
            self.norms.append(norm)
            self.attentions.append(cca)
        self.selects = []
        if len(self.kernel_sizes) > 1:
            width = max(c // self.reduction, self.min_width)
            self.fuse_dense = keras.layers.Dense(width, use_bias=False, name="fuse", dtype=policy)
            self.fuse_dense.build((None, c))
            self.fuse_norm = keras.layers.BatchNormalization(
                momentum=self.bn_momentum, name="fuse_bn", dtype=policy
            )
            self.fuse_norm.build((None, width))
            for k in self.kernel_sizes:
                select = keras.layers.Dense(c, name=f"select_{k}", dtype=policy)
                select.build((None, width))
                self.selects.append(select)
        self.modality_logits = None
        if self._rows > 1:
            # Zeros: the fused modality starts as the plain mean of the rows.
            self.modality_logits = self.add_weight(
                name="modality_logits", shape=(self._rows,), initializer="zeros"
            )
        self.built = True

    def branch_weights(self, x, mask=None, training=False):
        """The Select weights a_k `[B, K, C]` (float32), or None with one branch."""
        return self._forward(x, mask, training)[1]

    def attention_maps(self, x, mask=None):
        """The criss-cross weights of every branch, inference mode.

        Returns `{"k<kernel size>": [B, R, T, R, T]}` (float32), R the map's
        rows (the modalities, or 1 with `map_layout="time"`): entry
        (b, i, j, i', j') is how much position (i, j) attends to (i', j') in
        the branch's first criss-cross loop (`CrossShapedAttention.
        attention_map`); it is zero off the cross of (i, j) and at padded
        columns j', and each query row sums to 1 over its real cross.
        """
        mask, branch_inputs = self._divide(ops.convert_to_tensor(x, self.compute_dtype), mask, False)
        return {
            f"k{k}": cca.attention_map(u, mask=mask)
            for k, cca, u in zip(self.kernel_sizes, self.attentions, branch_inputs)
        }

    def _divide(self, x, mask, training):
        """The boolean mask and the Divide outputs ``ReLU(BN(Conv(X)))`` of every branch, before CCA."""
        if self.map_layout == "time":
            # [B, M, T, C] -> [B, 1, T, M * C]: one row, modalities as channels.
            b, m, t, c = ops.shape(x)[0], x.shape[1], ops.shape(x)[2], x.shape[3]
            x = ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (b, 1, t, m * c))
        if mask is not None:
            mask = ops.cast(mask, "bool")
            map_mask = mask[:, None, :]  # [B, 1, T]: real columns of every row
            # where, not a product: inf under the mask would give 0 * inf = NaN.
            x = zero_masked(x, map_mask)
        else:
            map_mask = None
        divided = []
        for conv, norm in zip(self.convs, self.norms):
            u = ops.relu(masked_batch_norm(norm, conv(x), map_mask, training))
            if mask is not None:
                u = zero_masked(u, map_mask)
            divided.append(u)
        return mask, divided

    def _forward(self, x, mask, training):
        mask, divided = self._divide(x, mask, training)
        map_mask = None if mask is None else mask[:, None, :]
        sample_valid = None if mask is None else ops.any(mask, axis=1)
        branches = [cca(u, mask=mask) for cca, u in zip(self.attentions, divided)]
        weights = None
        if len(branches) == 1:
            v = branches[0]
        else:
            total = branches[0]
            for u in branches[1:]:
                total = total + u
            if mask is None:
                s = ops.mean(total, axis=(1, 2))
            else:
                # The branches are already zero at padded steps.
                count = ops.sum(ops.cast(mask, total.dtype), axis=1, keepdims=True) * self._rows
                s = ops.sum(zero_masked(total, map_mask), axis=(1, 2)) / ops.maximum(count, ops.ones_like(count))
            # Only samples with a real step count in the Fuse statistics.
            z = ops.relu(masked_batch_norm(self.fuse_norm, self.fuse_dense(s), sample_valid, training))
            logits = ops.stack([ops.cast(sel(z), "float32") for sel in self.selects], axis=1)
            weights = ops.softmax(logits, axis=1)
            v = 0.0
            for k, u in enumerate(branches):
                v = v + ops.cast(weights[:, k, None, None, :], u.dtype) * u
        if self.modality_logits is None:
            f = v[:, 0]
        else:
            w = ops.cast(ops.softmax(self.modality_logits), v.dtype)
            f = ops.einsum("bmtc,m->btc", v, w)
        if mask is not None:
            f = ops.where(ops.cast(mask, "bool")[..., None], f, 0)
        return f, weights

    def call(self, x, mask=None, training=False):
        return self._forward(x, mask, training)[0]

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2], int(self.units or input_shape[-1]))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_sizes": list(self.kernel_sizes),
                "units": self.units,
                "reduction": self.reduction,
                "min_width": self.min_width,
                "attention_reduction": self.attention_reduction,
                "num_loops": self.num_loops,
                "map_layout": self.map_layout,
                "bn_momentum": self.bn_momentum,
            }
        )
        return config
