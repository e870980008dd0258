"""Sentiment of one's own clips: a video or audio file (and its sentence) in, a score out.

    import keras_msa
    result = keras_msa.predict("runs/media/model.keras", video="clip.mp4", text="what a film")
    result["sentiment"], result["modalities"]   # 1.37, {"text": True, "audio": True, "vision": True}

The model is a raw-media model: a `.keras` file holding a
`keras_msa.preprocessing.MediaModel`, or a SavedModel exported from one
(whose `serving_default` takes `text`, `waveform`, `waveform_length`,
`faces`, `face_count`). Files are decoded by `keras_msa.features.media.load_clip`
(16 kHz mono audio, face crops of the largest face per sampled frame), so the
features are computed exactly as in training, by the model's own layers. A
model trained on precomputed features cannot take media: it is refused with
the feature widths it expects.
"""

import csv
import math
import os

import numpy as np

from keras_msa.preprocessing.multimodal_preprocessor import RAW_INPUTS

MODALITY_INPUTS = {"text": "text", "audio": "waveform", "vision": "faces"}


class NotARawMediaModelError(ValueError):
    """The model takes precomputed features, not raw media."""


def _describe_widths(widths):
    return ", ".join(f"'{k}' float32 [batch, time, {v}]" for k, v in sorted(widths.items())) or "(none recorded)"


def _refusal(model_path, widths):
    return NotARawMediaModelError(
        f"{model_path} was trained on precomputed features and cannot take raw media: it expects "
        f"{_describe_widths(widths)}. Compute those features with recipes/extract_features.py (the same "
        f"extractor the training data came from), or train a model with the preprocessor inside "
        f"(recipes/train_from_media.py) to predict from video, audio and text."
    )


class Predictor:
    """A loaded raw-media model (`.keras` or SavedModel) that scores clips.

    Args:
        model_path: a `.keras` file with a `MediaModel`, or a SavedModel
            directory exported from one.
        max_frames: at most this many video frames are searched for faces
            per clip (None: `load_clip`'s default).

    Raises:
        NotARawMediaModelError: the model reads precomputed features (the
            message lists their widths).
    """

    def __init__(self, model_path, max_frames=None):
        self.model_path = os.fspath(model_path)
        self.max_frames = max_frames
        self.model = None
        self.serving_fn = None
        if os.path.isdir(self.model_path):
            from keras_msa.export.saved_model import load_serving_fn

            self.serving_fn = load_serving_fn(self.model_path)
            specs = self.serving_fn.structured_input_signature[1]
            if not ({"waveform", "faces"} & set(specs)):
                widths = {k: s.shape[-1] for k, s in specs.items()
                          if k in MODALITY_INPUTS and s.shape.rank == 3}
                raise _refusal(self.model_path, widths)
            self.input_keys = sorted(specs)
            self.face_size = int(specs["faces"].shape[2]) if "faces" in specs else None
            self.sample_rate = 16000
        else:
            from keras_msa.data.validation import expected_dims_from_model
            from keras_msa.preprocessing.media_model import MediaModel
            from keras_msa.utils.loading import load_model

            model = load_model(self.model_path, label="--model_path")
            if not isinstance(model, MediaModel):
                raise _refusal(self.model_path, expected_dims_from_model(model))
            self.model = model
            pre = model.preprocessor
            self.input_keys = list(pre.input_keys)
            self.face_size = pre.face_size
            self.sample_rate = pre.audio_converter.sample_rate if pre.audio_converter is not None else 16000

    @property
    def reads(self):
        """The modalities the model reads."""
        return [m for m, key in MODALITY_INPUTS.items() if key in self.input_keys]

    def load(self, path):
        """Decodes `path` (`keras_msa.features.media.load_clip`); raises
        `MediaError` naming the file when it cannot be read."""
        from keras_msa.features import media

        return media.load_clip(path, sample_rate=self.sample_rate, face_size=self.face_size or media.FACE_SIZE,
                               max_frames=self.max_frames)

    def raw_inputs(self, clips, texts):
        """The raw-input batch of decoded clips (None: text only) and texts."""
        from keras_msa.preprocessing.raw_batch import raw_batch

        batch = raw_batch(clips, texts, face_size=self.face_size)
        return {k: v for k, v in batch.items() if k in self.input_keys}

    def scores(self, batch):
        """`sentiment` float `[B]` of a raw-input batch."""
        if self.serving_fn is not None:
            from keras_msa.export.saved_model import serve_numpy

            out = serve_numpy(self.serving_fn, batch)
        else:
            import tensorflow as tf

            tensors = {k: tf.constant(v) for k, v in batch.items()}
            out = {k: np.asarray(v) for k, v in self.model(tensors, training=False).items()}
        return np.asarray(out["sentiment"], np.float64).reshape(-1)

    def found(self, clip, text):
        """`{modality: True/False}`: which modalities the model got real data for."""
        has = {
            "text": bool(text and str(text).strip()),
            "audio": clip is not None and np.size(clip.waveform) > 0,
            "vision": clip is not None and len(clip.faces) > 0,
        }
        return {m: bool(has[m]) for m in self.reads}

    def predict(self, items, batch_size=8, raise_errors=False):
        """Scores `items`, each `(media path or None, text)`.

        A file that cannot be decoded raises `MediaError` with
        `raise_errors`, else its row gets NaN and the error in `problems`.

        Returns one dict per item: `source`, `text`, `sentiment` (float, NaN
        when the file could not be read), `modalities` (found or not, for each
        modality the model reads), `problems` (list of str, e.g. "no face
        found", or the decoding error).
        """
        from keras_msa.features.media import MediaError

        results = []
        items = list(items)
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            rows, clips, texts = [], [], []
            for path, text in chunk:
                result = {"source": path, "text": text or "", "sentiment": math.nan, "modalities": {}, "problems": []}
                results.append(result)
                clip = None
                if path:
                    try:
                        clip = self.load(path)
                    except MediaError as e:
                        if raise_errors:
                            raise
                        result["problems"].append(str(e))
                        continue
                    result["problems"].extend(clip.problems)
                result["modalities"] = self.found(clip, text)
                rows.append(result)
                clips.append(clip)
                texts.append(text or "")
            if rows:
                for result, score in zip(rows, self.scores(self.raw_inputs(clips, texts))):
                    result["sentiment"] = float(score)
        return results


