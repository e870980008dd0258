"""Reader for MMSA pickles (`aligned_50.pkl`, `unaligned_50.pkl`, ...) of
CMU-MOSI, CMU-MOSEI, CH-SIMS and CH-SIMS v2.

Layout (as MMSA's `MMDataset` reads it): a dict `{train, valid, test}`, each a
dict of arrays over the split's N examples:

* `id` (N,) "video$_$clip", `raw_text` (N,) strings;
* `text` (N, L, 768) BERT features, `text_bert` (N, 3, L) = input ids,
  attention mask, segment ids;
* `audio` (N, La, Da), `vision` (N, Lv, Dv), zero-padded at the end;
* `audio_lengths`, `vision_lengths` (N,) in *unaligned* files only;
* `regression_labels` (N,), plus `regression_labels_T/_A/_V` for SIMS;
  `annotations`, `classification_labels` (not kept: they derive from the
  regression labels).

What the reader does, following MMSA:

* valid lengths: text = sum of the `text_bert` attention mask (without
  `text_bert`: the index after the last non-zero row of `text`). Unaligned
  files give audio/vision lengths in `audio_lengths`/`vision_lengths`;
  aligned files have none, and audio/vision get the text length (MMSA
  passes the text lengths for every modality of aligned data). Each
  example's sequences are cut to their valid length (the rest is padding).
  A stated length longer than the array is clipped to the array and counted
  (repair `"<m>_length_clipped"`).
* `-inf` in `audio` is set to 0, as MMSA does (`audio[audio == -inf] = 0`),
  and every such value is counted (repair `"audio_neg_inf_to_zero"`). Any
  other NaN/inf is an error.
* `text_bert` rows become `text_token_ids`, `text_padding_mask`,
  `text_segment_ids` (cut to the text length).
* labels: `regression_labels` -> `sentiment`; SIMS `_T/_A/_V` ->
  `sentiment_text/_audio/_vision`. Declared ranges: [-3, 3] for MOSI/MOSEI,
  [-1, 1] for SIMS/SIMSv2; a label outside is an error.

The file is loaded with `keras_msa.data.safe_pickle` (no code runs).
"""

import os

import numpy as np

from keras_msa.data.errors import DataFormatError
from keras_msa.data.safe_pickle import safe_load

SPLITS = ("train", "valid", "test")
LABEL_RANGES = {
    "mosi": (-3.0, 3.0),
    "mosei": (-3.0, 3.0),
    "sims": (-1.0, 1.0),
    "simsv2": (-1.0, 1.0),
}
#: Audio width -> dataset, for files whose name does not say.
_AUDIO_DIMS = {5: "mosi", 74: "mosei", 33: "sims", 25: "simsv2"}


def guess_dataset(path, audio_dim=None, names=("simsv2", "sims", "mosei", "mosi", "iemocap", "urfunny")):
    """The dataset named in `path` (case-insensitive; SIMS v2 before SIMS,
    MOSEI before MOSI), else the one `audio_dim` suggests, else None."""
    text = os.path.abspath(os.fspath(path)).lower().replace("-", "").replace("_", "").replace(" ", "")
    aliases = {"simsv2": ("simsv2", "sims2", "chsimsv2"), "urfunny": ("urfunny", "humor", "funny")}
    for name in names:
        for alias in aliases.get(name, (name,)):
            if alias in text:
                return name
    if audio_dim is not None:
        return _AUDIO_DIMS.get(int(audio_dim))
    return None


