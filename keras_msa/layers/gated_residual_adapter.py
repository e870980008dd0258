"""Gated Multi-modal Residual Adapter (GMRA) of CrossSent (seed 001, Sec. 3.2)."""

import math

import keras
from keras import ops

from keras_msa.utils.masks import attention_mask
from keras_msa.utils.masks import masked_softmax
from keras_msa.utils.masks import zero_masked


@keras.saving.register_keras_serializable(package="keras_msa")
class GatedResidualAdapter(keras.layers.Layer):
    """Injects audio and vision cues into text hidden states (CrossSent GMRA).

    Implements seed 001, Sec. 3.2 (equations numbered in the order they are
    displayed; the text dump drops the numbers):

    * Eq. 1: ``H_A = X_A W_A``, ``H_V = X_V W_V`` project audio and vision to
      the text width ``d``. ``H_T`` is the text hidden state itself (inside a
      backbone it already has width ``d``).
    * Eq. 2: ``Q = H_T W_Q``, ``K = [H_A; H_V] W_K``, ``V = [H_A; H_V] W_V``:
      audio and vision are concatenated on the time axis (with their masks).
    * Eqs. 3-4: ``H_cross = Concat(head_1..head_h) W_O`` with
      ``head_i = softmax(Q_i K_i^T / sqrt(d/h)) V_i``.
    * Eq. 5: ``g = sigmoid([H_T; H_cross] W_g + b_g)``, a token-wise,
      element-wise gate in ``[0, 1]^{L x d}``.
    * Eq. 6: ``H_fusion = H_T + g * H_cross``.
    * Bottleneck adapter (Table 3: width 48, LayerScale 1e-4):
      ``H_out = H_fusion + gamma * (GELU(H_fusion W_down + b_down) W_up + b_up)``
      with ``gamma`` a per-channel LayerScale vector initialised to
      ``layer_scale_init``. The paper names the adapter but not its inside;
      this is the standard residual bottleneck (exact erf GELU).

    The projections of Eqs. 1-4 have no bias, as the equations write them.
    Dropout (``dropout``, Table 3: 0.2) acts on the attention weights and on
    the adapter branch during training.

    Masking: audio and vision steps whose mask is False are removed from the
    keys (the masked softmax gives them weight 0). A sample with no valid
    audio or vision step at all gets ``H_cross = 0`` (all-zero attention row,
    no output bias), hence ``H_fusion = H_T`` before the adapter: a missing
    modality injects nothing and never gives NaN. Audio, vision and text
    steps under their masks are set to zero (by selection, before the
    projections) first, so values there, inf and NaN included, reach neither
    the outputs nor the gradients. Text padding positions are then computed
    like any token from those zeros (each output position depends only on its
    own query), so they never influence the real tokens; the backbone masks
    them.

    Args:
        num_heads: attention heads ``h`` (Table 3: 8); must divide ``d``.
        dropout: dropout of the attention weights and the adapter branch.
        adapter_dim: bottleneck width of the adapter (Table 3: 48).
        layer_scale_init: initial LayerScale value (Table 3: 1e-4).
        use_adapter: apply the bottleneck adapter after the gated fusion.
        kernel_initializer: initializer of every projection.
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        text: ``[B, L, d]`` text hidden states ``H_T``.
        audio: ``[B, T_a, D_a]``; vision: ``[B, T_v, D_v]``.
        text_mask, audio_mask, vision_mask: boolean ``[B, T]`` (True = real).
        training: enables dropout.
        return_attention: also return ``{"gate": g, "attention": [B, h, L,
            T_a + T_v]}``.

    Example:

    >>> import numpy as np
    >>> gmra = GatedResidualAdapter(num_heads=2, adapter_dim=4)
    >>> out = gmra(np.ones((2, 5, 8), "float32"), np.ones((2, 5, 3), "float32"),
    ...            np.ones((2, 5, 6), "float32"))
    >>> tuple(out.shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        num_heads=8,
        dropout=0.2,
        adapter_dim=48,
        layer_scale_init=1e-4,
        use_adapter=True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.dropout = dropout
        self.adapter_dim = adapter_dim
        self.layer_scale_init = layer_scale_init
        self.use_adapter = use_adapter
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _dense(self, units, name, use_bias=False):
        return keras.layers.Dense(
            units,
            use_bias=use_bias,
            kernel_initializer=keras.initializers.get(
                keras.initializers.serialize(self.kernel_initializer)
            ),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, text_shape, audio_shape, vision_shape):
        d = text_shape[-1]
        if d is None:
            raise ValueError("GatedResidualAdapter: the text width (last axis) must be known.")
        if d % self.num_heads:
            raise ValueError(
                f"GatedResidualAdapter: the text width {d} is not divisible by "
                f"num_heads={self.num_heads}."
            )
        for name, shape in (("audio", audio_shape), ("vision", vision_shape)):
            if len(shape) != 3 or shape[-1] is None:
                raise ValueError(
                    f"GatedResidualAdapter: '{name}' must be [batch, time, dim] with a "
                    f"known dim; got shape {tuple(shape)}."
                )
        self.hidden_dim = d
        self.head_dim = d // self.num_heads
        self.audio_proj = self._dense(d, "audio_proj")
        self.audio_proj.build(audio_shape)
        self.vision_proj = self._dense(d, "vision_proj")
        self.vision_proj.build(vision_shape)
        self.query_dense = self._dense(d, "query")
        self.key_dense = self._dense(d, "key")
        self.value_dense = self._dense(d, "value")
        self.output_dense = self._dense(d, "attention_output")
        for layer in (self.query_dense, self.key_dense, self.value_dense, self.output_dense):
            layer.build((None, None, d))
        self.gate_dense = self._dense(d, "gate", use_bias=True)
        self.gate_dense.build((None, None, 2 * d))
        self.attention_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        if self.use_adapter:
            self.adapter_down = self._dense(self.adapter_dim, "adapter_down", use_bias=True)
            self.adapter_down.build((None, None, d))
            self.adapter_up = self._dense(d, "adapter_up", use_bias=True)
            self.adapter_up.build((None, None, self.adapter_dim))
            self.adapter_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
            self.layer_scale = self.add_weight(
                name="layer_scale",
                shape=(d,),
                initializer=keras.initializers.Constant(self.layer_scale_init),
                trainable=True,
            )
        self.built = True

    def _split_heads(self, x):
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (b, t, self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))  # [B, h, T, d_k]

    def call(
        self,
        text,
        audio,
        vision,
        text_mask=None,
        audio_mask=None,
        vision_mask=None,
        training=None,
        return_attention=False,
    ):
        h_t = ops.convert_to_tensor(text, dtype=self.compute_dtype)
        audio = ops.convert_to_tensor(audio, dtype=self.compute_dtype)
        vision = ops.convert_to_tensor(vision, dtype=self.compute_dtype)
        b = ops.shape(h_t)[0]
        if audio_mask is None:
            audio_mask = ops.ones(ops.shape(audio)[:2], dtype="bool")
        if vision_mask is None:
            vision_mask = ops.ones(ops.shape(vision)[:2], dtype="bool")
        # Zero padding before Eq. 1: a zero attention weight on a projected
        # inf is still NaN (0 * inf), forward and backward.
        audio = zero_masked(audio, audio_mask)
        vision = zero_masked(vision, vision_mask)
        h_t = zero_masked(h_t, text_mask)
        h_av = ops.concatenate([self.audio_proj(audio), self.vision_proj(vision)], axis=1)
        av_mask = ops.concatenate(
            [ops.cast(audio_mask, "bool"), ops.cast(vision_mask, "bool")], axis=1
        )

        q = self._split_heads(self.query_dense(h_t))
        k = self._split_heads(self.key_dense(h_av))
        v = self._split_heads(self.value_dense(h_av))
        # Scores and softmax in float32: under mixed precision the -1e9 fill of
        # the masked softmax and the sum of many small weights need it.
        scores = ops.einsum(
            "bhqd,bhkd->bhqk", ops.cast(q, "float32"), ops.cast(k, "float32")
        ) / math.sqrt(self.head_dim)
        mask = attention_mask(text_mask, av_mask)[:, None, :, :]
        mask = ops.broadcast_to(mask, ops.shape(scores))
        weights = masked_softmax(scores, mask, axis=-1)
        dropped = self.attention_dropout(weights, training=training)
        context = ops.einsum("bhqk,bhkd->bhqd", ops.cast(dropped, self.compute_dtype), v)
        context = ops.reshape(
            ops.transpose(context, (0, 2, 1, 3)), (b, ops.shape(h_t)[1], self.hidden_dim)
        )
        h_cross = self.output_dense(context)

        gate = ops.sigmoid(self.gate_dense(ops.concatenate([h_t, h_cross], axis=-1)))
        fused = h_t + gate * h_cross
        if self.use_adapter:
            branch = self.adapter_up(ops.gelu(self.adapter_down(fused), approximate=False))
            branch = self.adapter_dropout(branch, training=training)
            fused = fused + ops.cast(self.layer_scale, self.compute_dtype) * branch
        if return_attention:
            return fused, {"gate": gate, "attention": weights}
        return fused

    def compute_output_shape(self, text_shape, audio_shape=None, vision_shape=None):
        return tuple(text_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "adapter_dim": self.adapter_dim,
                "layer_scale_init": self.layer_scale_init,
                "use_adapter": self.use_adapter,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
