"""Decoded clips -> the padded numpy raw-input batch a `MultimodalPreprocessor` reads."""

import numpy as np

#: Sentences used by probe batches (export checks, warm-up requests).
PROBE_SENTENCES = ("i really loved this movie", "it was boring and far too long", "okay")


def raw_batch(clips, texts, face_size=None):
    """Pads decoded clips into one raw-input batch dict.

    Args:
        clips: `keras_msa.features.media.Clip`s (or anything with `waveform`
            float32 `[N]` and `faces` uint8 `[F, S, S, 3]`), one per row;
            None for a row without media (text only).
        texts: the sentences, one per row ("" or None for none).
        face_size: side S of the crops of rows without faces (default: the
            first clip's, else `keras_msa.features.media.FACE_SIZE` = 64).

    Returns:
        `{"text": str [B], "waveform": float32 [B, N_max], "waveform_length":
        int32 [B], "faces": uint8 [B, F_max, S, S, 3], "face_count": int32
        [B]}`, zero-padded at the end; `N_max` and `F_max` are at least 1, so
        a batch with no audio or no face at all keeps its axes (lengths 0).
    """
    clips, texts = list(clips), list(texts)
    if len(clips) != len(texts):
        raise ValueError(f"raw_batch: {len(clips)} clips but {len(texts)} texts; give one text per clip.")
    waves = [np.zeros(0, np.float32) if c is None else np.asarray(c.waveform, np.float32).reshape(-1) for c in clips]
    faces = [None if c is None else np.asarray(c.faces) for c in clips]
    if face_size is None:
        sizes = [f.shape[1] for f in faces if f is not None and f.ndim == 4 and len(f)]
        if sizes:
            face_size = int(sizes[0])
        else:
            from keras_msa.features.media import FACE_SIZE

            face_size = FACE_SIZE
    for i, f in enumerate(faces):
        if f is not None and len(f) and (f.ndim != 4 or f.shape[1:] != (face_size, face_size, 3)):
            raise ValueError(f"raw_batch: the faces of row {i} have shape {f.shape}; expected uint8 "
                             f"[frames, {face_size}, {face_size}, 3] RGB crops.")
    n = max([len(w) for w in waves] + [1])
    f_max = max([len(f) for f in faces if f is not None] + [1])
    batch = {
        "text": np.array(["" if t is None else str(t) for t in texts], dtype=object).astype(str),
        "waveform": np.zeros((len(clips), n), np.float32),
        "waveform_length": np.array([len(w) for w in waves], np.int32),
        "faces": np.zeros((len(clips), f_max, face_size, face_size, 3), np.uint8),
        "face_count": np.array([0 if f is None else len(f) for f in faces], np.int32),
    }
    for i, (w, f) in enumerate(zip(waves, faces)):
        batch["waveform"][i, : len(w)] = w
        if f is not None and len(f):
            batch["faces"][i, : len(f)] = f
    return batch
