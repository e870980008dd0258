import keras
from keras import ops

from keras_msa.utils.masks import masked_mean
from keras_msa.utils.masks import zero_masked

_GATES = ("relu", "sigmoid")


@keras.saving.register_keras_serializable(package="keras_msa")
class SEChannelAttention(keras.layers.Layer):
    """Squeeze-and-excitation channel attention for any channels-last tensor.

    Implements seed 003 (M³SA) Eqs. 4-6, the channel attention it applies to
    the stack of multi-scale features `[B, T, d, n]` (n channels):

    * Squeeze (Eq. 4): `z_k = mean over every non-batch, non-channel axis of
      x[..., k]`, i.e. the mean over `(T, d)` for the M³SA stack.
    * Excitation (Eq. 5): `s = gate(W2 relu(W1 z + b1) + b2)` with
      `W1: n -> n*r` and `W2: n*r -> n`. As the paper writes it, the hidden
      layer is `n * r` wide (r *expands*, unlike SENet's `n / r`) and the gate
      is a ReLU (`gate="relu"`).

    The default gate is SENet's sigmoid, not the paper's ReLU, because the
    ReLU gate starts dead: at initialisation (zero biases) the squeeze `z`
    of M³SA's stack is close to 0, so `W2 relu(W1 z)` is a small number of
    either sign and `relu` of it sets about half of the scale weights
    exactly to 0 (45% measured over M³SA's three extractors, 5 seeds; with
    them the gradient of the `W2` rows and `b2` entries behind them), so
    those scales start switched off and get no gradient to come back. The
    sigmoid gate starts at ~0.5 for every channel, is never exactly 0, and
    passes a gradient to every excitation weight. `gate="relu"` keeps Eq. 5
    as printed.
    * Scale (Eq. 6): `y[..., k] = s_k * x[..., k]`.

    Masking: an optional boolean `mask` `[B, T]` (True = real step) marks the
    real steps of axis 1; padded steps are set to zero (by selection, so
    inf/NaN there cannot become NaN) before the squeeze, which averages over
    real steps only: values of padded steps change nothing, and the output is
    zero there. The output carries no Keras mask (pass the mask on
    explicitly, as `MultiScaleFeatureExtractor` does). An all-False row
    squeezes to zeros and gives the finite excitation `gate(W2 relu(b1) + b2)`.

    Args:
        ratio: the channel transformation ratio r of Eq. 5 (paper's best 4);
            the hidden width is `channels * ratio`.
        gate: `"sigmoid"` (SENet, default: it cannot start or stay dead) or
            `"relu"` (Eq. 5 as printed).
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float tensor `[B, T, ..., C]` of rank >= 3.
        mask: optional boolean `[B, T]`.
        return_weights: also return the channel weights `s` `[B, C]`.

    Example:

    >>> import numpy as np
    >>> x = np.ones((2, 6, 8, 5), "float32")
    >>> SEChannelAttention(ratio=4)(x, mask=np.ones((2, 6), bool)).shape
    (2, 6, 8, 5)
    """

    def __init__(self, ratio=4, gate="sigmoid", **kwargs):
        super().__init__(**kwargs)
        if int(ratio) < 1:
            raise ValueError(f"SEChannelAttention: ratio must be >= 1; got {ratio}.")
        if gate not in _GATES:
            raise ValueError(f"SEChannelAttention: gate must be one of {_GATES}; got {gate!r}.")
        self.ratio = int(ratio)
        self.gate = gate
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                "SEChannelAttention expects a channels-last tensor of rank >= 3 "
                f"[batch, time, ..., channels]; got shape {tuple(input_shape)}."
            )
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"SEChannelAttention needs a known channel count; got shape {tuple(input_shape)}."
            )
        self.channels = int(channels)
        self.excite = keras.layers.Dense(
            self.channels * self.ratio, activation="relu", dtype=self.dtype_policy, name="excite"
        )
        self.excite.build((None, self.channels))
        self.restore = keras.layers.Dense(
            self.channels, activation=self.gate, dtype=self.dtype_policy, name="restore"
        )
        self.restore.build((None, self.channels * self.ratio))

    def squeeze(self, inputs, mask=None):
        """Eq. 4: the per-channel mean `[B, C]` over real steps, in float32."""
        x = ops.cast(inputs, "float32")
        spatial = tuple(range(2, len(x.shape) - 1))
        if spatial:
            # Every step holds the same number of spatial cells, so the mean
            # over (T, d) is the masked mean over T of the mean over d.
            x = ops.mean(x, axis=spatial)
        return masked_mean(x, mask, axis=1)

    def call(self, inputs, mask=None, return_weights=False):
        if inputs.shape[-1] is not None and inputs.shape[-1] != self.channels:
            raise ValueError(
                f"SEChannelAttention was built for {self.channels} channels; got input "
                f"shape {tuple(inputs.shape)}."
            )
        if mask is not None:
            inputs = zero_masked(inputs, mask)
        z = ops.cast(self.squeeze(inputs, mask), self.compute_dtype)
        s = self.restore(self.excite(z))
        shape = [-1] + [1] * (len(inputs.shape) - 2) + [self.channels]
        out = inputs * ops.cast(ops.reshape(s, shape), inputs.dtype)
        if return_weights:
            return out, s
        return out

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"ratio": self.ratio, "gate": self.gate})
        return config
