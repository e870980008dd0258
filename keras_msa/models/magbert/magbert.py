import keras
from keras import layers

from keras_msa.layers.multimodal_adaptation_gate import MultimodalAdaptationGate
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import register_model
from keras_msa.models.text_backbone_mode import TextBackboneMode

#: MMSA's `bert_mag` datasetParams (config_regression.json): beta, MAG
#: dropout, Adam learning rate.
_MMSA = {"mosi": (1.0, 0.3, 2e-5), "mosei": (1.0, 0.2, 1e-5), "sims": (1.0, 0.1, 5e-5)}


@register_model("magbert")
@keras.saving.register_keras_serializable(package="keras_msa")
class MAGBERT(TextBackboneMode, MSAModel):
    """MAG-BERT (Rahman et al., "Integrating Multimodal Information in Large
    Pretrained Transformers", ACL 2020), as MMSA 2.2.1 builds it
    (`models/singleTask/BERT_MAG.py`).

    A BERT whose hidden states are shifted by the word-aligned audio and
    vision through a `MultimodalAdaptationGate` (Eqs. 1-5) before transformer
    layer `injection_index`; the rest of BERT runs on the shifted states; the
    [CLS] state goes through BERT's pooler (tanh Dense), dropout and a Dense
    to the score:

        Z = Embed(tokens)                     (BERT's embeddings, LayerNorm)
        Z = Layer_{j-1}(... Layer_0(Z))       (the first j = injection_index)
        Zbar = MAG(Z, A, V)
        y = W tanh(W_p Layer_{L-1}(... Layer_j(Zbar))[CLS]) + b

    MMSA (and the authors' code) inject at the embeddings: j = 0, the
    default. The task loss is L1 (MMSA's `nn.L1Loss`); MAG-BERT has no
    auxiliary loss.

    Audio and vision must be word-aligned: `[B, T, D]` with T the token
    length (MMSA's `need_data_aligned`); other lengths raise a ValueError.

    Masks: the text padding mask goes to every transformer layer; a masked
    audio/vision step adds nothing to its word (see
    `MultimodalAdaptationGate`), so a sample missing both modalities runs
    as plain BERT, with finite outputs.

    Args:
        text_backbone: a `keras_msa.layers.TextBackbone` over a keras-hub
            BERT (or its serialized config).
        backbone_preset: keras-hub preset or directory to load it from
            (MMSA: bert-base-uncased; SIMS bert-base-chinese).
        sequence_length: tokens per sentence with a preset's tokenizer
            (MMSA's aligned data: 50).
        fine_tune: False freezes BERT, True trains it (MMSA fine-tunes it),
            None keeps the given backbone's setting.
        beta_shift: MAG's beta (Eq. 4; MMSA 1).
        dropout_prob: MAG's dropout (Eq. 5; MMSA 0.3 / 0.2 / 0.1).
        head_dropout: dropout on the pooled [CLS] state (MMSA: BERT's
            hidden_dropout_prob, 0.1).
        injection_index: number of BERT layers run before the gate (0: on
            the embeddings, MMSA's; up to the number of layers).
        use_mag: ablation: False is BERT alone (audio/vision not read).
        task_loss: "mae" (MMSA), "mse" or "huber".
        **kwargs: `MSAModel` arguments.

    Example (a tiny random BERT; use `backbone_preset=<directory>` for a
    pretrained one):

    >>> import keras_hub, numpy as np
    >>> from keras_msa.layers import TextBackbone
    >>> bert = keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=2,
    ...     num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=6)
    >>> model = MAGBERT(text_backbone=TextBackbone(bert), dropout_prob=0.3)
    >>> batch = {"text_token_ids": np.ones((2, 6), "int32"),
    ...          "text_padding_mask": np.ones((2, 6), bool),
    ...          "audio": np.zeros((2, 6, 5), "float32"),
    ...          "vision": np.zeros((2, 6, 4), "float32")}
    >>> tuple(model(batch)["sentiment"].shape)
    (2, 1)
    """

    presets = {
        name: {"beta_shift": beta, "dropout_prob": dropout, "head_dropout": 0.1, "injection_index": 0,
               "sequence_length": 50}
        for name, (beta, dropout, _) in _MMSA.items()
    }

    #: MMSA's trainer (trains/singleTask/BERT_MAG.py): one Adam over every
    #: parameter, BERT included, at the dataset's rate; no clipping, no
    #: schedule; early stop after 8 epochs without a better validation loss.
    training_presets = {
        name: {
            "MMSA": {"optimizer": "adam", "epsilon": 1e-8, "l2_weight_decay": 0.0, "learning_rate": lr,
                     "backbone_learning_rate": lr, "batch_size": 32, "patience": 8, "monitor": "loss"},
            "our choice": {"epochs": 100},
            "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling",
                      "backbone_learning_rate": "MMSA's one Adam over all parameters: BERT's rate is the model's",
                      "l2_weight_decay": "MMSA's weight_decay 0.0 (torch Adam's coupled L2 term)"},
        }
        for name, (_, _, lr) in _MMSA.items()
    }

    def __init__(
        self,
        text_backbone=None,
        backbone_preset=None,
        sequence_length=50,
        fine_tune=None,
        beta_shift=1.0,
        dropout_prob=0.3,
        head_dropout=0.1,
        injection_index=0,
        use_mag=True,
        task_loss="mae",
        **kwargs,
    ):
        super().__init__(task_loss=task_loss, **kwargs)
        self._init_text_backbone(text_backbone, backbone_preset, sequence_length, fine_tune, uses_pooler=True)
        if self.text_backbone is None:
            raise ValueError(
                "MAGBERT runs its gate inside a BERT: pass text_backbone=TextBackbone(...) or "
                "backbone_preset=<keras-hub preset or directory> (MMSA: bert-base-uncased)."
            )
        if self._pooled_dense is None:
            raise ValueError(
                f"MAGBERT reads BERT's pooled [CLS] state (MMSA's head); the backbone "
                f"{type(self.text_backbone.backbone).__name__} has no pooled_dense."
            )
        depth = self.text_backbone.num_layers
        if not 0 <= injection_index <= depth:
            raise ValueError(
                f"MAGBERT: injection_index={injection_index} must lie in [0, {depth}] (the number of "
                f"BERT layers run before the gate; MMSA: 0)."
            )
        self.hidden_dim = self.text_backbone.hidden_dim
        self.beta_shift = beta_shift
        self.dropout_prob = dropout_prob
        self.head_dropout = head_dropout
        self.injection_index = injection_index
        self.use_mag = use_mag
        self.mag = (
            MultimodalAdaptationGate(beta_shift=beta_shift, dropout=dropout_prob, name="mag") if use_mag else None
        )
        self.head_dropout_layer = layers.Dropout(head_dropout)
        self.head = layers.Dense(1, dtype="float32", name="sentiment_head")

    def build(self, input_shape):
        # Every weight from the batch shapes, so a reloaded `.keras` file
        # restores them all (the backbone is a built functional model).
        if not isinstance(input_shape, dict):
            raise TypeError(f"MAGBERT is built from a batch dict of shapes; got {input_shape!r}.")
        if self.mag is not None:
            for key in ("audio", "vision"):
                if key not in input_shape:
                    raise KeyError(
                        f"MAGBERT needs word-aligned '{key}' [batch, tokens, dim] (a missing modality is "
                        f"zeros with an all-False mask); the batch holds {sorted(input_shape)}. "
                        f"Use use_mag=False for text only."
                    )
            self.mag.build((None, None, self.hidden_dim), tuple(input_shape["audio"]), tuple(input_shape["vision"]))
        self.head.build((None, self.hidden_dim))
        self.built = True

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            raise TypeError(f"MAGBERT takes a batch dict (docs/data.md keys); got {type(inputs).__name__}.")
        backbone = self.text_backbone
        tokens = backbone.tokenize(inputs)
        hidden, mask = backbone.embed(tokens, training=training)
        if self.mag is not None:
            audio, audio_mask = get_modality(inputs, "audio")
            vision, vision_mask = get_modality(inputs, "vision")
        for i in range(backbone.num_layers + 1):
            if self.mag is not None and i == self.injection_index:
                hidden = self.mag(hidden, audio, vision, audio_mask=audio_mask, vision_mask=vision_mask,
                                  training=training)
            if i < backbone.num_layers:
                hidden = backbone.run_layer(i, hidden, mask, training=training)
        pooled = self._pooled_dense(hidden[:, 0, :])
        return {"sentiment": self.head(self.head_dropout_layer(pooled, training=training))}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                **self._text_backbone_config(),
                "beta_shift": self.beta_shift,
                "dropout_prob": self.dropout_prob,
                "head_dropout": self.head_dropout,
                "injection_index": self.injection_index,
                "use_mag": self.use_mag,
            }
        )
        return config
