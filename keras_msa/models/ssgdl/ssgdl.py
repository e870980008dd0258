import keras
from keras import layers
from keras import ops

from keras_msa.layers.cross_shaped_dynamic_scale_attention import CrossShapedDynamicScaleAttention
from keras_msa.layers.discrepancy_block import DiscrepancyBlock
from keras_msa.layers.masked_multi_head_attention import MaskedMultiHeadAttention
from keras_msa.losses.concordance_correlation_loss import concordance_correlation_loss
from keras_msa.models.base import MODALITIES
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import register_model
from keras_msa.models.text_backbone_mode import TextBackboneMode
from keras_msa.utils.masks import masked_mean
from keras_msa.utils.masks import masked_rnn

TASKS = ("sentiment", "phq8")

#: PHQ-8 totals lie in 0..24; the head is trained on PHQ-8 / 25 (docs/architectures.md).
PHQ8_SCALE = 25.0


@register_model("ssgdl")
@keras.saving.register_keras_serializable(package="keras_msa")
class SSGDL(TextBackboneMode, MSAModel):
    """SSGDL: Scale-Selectable Global and Discrepancy Learning network.

    Seed 000 (Scale-Selectable Global and Discrepancy Learning Network for
    multimodal sentiment analysis and depression detection), Fig. 2 and
    Sec. III-B; the details the seed leaves out (its text stops inside CS-DSA)
    follow docs/architectures.md (SSGDL). Pipeline:

    1. *Alignment*: t, a, v are projected to width d (a Conv1D with kernel 1,
       i.e. a per-step Dense); audio and vision are read onto the text
       timeline by text-queried multi-head cross-attention
       (`MaskedMultiHeadAttention`, `num_heads`), giving three `[T_t, d]`
       sequences on one time axis (unaligned inputs work too).
    2. *CS-DSA* (`CrossShapedDynamicScaleAttention`): the three sequences as a
       `[3, T, d]` map -> fused modality f `[T, d]`.
    3. *PS-MDL* (`DiscrepancyBlock`): f primary, t/a/v secondary -> `[T, d]`.
    4. *Prediction layer*: ``[f, PS-MDL]`` per step -> LSTM(d) -> masked last
       state, plus a Dense residual from the masked-mean pooled (aligned)
       text, ->
       Dense -> score.

    `modalities` chooses the inputs; the first one is the *anchor* whose
    timeline the others are aligned onto (text by default). The `avec2019`
    preset uses ``("audio", "vision")``, what `recipes/convert.py
    --format=avec` writes by default (the AVEC reader adds text only when a
    word-feature set is named): audio is then the anchor, the CS-DSA map has
    2 rows and PS-MDL 2 secondaries.

    Text modes: **features** (default) reads `text` [B, T, D_t] +
    `text_mask`; **backbone** (`text_backbone` or `backbone_preset`, any
    keras-hub BERT / RoBERTa preset directory; seed 000 uses RoBERTa) reads
    raw sentences under `text_raw` (tokenized in the graph) or
    `text_token_ids` + `text_padding_mask`: the backbone's last hidden states
    are the text sequence (fine-tuned with the rest unless `fine_tune=False`)
    and its padding mask the text mask (the timeline when text is the anchor).

    Tasks:

    - `"sentiment"` (MOSI/MOSEI/SIMS): `{"sentiment": [B, 1]}`, loss
      `task_loss` (MSE, as the official code).
    - `"phq8"` (AVEC 2019 DDS): the head predicts PHQ-8 / 25; the outputs are
      `"sentiment"` (that raw score, PHQ-8 / 25, kept because every model
      returns `"sentiment"`) and `"phq8"` = 25 x score, **on the 0-24 scale**
      of the labels (not clipped, so the loss keeps its gradient); the loss is
      ``1 - CCC(phq8_true / 25, phq8_pred / 25)`` and the recipes report CCC,
      RMSE and MAE on the 0-24 scale.

    Ablations (the paper's ablation table): `use_csdsa=False` replaces CS-DSA
    by the plain mean of the three aligned sequences ("w/o CS-DSA");
    `use_psmdl=False` drops PS-MDL so the LSTM reads f alone ("w/o PS-MDL");
    `dynamic_scale=False` keeps one branch (the first kernel size) without
    Fuse/Select ("single-scale").

    Masking: the anchor's (text's) mask defines the shared timeline; the others'
    restrict the alignment attention; padded steps are ignored everywhere
    (attention, BatchNorm statistics, pooling, LSTM). A missing modality
    (all-False mask) gives finite outputs.

    Args:
        hidden_dim: d, the common width.
        num_heads: heads of the alignment and PS-MDL attentions (8).
        kernel_sizes: CS-DSA branch kernel sizes ((3, 5)).
        num_loops: criss-cross loops R (2).
        reduction, min_width: CS-DSA Fuse width ``max(d / r, L)`` (16, 32).
        map_layout: `"cross"` (3 x T map) or `"time"` (the official code's 1 x T).
        discrepancy_mode: `"difference"` (c_m - f) or `"attention"` (c_m).
        dropout: dropout of the attentions and before the head.
        use_csdsa, use_psmdl, dynamic_scale: ablation switches (see above).
        task: `"sentiment"` or `"phq8"`.
        task_loss: loss of the sentiment task (`"mse"`).
        modalities: the modalities read, anchor first (text, audio, vision).
        text_backbone: a `TextBackbone` (or its serialized config) for
            backbone mode; needs "text" among `modalities`.
        backbone_preset: keras-hub preset or directory to load a
            `TextBackbone` from (used only when `text_backbone` is None).
        sequence_length: tokens per sentence (special tokens included) when
            loading `backbone_preset`.
        fine_tune: False freezes the backbone, True trains it; None keeps
            the given `text_backbone`'s setting (a backbone loaded from
            `backbone_preset` is then fine-tuned).
        **kwargs: `MSAModel` arguments (`name`, `dtype`, ...).

    Example:

    >>> import numpy as np
    >>> model = SSGDL(hidden_dim=16, num_heads=2)
    >>> batch = {
    ...     "text": np.zeros((2, 6, 16), "float32"), "text_mask": np.ones((2, 6), bool),
    ...     "audio": np.zeros((2, 6, 5), "float32"), "audio_mask": np.ones((2, 6), bool),
    ...     "vision": np.zeros((2, 6, 20), "float32"), "vision_mask": np.ones((2, 6), bool),
    ... }
    >>> tuple(model(batch)["sentiment"].shape)
    (2, 1)
    """

    # The seed's hyper-parameter tables are cut off; these follow
    # docs/architectures.md and the official code it cites (8 heads, kernels
    # (3, 5), R = 2, r = 16, L = 32, MSE; AdamW 6e-5, batch 64, 40 epochs are
    # recipe flags). d = 128 is our choice where both are silent.
    presets = {
        "mosi": {"hidden_dim": 128, "num_heads": 8, "kernel_sizes": (3, 5), "dropout": 0.1, "task": "sentiment"},
        "mosei": {"hidden_dim": 128, "num_heads": 8, "kernel_sizes": (3, 5), "dropout": 0.1, "task": "sentiment"},
        "sims": {"hidden_dim": 128, "num_heads": 8, "kernel_sizes": (3, 5), "dropout": 0.1, "task": "sentiment"},
        "avec2019": {
            "hidden_dim": 128, "num_heads": 8, "kernel_sizes": (3, 5), "dropout": 0.1, "task": "phq8",
            "modalities": ("audio", "vision"),
        },
    }

    #: Training protocols (keras_msa/training/protocol.py): the paper's text
    #: stops before its settings; ARCHITECTURES.md gives the official code's
    #: AdamW 6e-5, warm-up 0.4, batch 64, 40 epochs, seed 6758.
    training_presets = {
        name: {
            "ARCHITECTURES.md": {"optimizer": "adamw", "learning_rate": 6e-5, "backbone_learning_rate": 6e-5,
                                 "warmup_proportion": 0.4, "batch_size": 64, "epochs": 40, "seed": 6758},
            "our choice": {"epsilon": 1e-8, "weight_decay": 0.01, "lr_decay": "linear", "patience": 0},
            "notes": {
                "epsilon": "PyTorch AdamW's default, which the official code inherits",
                "weight_decay": "PyTorch AdamW's default, which the official code inherits",
                "lr_decay": "after the warm-up, linear to 0 (the usual linear-warm-up schedule)",
                "patience": "0 = all 40 epochs; the best validation epoch is kept",
            },
        }
        for name in ("mosi", "mosei", "sims", "avec2019")
    }

    def __init__(
        self,
        hidden_dim=128,
        num_heads=8,
        kernel_sizes=(3, 5),
        num_loops=2,
        reduction=16,
        min_width=32,
        map_layout="cross",
        discrepancy_mode="difference",
        dropout=0.1,
        use_csdsa=True,
        use_psmdl=True,
        dynamic_scale=True,
        task="sentiment",
        task_loss="mse",
        modalities=MODALITIES,
        text_backbone=None,
        backbone_preset=None,
        sequence_length=50,
        fine_tune=None,
        **kwargs,
    ):
        super().__init__(task_loss=task_loss, **kwargs)
        if task not in TASKS:
            raise ValueError(f"Unknown task '{task}'; expected one of {TASKS}.")
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.num_loops = int(num_loops)
        self.reduction = int(reduction)
        self.min_width = int(min_width)
        self.map_layout = map_layout
        self.discrepancy_mode = discrepancy_mode
        self.dropout = float(dropout)
        self.use_csdsa = bool(use_csdsa)
        self.use_psmdl = bool(use_psmdl)
        self.dynamic_scale = bool(dynamic_scale)
        self.task = task
        self.modalities = tuple(modalities)
        if not self.modalities or len(set(self.modalities)) != len(self.modalities) or any(
            m not in MODALITIES for m in self.modalities
        ):
            raise ValueError(f"modalities must be distinct names from {MODALITIES}; got {modalities}.")
        self._init_text_backbone(text_backbone, backbone_preset, sequence_length, fine_tune)
        if self.text_backbone is not None and "text" not in self.modalities:
            raise ValueError(
                f"SSGDL: a text backbone needs 'text' among modalities; got {self.modalities}."
            )

        d = self.hidden_dim
        self.projections = {
            m: layers.Conv1D(d, 1, name=f"{m}_projection") for m in self.modalities
        }
        self.aligners = {
            m: MaskedMultiHeadAttention(self.num_heads, output_dim=d, dropout=self.dropout, name=f"align_{m}")
            for m in self.modalities[1:]
        }
        self.csdsa = None
        if self.use_csdsa:
            self.csdsa = CrossShapedDynamicScaleAttention(
                kernel_sizes=self.kernel_sizes if self.dynamic_scale else self.kernel_sizes[:1],
                units=d,
                reduction=self.reduction,
                min_width=self.min_width,
                num_loops=self.num_loops,
                map_layout=self.map_layout,
                name="csdsa",
            )
        self.psmdl = None
        if self.use_psmdl:
            self.psmdl = DiscrepancyBlock(
                num_heads=self.num_heads, mode=self.discrepancy_mode, dropout=self.dropout, name="psmdl"
            )
        self.lstm = layers.LSTM(d, name="prediction_lstm")
        self.anchor_residual = layers.Dense(d, name="anchor_residual")
        self.head_dropout = layers.Dropout(self.dropout)
        self.head = layers.Dense(1, dtype="float32", name="score_head")

    def build(self, input_shape):
        # Built by running once on a small batch of these shapes (the
        # sublayers' widths follow from the data); explicit, so that a
        # reloaded `.keras` file, raw text included, has every weight before
        # they are restored.
        self._build_by_dummy_call(input_shape)
        self.built = True

    def _sequences(self, inputs, training):
        anchor = self.modalities[0]
        seqs = {}
        masks = {}
        for m in self.modalities:
            if m == "text":
                x, mask = self.text_sequence(inputs, training=training)
            else:
                x, mask = get_modality(inputs, m)
            if len(x.shape) != 3:
                raise ValueError(f"'{m}' must be [batch, time, dim]; got shape {tuple(x.shape)}.")
            if len(mask.shape) != 2:
                raise ValueError(f"'{m}_mask' must be [batch, time]; got shape {tuple(mask.shape)}.")
            # Zero the padding first: the projection's bias is added after,
            # and the attention masks padded steps, so values there never matter.
            x = ops.where(ops.cast(mask, "bool")[..., None], ops.cast(x, self.compute_dtype), 0)
            seqs[m] = self.projections[m](x)
            masks[m] = mask
        mask = masks[anchor]
        aligned = [ops.where(ops.cast(mask, "bool")[..., None], seqs[anchor], 0)]
        for m in self.modalities[1:]:
            aligned.append(
                self.aligners[m](aligned[0], seqs[m], query_mask=mask, context_mask=masks[m], training=training)
            )
        return aligned, mask

    def call(self, inputs, training=False):
        aligned, mask = self._sequences(inputs, training)
        if self.csdsa is not None:
            fused = self.csdsa(ops.stack(aligned, axis=1), mask=mask, training=training)
        else:
            fused = aligned[0]
            for seq in aligned[1:]:
                fused = fused + seq
            fused = fused / float(len(aligned))
        features = fused
        if self.psmdl is not None:
            disc = self.psmdl(
                fused, aligned, primary_mask=mask, secondary_masks=[mask] * len(aligned), training=training
            )
            features = ops.concatenate([fused, disc], axis=-1)
        # masked_rnn: a sample whose anchor is missing, or a left-padded
        # batch, cannot trip the cuDNN mask check on a GPU (its state is 0).
        state = masked_rnn(self.lstm, features, mask, training=training)
        h = state + self.anchor_residual(masked_mean(aligned[0], mask))
        score = self.head(self.head_dropout(h, training=training))
        outputs = {"sentiment": score}
        if self.task == "phq8":
            outputs["phq8"] = score * PHQ8_SCALE
        return outputs

    def attention_maps(self, inputs):
        """CS-DSA's criss-cross weights, one map per branch `"csdsa_k<k>"`
        (`CrossShapedDynamicScaleAttention.attention_maps`, first loop).

        With `map_layout="cross"`: `[B, M, T, M, T]`, axes `(modality, time,
        modality, time)` on the anchor's timeline: entry (b, i, j, i', j') is
        how much aligned modality i at step j attends to modality i' at step
        j' (non-zero only on the cross: i' = i or j' = j). With `"time"`: the
        single row is dropped, `[B, T, T]`. `{}` without CS-DSA.
        """
        if self.csdsa is None:
            return {}
        aligned, mask = self._sequences(inputs, training=False)
        maps = self.csdsa.attention_maps(ops.stack(aligned, axis=1), mask=mask)
        if self.map_layout == "time":
            return {f"csdsa_{k}": m[:, 0, :, 0, :] for k, m in maps.items()}
        return {f"csdsa_{k}": m for k, m in maps.items()}

    def attention_axes(self):
        if self.csdsa is None:
            return {}
        time = f"time:{self.modalities[0]}"
        rows = "modality:" + ",".join(self.modalities)
        axes = (time, time) if self.map_layout == "time" else (rows, time, rows, time)
        return {f"csdsa_k{k}": axes for k in self.csdsa.kernel_sizes}

    def primary_loss(self, x, y, y_pred):
        if self.task != "phq8":
            return super().primary_loss(x, y, y_pred)
        if "phq8" not in y:
            raise KeyError(
                f"SSGDL(task='phq8') needs a 'phq8' target [batch, 1] on the 0-24 "
                f"scale; the targets hold: {sorted(y)}."
            )
        y_true = ops.cast(y["phq8"], "float32") / PHQ8_SCALE
        return concordance_correlation_loss(y_true, y_pred["phq8"] / PHQ8_SCALE)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "kernel_sizes": list(self.kernel_sizes),
                "num_loops": self.num_loops,
                "reduction": self.reduction,
                "min_width": self.min_width,
                "map_layout": self.map_layout,
                "discrepancy_mode": self.discrepancy_mode,
                "dropout": self.dropout,
                "use_csdsa": self.use_csdsa,
                "use_psmdl": self.use_psmdl,
                "dynamic_scale": self.dynamic_scale,
                "task": self.task,
                "modalities": list(self.modalities),
                **self._text_backbone_config(),
            }
        )
        return config
