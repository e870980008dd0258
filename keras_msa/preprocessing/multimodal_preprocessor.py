"""Raw sentence, waveform and face crops -> the batch dict of docs/data.md."""

import keras
import numpy as np

#: The raw inputs a `MultimodalPreprocessor` reads (and a raw-media
#: SavedModel takes): dtype and shape without the batch dimension.
RAW_INPUTS = {
    "text": ("string", ()),
    "waveform": ("float32", ("samples",)),
    "waveform_length": ("int32", ()),
    "faces": ("uint8", ("frames", "size", "size", 3)),
    "face_count": ("int32", ()),
}
_TEXT_MODES = ("features", "tokens", "raw")


@keras.saving.register_keras_serializable(package="keras_msa")
class MultimodalPreprocessor(keras.layers.Layer):
    """The preprocessing half of a raw-media model, keras-hub style.

    As keras-hub's `Preprocessor` it owns a tokenizer (or text encoder), an
    audio converter and an image (face) converter, each its own layer; unlike
    keras-hub's, whose preprocessors run in `tf.data` and hold no trainable
    weights, it runs inside the model (the face CNN may be fine-tuned, and
    the exported SavedModel takes raw media). Raw inputs:

    | key | dtype, shape |
    | --- | --- |
    | `text` | string `[B]`: the sentence ("" when there is none) |
    | `waveform`, `waveform_length` | float32 `[B, N]` mono 16 kHz, zero-padded; int32 `[B]` real samples |
    | `faces`, `face_count` | uint8 `[B, F, S, S, 3]` RGB face crops; int32 `[B]` real crops |

    Output: the batch dict of docs/data.md. Text, by `text_mode`:

    - "features" (`text_encoder`, a frozen `keras_msa.layers.TextBackbone`):
      `text` float32 `[B, L, hidden]` (its token-level hidden states) and
      `text_mask`; an empty sentence gives an all-False mask;
    - "tokens" (`tokenizer`, a `keras_msa.preprocessing.Tokenizer`):
      `text_token_ids`, `text_padding_mask`, `text_segment_ids`, for a model
      whose own text backbone reads tokens (CrossSent in backbone mode);
    - "raw" (neither): the sentences themselves under `text_raw`.

    `audio`/`audio_mask` come from `audio_converter` (an `AudioConverter`)
    and `vision`/`vision_mask` from `face_converter` (a `FaceConverter`).
    A missing modality (zero-length waveform, no face) is zeros with an
    all-False mask, never an error. A converter that is None leaves its
    modality (and its raw inputs) out.

    Args:
        text_encoder: a `TextBackbone` for text mode "features".
        tokenizer: a `Tokenizer` for text mode "tokens".
        audio_converter: an `AudioConverter` or None.
        face_converter: a `FaceConverter` or None.
        fine_tune_text: train the text encoder too (default False: frozen,
            run without dropout).
        **kwargs: `keras.layers.Layer` arguments.

    Example:

        pre = MultimodalPreprocessor(
            text_encoder=TextBackbone.from_preset(minilm_dir, sequence_length=32, fine_tune=False),
            audio_converter=AudioConverter(), face_converter=FaceConverter())
        batch = pre(raw_batch([clip], ["what a film"]))
        # batch["text"] [1, 32, 384], batch["audio"] [1, T_a, 39], batch["vision"] [1, F, 135]
    """

    def __init__(self, text_encoder=None, tokenizer=None, audio_converter=None, face_converter=None,
                 fine_tune_text=False, **kwargs):
        super().__init__(**kwargs)
        text_encoder, tokenizer, audio_converter, face_converter = (
            keras.saving.deserialize_keras_object(v) if isinstance(v, dict) else v
            for v in (text_encoder, tokenizer, audio_converter, face_converter)
        )
        if text_encoder is not None and tokenizer is not None:
            raise ValueError("MultimodalPreprocessor: give a text_encoder (text features) or a tokenizer "
                             "(token ids), not both.")
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.audio_converter = audio_converter
        self.face_converter = face_converter
        self.fine_tune_text = bool(fine_tune_text)
        if text_encoder is not None:
            text_encoder.set_fine_tune(self.fine_tune_text)

    @property
    def text_mode(self):
        if self.text_encoder is not None:
            return "features"
        return "tokens" if self.tokenizer is not None else "raw"

    @property
    def face_size(self):
        """Side of the face crops the probe batch holds (the CNN's input side)."""
        return None if self.face_converter is None else self.face_converter.image_size

    @property
    def input_keys(self):
        keys = ["text"]
        if self.audio_converter is not None:
            keys += ["waveform", "waveform_length"]
        if self.face_converter is not None:
            keys += ["faces", "face_count"]
        return keys

    def feature_dims(self):
        """`{modality: width}` of the features this preprocessor writes."""
        dims = {}
        if self.text_encoder is not None:
            dims["text"] = int(self.text_encoder.hidden_dim)
        if self.audio_converter is not None:
            dims["audio"] = int(self.audio_converter.feature_dim)
        if self.face_converter is not None:
            dims["vision"] = int(self.face_converter.feature_dim)
        return dims

    def output_shapes(self):
        """The batch shapes (batch and time free) of `call`'s output, for
        building the model that reads them."""
        shapes = {}
        if self.text_mode == "features":
            length = self.text_encoder.sequence_length
            shapes["text"] = (None, length, int(self.text_encoder.hidden_dim))
            shapes["text_mask"] = (None, length)
        elif self.text_mode == "tokens":
            length = self.tokenizer.sequence_length
            shapes.update({k: (None, length) for k in ("text_token_ids", "text_padding_mask", "text_segment_ids")})
        else:
            shapes["text_raw"] = (None,)
        if self.audio_converter is not None:
            shapes["audio"] = (None, None, int(self.audio_converter.feature_dim))
            shapes["audio_mask"] = (None, None)
        if self.face_converter is not None:
            shapes["vision"] = (None, None, int(self.face_converter.feature_dim))
            shapes["vision_mask"] = (None, None)
        return shapes

    def build(self, input_shape=None):
        self.built = True

    def _get(self, inputs, key):
        if key not in inputs:
            dtype, shape = RAW_INPUTS[key]
            raise KeyError(
                f"MultimodalPreprocessor needs raw input '{key}' ({dtype} [batch{''.join(', ' + str(s) for s in shape)}]);"
                f" the inputs hold {sorted(inputs)}. A missing modality is a zero length / count, not an absent key."
            )
        return inputs[key]

    def call(self, inputs, training=None):
        import tensorflow as tf

        if not isinstance(inputs, dict):
            raise TypeError(f"MultimodalPreprocessor takes a dict of raw inputs {sorted(RAW_INPUTS)}; got "
                            f"{type(inputs).__name__}.")
        sentences = tf.convert_to_tensor(self._get(inputs, "text"))
        if sentences.dtype != tf.string:
            raise TypeError(f"MultimodalPreprocessor: 'text' must be strings [batch]; got {sentences.dtype.name}.")
        if sentences.shape.rank == 2:
            sentences = tf.squeeze(sentences, axis=1)
        batch = {}
        if self.text_mode == "features":
            out = self.text_encoder(sentences, training=bool(training) and self.fine_tune_text)
            has_text = tf.strings.length(tf.strings.strip(sentences)) > 0
            mask = tf.logical_and(tf.cast(out["padding_mask"], tf.bool), has_text[:, None])
            x = out["sequence_output"]
            batch["text"] = tf.where(mask[..., None], x, tf.zeros_like(x))
            batch["text_mask"] = mask
        elif self.text_mode == "tokens":
            batch.update(self.tokenizer(sentences))
        else:
            batch["text_raw"] = sentences
        if self.audio_converter is not None:
            out = self.audio_converter(self._get(inputs, "waveform"), self._get(inputs, "waveform_length"))
            batch["audio"], batch["audio_mask"] = out["features"], out["mask"]
        if self.face_converter is not None:
            out = self.face_converter(self._get(inputs, "faces"), self._get(inputs, "face_count"), training=training)
            batch["vision"], batch["vision_mask"] = out["features"], out["mask"]
        return batch

    def probe_inputs(self, batch_size=3, samples=8000, frames=3, seed=0):
        """A random raw batch (sentences, noise waveforms, random crops) with
        one row missing its audio and another its faces, for export checks."""
        from keras_msa.preprocessing.raw_batch import PROBE_SENTENCES

        rng = np.random.default_rng(seed)
        batch = {"text": np.array([PROBE_SENTENCES[i % len(PROBE_SENTENCES)] for i in range(batch_size)])}
        if self.audio_converter is not None:
            batch["waveform"] = (0.1 * rng.standard_normal((batch_size, samples))).astype("float32")
            lengths = rng.integers(samples // 2, samples + 1, size=batch_size).astype("int32")
            lengths[0] = 0
            batch["waveform_length"] = lengths
        if self.face_converter is not None:
            size = self.face_size
            batch["faces"] = rng.integers(0, 256, (batch_size, frames, size, size, 3)).astype("uint8")
            counts = rng.integers(1, frames + 1, size=batch_size).astype("int32")
            counts[-1] = 0
            batch["face_count"] = counts
        return batch

    def get_config(self):
        config = super().get_config()
        for name in ("text_encoder", "tokenizer", "audio_converter", "face_converter"):
            value = getattr(self, name)
            config[name] = None if value is None else keras.saving.serialize_keras_object(value)
        config["fine_tune_text"] = self.fine_tune_text
        return config