def load_pickle_splits(path, required_keys, splits=SPLITS):
    """Loads a pickle safely and checks it is `{split: {key: array}}`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file.")
    data = safe_load(path)
    if not isinstance(data, dict):
        raise DataFormatError(f"expected a dict of splits {list(splits)}, got {type(data).__name__}", path=path)
    missing = [s for s in splits if s not in data]
    if missing:
        raise DataFormatError(
            f"missing split(s) {missing}; the file holds {sorted(map(str, data))}", path=path
        )
    for s in splits:
        if not isinstance(data[s], dict):
            raise DataFormatError(f"expected a dict of arrays, got {type(data[s]).__name__}", path=path, key=s)
        absent = [k for k in required_keys if k not in data[s]]
        if absent:
            raise DataFormatError(
                f"missing key(s) {absent}; the split holds {sorted(map(str, data[s]))}", path=path, key=s
            )
    return data


def as_array(value, path, key, ndim=None, dtype=None):
    """`np.asarray(value)` with a clear error on the wrong rank."""
    try:
        arr = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise DataFormatError(f"cannot be read as an array ({e})", path=path, key=key) from e
    if ndim is not None and arr.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        raise DataFormatError(f"expected {ndim} dimensions, got shape {list(arr.shape)}", path=path, key=key)
    return arr


def check_count(arrays, path, split):
    """All arrays agree on N (their first axis)."""
    counts = {k: len(v) for k, v in arrays.items()}
    if len(set(counts.values())) > 1:
        raise DataFormatError(f"arrays disagree on the number of examples: {counts}", path=path, key=split)
    return next(iter(counts.values())) if counts else 0


def float_features(arr, path, key, repairs=None, repair_name=None):
    """float32 features; `-inf` -> 0 counted under `repair_name` when given;
    any other NaN/inf is an error that says where."""
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise DataFormatError(f"expected float features, got dtype {arr.dtype}", path=path, key=key)
    arr = np.array(arr, dtype=np.float32, copy=True)
    if repair_name is not None:
        neg_inf = np.isneginf(arr)
        count = int(neg_inf.sum())
        if count:
            arr[neg_inf] = 0.0
            repairs[repair_name] = repairs.get(repair_name, 0) + count
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataFormatError(
            f"{int(bad.sum())} non-finite value(s) (first {arr[where]} at index {list(where)})",
            path=path, key=key,
        )
    return arr


def check_range(values, rng, path, key):
    if rng is None:
        return
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    bad = np.nonzero(((values < rng[0]) | (values > rng[1])).any(axis=1))[0]
    if len(bad):
        i = int(bad[0])
        raise DataFormatError(
            f"{len(bad)} label(s) outside [{rng[0]}, {rng[1]}] (first: example {i}, value "
            f"{values[i].tolist() if values.shape[1] > 1 else float(values[i, 0])})",
            path=path, key=key,
        )


def id_strings(ids, path, key):
    arr = np.asarray(ids)
    out = []
    for row in arr.reshape(len(arr), -1) if arr.ndim > 1 else arr.reshape(-1, 1):
        parts = [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in row]
        out.append("$_$".join(parts))
    return out


def _lengths(values, n, limit, path, key, repairs, name):
    arr = as_array(values, path, key).reshape(-1)
    if len(arr) != n:
        raise DataFormatError(f"{len(arr)} lengths for {n} examples", path=path, key=key)
    if not np.issubdtype(arr.dtype, np.number) or (arr < 0).any() or (arr != np.round(arr)).any():
        raise DataFormatError(f"lengths must be non-negative integers, got {arr[:5].tolist()}...", path=path, key=key)
    arr = arr.astype(np.int64)
    over = arr > limit
    if over.any():
        repairs[name] = repairs.get(name, 0) + int(over.sum())
        arr = np.minimum(arr, limit)
    return arr


def read_mmsa(path, dataset=None):
    """Reads an MMSA pickle; returns `(splits, meta)`.

    Args:
        path: the `.pkl` file.
        dataset: `"mosi"`, `"mosei"`, `"sims"` or `"simsv2"`; by default
            guessed from the path, then from the audio width.

    Returns:
        `splits`: `{"train"|"valid"|"test": [example dict, ...]}` in the
        layout `keras_msa.data.write_dataset` takes; `meta`: `{"dataset",
        "sources", "repairs", "label_ranges"}`.

    Raises:
        DataFormatError: a missing split or key, arrays that disagree on N,
            NaN/inf (other than audio -inf), labels out of range, a truncated
            or corrupt file; `UnsafePickleError` for a pickle that would run
            code.
    """
    path = os.fspath(path)
    data = load_pickle_splits(path, ("id", "text", "audio", "vision", "regression_labels"))
    audio_dim = np.asarray(data["train"]["audio"]).shape[-1] if np.ndim(data["train"]["audio"]) == 3 else None
    dataset = (dataset or guess_dataset(path, audio_dim, names=("simsv2", "sims", "mosei", "mosi")) or "mmsa").lower()
    rng = LABEL_RANGES.get(dataset)
    repairs = {}
    unimodal = all(f"regression_labels_{s}" in data["train"] for s in "TAV")
    label_keys = {"sentiment": "regression_labels"}
    if unimodal:
        label_keys.update(
            {"sentiment_text": "regression_labels_T", "sentiment_audio": "regression_labels_A",
             "sentiment_vision": "regression_labels_V"}
        )
    out = {}
    for split in SPLITS:
        d = data[split]
        key = lambda k: f"{split}/{k}"  # noqa: E731
        text = as_array(d["text"], path, key("text"), ndim=3)
        audio = as_array(d["audio"], path, key("audio"), ndim=3)
        vision = as_array(d["vision"], path, key("vision"), ndim=3)
        arrays = {"id": np.asarray(d["id"]), "text": text, "audio": audio, "vision": vision}
        labels = {}
        for name, k in label_keys.items():
            if k not in d:
                raise DataFormatError(f"missing key '{k}' (present in 'train')", path=path, key=split)
            labels[name] = as_array(d[k], path, key(k), dtype=None).reshape(len(np.asarray(d[k])), -1)
            if labels[name].shape[1] != 1:
                raise DataFormatError(f"expected one label per example, got shape {list(np.shape(d[k]))}",
                                      path=path, key=key(k))
            arrays[k] = labels[name]
        bert = None
        if "text_bert" in d:
            bert = as_array(d["text_bert"], path, key("text_bert"), ndim=3)
            arrays["text_bert"] = bert
            if bert.shape[1] != 3:
                raise DataFormatError(
                    f"expected (N, 3, L) = ids, attention mask, segment ids; got {list(bert.shape)}",
                    path=path, key=key("text_bert"),
                )
            if not np.isfinite(bert.astype(np.float64)).all() or (bert != np.round(bert)).any():
                raise DataFormatError("token ids must be finite integers", path=path, key=key("text_bert"))
            bert = bert.astype(np.int64)
        if "raw_text" in d:
            arrays["raw_text"] = np.asarray(d["raw_text"])
        n = check_count(arrays, path, split)
        text = float_features(text, path, key("text"))
        audio = float_features(audio, path, key("audio"), repairs, "audio_neg_inf_to_zero")
        vision = float_features(vision, path, key("vision"))
        for name, values in labels.items():
            values = as_array(values, path, key(label_keys[name]))
            if not np.issubdtype(values.dtype, np.number):
                raise DataFormatError(f"labels must be numbers, got dtype {values.dtype}",
                                      path=path, key=key(label_keys[name]))
            values = values.astype(np.float32)
            if not np.isfinite(values).all():
                i = int(np.argwhere(~np.isfinite(values))[0][0])
                raise DataFormatError(f"non-finite label at example {i}", path=path, key=key(label_keys[name]))
            check_range(values, rng, path, key(label_keys[name]))
            labels[name] = values[:, 0]

        if bert is not None:
            text_len = bert[:, 1, :].sum(axis=1)
            if bert.shape[2] != text.shape[1]:
                raise DataFormatError(
                    f"text_bert length {bert.shape[2]} differs from text length {text.shape[1]}",
                    path=path, key=key("text_bert"),
                )
        else:
            nonzero = np.abs(text).sum(axis=2) > 0
            text_len = np.where(nonzero.any(axis=1), text.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)
        text_len = _lengths(text_len, n, text.shape[1], path, key("text"), repairs, "text_length_clipped")
        if "audio_lengths" in d or "vision_lengths" in d:
            for k in ("audio_lengths", "vision_lengths"):
                if k not in d:
                    raise DataFormatError(f"missing key '{k}' (unaligned files have both lengths)",
                                          path=path, key=split)
            audio_len = _lengths(d["audio_lengths"], n, audio.shape[1], path, key("audio_lengths"), repairs,
                                 "audio_length_clipped")
            vision_len = _lengths(d["vision_lengths"], n, vision.shape[1], path, key("vision_lengths"), repairs,
                                  "vision_length_clipped")
        else:
            audio_len = _lengths(text_len, n, audio.shape[1], path, key("audio"), repairs, "audio_length_clipped")
            vision_len = _lengths(text_len, n, vision.shape[1], path, key("vision"), repairs,
                                  "vision_length_clipped")
        ids = id_strings(d["id"], path, key("id"))
        raw = arrays.get("raw_text")
        examples = []
        for i in range(n):
            ex = {
                "id": ids[i],
                "text": text[i, : text_len[i]],
                "audio": audio[i, : audio_len[i]],
                "vision": vision[i, : vision_len[i]],
            }
            if raw is not None:
                r = raw[i]
                ex["raw_text"] = r.decode("utf-8") if isinstance(r, bytes) else str(r)
            if bert is not None:
                ex["text_token_ids"] = bert[i, 0, : text_len[i]]
                ex["text_padding_mask"] = bert[i, 1, : text_len[i]]
                ex["text_segment_ids"] = bert[i, 2, : text_len[i]]
            for name, values in labels.items():
                ex[name] = np.float32(values[i])
            examples.append(ex)
        out[split] = examples
    meta = {
        "dataset": dataset,
        "sources": [os.path.abspath(path)],
        "repairs": repairs,
        "label_ranges": {k: rng for k in label_keys} if rng else {},
    }
    return out, meta
