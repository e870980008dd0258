import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_msa")
class SinusoidalPositionalEmbedding(keras.layers.Layer):
    """Fixed sinusoidal position codes, in the layout MulT's code uses.

    For a real step at (0-based) index t the position is p = t + 1 (position
    0 is reserved for padding and its code is all zeros). With h = D // 2
    and frequencies w_i = exp(-i log(10000) / (h - 1)), i = 0..h-1:

        PE(p) = [sin(p w_0), ..., sin(p w_{h-1}), cos(p w_0), ..., cos(p w_{h-1})]

    (sines then cosines, not interleaved; a zero column is appended when D is
    odd). This is the tensor2tensor variant that fairseq, the MulT authors'
    code and MMSA's `SinusoidalPositionalEmbedding` compute, slightly
    different from Sec. 3.5 of "Attention Is All You Need" (which
    interleaves and divides by h, not h - 1).

    Padding: a step is padding where `mask` is False; its code is zero and
    the positions of the real steps do not move (step t keeps p = t + 1). The
    reference code has no masks: it calls a step padding when the first
    feature of the input is exactly 0 (it reads the features as token ids);
    `padding_from_first_channel=True` reproduces that rule, for parity.

    Args:
        padding_from_first_channel: also treat steps whose first input
            feature is exactly 0 as padding (the reference's rule).
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float `[B, T, D]`; only its shape (and, with
            `padding_from_first_channel`, its first feature) is read.
        mask: optional boolean `[B, T]` (True = real step).

    Returns:
        float32 `[B, T, D]`: the codes, to be added to the inputs.

    Example:

    >>> import numpy as np
    >>> pe = SinusoidalPositionalEmbedding()
    >>> codes = pe(np.ones((1, 3, 8), "float32"))
    >>> tuple(codes.shape), float(codes[0, 0, 0]) == float(np.sin(1.0))
    ((1, 3, 8), True)
    """

    def __init__(self, padding_from_first_channel=False, **kwargs):
        super().__init__(**kwargs)
        self.padding_from_first_channel = bool(padding_from_first_channel)
        self.supports_masking = True

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None or dim < 4:
            # h - 1 is the divisor of the frequency exponent: D < 4 gives h = 1.
            raise ValueError(
                f"SinusoidalPositionalEmbedding needs a known feature width >= 4 (the frequencies divide "
                f"by D // 2 - 1); got input shape {tuple(input_shape)}."
            )
        self._dim = int(dim)
        self.built = True

    def call(self, inputs, mask=None):
        half = self._dim // 2
        steps = ops.shape(inputs)[1]
        rate = math.log(10000.0) / (half - 1)
        freqs = ops.exp(ops.arange(half, dtype="float32") * -rate)
        positions = ops.arange(1, steps + 1, dtype="float32")
        angles = positions[:, None] * freqs[None, :]
        parts = [ops.sin(angles), ops.cos(angles)]
        if self._dim % 2:
            parts.append(ops.zeros((steps, 1), "float32"))
        codes = ops.concatenate(parts, axis=-1)[None, :, :]
        real = ops.ones(ops.shape(inputs)[:2], "bool")
        if mask is not None:
            real = ops.cast(mask, "bool")
        if self.padding_from_first_channel:
            real = ops.logical_and(real, ops.not_equal(inputs[:, :, 0], 0))
        return ops.where(real[:, :, None], codes, ops.zeros_like(codes))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = super().get_config()
        config.update({"padding_from_first_channel": self.padding_from_first_channel})
        return config
