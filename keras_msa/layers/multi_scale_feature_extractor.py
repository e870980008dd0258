import keras
from keras import ops

from keras_msa.layers.cross_shaped_dynamic_scale_attention import TORCH_BN_MOMENTUM
from keras_msa.layers.cross_shaped_dynamic_scale_attention import masked_batch_norm
from keras_msa.layers.se_channel_attention import SEChannelAttention
from keras_msa.utils.masks import masked_rnn
from keras_msa.utils.masks import zero_masked


#: Eq. 2's `Norm` choices.
NORMS = ("layer", "batch", "none")


@keras.saving.register_keras_serializable(package="keras_msa")
class MultiScaleFeatureExtractor(keras.layers.Layer):
    """Multi-scale feature extraction with channel attention (M³SA).

    Implements seed 003 Eqs. 1-3 and 7 (with Eqs. 4-6 in `SEChannelAttention`):

    * Eq. 1: `F^1 = LSTM(U)` `[B, T, d]`.
    * Eq. 2: `F^{k+1} = Linear(Norm(ReLU(F^k)))`, k = 1..n-1. The paper
      does not name `Norm`; `norm` chooses it: `"layer"` (default, a
      per-step `LayerNormalization`), `"batch"` (a `BatchNormalization`
      whose batch statistics come from the real steps only, momentum 0.9 in
      Keras' convention = PyTorch's default 0.1) or `"none"` (the
      identity). A per-step LayerNorm divides each step by its own spread,
      so every scale after F¹ loses the step's magnitude; on the synthetic
      `multiscale` scenario that costs M3SA its multi-scale gain (README,
      "Each paper's claim"), which is why the other two exist.
    * Eq. 3: `F = stack(F^1..F^n)` `[B, T, d, n]` (n channels).
    * Eqs. 4-6: SE channel attention over the n channels (squeeze over the
      real steps only).
    * Eq. 7: a 1x1 convolution across the n channels gives `X` `[B, T, d]`.

    With `num_scales=1` there is a single scale and nothing to weigh: the
    layer returns `F^1` as `X` (the paper's "without multi-scale" ablation,
    seed 003 Fig. 7).

    Masking: boolean `mask` `[B, T]` (True = real step). Padded inputs are
    zeroed (by selection) before the LSTM, the LSTM skips padded steps, the
    squeeze ignores them, and both outputs are zero at padded steps, so
    padded input values (inf and NaN included) change nothing, in the outputs
    or the gradients. An all-False row gives zeros. The LSTM runs through
    `keras_msa.utils.masks.masked_rnn`, so its mask always suits cuDNN.

    Args:
        hidden_dim: d, the width of every scale.
        num_scales: n, the number of scales (LSTM + n-1 linear layers);
            paper's best 5.
        ratio: r, the SE channel transformation ratio (paper's best 4).
        gate: SE excitation gate, `"sigmoid"` (default, a gate that cannot
            start dead; see `SEChannelAttention`) or `"relu"` (Eq. 5).
        norm: Eq. 2's `Norm`: `"layer"`, `"batch"` or `"none"` (above).
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float `[B, T, D]`.
        mask: optional boolean `[B, T]`.

    Returns:
        `(X, F^n)`: the fused multi-scale features `[B, T, d]` (Eq. 7) and the
        last scale `[B, T, d]` that the unimodal heads read (Eqs. 8-10).

    Example:

    >>> import numpy as np
    >>> layer = MultiScaleFeatureExtractor(hidden_dim=8, num_scales=5, ratio=4)
    >>> x, last = layer(np.ones((2, 6, 3), "float32"), mask=np.ones((2, 6), bool))
    >>> x.shape, last.shape
    ((2, 6, 8), (2, 6, 8))
    """

    def __init__(self, hidden_dim=64, num_scales=5, ratio=4, gate="sigmoid", norm="layer", **kwargs):
        super().__init__(**kwargs)
        if int(num_scales) < 1:
            raise ValueError(f"MultiScaleFeatureExtractor: num_scales must be >= 1; got {num_scales}.")
        if norm not in NORMS:
            raise ValueError(f"MultiScaleFeatureExtractor: norm must be one of {NORMS}; got {norm!r}.")
        self.norm = norm
        self.hidden_dim = int(hidden_dim)
        self.num_scales = int(num_scales)
        self.ratio = int(ratio)
        self.gate = gate
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "MultiScaleFeatureExtractor expects [batch, time, features] with a known "
                f"feature width; got shape {tuple(input_shape)}."
            )
        d = self.hidden_dim
        self.lstm = keras.layers.LSTM(d, return_sequences=True, dtype=self.dtype_policy, name="lstm")
        self.lstm.build(tuple(input_shape))
        self.norms, self.linears = [], []
        for k in range(self.num_scales - 1):
            if self.norm == "layer":
                norm = keras.layers.LayerNormalization(dtype=self.dtype_policy, name=f"norm_{k + 1}")
                norm.build((None, None, d))
            elif self.norm == "batch":
                norm = keras.layers.BatchNormalization(
                    momentum=TORCH_BN_MOMENTUM, dtype=self.dtype_policy, name=f"norm_{k + 1}"
                )
                norm.build((None, None, d))
            else:
                norm = None
            linear = keras.layers.Dense(d, dtype=self.dtype_policy, name=f"linear_{k + 1}")
            linear.build((None, None, d))
            self.norms.append(norm)
            self.linears.append(linear)
        if self.num_scales > 1:
            self.channel_attention = SEChannelAttention(
                ratio=self.ratio, gate=self.gate, dtype=self.dtype_policy, name="channel_attention"
            )
            self.channel_attention.build((None, None, d, self.num_scales))
            self.merge = keras.layers.Conv2D(1, 1, dtype=self.dtype_policy, name="merge")
            self.merge.build((None, None, d, self.num_scales))

    def _scales(self, inputs, mask, training):
        """Eqs. 1-2: the n scale features, zeroed at padded steps."""
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        mask = ops.cast(mask, "bool")
        inputs = zero_masked(ops.cast(inputs, self.compute_dtype), mask)
        scale = masked_rnn(self.lstm, inputs, mask, training=training)
        scales = [scale]
        for norm, linear in zip(self.norms, self.linears):
            a = ops.relu(scale)
            if self.norm == "layer":
                a = norm(a)
            elif self.norm == "batch":
                a = masked_batch_norm(norm, a, mask, training=training)
            scale = zero_masked(linear(a), mask)
            scales.append(scale)
        return scales, mask

    def call(self, inputs, mask=None, training=False):
        scales, mask = self._scales(inputs, mask, training)
        if self.num_scales == 1:
            return scales[0], scales[0]
        stacked = ops.stack(scales, axis=-1)  # [B, T, d, n]
        weighted = self.channel_attention(stacked, mask=mask)
        x = zero_masked(ops.squeeze(self.merge(weighted), axis=-1), mask)
        return x, scales[-1]

    def compute_channel_weights(self, inputs, mask=None):
        """The SE weights `s` `[B, n]` of each scale (for analysis/plots)."""
        if self.num_scales == 1:
            raise ValueError("num_scales=1 has no channel attention.")
        scales, mask = self._scales(inputs, mask, False)
        _, s = self.channel_attention(ops.stack(scales, axis=-1), mask=mask, return_weights=True)
        return s

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0], input_shape[1], self.hidden_dim)
        return shape, shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_scales": self.num_scales,
                "ratio": self.ratio,
                "gate": self.gate,
                "norm": self.norm,
            }
        )
        return config
