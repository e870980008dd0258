import keras
from keras import layers
from keras import ops

from keras_msa.utils.masks import attention_mask
from keras_msa.utils.masks import masked_rnn
from keras_msa.utils.masks import masked_softmax
from keras_msa.utils.masks import zero_masked as _zero_masked

RESIDUAL_VARIANTS = ("post_ln", "pre_ln", "residual", "none")


@keras.saving.register_keras_serializable(package="keras_msa")
class DirectedCrossModalGRU(keras.layers.Layer):
    """Directed cross-modal attention (source <- target) followed by a GRU stack.

    Implements the directed pairwise block of MulG (seed 002,
    `002_f80458cc9f1c9c6d.txt`):

    - Eq. 5, bilinear scores between every source step `t` and target step
      `t'`: `e[t, t'] = x_s[t]^T W x_t[t']` (`W` is `[d_source, d_target]`;
      unscaled, as the paper writes it).
    - Eq. 6, softmax over the target's real steps: `alpha = softmax_t'(e)`.
    - Eq. 7, the target aligned onto the source timeline:
      `x_hat[t] = sum_t' alpha[t, t'] x_t[t']`.
    - Eqs. 1-4, a stack of `num_layers` GRUs of width `hidden_dim` on the
      source timeline; the first reads `[x_s ; x_hat]`, the others read the
      previous layer's output. The candidate state resets `h_{t-1}` before
      its matrix product, exactly as Eq. 3 (`reset_after=False`). Keras
      writes Eq. 4 as `h = z h_{t-1} + (1 - z) h_tilde`, the paper as
      `(1 - z) h_{t-1} + z h_tilde`: the same family with `z` relabelled.

    A residual connection wraps each GRU sublayer `F_k` (the first one
    includes the attention), with the variants of seed 002 Fig. 5:

    - `"post_ln"`: `x_{k+1} = LN_k(x_k + F_k(x_k))`.
    - `"pre_ln"`: `x_{k+1} = x_k + F_k(LN_k(x_k))`, and a final LN on the
      output (without it the output scale grows with depth).
    - `"residual"` (ResiDual): a post-LN stream `a_{k+1} = LN_k(a_k + F_k(a_k))`
      and an un-normalised stream of the same updates
      `d_{k+1} = d_k + F_k(a_k)`, `a_0 = d_0 = x`; the output is
      `a_K + LN_d(d_K)`, so the gradient has both a normalised and an identity
      path.
    - `"none"`: `x_{k+1} = F_k(x_k)` (no residual, no normalisation).

    The residual variants need `d_source == hidden_dim` (the model projects
    every modality to `hidden_dim` first). Dropout `residual_dropout` acts on
    each `F_k` output, `attention_dropout` on the attention weights.

    Masks: `source_mask` `[B, T_s]` marks the source steps the GRUs read
    (padded steps carry the state unchanged) and whose outputs are kept
    (padded output steps are zero); `target_mask` `[B, T_t]` removes padded
    target steps from the softmax. A source row with no real step gives zeros;
    a target with no real step gives an all-zero attention row, so `x_hat` is
    zero and the source is read alone. Values under either mask (inf and NaN
    included) change nothing, in the outputs or the gradients.

    The GRUs run through `keras_msa.utils.masks.masked_rnn`: every row they
    see has at least one real step and is right-padded, so a missing source
    or a left-padded mask can never trip the cuDNN mask check on a GPU. With
    `reset_after=False` (Eq. 3, the default) Keras does not use cuDNN for a
    GRU at all (its cuDNN GRU is the `reset_after=True` variant, which resets
    `h_{t-1} U_h + b_h` after the product): these GRUs run Keras' generic
    TensorFlow loop on every device. `reset_after=True` trades Eq. 3's exact
    form for the cuDNN kernel on a GPU.

    Args:
        hidden_dim: GRU width `d` (MulG: 40).
        num_layers: GRU layers in the stack (MulG: 2).
        residual: `"post_ln"`, `"pre_ln"` (default), `"residual"` or `"none"`.
        use_attention: False drops Eqs. 5-7 (the paper's "no cross-modal
            attention" ablation): the GRUs read the source alone and the
            returned attention is None.
        attention_dropout: dropout on `alpha` (MulG "crossmodal attention
            block dropout").
        residual_dropout: dropout on each sublayer output before the residual
            sum.
        epsilon: LayerNormalization epsilon.
        reset_after: False (Eq. 3, default) or True (cuDNN-compatible GRU,
            see above).
        **kwargs: `keras.layers.Layer` arguments.

    Call args:
        source: `[B, T_s, d_source]`.
        target: `[B, T_t, d_target]` (ignored when `use_attention=False`).
        source_mask, target_mask: boolean masks, None = all real.
        training: dropout switch.

    Returns:
        `(sequences [B, T_s, hidden_dim], attention [B, T_s, T_t] float32)`.

    Example:

    >>> import numpy as np
    >>> block = DirectedCrossModalGRU(hidden_dim=8)
    >>> text = np.random.rand(2, 5, 8).astype("float32")
    >>> audio = np.random.rand(2, 7, 3).astype("float32")
    >>> seq, attn = block(text, audio, target_mask=np.ones((2, 7), bool))
    >>> tuple(seq.shape), tuple(attn.shape)
    ((2, 5, 8), (2, 5, 7))
    """

    def __init__(
        self,
        hidden_dim=40,
        num_layers=2,
        residual="pre_ln",
        use_attention=True,
        attention_dropout=0.1,
        residual_dropout=0.1,
        epsilon=1e-5,
        reset_after=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if residual not in RESIDUAL_VARIANTS:
            raise ValueError(
                f"Unknown residual variant '{residual}'; expected one of {RESIDUAL_VARIANTS}."
            )
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        self.hidden_dim = int(hidden_dim)
        self.num_layers = int(num_layers)
        self.residual = residual
        self.use_attention = bool(use_attention)
        self.attention_dropout = float(attention_dropout)
        self.residual_dropout = float(residual_dropout)
        self.epsilon = float(epsilon)
        self.reset_after = bool(reset_after)

    def build(self, source_shape, target_shape=None):
        d_source = source_shape[-1]
        if self.residual != "none" and d_source != self.hidden_dim:
            raise ValueError(
                f"DirectedCrossModalGRU with residual='{self.residual}' needs source "
                f"features of width hidden_dim={self.hidden_dim}; got source shape "
                f"{tuple(source_shape)}. Project the source first or use residual='none'."
            )
        in_dim = d_source
        if self.use_attention:
            if target_shape is None:
                raise ValueError("DirectedCrossModalGRU(use_attention=True) needs a target tensor.")
            d_target = target_shape[-1]
            self.bilinear = self.add_weight(
                name="bilinear",
                shape=(d_source, d_target),
                initializer="glorot_uniform",
            )
            self.attn_drop = layers.Dropout(self.attention_dropout, dtype=self.dtype_policy)
            in_dim = d_source + d_target
        self.grus = []
        for k in range(self.num_layers):
            gru = layers.GRU(
                self.hidden_dim,
                return_sequences=True,
                reset_after=self.reset_after,
                dtype=self.dtype_policy,
                name=f"gru_{k}",
            )
            gru.build((source_shape[0], source_shape[1], in_dim if k == 0 else self.hidden_dim))
            self.grus.append(gru)
        self.drops = [
            layers.Dropout(self.residual_dropout, dtype=self.dtype_policy)
            for _ in range(self.num_layers)
        ]
        self.norms = []
        if self.residual != "none":
            for k in range(self.num_layers):
                ln = layers.LayerNormalization(
                    epsilon=self.epsilon, dtype=self.dtype_policy, name=f"norm_{k}"
                )
                ln.build((None, None, self.hidden_dim))
                self.norms.append(ln)
        self.final_norm = None
        if self.residual in ("pre_ln", "residual"):
            self.final_norm = layers.LayerNormalization(
                epsilon=self.epsilon, dtype=self.dtype_policy, name="final_norm"
            )
            self.final_norm.build((None, None, self.hidden_dim))
        self.built = True

    def _attend(self, query, target, source_mask, target_mask, training):
        # Scores and softmax in float32: the exponentials overflow in float16.
        q = ops.cast(query, "float32")
        k = ops.cast(target, "float32")
        w = ops.cast(self.bilinear, "float32")
        scores = ops.einsum("bsi,ij,btj->bst", q, w, k)
        mask = attention_mask(source_mask, target_mask)
        alpha = masked_softmax(scores, mask)
        dropped = self.attn_drop(alpha, training=training)
        aligned = ops.einsum("bst,btj->bsj", ops.cast(dropped, self.compute_dtype), target)
        return aligned, alpha

    def _sublayer(self, k, x, target, source_mask, target_mask, training):
        """F_k: (attention for k = 0) + GRU k, output zero at padded steps."""
        attention = None
        inp = x
        if k == 0 and self.use_attention:
            aligned, attention = self._attend(x, target, source_mask, target_mask, training)
            inp = ops.concatenate([x, aligned], axis=-1)
        h = masked_rnn(self.grus[k], inp, source_mask, training=training)
        h = self.drops[k](h, training=training)
        return _zero_masked(h, source_mask), attention

    def call(self, source, target=None, source_mask=None, target_mask=None, training=None):
        if source_mask is not None:
            source_mask = ops.cast(source_mask, "bool")
        if target_mask is not None:
            target_mask = ops.cast(target_mask, "bool")
        x = _zero_masked(ops.cast(source, self.compute_dtype), source_mask)
        if self.use_attention:
            if target is None:
                raise ValueError("DirectedCrossModalGRU(use_attention=True) needs a target tensor.")
            target = _zero_masked(ops.cast(target, self.compute_dtype), target_mask)
        attention = None

        def sub(k, inp):
            nonlocal attention
            out, att = self._sublayer(k, inp, target, source_mask, target_mask, training)
            if att is not None:
                attention = att
            return out

        if self.residual == "none":
            for k in range(self.num_layers):
                x = sub(k, x)
        elif self.residual == "post_ln":
            for k in range(self.num_layers):
                x = self.norms[k](x + sub(k, x))
        elif self.residual == "pre_ln":
            for k in range(self.num_layers):
                x = x + sub(k, self.norms[k](x))
            x = self.final_norm(x)
        else:  # ResiDual
            a, d = x, x
            for k in range(self.num_layers):
                f = sub(k, a)
                a = self.norms[k](a + f)
                d = d + f
            x = a + self.final_norm(d)
        # LayerNorm maps the zero rows of padded steps to its bias: clear them.
        x = _zero_masked(x, source_mask)
        return x, attention

    def compute_output_shape(self, source_shape, target_shape=None):
        seq = (source_shape[0], source_shape[1], self.hidden_dim)
        if not self.use_attention:
            return seq, None
        return seq, (source_shape[0], source_shape[1], target_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "residual": self.residual,
                "use_attention": self.use_attention,
                "attention_dropout": self.attention_dropout,
                "residual_dropout": self.residual_dropout,
                "epsilon": self.epsilon,
                "reset_after": self.reset_after,
            }
        )
        return config
