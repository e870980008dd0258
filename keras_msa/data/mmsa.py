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
* the dataset (hence the label range and the metric scale) comes from the
  file's content: the audio/vision widths of `FEATURE_WIDTHS`, SIMS's
  unimodal label keys, labels beyond [-1, 1]; then from the file's own name,
  never from directory names. `--dataset` must be a known name, and one that
  contradicts the content is an error naming both. `meta["dataset_evidence"]`
  says how it was decided.
* refused with the file, split and key named: duplicate ids (in a split or
  across splits), ids that are not strings, attention masks other than a run
  of 1s then 0s, negative token ids, finite float64 values that overflow
  float32. A transcript that is NaN/None is missing (repair
  `"raw_text_missing"`), not the text "nan". A split whose arrays are all
  empty reads as `[]` (recipes/convert.py decides whether that is allowed).

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
#: Feature widths (text, audio, vision) of MMSA's releases (docs/data.md; SIMS v2
#: from MMSA's config). Audio and vision decide: the text width depends on the
#: text encoder (BERT 768, GloVe 300), the other two on the dataset's features.
FEATURE_WIDTHS = {
    "mosi": (768, 5, 20),
    "mosei": (768, 74, 35),
    "sims": (768, 33, 709),
    "simsv2": (768, 25, 177),
}
#: Other spellings of dataset names (after lower-casing and dropping "-", "_", " ").
ALIASES = {"cmumosi": "mosi", "cmumosei": "mosei", "chsims": "sims", "simsv1": "sims", "sims2": "simsv2",
           "chsimsv2": "simsv2", "chsims2": "simsv2", "iemocap": "iemocap", "urfunny": "urfunny",
           "humor": "urfunny"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _squash(name):
    return str(name).lower().replace("-", "").replace("_", "").replace(" ", "").replace(".", "")


def normalize_dataset(name, known, flag="--dataset"):
    """The canonical name of `name` among `known`; an unknown name is an error
    (it would switch off the label-range check) that lists the known ones."""
    key = _squash(name)
    key = ALIASES.get(key, key)
    if key not in known:
        raise ValueError(f"{flag}={name!r}: unknown dataset; this reader knows {sorted(known)} "
                         f"(the name sets the label range and the metric scale, so it must be one of them)")
    return key


def name_in_basename(path, known):
    """The dataset the file's own name mentions (`mosei_aligned_50.pkl`), if
    any; directory names are not looked at (`mosei_exp/sims.pkl` is SIMS)."""
    base = _squash(os.path.basename(os.fspath(path)))
    spellings = sorted(((alias, canon) for alias, canon in list(ALIASES.items()) + [(k, k) for k in known]
                        if canon in known), key=lambda x: -len(x[0]))
    for alias, canon in spellings:  # longest first: simsv2 before sims, mosei before mosi
        if alias in base:
            return canon
    return None


def identify_dataset(path, explicit, known, widths=None, known_widths=None, content_hints=()):
    """Decides the dataset from the file's content, its basename and an
    explicit name; returns `(name, evidence)`.

    Args:
        widths: the (text, audio, vision) feature widths in the file.
        known_widths: `{name: (text, audio, vision)}`.
        content_hints: `(name_or_None, forbidden_names, reason)` triples from
            other content (label keys, label shapes and values): a name the
            content implies, and names it rules out.

    Raises:
        DataFormatError: the explicit name or the file name contradicts the
            content (both are named), or nothing decides.
    """
    evidence = []
    content, content_reason = None, None
    if widths is not None and known_widths:
        matches = [n for n, w in known_widths.items() if tuple(w[1:]) == tuple(widths[1:])]
        wtext = f"feature widths text {widths[0]}, audio {widths[1]}, vision {widths[2]}"
        if len(matches) == 1:
            content, content_reason = matches[0], f"{wtext} are {matches[0].upper()}'s"
        elif matches:
            evidence.append(f"{wtext} fit {', '.join(m.upper() for m in matches)}")
        else:
            evidence.append(f"{wtext} match no known release "
                            f"({'; '.join(f'{n.upper()} {w[1]}/{w[2]}' for n, w in known_widths.items())})")
    ruled_out = {}
    for implied, forbidden, reason in content_hints:
        for f in forbidden:
            ruled_out.setdefault(f, reason)
        if implied is not None:
            if content is not None and content != implied:
                raise DataFormatError(f"the content contradicts itself: {content_reason}, but {reason}", path=path)
            if content is None:
                content, content_reason = implied, reason
    if content is not None and content in ruled_out:
        raise DataFormatError(f"the content contradicts itself: {content_reason}, but {ruled_out[content]}",
                              path=path)
    if content_reason:
        evidence.insert(0, content_reason)
    from_name = name_in_basename(path, known)
    chosen = None
    if explicit is not None:
        explicit = normalize_dataset(explicit, known)
        if content is not None and content != explicit:
            raise DataFormatError(f"--dataset={explicit} contradicts the file's content: {content_reason}", path=path)
        if explicit in ruled_out:
            raise DataFormatError(f"--dataset={explicit} contradicts the file's content: {ruled_out[explicit]}",
                                  path=path)
        evidence.append(f"--dataset={explicit}")
        chosen = explicit
    elif content is not None:
        chosen = content
    if from_name is not None:
        if content is not None and from_name != content:
            raise DataFormatError(f"the file name says {from_name.upper()} but {content_reason}", path=path)
        if from_name in ruled_out:
            raise DataFormatError(f"the file name says {from_name.upper()} but {ruled_out[from_name]}", path=path)
        evidence.append(f"file name '{os.path.basename(path)}' says {from_name.upper()}")
        chosen = chosen or from_name
    if chosen is None:
        raise DataFormatError(
            f"cannot tell which dataset this is ({'; '.join(evidence) or 'no evidence'}); pass "
            f"--dataset (one of {sorted(known)}): it sets the label range and the metric scale",
            path=path,
        )
    return chosen, "; ".join(evidence)


def load_pickle_splits(path, required_keys, splits=SPLITS, max_allocation_factor=None, min_allocation_bytes=None):
    """Loads a pickle safely and checks it is `{split: {key: array}}`."""
    path = os.fspath(path)
    if os.path.isdir(path):
        inside = sorted(n for n in os.listdir(path) if n.endswith(".pkl"))[:5]
        raise DataFormatError(
            "is a directory; expected the pickle file itself"
            + (f" (it holds {', '.join(inside)})" if inside else " (it holds no .pkl file)"),
            path=path,
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file.")
    data = safe_load(path, max_allocation_factor=max_allocation_factor, min_allocation_bytes=min_allocation_bytes)
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


def check_float32(arr, path, key):
    """A finite value too large for float32 would become inf when cast: say so."""
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4 and arr.size:
        with np.errstate(invalid="ignore"):
            big = np.isfinite(arr) & (np.abs(arr) > _FLOAT32_MAX)
        if big.any():
            where = tuple(int(i) for i in np.argwhere(big)[0])
            split, _, name = str(key).partition("/")
            raise DataFormatError(
                f"value {float(arr[where]):g} in '{name or split}' of split {split} (index {list(where)}) overflows "
                f"float32 (largest {_FLOAT32_MAX:.3g}); {int(big.sum())} such value(s). Rescale the features "
                "or fix the file",
                path=path, key=key,
            )


def float_features(arr, path, key, repairs=None, repair_name=None):
    """float32 features; `-inf` -> 0 counted under `repair_name` when given;
    any other NaN/inf is an error that says where."""
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise DataFormatError(f"expected float features, got dtype {arr.dtype}", path=path, key=key)
    check_float32(arr, path, key)
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


def float_labels(values, path, key):
    """Numeric labels as float32; NaN/inf and float32 overflow are errors."""
    if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
        raise DataFormatError(f"labels must be numbers, got dtype {values.dtype}", path=path, key=key)
    check_float32(values, path, key)
    values = values.astype(np.float32)
    if not np.isfinite(values).all():
        i = int(np.argwhere(~np.isfinite(values))[0][0])
        raise DataFormatError(f"non-finite label at example {i}", path=path, key=key)
    return values


def _id_part(p, path, key, i):
    if isinstance(p, (bytes, np.bytes_)):
        try:
            return bytes(p).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataFormatError(f"id of example {i} is not UTF-8 ({p!r})", path=path, key=key) from e
    if isinstance(p, (str, np.str_)):
        return str(p)
    if isinstance(p, (int, np.integer)) and not isinstance(p, (bool, np.bool_)):
        return str(int(p))
    raise DataFormatError(f"id of example {i} is {p!r} ({type(p).__name__}); expected a string", path=path, key=key)


def id_strings(ids, path, key):
    """Each example's id as one string (parts joined by "$_$"); ids must be
    strings (or integers), non-empty and distinct within the split."""
    arr = np.asarray(ids)
    out = []
    for i, row in enumerate(arr.reshape(len(arr), -1) if arr.ndim > 1 else arr.reshape(-1, 1)):
        parts = [_id_part(p, path, key, i) for p in row]
        out.append("$_$".join(parts))
        if not out[-1].replace("$_$", "").strip():
            raise DataFormatError(f"id of example {i} is empty", path=path, key=key)
    check_unique(out, path, key)
    return out


def check_unique(ids, path, key, seen=None):
    """Duplicate ids within a split (or, with `seen` = {id: split}, across
    splits) are an error naming them: one clip would count twice, or leak
    from train into test."""
    counts = {}
    for x in ids:
        counts[x] = counts.get(x, 0) + 1
    dup = [x for x, c in counts.items() if c > 1]
    if dup:
        raise DataFormatError(f"{len(dup)} duplicate id(s) in the split: {dup[:5]}", path=path, key=key)
    if seen is not None:
        split = str(key).split("/")[0]
        across = [(x, seen[x]) for x in ids if x in seen]
        if across:
            raise DataFormatError(
                f"{len(across)} id(s) of split {split} also in another split: "
                + ", ".join(f"{x!r} (in {s})" for x, s in across[:5]),
                path=path, key=key,
            )
        seen.update((x, split) for x in ids)


def raw_texts(values, n, path, key, repairs):
    """Transcripts as strings; NaN/None (pandas' missing text) are missing,
    not the strings "nan"/"None", and counted (repair `raw_text_missing`)."""
    arr = np.asarray(values, dtype=object).reshape(-1)
    if len(arr) != n:
        raise DataFormatError(f"{len(arr)} transcripts for {n} examples", path=path, key=key)
    out = []
    for i, r in enumerate(arr):
        if r is None or (isinstance(r, (float, np.floating)) and np.isnan(r)):
            out.append(None)
            repairs["raw_text_missing"] = repairs.get("raw_text_missing", 0) + 1
        elif isinstance(r, (bytes, np.bytes_)):
            try:
                out.append(bytes(r).decode("utf-8"))
            except UnicodeDecodeError as e:
                raise DataFormatError(f"transcript of example {i} is not UTF-8", path=path, key=key) from e
        elif isinstance(r, (str, np.str_)):
            out.append(str(r))
        else:
            raise DataFormatError(f"transcript of example {i} is {r!r} ({type(r).__name__}); expected a string",
                                  path=path, key=key)
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


def _check_bert(bert, path, key):
    """`text_bert` rows: token ids >= 0, an attention mask of 0/1 that is a run
    of ones then zeros (its sum is the text length), segment ids 0/1."""
    ids, mask, seg = bert[:, 0], bert[:, 1], bert[:, 2]
    bad = np.argwhere(~np.isin(mask, (0, 1)))
    if len(bad):
        i, j = (int(x) for x in bad[0])
        raise DataFormatError(
            f"attention mask (text_bert[:, 1]) must be 0/1; example {i} has {mask[i, j]} at step {j} "
            f"({len(bad)} such value(s))", path=path, key=key)
    holes = np.argwhere((np.diff(mask, axis=1) > 0).any(axis=1))
    if len(holes):
        raise DataFormatError(
            f"attention mask (text_bert[:, 1]) of example {int(holes[0][0])} has a 1 after a 0; MMSA masks are "
            f"ones then padding zeros ({len(holes)} such example(s))", path=path, key=key)
    if (ids < 0).any():
        raise DataFormatError(f"token ids (text_bert[:, 0]) must be >= 0; example {int(np.argwhere(ids < 0)[0][0])} "
                              "has a negative one", path=path, key=key)
    if not np.isin(seg, (0, 1)).all():
        raise DataFormatError("segment ids (text_bert[:, 2]) must be 0/1", path=path, key=key)


def _n_examples(d):
    """N of a split, or 0 when every array in it is empty (whatever its rank)."""
    sizes = {k: (len(v) if np.ndim(v) > 0 else None) for k, v in d.items()
             if k in ("id", "text", "audio", "vision", "regression_labels")}
    if all(v == 0 for v in sizes.values()):
        return 0
    return None


def read_mmsa(path, dataset=None, max_allocation_factor=None, min_allocation_bytes=None):
    """Reads an MMSA pickle; returns `(splits, meta)`.

    Args:
        path: the `.pkl` file.
        dataset: `"mosi"`, `"mosei"`, `"sims"` or `"simsv2"` (other names are
            refused). By default the file's content decides: the audio and
            vision widths of `FEATURE_WIDTHS`, SIMS's unimodal labels
            (`regression_labels_T/A/V`), labels beyond [-1, 1]; then the
            file's own name (`mosei_aligned_50.pkl`; directory names do not
            count). A name that contradicts the content is an error naming
            both; how it was decided is in `meta["dataset_evidence"]`.
        max_allocation_factor, min_allocation_bytes: the pickle's allocation
            cap (`keras_msa.data.safe_pickle`); raise them only for a file you
            trust.

    Returns:
        `splits`: `{"train"|"valid"|"test": [example dict, ...]}` in the
        layout `keras_msa.data.write_dataset` takes (an empty split is `[]`);
        `meta`: `{"dataset", "dataset_evidence", "sources", "repairs",
        "label_ranges"}`.

    Raises:
        DataFormatError: a missing split or key, arrays that disagree on N,
            NaN/inf (other than audio -inf), values that overflow float32,
            labels out of range, duplicate or malformed ids, an attention mask
            other than 0/1, a contradicting dataset name, a directory, a
            truncated or corrupt file; `UnsafePickleError` for a pickle that
            would run code or forges numpy objects.
        ValueError: an unknown `dataset`.
    """
    path = os.fspath(path)
    if dataset is not None:
        dataset = normalize_dataset(dataset, LABEL_RANGES)
    data = load_pickle_splits(path, ("id", "text", "audio", "vision", "regression_labels"),
                              max_allocation_factor=max_allocation_factor, min_allocation_bytes=min_allocation_bytes)
    empty = {split: _n_examples(data[split]) == 0 for split in SPLITS}
    ref = next((s for s in SPLITS if not empty[s]), None)
    if ref is None:
        raise DataFormatError("every split is empty: the file holds no examples", path=path)
    widths = tuple(as_array(data[ref][m], path, f"{ref}/{m}", ndim=3).shape[-1] for m in ("text", "audio", "vision"))
    unimodal = all(f"regression_labels_{s}" in data[ref] for s in "TAV")
    hints = []
    if unimodal:
        hints.append((None, ("mosi", "mosei"), "it has SIMS's unimodal labels regression_labels_T/A/V"))
    try:
        finite = [v[np.isfinite(v)] for v in (np.asarray(data[s]["regression_labels"], np.float64)
                                              for s in SPLITS if not empty[s])]
        extent = max((float(np.abs(v).max()) for v in finite if v.size), default=None)
    except (TypeError, ValueError):
        extent = None  # not numbers: the label checks below say so
    widths_known = any(tuple(w[1:]) == widths[1:] for w in FEATURE_WIDTHS.values())
    # Labels only speak when the widths do not: with SIMS's widths, a label of
    # 1.5 is an out-of-range label (reported with its example), not MOSI.
    if extent is not None and extent > 1.0 and not widths_known:
        hints.append((None, ("sims", "simsv2"), f"its labels reach {extent:g}, beyond SIMS's [-1, 1]"))
    dataset, evidence = identify_dataset(path, dataset, LABEL_RANGES,
                                         widths=widths,
                                         known_widths=FEATURE_WIDTHS, content_hints=hints)
    rng = LABEL_RANGES[dataset]
    repairs = {}
    label_keys = {"sentiment": "regression_labels"}
    if unimodal:
        label_keys.update(
            {"sentiment_text": "regression_labels_T", "sentiment_audio": "regression_labels_A",
             "sentiment_vision": "regression_labels_V"}
        )
    out = {}
    seen_ids = {}
    for split in SPLITS:
        d = data[split]
        key = lambda k: f"{split}/{k}"  # noqa: E731
        if empty[split]:
            out[split] = []
            continue
        text = as_array(d["text"], path, key("text"), ndim=3)
        audio = as_array(d["audio"], path, key("audio"), ndim=3)
        vision = as_array(d["vision"], path, key("vision"), ndim=3)
        for m, arr in (("text", text), ("audio", audio), ("vision", vision)):
            w = {"text": widths[0], "audio": widths[1], "vision": widths[2]}[m]
            if arr.shape[2] != w:
                raise DataFormatError(f"{m} width {arr.shape[2]} differs from split {ref}'s {w}",
                                      path=path, key=key(m))
        arrays = {"id": as_array(d["id"], path, key("id"), ndim=(1, 2)), "text": text, "audio": audio,
                  "vision": vision}
        labels = {}
        for name, k in label_keys.items():
            if k not in d:
                raise DataFormatError(f"missing key '{k}' (present in '{ref}')", path=path, key=split)
            labels[name] = as_array(d[k], path, key(k), dtype=None)
            labels[name] = labels[name].reshape(len(labels[name]) if labels[name].ndim else 1, -1)
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
            if not np.issubdtype(bert.dtype, np.number):
                raise DataFormatError(f"token ids must be numbers, got dtype {bert.dtype}", path=path,
                                      key=key("text_bert"))
            if not np.isfinite(bert.astype(np.float64)).all() or (bert != np.round(bert)).any():
                raise DataFormatError("token ids must be finite integers", path=path, key=key("text_bert"))
            bert = bert.astype(np.int64)
            _check_bert(bert, path, key("text_bert"))
        if "raw_text" in d:
            arrays["raw_text"] = as_array(d["raw_text"], path, key("raw_text"), ndim=1)
        n = check_count(arrays, path, split)
        text = float_features(text, path, key("text"))
        audio = float_features(audio, path, key("audio"), repairs, "audio_neg_inf_to_zero")
        vision = float_features(vision, path, key("vision"))
        for name, values in labels.items():
            values = float_labels(values, path, key(label_keys[name]))
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
        ids = id_strings(arrays["id"], path, key("id"))
        check_unique(ids, path, key("id"), seen_ids)
        raw = raw_texts(arrays["raw_text"], n, path, key("raw_text"), repairs) if "raw_text" in arrays else None
        examples = []
        for i in range(n):
            ex = {
                "id": ids[i],
                "text": text[i, : text_len[i]],
                "audio": audio[i, : audio_len[i]],
                "vision": vision[i, : vision_len[i]],
            }
            if raw is not None and raw[i] is not None:
                ex["raw_text"] = raw[i]
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
        "dataset_evidence": evidence,
        "sources": [os.path.abspath(path)],
        "repairs": repairs,
        "label_ranges": {k: rng for k in label_keys},
    }
    return out, meta
