import keras
from keras import layers
from keras import ops

from keras_msa.layers.cross_modal_transformer import CrossModalTransformer
from keras_msa.models.base import MODALITIES
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import register_model
from keras_msa.utils.masks import last_valid_step


def valid_conv_mask(mask, kernel_size):
    """Mask of a 'valid' Conv1D's outputs: step t is real when every input
    step t..t+k-1 it reads is real, so no padded input reaches a real output."""
    if kernel_size == 1:
        return mask
    # Constant slice bounds (negative ends) keep the time axis free to be unknown.
    window = [mask[:, s:s - kernel_size + 1] if s < kernel_size - 1 else mask[:, s:] for s in range(kernel_size)]
    return ops.all(ops.stack(window, axis=-1), axis=-1)


def pad_to_kernel(x, mask, kernel_size):
    """`x` `[B, T, D]` and `mask` `[B, T]` right-padded (zeros, mask False)
    to at least `kernel_size` steps, so that a 'valid' Conv1D has an output
    step to give (masked: it reads padding). A modality stored shorter than
    the kernel, e.g. a missing one kept as 1 masked step, then reads as
    missing instead of failing; longer inputs are returned as they are."""
    steps = x.shape[1]
    if kernel_size == 1 or (steps is not None and steps >= kernel_size):
        return x, mask
    extra = kernel_size - steps if steps is not None else ops.maximum(kernel_size - ops.shape(x)[1], 0)
    x = ops.pad(x, [[0, 0], [0, extra], [0, 0]])
    mask = ops.pad(ops.cast(mask, "bool"), [[0, 0], [0, extra]], constant_values=False)
    return x, mask


def _per_modality(value, what):
    if isinstance(value, dict):
        unknown = set(value) - set(MODALITIES)
        missing = set(MODALITIES) - set(value)
        if unknown or missing:
            raise ValueError(f"MulT: {what} must name exactly {list(MODALITIES)}; got {sorted(value)}.")
        return {m: value[m] for m in MODALITIES}
    return {m: value for m in MODALITIES}


