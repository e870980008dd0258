"""The Multimodal Adaptation Gate of MAG-BERT (Rahman et al., ACL 2020)."""

import keras
from keras import layers
from keras import ops


def _safe_norm(x):
    """L2 norm over the last axis (in float32: a float16 sum of 768 squares
    overflows), and a flag of where it is non-zero. sqrt at 0 has an
    infinite derivative (0 * inf = NaN in the backward pass), so zero rows
    take sqrt(1) and are flagged instead."""
    sq = ops.sum(ops.square(ops.cast(x, "float32")), axis=-1)
    nonzero = sq > 0
    return ops.sqrt(ops.where(nonzero, sq, ops.ones_like(sq))), nonzero


@keras.saving.register_keras_serializable(package="keras_msa")
class MultimodalAdaptationGate(keras.layers.Layer):
    """Multimodal Adaptation Gate (MAG; Rahman et al., "Integrating
    Multimodal Information in Large Pretrained Transformers", ACL 2020,
    Sec. 3.1): shifts each word's hidden state Z_i by a displacement built
    from the word-aligned audio A_i and vision V_i.

        g_v = ReLU(W_gv [V_i; Z_i] + b_v)                      (Eq. 1)
        g_a = ReLU(W_ga [A_i; Z_i] + b_a)
        H_i = g_v * (W_v V_i + b_V) + g_a * (W_a A_i + b_A)    (Eq. 2)
        alpha_i = min(||Z_i|| / ||H_i|| * beta, 1)             (Eq. 4)
        M_i = alpha_i * H_i                                    (Eq. 3)
        Zbar_i = Dropout(LayerNorm(Z_i + M_i))                 (Eq. 5)

    As MMSA's `MAG`: ||H_i|| = 0 is read as 1 (alpha then multiplies a zero
    H_i), and `epsilon` is added to ||H_i||. The LayerNorm uses PyTorch's
    epsilon 1e-5.

    Audio and vision must be aligned to the text: step i of each is word i
    (`[B, T, D]` with the text's T); other lengths raise a ValueError.

    Masks: a False `audio_mask` / `vision_mask` step contributes nothing
    (its term of H_i is 0, selected with `ops.where`, so inf/NaN under the
    mask never reach the arithmetic); a word with neither modality keeps
    Zbar_i = Dropout(LayerNorm(Z_i)). MMSA has no masks: its padded features
    are zeros, whose terms are the biases; the two agree wherever the masks
    are True (aligned data: every real word). Text padding is not read here
    (the transformer's attention mask drops padded words).

    Args:
        beta_shift: beta of Eq. 4 (MMSA: 1).
        dropout: dropout of Eq. 5 (MMSA's `dropout_prob`).
        epsilon: added to ||H_i|| (MMSA: 1e-6).
        layer_norm_epsilon: epsilon of the LayerNorm (PyTorch's 1e-5).
        **kwargs: `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> gate = MultimodalAdaptationGate(beta_shift=1.0, dropout=0.0)
    >>> z = np.random.rand(2, 5, 8).astype("float32")
    >>> a = np.random.rand(2, 5, 3).astype("float32")
    >>> v = np.random.rand(2, 5, 4).astype("float32")
    >>> tuple(gate(z, a, v).shape)
    (2, 5, 8)
    """

    def __init__(self, beta_shift=1.0, dropout=0.5, epsilon=1e-6, layer_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.beta_shift = float(beta_shift)
        self.dropout = float(dropout)
        self.epsilon = float(epsilon)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.layer_norm = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="layer_norm")
        self.dropout_layer = layers.Dropout(dropout)

    def build(self, text_shape, audio_shape=None, vision_shape=None):
        if audio_shape is None or vision_shape is None:
            raise ValueError("MultimodalAdaptationGate.build takes (text_shape, audio_shape, vision_shape).")
        d = int(text_shape[-1])
        # Every map goes to the text width d, known only here.
        self.gate_vision = layers.Dense(d, name="gate_vision")
        self.gate_audio = layers.Dense(d, name="gate_audio")
        self.proj_vision = layers.Dense(d, name="proj_vision")
        self.proj_audio = layers.Dense(d, name="proj_audio")
        # Eq. 1 reads [V_i; Z_i] and [A_i; Z_i] (MMSA's concatenation order).
        self.gate_vision.build((None, None, int(vision_shape[-1]) + d))
        self.gate_audio.build((None, None, int(audio_shape[-1]) + d))
        self.proj_vision.build((None, None, int(vision_shape[-1])))
        self.proj_audio.build((None, None, int(audio_shape[-1])))
        self.layer_norm.build((None, None, d))
        self.built = True

    def _term(self, x, z, mask, gate, proj):
        if mask is not None:
            mask = ops.cast(mask, "bool")[..., None]
            x = ops.where(mask, x, ops.zeros_like(x))
        x = ops.cast(x, z.dtype)
        term = ops.relu(gate(ops.concatenate([x, z], axis=-1))) * proj(x)
        if mask is not None:
            term = ops.where(mask, term, ops.zeros_like(term))
        return term

    def call(self, text, audio, vision, audio_mask=None, vision_mask=None, training=None):
        for name, x in (("audio", audio), ("vision", vision)):
            if x.shape[1] is not None and text.shape[1] is not None and x.shape[1] != text.shape[1]:
                raise ValueError(
                    f"MultimodalAdaptationGate needs word-aligned {name}: {x.shape[1]} steps for "
                    f"{text.shape[1]} text tokens. MAG-BERT (and MMSA's BERT_MAG, need_data_aligned) "
                    f"reads step i as word i: align the features to the tokens first."
                )
        z = text
        h = self._term(vision, z, vision_mask, self.gate_vision, self.proj_vision) + self._term(
            audio, z, audio_mask, self.gate_audio, self.proj_audio
        )
        z_norm, _ = _safe_norm(z)
        h_norm, nonzero = _safe_norm(h)
        h_norm = ops.where(nonzero, h_norm, ops.ones_like(h_norm))
        alpha = ops.minimum(z_norm / (h_norm + self.epsilon) * self.beta_shift, 1.0)
        fused = self.layer_norm(z + ops.cast(alpha[..., None], z.dtype) * h)
        return self.dropout_layer(fused, training=training)

    def compute_output_shape(self, text_shape, audio_shape=None, vision_shape=None):
        return tuple(text_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_shift": self.beta_shift,
                "dropout": self.dropout,
                "epsilon": self.epsilon,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
