"""A pretrained text encoder (keras-hub BERT / RoBERTa) usable layer by layer."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_msa")
class TextBackbone(keras.layers.Layer):
    """Wraps a keras-hub BERT or RoBERTa backbone so that other layers can run
    between its transformer layers, with in-graph tokenization.

    The backbone is split into its embedding stage (`embed`) and its list of
    `transformer_layers`; `call` runs them all. A model that injects something
    after layer `i` (CrossSent's GMRA, seed 001 Sec. 3.2) calls `embed`, then
    the layers one by one. `fine_tune=False` freezes every backbone weight.

    Inputs are either raw sentences (a string tensor `[B]` or `[B, 1]`), which
    the keras-hub preprocessor tokenizes in the graph (tensorflow-text ops, so
    a SavedModel takes strings), or a dict of token tensors: `token_ids`,
    `padding_mask` (and `segment_ids` for BERT), or the same under the batch
    keys of DATA.md: `text_token_ids`, `text_padding_mask`,
    `text_segment_ids`; a batch dict with raw sentences under `text_raw` (or
    `raw_text`) works too.

    Masking: the padding mask (from the tokenizer or the input) is passed to
    every transformer layer, so padded tokens never influence real ones; it is
    returned with the hidden states so that pooling can ignore them.

    Args:
        backbone: a `keras_hub.models.BertBackbone` or `RobertaBackbone`
            (any backbone with the same embedding/transformer layout).
        preprocessor: optional keras-hub text classifier preprocessor (e.g.
            `BertTextClassifierPreprocessor`) used for raw string inputs.
        fine_tune: False freezes the backbone's weights.
        **kwargs: `keras.layers.Layer` arguments.

    Example (a tiny randomly initialised BERT; for a pretrained one use
    `TextBackbone.from_preset(directory)` on a keras-hub preset or a Hugging
    Face-format checkpoint directory):

    >>> import keras_hub, numpy as np
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    >>> tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab)
    >>> pre = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    >>> bert = keras_hub.models.BertBackbone(vocabulary_size=len(vocab), num_layers=2,
    ...     num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=8)
    >>> tb = TextBackbone(bert, pre)
    >>> out = tb(np.array(["good film", "bad"]))
    >>> tuple(out["sequence_output"].shape), tuple(out["padding_mask"].shape)
    ((2, 8, 8), (2, 8))
    """

    def __init__(self, backbone, preprocessor=None, fine_tune=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        if isinstance(preprocessor, dict):
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        missing = [
            a for a in ("transformer_layers", "embeddings_layer_norm") if not hasattr(backbone, a)
        ]
        if missing:
            raise ValueError(
                f"TextBackbone supports keras-hub BERT/RoBERTa-style backbones; "
                f"{type(backbone).__name__} has no {missing}."
            )
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.set_fine_tune(fine_tune)
        self._uses_segments = hasattr(backbone, "segment_embedding")

    @classmethod
    def from_preset(cls, preset, sequence_length=50, fine_tune=True, load_weights=True, **kwargs):
        """Loads backbone and tokenizer from a keras-hub preset or a local
        directory (a Hugging Face BERT/RoBERTa checkpoint is converted by
        keras-hub). `sequence_length` counts the special tokens."""
        import keras_hub

        backbone = keras_hub.models.Backbone.from_preset(str(preset), load_weights=load_weights)
        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
            str(preset), sequence_length=sequence_length
        )
        return cls(backbone, preprocessor, fine_tune=fine_tune, **kwargs)

    def set_fine_tune(self, fine_tune):
        """Freezes (False) or unfreezes (True) every backbone weight."""
        self.fine_tune = bool(fine_tune)
        self.backbone.trainable = self.fine_tune

    # Structure exposed to models that interleave their own layers.
    @property
    def transformer_layers(self):
        return self.backbone.transformer_layers

    @property
    def num_layers(self):
        return len(self.backbone.transformer_layers)

    @property
    def hidden_dim(self):
        return self.backbone.hidden_dim

    @property
    def sequence_length(self):
        if self.preprocessor is None:
            return None
        return self.preprocessor.sequence_length

    def build(self, input_shape=None):
        # keras-hub backbones are functional models: already built.
        self.built = True

    def tokenize(self, inputs):
        """Token dict `{token_ids, padding_mask[, segment_ids]}` from raw
        strings or from a token dict (docs/data.md keys accepted)."""
        if isinstance(inputs, dict):
            tokens = {}
            for key in ("token_ids", "padding_mask", "segment_ids"):
                for candidate in (key, f"text_{key}"):
                    if candidate in inputs:
                        tokens[key] = inputs[candidate]
                        break
            if "token_ids" not in tokens:
                for raw_key in ("text_raw", "raw_text"):
                    if raw_key in inputs:
                        return self.tokenize(inputs[raw_key])
                raise KeyError(
                    "TextBackbone expects raw strings, or a dict with 'token_ids' / "
                    "'text_token_ids' (int [batch, seq]) and a padding mask; got keys "
                    f"{sorted(inputs)}."
                )
            token_ids = ops.cast(tokens["token_ids"], "int32")
            if "padding_mask" in tokens:
                padding_mask = ops.cast(tokens["padding_mask"], "bool")
            else:
                padding_mask = ops.ones(ops.shape(token_ids), dtype="bool")
            out = {"token_ids": token_ids, "padding_mask": padding_mask}
            if self._uses_segments:
                seg = tokens.get("segment_ids")
                out["segment_ids"] = (
                    ops.zeros_like(token_ids) if seg is None else ops.cast(seg, "int32")
                )
            return out
        if self.preprocessor is None:
            raise ValueError(
                "TextBackbone got raw strings but has no preprocessor: build it with "
                "TextBackbone.from_preset(...) or pass preprocessor=..."
            )
        import tensorflow as tf

        strings = tf.convert_to_tensor(inputs)
        if strings.dtype != tf.string:
            raise TypeError(
                f"TextBackbone: raw text must be a string tensor [batch]; got dtype "
                f"{strings.dtype.name} and shape {strings.shape}."
            )
        if strings.shape.rank == 2:
            strings = tf.squeeze(strings, axis=1)
        out = dict(self.preprocessor(strings))
        out["token_ids"] = ops.cast(out["token_ids"], "int32")
        out["padding_mask"] = ops.cast(out["padding_mask"], "bool")
        if self._uses_segments:
            out["segment_ids"] = ops.cast(
                out.get("segment_ids", ops.zeros_like(out["token_ids"])), "int32"
            )
        else:
            out.pop("segment_ids", None)
        return out

    def embed(self, tokens, training=None):
        """Embedding stage: returns `(hidden [B, T, d], padding_mask [B, T])`."""
        bb = self.backbone
        token_ids = tokens["token_ids"]
        if self._uses_segments:
            x = bb.token_embedding(token_ids)
            x = bb.embeddings_add(
                (x, bb.position_embedding(x), bb.segment_embedding(tokens["segment_ids"]))
            )
        elif hasattr(bb, "embeddings"):
            x = bb.embeddings(token_ids)
        else:
            raise ValueError(f"TextBackbone: unsupported embedding layout in {type(bb).__name__}.")
        x = bb.embeddings_layer_norm(x)
        x = bb.embeddings_dropout(x, training=training)
        return x, tokens["padding_mask"]

    def run_layer(self, index, hidden, padding_mask, training=None):
        """Applies transformer layer `index` (0-based)."""
        return self.backbone.transformer_layers[index](
            hidden, padding_mask=padding_mask, training=training
        )

    def call(self, inputs, training=None):
        tokens = self.tokenize(inputs)
        hidden, padding_mask = self.embed(tokens, training=training)
        for i in range(self.num_layers):
            hidden = self.run_layer(i, hidden, padding_mask, training=training)
        return {"sequence_output": hidden, "padding_mask": padding_mask}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "preprocessor": (
                    None
                    if self.preprocessor is None
                    else keras.saving.serialize_keras_object(self.preprocessor)
                ),
                "fine_tune": self.fine_tune,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("preprocessor") is not None:
            config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)