@register_model("mult")
@keras.saving.register_keras_serializable(package="keras_msa")
class MulT(MSAModel):
    """Multimodal Transformer (MulT; Tsai et al., ACL 2019), as MMSA builds it.

    1. Temporal convolution (Sec. 3.2): each modality m is projected to width
       d by a bias-free 'valid' Conv1D of kernel k_m,
       Xhat_m = Conv1D(X_m, k_m) (skipped when m's width already is d, as in
       MMSA). Text gets `text_dropout` first.
    2. Cross-modal transformers (Eqs. 1-4, `CrossModalTransformer`): for each
       target beta and each other modality alpha, Z_{alpha->beta} is the
       target stream after D = `num_layers` layers of attention to alpha.
    3. Memory (Sec. 3.3): Z_beta = [Z_{alpha1->beta}; Z_{alpha2->beta}] goes
       through a self-attention transformer of `memory_layers` layers
       (width 2d) and its state at the last real step is h_beta.
    4. Head: h = [h_text; h_audio; h_vision] (width 6d), then a residual
       block y = W_out (W_2 Dropout(ReLU(W_1 h + b_1)) + b_2 + h) + b_out.

    MMSA's settings, kept here: no positional embeddings
    (`positional_embedding=False`; the paper and its authors' code add
    sinusoidal ones: turn it on), the shifted causal attention pattern
    (`causal=True`, MMSA's `attn_mask`), cross-modal attention dropout taken
    from the *source* modality (`attention_dropout[alpha]`) and the text
    value for every memory transformer, LayerNorm epsilon 1e-5, and the L1
    task loss. With those, `keras_msa.convert.mmsa_mult` loads an MMSA
    state dict and the outputs agree to 1e-4 (tests/models/test_mult_parity.py).

    Masks, where MMSA has none: MMSA reads every padded step as real (its
    unaligned features are padded to fixed lengths, and h_beta is the state at
    the last, padded, step). Here padded steps are masked: a Conv1D output
    touching a padded input is padded, padded keys get no attention weight,
    the causal offset counts real steps, and h_beta is taken at the last real
    step, so padding changes nothing. On unpadded inputs (all-True masks, or
    no masks) the two computations are the same, which is how parity is
    tested; on padded data MMSA's numbers include the padding and ours do not.

    Args:
        hidden_dim: d, the projected width of every modality (MMSA's
            `dst_feature_dim_nheads[0]`).
        num_heads: attention heads (`dst_feature_dim_nheads[1]`).
        num_layers: D, layers of each cross-modal transformer (`nlevels`).
        memory_layers: layers of each memory transformer (default
            max(num_layers, 3), as MMSA).
        conv_kernel_sizes: dict modality -> Conv1D kernel (or one int).
        attention_dropout: dict modality -> attention dropout of the
            cross-modal transformers reading that modality (MMSA's
            `attn_dropout`, `attn_dropout_a`, `attn_dropout_v`); the memory
            transformers use the text value.
        relu_dropout, residual_dropout, embed_dropout: of the transformers.
        output_dropout: in the head's residual block.
        text_dropout: on the text features before the Conv1D.
        causal: the shifted causal attention pattern (MMSA's `attn_mask`).
        positional_embedding: add sinusoidal position codes (off in MMSA).
        targets: the target modalities whose branches are kept (ablation: the
            paper's "[V,A -> L]" is `targets=("text",)`).
        task_loss: "mae" (MMSA's L1 loss), "mse" or "huber".
        **kwargs: `MSAModel` arguments.

    Example:

    >>> import numpy as np
    >>> model = MulT(hidden_dim=8, num_heads=2, num_layers=1,
    ...              conv_kernel_sizes={"text": 3, "audio": 1, "vision": 1})
    >>> batch = {"text": np.zeros((2, 7, 16), "float32"),
    ...          "audio": np.zeros((2, 9, 5), "float32"),
    ...          "vision": np.zeros((2, 6, 20), "float32")}
    >>> model(batch)["sentiment"].shape
    (2, 1)
    """

    #: MMSA 2.2.1 `config/config_regression.json`, `mult.datasetParams`.
    presets = {
        "mosi": {"hidden_dim": 50, "num_heads": 10, "num_layers": 4,
                 "conv_kernel_sizes": {"text": 5, "audio": 5, "vision": 5},
                 "attention_dropout": {"text": 0.3, "audio": 0.2, "vision": 0.0},
                 "relu_dropout": 0.0, "residual_dropout": 0.0, "embed_dropout": 0.2,
                 "output_dropout": 0.5, "text_dropout": 0.5, "causal": True},
        "mosei": {"hidden_dim": 30, "num_heads": 6, "num_layers": 4,
                  "conv_kernel_sizes": {"text": 5, "audio": 1, "vision": 3},
                  "attention_dropout": {"text": 0.4, "audio": 0.0, "vision": 0.0},
                  "relu_dropout": 0.0, "residual_dropout": 0.0, "embed_dropout": 0.0,
                  "output_dropout": 0.5, "text_dropout": 0.3, "causal": True},
        "sims": {"hidden_dim": 50, "num_heads": 10, "num_layers": 2,
                 "conv_kernel_sizes": {"text": 5, "audio": 1, "vision": 1},
                 "attention_dropout": {"text": 0.2, "audio": 0.1, "vision": 0.0},
                 "relu_dropout": 0.0, "residual_dropout": 0.2, "embed_dropout": 0.1,
                 "output_dropout": 0.1, "text_dropout": 0.3, "causal": True},
    }
    #: MMSA's training protocol for MulT (`trains/singleTask/MULT.py` with the
    #: config above), as plain data. MMSA: Adam (no weight decay: the config's
    #: `weight_decay` is not passed to MulT's optimizer), L1 loss, gradients
    #: accumulated over `update_epochs` = 8 batches (summed; Keras's
    #: `gradient_accumulation_steps` averages them), each accumulated gradient
    #: clipped by value (`clip_grad_value_`, i.e. `clipvalue`, not `clipnorm`),
    #: `ReduceLROnPlateau(factor=0.1, patience=<dataset patience>)` on the
    #: validation loss, and early stopping after `early_stop` = 8 epochs
    #: without a better validation loss. Keys that are `recipes/train.py`
    #: flags (batch_size, learning_rate, patience, weight_decay) map onto them
    #: directly; the others are for the training-protocol system.
    training_presets = {
        "mosi": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 16, "learning_rate": 2e-3, "clipvalue": 0.6, "gradient_accumulation_steps": 8, "patience": 8, "monitor": "loss"},
                 "our choice": {"epochs": 100},
                 "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling",
                           "learning_rate": "MMSA also multiplies it by 0.1 after 5 epochs without a better validation loss (ReduceLROnPlateau); not applied here",
                           "gradient_accumulation_steps": "MMSA sums 8 batches' gradients; Keras averages them (the same update up to the step size, which Adam normalises)"}},
        "mosei": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 4, "learning_rate": 5e-4, "clipvalue": 0.6, "gradient_accumulation_steps": 8, "patience": 8, "monitor": "loss"},
                 "our choice": {"epochs": 100},
                 "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling",
                           "learning_rate": "MMSA also multiplies it by 0.1 after 20 epochs without a better validation loss (ReduceLROnPlateau); not applied here",
                           "gradient_accumulation_steps": "MMSA sums 8 batches' gradients; Keras averages them (the same update up to the step size, which Adam normalises)"}},
        "sims": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 16, "learning_rate": 2e-3, "clipvalue": 0.6, "gradient_accumulation_steps": 8, "patience": 8, "monitor": "loss"},
                 "our choice": {"epochs": 100},
                 "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling",
                           "learning_rate": "MMSA also multiplies it by 0.1 after 10 epochs without a better validation loss (ReduceLROnPlateau); not applied here",
                           "gradient_accumulation_steps": "MMSA sums 8 batches' gradients; Keras averages them (the same update up to the step size, which Adam normalises)"}},
    }

    def __init__(
        self,
        hidden_dim=50,
        num_heads=10,
        num_layers=4,
        memory_layers=None,
        conv_kernel_sizes=5,
        attention_dropout=None,
        relu_dropout=0.0,
        residual_dropout=0.0,
        embed_dropout=0.2,
        output_dropout=0.5,
        text_dropout=0.5,
        causal=True,
        positional_embedding=False,
        targets=MODALITIES,
        task_loss="mae",
        **kwargs,
    ):
        super().__init__(task_loss=task_loss, **kwargs)
        if int(hidden_dim) % int(num_heads):
            raise ValueError(f"MulT: hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads}).")
        targets = tuple(targets)
        if not targets or set(targets) - set(MODALITIES) or len(set(targets)) != len(targets):
            raise ValueError(f"MulT: targets must be distinct names from {list(MODALITIES)}; got {list(targets)}.")
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.num_layers = int(num_layers)
        self.memory_layers = int(memory_layers) if memory_layers is not None else max(self.num_layers, 3)
        self.conv_kernel_sizes = {m: int(k) for m, k in _per_modality(conv_kernel_sizes, "conv_kernel_sizes").items()}
        if any(k < 1 for k in self.conv_kernel_sizes.values()):
            raise ValueError(f"MulT: conv kernel sizes must be >= 1; got {self.conv_kernel_sizes}.")
        self.attention_dropout = {m: float(v) for m, v in _per_modality(
            {"text": 0.3, "audio": 0.2, "vision": 0.0} if attention_dropout is None else attention_dropout,
            "attention_dropout").items()}
        self.relu_dropout = float(relu_dropout)
        self.residual_dropout = float(residual_dropout)
        self.embed_dropout = float(embed_dropout)
        self.output_dropout = float(output_dropout)
        self.text_dropout = float(text_dropout)
        self.causal = bool(causal)
        self.positional_embedding = bool(positional_embedding)
        self.targets = tuple(m for m in MODALITIES if m in targets)

        def transformer(num_layers, dropout, name):
            return CrossModalTransformer(
                num_layers=num_layers, num_heads=self.num_heads, attention_dropout=dropout,
                relu_dropout=self.relu_dropout, residual_dropout=self.residual_dropout,
                embed_dropout=self.embed_dropout, causal=self.causal,
                positional_embedding=self.positional_embedding, name=name)

        self.text_drop = layers.Dropout(self.text_dropout)
        self.projections = {
            m: layers.Conv1D(self.hidden_dim, self.conv_kernel_sizes[m], padding="valid", use_bias=False,
                             name=f"{m}_projection")
            for m in MODALITIES
        }
        self.crossmodal = {}
        self.memory = {}
        for target in self.targets:
            for source in MODALITIES:
                if source != target:
                    self.crossmodal[(target, source)] = transformer(
                        self.num_layers, self.attention_dropout[source], f"{target}_with_{source}")
            self.memory[target] = transformer(self.memory_layers, self.attention_dropout["text"],
                                              f"{target}_memory")
        width = 2 * self.hidden_dim * len(self.targets)
        self.head_in = layers.Dense(width, activation="relu", name="head_in")
        self.head_drop = layers.Dropout(self.output_dropout)
        self.head_out = layers.Dense(width, name="head_out")
        self.sentiment_head = layers.Dense(1, dtype="float32", name="sentiment_head")

    def build(self, input_shape):
        # Every weight is made from the input widths here (not lazily in the
        # first call), so that a reloaded `.keras` model has them all before
        # its weights are restored.
        if not isinstance(input_shape, dict):
            raise TypeError(f"MulT is built from a batch dict of shapes; got {input_shape!r}.")
        d = self.hidden_dim
        for m in MODALITIES:
            if m not in input_shape:
                raise KeyError(f"MulT needs '{m}' features [batch, time, dim]; the batch holds "
                               f"{sorted(input_shape)}.")
            dim = input_shape[m][-1]
            if dim is None:
                raise ValueError(f"MulT needs a known feature width for '{m}'; got shape {input_shape[m]}.")
            if dim != d:
                self.projections[m].build((None, None, dim))
        for layer in self.crossmodal.values():
            layer.build((None, None, d), (None, None, d))
        for layer in self.memory.values():
            layer.build((None, None, 2 * d))
        width = 2 * d * len(self.targets)
        self.head_in.build((None, width))
        self.head_out.build((None, width))
        self.sentiment_head.build((None, width))
        self.built = True

    def call(self, inputs, training=False):
        streams = {}
        for m in MODALITIES:
            x, mask = get_modality(inputs, m)
            if m == "text":
                x = self.text_drop(x, training=training)
            # As MMSA: a modality already at width d is used as it is.
            if x.shape[-1] != self.hidden_dim:
                x, mask = pad_to_kernel(x, mask, self.conv_kernel_sizes[m])
                x = self.projections[m](x)
                mask = valid_conv_mask(mask, self.conv_kernel_sizes[m])
            streams[m] = (x, mask)
        summaries = []
        for target in self.targets:
            x, mask = streams[target]
            crossed = [self.crossmodal[(target, source)](x, streams[source][0], query_mask=mask,
                                                          context_mask=streams[source][1], training=training)
                       for source in MODALITIES if source != target]
            h = self.memory[target](ops.concatenate(crossed, axis=-1), query_mask=mask, training=training)
            summaries.append(last_valid_step(h, mask))
        h = ops.concatenate(summaries, axis=-1)
        residual = self.head_out(self.head_drop(self.head_in(h), training=training))
        return {"sentiment": self.sentiment_head(residual + h)}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "num_layers": self.num_layers,
                "memory_layers": self.memory_layers,
                "conv_kernel_sizes": dict(self.conv_kernel_sizes),
                "attention_dropout": dict(self.attention_dropout),
                "relu_dropout": self.relu_dropout,
                "residual_dropout": self.residual_dropout,
                "embed_dropout": self.embed_dropout,
                "output_dropout": self.output_dropout,
                "text_dropout": self.text_dropout,
                "causal": self.causal,
                "positional_embedding": self.positional_embedding,
                "targets": list(self.targets),
            }
        )
        return config
