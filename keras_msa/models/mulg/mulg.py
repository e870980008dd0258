import keras
from keras import layers
from keras import ops

from keras_msa.layers.directed_cross_modal_gru import DirectedCrossModalGRU
from keras_msa.models.base import MODALITIES
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import regression_loss
from keras_msa.models.base import register_model
from keras_msa.utils.masks import last_valid_step

TASKS = ("regression", "emotions")
EMOTIONS = ("happy", "sad", "angry", "neutral")


@register_model("mulg")
@keras.saving.register_keras_serializable(package="keras_msa")
class MulG(MSAModel):
    """Multimodal GRU with directed pairwise cross-modal attention (MulG).

    Seed 002 (`002_f80458cc9f1c9c6d.txt`, Qin et al. 2025). Each modality is
    projected to width `hidden_dim` by a Conv1D (Fig. 3). For every ordered
    pair of distinct modalities (six with text, audio and vision) a
    `DirectedCrossModalGRU` lets the source attend to the target with the
    bilinear attention of Eqs. 5-7 and runs a two-layer GRU (Eqs. 1-4) over
    the source timeline, inside the residual variant of Fig. 5 chosen by
    `residual`. The two outputs of a source are concatenated per time step and
    the state at the source's last real step is `h_m`. Fusion follows
    Eqs. 8-9: `h_concat = [h_l; h_a; h_v]`, `h_reduced = W_fusion h_concat +
    b_fusion`; the head is ReLU -> output dropout -> Dense.

    Heads (`task`):

    - `"regression"` (MOSI/MOSEI): `"sentiment"` `[B, 1]`, trained with
      `task_loss` (default `"mae"`: the L1 objective of the MulT code base the
      paper builds on; the paper does not name its regression loss).
    - `"emotions"` (IEMOCAP): `"emotions"` `[B, 4, 2]` logits, one 2-way
      decision per emotion (happy, sad, angry, neutral; multi-label, as the
      paper says), trained with the mean 2-way cross-entropy over the four
      emotions. Targets may be `[B, 4]` 0/1 or `[B, 4, 2]` one-hot (MulT
      pickles). `"sentiment"` is still returned (batch contract) and is
      trained only when the targets carry a `sentiment` key.

    Ablations (seed 002 Tables 5-6, and Tables 2-4's "not using cross-modal"):

    - `modalities`: drop modalities (e.g. `("text",)` for "text only").
    - `cross_modal_attention=False`: no Eqs. 5-7; each modality gets one
      unimodal GRU block (the paper's "alternative GRU module"). A modality
      with no partner (a single-modality model) is always unimodal.

    Padding: masks reach the projection (padded steps are zeroed first so a
    kernel wider than 1 cannot read them), the attention (padded target
    steps get no weight), the GRUs (padded steps carry the state) and the
    pooling (last real step). A missing modality (all-False mask) pools to
    zeros and attends to nothing, so outputs stay finite.

    Args:
        hidden_dim: common width `d` and GRU width (Table 1: 40).
        num_layers: GRU layers per directed block (paper: 2).
        residual: `"pre_ln"` (default, as the MulT code base), `"post_ln"`,
            `"residual"` (ResiDual) or `"none"` (Fig. 5).
        kernel_size: Conv1D projection kernel (1 as in MulT's code).
        text_dropout: "textual embedding dropout" on the text features.
        attention_dropout: "crossmodal attention block dropout" on the
            attention weights.
        residual_dropout: dropout on each GRU sublayer output (Table 7
            `res_dropout`).
        output_dropout: dropout before the output layer.
        cross_modal_attention: False = the "no cross-modal attention" ablation.
        modalities: modalities the model reads (ablation: drop some).
        task: `"regression"` or `"emotions"`.
        num_emotions: emotions of the `"emotions"` head (IEMOCAP: 4).
        task_loss: loss of the `"sentiment"` output (`"mae"`, `"mse"`,
            `"huber"`).
        gru_reset_after: False (default) keeps Eq. 3 exactly (reset before
            the matrix product), which Keras never runs on cuDNN; True uses
            the cuDNN-compatible GRU (reset after the product), the fast
            kernel on a GPU. Masks suit cuDNN either way
            (`keras_msa.utils.masks.masked_rnn`).
        **kwargs: `MSAModel` arguments (`name`, `dtype`, ...).

    Example:

    >>> import numpy as np
    >>> model = MulG(hidden_dim=8)
    >>> batch = {
    ...     "text": np.zeros((2, 7, 16), "float32"), "text_mask": np.ones((2, 7), bool),
    ...     "audio": np.zeros((2, 9, 5), "float32"), "audio_mask": np.ones((2, 9), bool),
    ...     "vision": np.zeros((2, 4, 20), "float32"), "vision_mask": np.ones((2, 4), bool),
    ... }
    >>> tuple(model(batch)["sentiment"].shape)
    (2, 1)
    >>> tuple(model.attention_maps(batch)["text_from_audio"].shape)
    (2, 7, 9)
    """

    # Table 1 of seed 002. Training settings of the same table that are not
    # constructor arguments (Adam, lr 1e-3; epochs 100/50/50; batch
    # 128/16/32 for MOSI/MOSEI/IEMOCAP) are recipe flags, see the README.
    presets = {
        "mosi": {
            "hidden_dim": 40, "num_layers": 2, "text_dropout": 0.2,
            "attention_dropout": 0.1, "residual_dropout": 0.1, "output_dropout": 0.1,
            "task": "regression",
        },
        "mosei": {
            "hidden_dim": 40, "num_layers": 2, "text_dropout": 0.3,
            "attention_dropout": 0.1, "residual_dropout": 0.1, "output_dropout": 0.1,
            "task": "regression",
        },
        "iemocap": {
            "hidden_dim": 40, "num_layers": 2, "text_dropout": 0.3,
            "attention_dropout": 0.2, "residual_dropout": 0.1, "output_dropout": 0.1,
            "task": "emotions",
        },
    }

    #: Training protocols (keras_msa/training/protocol.py) from seed 002
    #: Table 1 (Adam, initial LR 1e-3, epochs and batch per dataset); the
    #: paper gives no clipping, early stopping or selection metric.
    training_presets = {
        name: {
            "paper": {"optimizer": "adam", "learning_rate": 1e-3, "epochs": epochs, "batch_size": batch},
            "our choice": {"patience": 0},
            "notes": {"patience": "0 = all epochs of Table 1; the best validation epoch is kept"},
        }
        for name, epochs, batch in (("mosi", 100, 128), ("mosei", 50, 16), ("iemocap", 50, 32))
    }

    def __init__(
        self,
        hidden_dim=40,
        num_layers=2,
        residual="pre_ln",
        kernel_size=1,
        text_dropout=0.2,
        attention_dropout=0.1,
        residual_dropout=0.1,
        output_dropout=0.1,
        cross_modal_attention=True,
        modalities=MODALITIES,
        task="regression",
        num_emotions=4,
        task_loss="mae",
        gru_reset_after=False,
        **kwargs,
    ):
        super().__init__(task_loss=task_loss, **kwargs)
        modalities = tuple(modalities)
        unknown = [m for m in modalities if m not in MODALITIES]
        if not modalities or unknown or len(set(modalities)) != len(modalities):
            raise ValueError(
                f"modalities must be a non-empty subset of {MODALITIES} without "
                f"repeats; got {modalities}."
            )
        if task not in TASKS:
            raise ValueError(f"Unknown task '{task}'; expected one of {TASKS}.")
        self.hidden_dim = int(hidden_dim)
        self.num_layers = int(num_layers)
        self.residual = residual
        self.kernel_size = int(kernel_size)
        self.text_dropout = float(text_dropout)
        self.attention_dropout = float(attention_dropout)
        self.residual_dropout = float(residual_dropout)
        self.gru_reset_after = bool(gru_reset_after)
        self.output_dropout = float(output_dropout)
        self.cross_modal_attention = bool(cross_modal_attention)
        self.modalities = modalities
        self.task = task
        self.num_emotions = int(num_emotions)

        self.text_drop = layers.Dropout(self.text_dropout, name="text_dropout")
        self.projections = {
            m: layers.Conv1D(
                self.hidden_dim, self.kernel_size, padding="same", use_bias=False,
                name=f"{m}_projection",
            )
            for m in modalities
        }
        # _plan[source] = [(target or "", index into self.blocks)]: plain
        # strings and ints, so that Keras tracks each block once.
        self._plan = {}
        self.blocks = []
        for source in modalities:
            targets = [t for t in modalities if t != source] if self.cross_modal_attention else []
            entries = []
            for target in targets or [None]:
                name = f"{source}_from_{target}" if target else f"{source}_unimodal"
                block = DirectedCrossModalGRU(
                    hidden_dim=self.hidden_dim,
                    num_layers=self.num_layers,
                    residual=residual,
                    use_attention=target is not None,
                    attention_dropout=self.attention_dropout,
                    residual_dropout=self.residual_dropout,
                    reset_after=self.gru_reset_after,
                    name=name,
                )
                entries.append((target or "", len(self.blocks)))
                self.blocks.append(block)
            self._plan[source] = tuple(entries)
        self.fusion = layers.Dense(self.hidden_dim, name="fusion")  # Eq. 9
        self.out_drop = layers.Dropout(self.output_dropout, name="output_dropout")
        self.sentiment_head = layers.Dense(1, dtype="float32", name="sentiment_head")
        if task == "emotions":
            self.emotion_head = layers.Dense(
                self.num_emotions * 2, dtype="float32", name="emotion_head"
            )

    def _encode(self, inputs, training=False):
        """Fused vector `[B, hidden_dim]` and the attention maps by pair name."""
        feats, masks = {}, {}
        for m in self.modalities:
            x, mask = get_modality(inputs, m)
            if len(x.shape) != 3:
                raise ValueError(
                    f"'{m}' must be [batch, time, dim]; got shape {tuple(x.shape)}."
                )
            if len(mask.shape) != 2:
                raise ValueError(
                    f"'{m}_mask' must be [batch, time]; got shape {tuple(mask.shape)}."
                )
            # Zero padded steps before the projection: with kernel_size > 1
            # the convolution would otherwise read them into real steps.
            x = ops.where(mask[:, :, None], x, ops.zeros_like(x))
            if m == "text":
                x = self.text_drop(x, training=training)
            feats[m] = self.projections[m](x)
            masks[m] = mask
        pooled, attention = [], {}
        for source in self.modalities:
            outs = []
            for target, index in self._plan[source]:
                block = self.blocks[index]
                seq, attn = block(
                    feats[source],
                    feats[target] if target else None,
                    source_mask=masks[source],
                    target_mask=masks[target] if target else None,
                    training=training,
                )
                outs.append(seq)
                if attn is not None:
                    attention[block.name] = attn
            seq = outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=-1)
            pooled.append(last_valid_step(seq, masks[source]))
        h_concat = pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)  # Eq. 8
        h_reduced = self.fusion(h_concat)  # Eq. 9
        return h_reduced, attention

    def call(self, inputs, training=False):
        h, _ = self._encode(inputs, training=training)
        h = self.out_drop(ops.relu(h), training=training)
        outputs = {"sentiment": self.sentiment_head(h)}
        if self.task == "emotions":
            logits = self.emotion_head(h)
            outputs["emotions"] = ops.reshape(logits, (-1, self.num_emotions, 2))
        return outputs

    def attention_maps(self, inputs):
        """Attention weights `[B, T_source, T_target]` (float32) of every
        directed pair, keyed `"<source>_from_<target>"` (seed 002 Fig. 4);
        axes in `attention_axes` (`MSAModel.attention_maps`)."""
        _, attention = self._encode(inputs, training=False)
        return attention

    def attention_axes(self):
        return {
            f"{source}_from_{target}": (f"time:{source}", f"time:{target}")
            for source, entries in self._plan.items()
            for target, _ in entries
            if target
        }

    def primary_loss(self, x, y, y_pred):
        if self.task != "emotions":
            return super().primary_loss(x, y, y_pred)
        if "emotions" not in y:
            raise KeyError(
                f"MulG(task='emotions') needs an 'emotions' target [batch, "
                f"{self.num_emotions}]; the targets hold: {sorted(y)}."
            )
        labels = ops.cast(y["emotions"], "float32")
        if len(labels.shape) == 3:  # MulT one-hot layout [B, 4, 2]
            labels = labels[..., 1]
        labels = ops.reshape(labels, (-1, self.num_emotions))
        logits = ops.cast(y_pred["emotions"], "float32")
        log_probs = ops.log_softmax(logits, axis=-1)
        ce = -(labels * log_probs[..., 1] + (1.0 - labels) * log_probs[..., 0])
        loss = ops.mean(ce)
        if "sentiment" in y:
            loss = loss + regression_loss(self.task_loss, y["sentiment"], y_pred["sentiment"])
        else:
            # IEMOCAP has no sentiment target: the sentiment head stays untrained, but
            # its gradient must be an explicit zero, not None, or every optimizer step
            # warns that the head's variables have no gradient.
            loss = loss + 0.0 * ops.sum(ops.cast(y_pred["sentiment"], "float32"))
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "residual": self.residual,
                "kernel_size": self.kernel_size,
                "text_dropout": self.text_dropout,
                "attention_dropout": self.attention_dropout,
                "residual_dropout": self.residual_dropout,
                "gru_reset_after": self.gru_reset_after,
                "output_dropout": self.output_dropout,
                "cross_modal_attention": self.cross_modal_attention,
                "modalities": list(self.modalities),
                "task": self.task,
                "num_emotions": self.num_emotions,
            }
        )
        return config
