import keras
from keras import layers
from keras import ops

from keras_msa.layers.key_modality_fusion import KeyModalityFusion
from keras_msa.layers.multi_scale_feature_extractor import MultiScaleFeatureExtractor
from keras_msa.losses.info_nce import info_nce
from keras_msa.models.base import MODALITIES
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import register_model
from keras_msa.models.base import regression_loss
from keras_msa.utils.masks import masked_mean
from keras_msa.utils.masks import masked_rnn

FUSIONS = ("key", "equal", "early", "late")
MULTI_TASK = ("auto", "labels", "contrastive", "none")
PAIRS = (("text", "audio"), ("text", "vision"), ("audio", "vision"))


def _pair_name(a, b):
    return f"{a}_{b}"


@register_model("m3sa")
@keras.saving.register_keras_serializable(package="keras_msa")
class M3SA(MSAModel):
    """M³SA: multi-scale features, key-modality fusion, multi-task learning.

    Seed 003 (Lin et al., "M³SA: Multimodal Sentiment Analysis Based on
    Multi-Scale Feature Extraction and Multi-Task Learning", IEEE/ACM TASLP
    2024). Per modality m, `MultiScaleFeatureExtractor` (Eqs. 1-7: LSTM,
    n-1 stacked ReLU→Norm→Linear layers, SE channel attention over the n
    scales, 1×1 conv) gives `X_m` `[T_m, d]` and the last scale `F^n_m`.
    Unimodal heads on the pooled `F^n_m` predict `y_t, y_a, y_v`
    (Eqs. 8-10). `KeyModalityFusion` (Eqs. 11-23) fuses the three `X_m`
    around the key modality, and the fused head predicts the sentiment
    (Eq. 24).

    Objective (`auxiliary_losses`, added to the task loss on `"sentiment"`,
    which is ∂_f L_f with ∂_f = 1):

    * Eq. 25, when the targets hold unimodal labels (`sentiment_text`,
      `sentiment_audio`, `sentiment_vision`, as CH-SIMS does):
      `Σ_m ∂_m(e) L(ŷ_m, y_m)`.
    * Eqs. 26-27, when they do not (MOSI): InfoNCE between the pooled
      `F^n` of each modality pair (positive = same sample, in-batch
      negatives), `Σ_pairs ∂_pair(e) L_pair`. We use the standard per-anchor
      InfoNCE of the paper it cites ([36], `keras_msa.losses.info_nce`); the
      printed Eq. 26 also multiplies each term by `exp(s_ii/τ)` and puts all
      N²-N negative pairs of the batch in every denominator, which the prose
      does not describe and which is unbounded. Cosine similarity with
      τ = 0.1 by default (the paper does not give τ; `contrastive_normalize=
      False` gives its raw dot product).
    * Dynamic weight decay of the subtask weights (the paper states it, not
      its form): `∂_i(e) = max(floor, ∂_i · decay^e)` with `e` the epoch
      (`self.epoch`), `decay = subtask_decay`, `floor = subtask_weight_floor`.
      `subtask_decay=1` keeps the weights constant.
    * Without unimodal labels the unimodal heads are still trained, as probes
      on detached features against the overall label (`unimodal_probe`
      loss, which changes no encoder weight), so that `key_modality="auto"`
      can rank them and the outputs `sentiment_<m>` mean something.

    Key modality: a fixed modality (`"text"`, the paper's choice) or `"auto"`:
    a fusion branch and fused head per candidate key; during the first
    `key_warmup_epochs` epochs the prediction is the mean of the three
    branches; then `KeyModalitySelector` (from `training_callbacks`) ranks
    the unimodal heads on the validation set by the Pearson correlation of
    their predictions with the overall sentiment (the paper ranks unimodal
    accuracy; a correlation is comparable across heads trained on different
    unimodal labels), fixes the best as the key, and records it in the config
    (`selected_key_modality`, `key_selection_scores`). Only the chosen branch
    is computed from then on.

    Ablations (seed 003 Figs. 7-9): `multi_scale=False` (LSTM features only,
    n = 1), `fusion="equal"` (self-attention on every modality, no key),
    `fusion="early"` (X_t, X_a, X_v concatenated per step → joint LSTM; needs
    aligned inputs), `fusion="late"` (a decision per modality on pooled `X_m`,
    combined by a learned linear layer), `multi_task="none"` (task loss only).

    Args:
        hidden_dim: d, width of every scale and attention output (not in the
            paper; 64).
        num_scales: n (paper's best 5).
        ratio: r of the SE excitation (paper's best 4; hidden width n·r).
        num_heads: h (paper: 5).
        dropout: on pooled features and attention (0.4 MOSI, 0.3 SIMS).
        key_modality: `"text"`, `"audio"`, `"vision"` or `"auto"`.
        key_warmup_epochs: epochs before the `"auto"` key is chosen.
        selected_key_modality: the key chosen by `"auto"` (set by the
            callback; stored in the config so that a reloaded model keeps it).
        key_selection_scores: the validation scores the choice was made on.
        multi_scale: ablation flag for the multi-scale extraction (Fig. 7).
        fusion: `"key"` (paper), `"equal"`, `"early"`, `"late"` (Fig. 8).
        multi_task: `"auto"` (unimodal labels when the targets have them,
            else contrastive), `"labels"`, `"contrastive"`, `"none"`.
        subtask_weights: ∂_m of Eq. 25 per modality (default 1 each).
        contrastive_weights: ∂ of Eq. 27 per pair `"text_audio"`,
            `"text_vision"`, `"audio_vision"` (default 0.1 each).
        subtask_decay: per-epoch factor of the subtask weights (0.95).
        subtask_weight_floor: lower bound of the decayed weights (0).
        contrastive_temperature: τ (0.1).
        contrastive_normalize: cosine (True) or dot-product (False) similarity.
        se_gate: SE excitation gate, `"sigmoid"` (default) or `"relu"` (Eq. 5
            as printed). The ReLU gate starts dead: at initialisation about
            half of its scale weights are exactly 0 and get no gradient
            (`SEChannelAttention`); the sigmoid gate starts at ~0.5 and
            never cuts a scale off.
        scale_norm: Eq. 2's unnamed `Norm` in every extractor: `"layer"`
            (default), `"batch"` (masked) or `"none"`
            (`MultiScaleFeatureExtractor`).
        task_loss: loss of every regression subtask (`"mae"`, as MMSA's
            multi-task models use; `"mse"`, `"huber"`).
        **kwargs: `MSAModel` arguments.

    Example:

    >>> import numpy as np
    >>> model = M3SA(hidden_dim=10, num_heads=5)
    >>> batch = {
    ...     "text": np.zeros((2, 7, 16), "float32"), "text_mask": np.ones((2, 7), bool),
    ...     "audio": np.zeros((2, 7, 5), "float32"), "audio_mask": np.ones((2, 7), bool),
    ...     "vision": np.zeros((2, 7, 20), "float32"), "vision_mask": np.ones((2, 7), bool),
    ... }
    >>> out = model(batch)
    >>> out["sentiment"].shape, out["sentiment_audio"].shape
    ((2, 1), (2, 1))
    """

    presets = {
        "mosi": {"dropout": 0.4, "num_heads": 5, "num_scales": 5, "ratio": 4, "key_modality": "text",
                 "multi_task": "auto"},
        "sims": {"dropout": 0.3, "num_heads": 5, "num_scales": 5, "ratio": 4, "key_modality": "text",
                 "multi_task": "auto"},
    }
    #: Training protocols (keras_msa/training/protocol.py) from seed 003
    #: Table I (batch, learning rate, epochs, weight decay); the paper names
    #: no optimizer, clipping, early stopping or selection metric.
    training_presets = {
        name: {
            "paper": {"batch_size": 64, "learning_rate": lr, "epochs": epochs, "weight_decay": 5e-3},
            "our choice": {"optimizer": "adamw", "patience": 0, "monitor": "mae"},
            "notes": {
                "optimizer": "Table I gives a weight decay but no optimizer: AdamW (decoupled decay)",
                "patience": "0 = all epochs of Table I; the best validation epoch is kept",
            },
        }
        for name, lr, epochs in (("mosi", 5e-5, 50), ("sims", 1e-6, 100))
    }

    def __init__(
        self,
        hidden_dim=64,
        num_scales=5,
        ratio=4,
        num_heads=5,
        dropout=0.4,
        key_modality="text",
        key_warmup_epochs=5,
        selected_key_modality=None,
        key_selection_scores=None,
        multi_scale=True,
        fusion="key",
        multi_task="auto",
        subtask_weights=None,
        contrastive_weights=None,
        subtask_decay=0.95,
        subtask_weight_floor=0.0,
        contrastive_temperature=0.1,
        contrastive_normalize=True,
        se_gate="sigmoid",
        scale_norm="layer",
        task_loss="mae",
        **kwargs,
    ):
        super().__init__(task_loss=task_loss, **kwargs)
        if key_modality not in MODALITIES + ("auto",):
            raise ValueError(f"key_modality must be one of {MODALITIES + ('auto',)}; got {key_modality!r}.")
        if selected_key_modality is not None and selected_key_modality not in MODALITIES:
            raise ValueError(f"selected_key_modality must be one of {MODALITIES}; got {selected_key_modality!r}.")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}; got {fusion!r}.")
        if multi_task not in MULTI_TASK:
            raise ValueError(f"multi_task must be one of {MULTI_TASK}; got {multi_task!r}.")
        if not 0.0 < subtask_decay <= 1.0:
            raise ValueError(f"subtask_decay must be in (0, 1]; got {subtask_decay}.")
        self.hidden_dim = int(hidden_dim)
        self.num_scales = int(num_scales)
        self.ratio = int(ratio)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.key_modality = key_modality
        self.key_warmup_epochs = int(key_warmup_epochs)
        self.selected_key_modality = (
            key_modality if key_modality in MODALITIES else selected_key_modality
        )
        self.key_selection_scores = dict(key_selection_scores) if key_selection_scores else None
        self.multi_scale = bool(multi_scale)
        self.fusion = fusion
        self.multi_task = multi_task
        self.subtask_weights = {m: 1.0 for m in MODALITIES}
        self.subtask_weights.update(subtask_weights or {})
        self.contrastive_weights = {_pair_name(a, b): 0.1 for a, b in PAIRS}
        self.contrastive_weights.update(contrastive_weights or {})
        unknown = set(self.subtask_weights) - set(MODALITIES)
        unknown |= set(self.contrastive_weights) - {_pair_name(a, b) for a, b in PAIRS}
        if unknown:
            raise ValueError(f"Unknown subtask/contrastive weight keys: {sorted(unknown)}.")
        self.subtask_decay = float(subtask_decay)
        self.subtask_weight_floor = float(subtask_weight_floor)
        self.contrastive_temperature = float(contrastive_temperature)
        self.contrastive_normalize = bool(contrastive_normalize)
        self.se_gate = se_gate
        self.scale_norm = scale_norm

        d = self.hidden_dim
        self.extractors = {
            m: MultiScaleFeatureExtractor(
                hidden_dim=d,
                num_scales=self.num_scales if self.multi_scale else 1,
                ratio=self.ratio,
                gate=se_gate,
                norm=scale_norm,
                name=f"{m}_extractor",
            )
            for m in MODALITIES
        }
        self.feature_dropout = layers.Dropout(self.dropout)
        self.unimodal_heads = {m: self._head(f"{m}_head") for m in MODALITIES}
        if fusion == "key":
            keys = MODALITIES if key_modality == "auto" else (key_modality,)
            self.fusions = {
                k: KeyModalityFusion(key=k, num_heads=num_heads, dropout=self.dropout, name=f"{k}_key_fusion")
                for k in keys
            }
            self.fused_heads = {k: self._head(f"{k}_key_fused_head") for k in keys}
            # A reloaded "auto" model (its key in the config) trains the chosen branch only.
            self._freeze_unchosen_branches()
        elif fusion == "equal":
            self.fusions = {
                "equal": KeyModalityFusion(key=None, num_heads=num_heads, dropout=self.dropout, name="equal_fusion")
            }
            self.fused_heads = {"equal": self._head("fused_head")}
        elif fusion == "early":
            self.early_lstm = layers.LSTM(d, return_sequences=True, name="early_lstm")
            self.fused_heads = {"early": self._head("fused_head")}
        else:
            self.late_heads = {m: self._head(f"{m}_decision_head") for m in MODALITIES}
            self.late_combiner = layers.Dense(1, dtype="float32", name="late_combiner")

    def _head(self, name):
        return keras.Sequential(
            [
                layers.Dense(self.hidden_dim, activation="relu"),
                layers.Dropout(self.dropout),
                layers.Dense(1, dtype="float32"),
            ],
            name=name,
        )

    # -- key modality -----------------------------------------------------

    @property
    def active_key(self):
        """The key modality in use (None while `"auto"` is still warming up)."""
        return self.selected_key_modality

    def select_key_modality(self, key, scores=None):
        """Fixes the key of an `"auto"` model; compiled functions are rebuilt."""
        if self.key_modality != "auto":
            raise ValueError(f"The key is fixed to '{self.key_modality}'; only key_modality='auto' selects one.")
        if key not in MODALITIES:
            raise ValueError(f"key must be one of {MODALITIES}; got {key!r}.")
        self.selected_key_modality = key
        self.key_selection_scores = None if scores is None else {k: float(v) for k, v in scores.items()}
        self._freeze_unchosen_branches()
        # The branch choice is Python control flow inside the traced step, so
        # the cached graphs must be retraced to use the new key.
        if getattr(self, "train_function", None) is not None:
            # `fit` calls `self.train_function` at every step, so a rebuilt
            # function takes effect from the next step on.
            self.make_train_function(force=True)
        self.test_function = None
        self.predict_function = None

    def _freeze_unchosen_branches(self):
        """After the choice only the chosen key's fusion branch and fused head
        are computed: the others get no gradient, so they leave the trainable
        variables (no update, no weight decay, nothing handed to the
        optimizer without a gradient)."""
        if self.fusion != "key" or self.key_modality != "auto" or self.selected_key_modality is None:
            return
        for k in self.fusions:
            keep = k == self.selected_key_modality
            self.fusions[k].trainable = keep
            self.fused_heads[k].trainable = keep

    def trace_key(self):
        return self.selected_key_modality if self.key_modality == "auto" else None

    def checkpoint_state(self):
        if self.key_modality != "auto":
            return {}
        return {"selected_key_modality": self.selected_key_modality,
                "key_selection_scores": self.key_selection_scores}

    def restore_checkpoint_state(self, state):
        key = (state or {}).get("selected_key_modality")
        if self.key_modality == "auto" and key is not None and key != self.selected_key_modality:
            self.select_key_modality(key, state.get("key_selection_scores"))

    def training_callbacks(self, validation_data=None):
        if self.fusion != "key" or self.key_modality != "auto" or self.selected_key_modality is not None:
            return []
        if validation_data is None:
            raise ValueError(
                "key_modality='auto' ranks the unimodal heads on validation data; "
                "training_callbacks() got validation_data=None."
            )
        from keras_msa.models.m3sa.key_modality_selector import KeyModalitySelector

        return [KeyModalitySelector(validation_data, warmup_epochs=self.key_warmup_epochs)]

    # -- forward ----------------------------------------------------------

    def call(self, inputs, training=False):
        feats, lasts, masks = {}, {}, {}
        for m in MODALITIES:
            x, mask = get_modality(inputs, m)
            feats[m], lasts[m] = self.extractors[m](x, mask=mask, training=training)
            masks[m] = mask
        outputs = {}
        for m in MODALITIES:
            pooled = masked_mean(lasts[m], masks[m], axis=1)
            outputs[f"embedding_{m}"] = ops.cast(pooled, "float32")
            outputs[f"valid_{m}"] = ops.cast(ops.any(masks[m], axis=1), "float32")[:, None]
            head_in = self.feature_dropout(pooled, training=training)
            outputs[f"sentiment_{m}"] = self.unimodal_heads[m](head_in, training=training)
        outputs["sentiment"] = self._fuse(feats, masks, training)
        return outputs

    def _fuse(self, feats, masks, training):
        if self.fusion == "late":
            decisions = [
                self.late_heads[m](
                    self.feature_dropout(masked_mean(feats[m], masks[m], axis=1), training=training),
                    training=training,
                )
                for m in MODALITIES
            ]
            return self.late_combiner(ops.concatenate(decisions, axis=-1))
        if self.fusion == "early":
            lengths = {m: feats[m].shape[1] for m in MODALITIES}
            if None not in lengths.values() and len(set(lengths.values())) != 1:
                raise ValueError(
                    f"fusion='early' concatenates the modalities step by step and needs "
                    f"aligned inputs (one time length); got lengths {lengths}."
                )
            joint_mask = ops.logical_or(ops.logical_or(masks["text"], masks["audio"]), masks["vision"])
            joint = ops.concatenate([feats[m] for m in MODALITIES], axis=-1)
            h = masked_rnn(self.early_lstm, joint, joint_mask, training=training)
            pooled = masked_mean(h, joint_mask, axis=1)
            return self.fused_heads["early"](self.feature_dropout(pooled, training=training), training=training)
        preds = []
        for k in self._active_fusions():
            fused = self.fusions[k](feats, masks=masks, training=training)
            preds.append(
                self.fused_heads[k](self.feature_dropout(fused, training=training), training=training)
            )
        # During the "auto" warm-up every key branch trains as a member of
        # an average, so whichever is chosen has been trained.
        return preds[0] if len(preds) == 1 else ops.mean(ops.stack(preds, axis=0), axis=0)

    def _active_fusions(self):
        """Keys of `self.fusions` that `_fuse` runs (key or equal fusion)."""
        if self.fusion == "equal":
            return ["equal"]
        return [self.active_key] if self.active_key is not None else list(self.fusions)

    # -- attention maps ---------------------------------------------------

    def _has_se(self):
        return self.multi_scale and self.num_scales > 1

    def attention_maps(self, inputs):
        """The key-modality attention and the SE channel weights, inference mode.

        - `"<key>_from_<m>"` `[B, h, T_key, T_m]`: the key modality's
          self-attention (m = key, Eqs. 13-17) and its cross-modal attention
          to the others (Eqs. 18-22), `KeyModalityFusion(return_attention=
          True)`; every candidate key during the `"auto"` warm-up,
          `"<m>_from_<m>"` for each modality with `fusion="equal"`; none with
          early or late fusion.
        - `"se_<m>"` `[B, n]`: the SE weights `s` of the n scales of modality
          m (Eq. 5; in (0, 1) with the sigmoid gate, >= 0 with ReLU); none
          with `multi_scale=False`.
        """
        feats, masks, maps = {}, {}, {}
        for m in MODALITIES:
            x, mask = get_modality(inputs, m)
            feats[m], _ = self.extractors[m](x, mask=mask, training=False)
            masks[m] = mask
            if self._has_se():
                maps[f"se_{m}"] = ops.cast(self.extractors[m].compute_channel_weights(x, mask), "float32")
        if self.fusion in ("key", "equal"):
            for k in self._active_fusions():
                maps.update(self.fusions[k](feats, masks=masks, training=False, return_attention=True)[1])
        return maps

    def attention_axes(self):
        axes = {f"se_{m}": ("scale",) for m in MODALITIES} if self._has_se() else {}
        if self.fusion in ("key", "equal"):
            for k in self._active_fusions():
                for q, kv in self.fusions[k].pairs():
                    axes[f"{q}_from_{kv}"] = ("head", f"time:{q}", f"time:{kv}")
        return axes

    # -- objective --------------------------------------------------------

    def subtask_weight_multiplier(self):
        """`decay^epoch`: the dynamic weight decay factor of the subtasks."""
        return ops.power(ops.cast(self.subtask_decay, "float32"), self.epoch)

    def _weight(self, base):
        return ops.maximum(
            ops.cast(self.subtask_weight_floor, "float32"),
            ops.cast(base, "float32") * self.subtask_weight_multiplier(),
        )

    def multi_task_mode(self, y):
        """`"labels"`, `"contrastive"` or `"none"` for targets `y`."""
        has_labels = all(f"sentiment_{m}" in y for m in MODALITIES)
        if self.multi_task == "labels" and not has_labels:
            missing = [f"sentiment_{m}" for m in MODALITIES if f"sentiment_{m}" not in y]
            raise KeyError(
                f"multi_task='labels' needs the unimodal targets {missing}; the targets hold "
                f"{sorted(y)}. Use multi_task='auto' or 'contrastive' for data without them."
            )
        if self.multi_task == "auto":
            return "labels" if has_labels else "contrastive"
        return self.multi_task

    def auxiliary_losses(self, x, y, y_pred, training=True):
        mode = self.multi_task_mode(y)
        losses = {}
        if mode == "labels":
            for m in MODALITIES:
                loss = regression_loss(self.task_loss, y[f"sentiment_{m}"], y_pred[f"sentiment_{m}"])
                losses[f"unimodal_{m}"] = self._weight(self.subtask_weights[m]) * loss
            return losses
        if mode == "contrastive":
            for a, b in PAIRS:
                name = _pair_name(a, b)
                valid = ops.logical_and(
                    ops.reshape(y_pred[f"valid_{a}"], (-1,)) > 0.5, ops.reshape(y_pred[f"valid_{b}"], (-1,)) > 0.5
                )
                loss = info_nce(
                    y_pred[f"embedding_{a}"],
                    y_pred[f"embedding_{b}"],
                    temperature=self.contrastive_temperature,
                    normalize=self.contrastive_normalize,
                    mask=valid,
                )
                losses[f"contrastive_{name}"] = self._weight(self.contrastive_weights[name]) * loss
        # Probes: the unimodal heads learn the overall label from detached
        # features, which ranks the modalities without touching the encoders.
        probe = 0.0
        for m in MODALITIES:
            emb = ops.stop_gradient(y_pred[f"embedding_{m}"])
            pred = self.unimodal_heads[m](self.feature_dropout(emb, training=training), training=training)
            probe = probe + regression_loss(self.task_loss, y["sentiment"], pred)
        losses["unimodal_probe"] = probe
        return losses

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_scales": self.num_scales,
                "ratio": self.ratio,
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "key_modality": self.key_modality,
                "key_warmup_epochs": self.key_warmup_epochs,
                "selected_key_modality": self.selected_key_modality,
                "key_selection_scores": self.key_selection_scores,
                "multi_scale": self.multi_scale,
                "fusion": self.fusion,
                "multi_task": self.multi_task,
                "subtask_weights": dict(self.subtask_weights),
                "contrastive_weights": dict(self.contrastive_weights),
                "subtask_decay": self.subtask_decay,
                "subtask_weight_floor": self.subtask_weight_floor,
                "contrastive_temperature": self.contrastive_temperature,
                "contrastive_normalize": self.contrastive_normalize,
                "se_gate": self.se_gate,
                "scale_norm": self.scale_norm,
            }
        )
        return config