def sentiment_word(score):
    """'positive' / 'negative' / 'neutral' (|score| < 0.5, a third of MOSI's unit step)."""
    if not math.isfinite(score):
        return "unknown"
    if abs(score) < 0.5:
        return "neutral"
    return "positive" if score > 0 else "negative"


def read_input_csv(path):
    """`[(media path, text)]` from a CSV with a `path` (or `video` / `audio`)
    column and an optional `text` column; relative paths are taken from the
    CSV's folder."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        column = next((c for c in ("path", "video", "audio") if c in header), None)
        if column is None:
            raise ValueError(f"--input_csv={path}: needs a 'path' (or 'video' / 'audio') column and optionally "
                             f"'text'; its header is {header}.")
        base = os.path.dirname(os.path.abspath(path))
        items = []
        for row in reader:
            media = (row.get(column) or "").strip()
            if media and not os.path.isabs(media):
                media = os.path.join(base, media)
            items.append((media or None, row.get("text") or ""))
    if not items:
        raise ValueError(f"--input_csv={path}: no rows after the header.")
    return items


def write_predictions_csv(results, path, reads):
    """Writes one row per result (atomically): source, text, sentiment, one
    `<modality>_found` column per modality the model reads, problems."""
    from keras_msa.utils.files import atomic_path

    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["source", "text", "sentiment", "label"] + [f"{m}_found" for m in reads] + ["problems"])
            for r in results:
                score = r["sentiment"]
                writer.writerow(
                    [r["source"] or "", r["text"], "" if not math.isfinite(score) else f"{score:.6f}",
                     sentiment_word(score)]
                    + [int(r["modalities"].get(m, False)) if r["modalities"] else "" for m in reads]
                    + ["; ".join(r["problems"])]
                )
    return path


def predict(model_path, video=None, audio=None, text="", input_csv=None, output_csv=None, batch_size=8,
            max_frames=None):
    """Sentiment of one clip (`video` or `audio` file, and/or `text`) or of
    every row of `input_csv` (written to `output_csv` when given).

    Returns the result dict of `Predictor.predict` for one clip, or the list
    of them for `input_csv`. Raises `NotARawMediaModelError` for a model
    trained on precomputed features and `MediaError` for a single clip that
    cannot be decoded (a CSV row that cannot is reported in its `problems`).
    """
    if sum(x is not None for x in (video, audio, input_csv)) > 1:
        raise ValueError("predict: give one of video, audio or input_csv.")
    predictor = Predictor(model_path, max_frames=max_frames)
    if input_csv is not None:
        results = predictor.predict(read_input_csv(input_csv), batch_size=batch_size)
        if output_csv:
            write_predictions_csv(results, output_csv, predictor.reads)
        return results
    path = video if video is not None else audio
    if path is None and not (text and text.strip()):
        raise ValueError("predict: give a video or audio file, or a text, to predict from.")
    return predictor.predict([(path, text)], raise_errors=True)[0]
