"""A custom dataset in MMSA-FET's layout: `label.csv` plus per-clip arrays.

Layout read::

    <input>/label.csv
        video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode
    <input>/features/<video_id>/<clip_id>.npz              keys among text, audio, vision
    <input>/features/<modality>/<video_id>/<clip_id>.npy   or one .npy per modality

(MMSA-FET keeps raw clips as ``Raw/<video_id>/<clip_id>.mp4``; the feature files
follow the same ``<video_id>/<clip_id>`` tree.) For each clip and modality the
``.npz`` is looked at first, then the modality's ``.npy``. An array is
``(L, D)`` (a sequence) or ``(D,)`` (one utterance-level vector, read as
``L = 1``).

Examples: ``id`` = ``"<video_id>$_$<clip_id>"`` (MMSA's id form), ``raw_text``
(the ``text`` column), ``sentiment`` (``label``), ``sentiment_text`` /
``sentiment_audio`` / ``sentiment_vision`` (``label_T/A/V``, kept when the
column is filled for every row, as in CH-SIMS; left out when empty for every
row, as in MMSA's MOSI/MOSEI label files), and one float32 ``[L, D]`` array per
modality that has a file for at least one clip. ``mode`` gives the split
(``train``/``valid``/``test``; ``dev``/``val`` read as ``valid``).

Every modality is in every example (docs/data.md: a missing modality is zeros with
an all-False mask, never an absent key). A modality with no file for any clip
becomes an empty ``[0, D]`` array in every example, ``D`` from the reader
option ``modality_dims`` or, by default, from the MMSA width of a known
dataset (`DATASET_DIMS`: MOSI, MOSEI, SIMS, SIMS v2); for another dataset the
error says to pass ``modality_dims={"<modality>": D}``. A directory without
any feature file is refused unless ``modality_dims`` names all three widths
(raw text only, features to come from recipes/extract_text_features.py).

Reads stay inside the input directory: ``video_id`` and ``clip_id`` must be
plain names (no path separator, not ``.``/``..``, not absolute), and a feature
file whose real path (symlinks resolved) lies outside the input directory is
refused.

Errors (`DataFormatError`, naming file, line/key and problem): missing
columns, rows whose field count differs from the header's (an unquoted
comma; all such lines are named), a header without rows, an unknown mode, a
label that is not a number or outside the range (``[-1, 1]`` for a dataset
named ``*sims*``, else ``[-3, 3]``), unimodal labels filled for only some
rows, a duplicate ``(video_id, clip_id)``, an id that is not a plain name, an
array that cannot be read, declares more than ``max_array_bytes`` (default
256 MiB) or more bytes than its file holds, is not numeric, not 1-D/2-D, or
whose width differs between clips. Counted repairs in ``meta["repairs"]``:
``clips_missing_<modality>`` (no array for that clip: empty ``[0, D]``
sequence, masked out downstream), ``clips_with_empty_<modality>_array`` (an
array with no steps: the same), ``nonfinite_feature_values_zeroed/<modality>``
(NaN/inf set to 0, as MMSA does for -inf audio; ``nonfinite="error"`` raises),
``text_na_markers_emptied`` (a ``text`` cell that is a pandas missing-value
marker such as ``nan`` or ``None``: stored as "", not as the word "nan").
"""

import csv
import logging
import os
import zipfile

import numpy as np

from keras_msa.data.errors import DataFormatError

MODALITIES = ("text", "audio", "vision")
REQUIRED_COLUMNS = ("video_id", "clip_id", "text", "label", "mode")
UNIMODAL = {"label_T": "sentiment_text", "label_A": "sentiment_audio", "label_V": "sentiment_vision"}
_MODES = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "validation": "valid",
          "test": "test"}

#: MMSA's feature widths (text/audio/vision), used for a modality without any
#: file when `modality_dims` does not give it (`read_labelcsv`).
DATASET_DIMS = {
    "mosi": {"text": 768, "audio": 5, "vision": 20},
    "mosei": {"text": 768, "audio": 74, "vision": 35},
    "sims": {"text": 768, "audio": 33, "vision": 709},
    "simsv2": {"text": 768, "audio": 25, "vision": 177},
}

#: What pandas writes for a missing text cell once it has been cast to str.
TEXT_NA_MARKERS = ("nan", "NaN", "-nan", "None", "null", "NULL", "<NA>", "NA", "N/A", "n/a", "#N/A")

#: Default cap on the bytes one feature array may declare.
MAX_ARRAY_BYTES = 256 << 20


def _human(n):
    return f"{n / (1 << 20):.1f} MiB" if n < 1 << 30 else f"{n / (1 << 30):.1f} GiB"


def _declared_bytes(fh):
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:  # 3.0 (utf-8 field names) has no public reader
        shape, _, dtype = np.lib.format._read_array_header(fh, version)
    return int(np.prod(shape, dtype=np.float64) * dtype.itemsize), shape, dtype


def load_array(path, key=None, max_bytes=MAX_ARRAY_BYTES):
    """A `.npy` (or the `key` member of a `.npz`) read without pickles, after
    checking what its header declares: at most `max_bytes`, and for a `.npy`
    no more than the file holds (a forged header could otherwise allocate
    gigabytes). Returns None when the `.npz` has no `key`."""
    try:
        if key is None:
            with open(path, "rb") as fh:
                declared, shape, dtype = _declared_bytes(fh)
                available = os.path.getsize(path) - fh.tell()
            if declared > available:
                raise DataFormatError(f"the header declares {shape} {dtype} ({declared} bytes) but the file holds "
                                      f"{available} bytes after it: truncated or forged", path=path)
        else:
            with zipfile.ZipFile(path) as z:
                member = f"{key}.npy"
                if member not in z.namelist():
                    return None
                with z.open(member) as fh:
                    declared, shape, dtype = _declared_bytes(fh)
        if max_bytes is not None and declared > max_bytes:
            raise DataFormatError(f"the array declares {shape} {dtype} ({_human(declared)}), over the cap of "
                                  f"{_human(max_bytes)}; pass max_array_bytes=<bytes> (reader option) if it is "
                                  f"genuine", path=path, key=key)
        if key is None:
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            return z[key]
    except DataFormatError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise DataFormatError(f"cannot read the array (corrupt or pickled?): {e}", path=path, key=key) from None


def _load_array(path, key=None, max_bytes=MAX_ARRAY_BYTES):
    x = load_array(path, key, max_bytes)
    if x is None:
        return None
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataFormatError(f"expected numbers; got dtype {x.dtype}", path=path, key=key)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise DataFormatError(f"expected (L, D) or (D,); got shape {x.shape}", path=path, key=key)
    if x.dtype.itemsize > 4 or np.issubdtype(x.dtype, np.integer):
        # Finite values beyond float32 would turn into inf below and then be
        # "repaired" as if the file held inf; say what happened instead.
        with np.errstate(invalid="ignore"):
            big = np.abs(x.astype(np.float64)) > np.finfo(np.float32).max
        if big.any():
            raise DataFormatError(f"{int(big.sum())} finite values exceed the float32 range (largest "
                                  f"{np.abs(x[big]).max()!r}); the features must fit float32 (rescale them)",
                                  path=path, key=key)
    return x.astype(np.float32)


def check_id(value, column, path, line):
    """Raises unless `value` (a `video_id` / `clip_id`) is a plain name that
    cannot lead a file lookup out of the `features/` tree."""
    bad = None
    if value in (".", ".."):
        bad = f"is {value!r}"
    elif "/" in value or "\\" in value or os.sep in value:
        bad = "contains a path separator"
    elif os.path.isabs(value):
        bad = "is an absolute path"
    elif "\0" in value:
        bad = "contains a NUL byte"
    if bad:
        raise DataFormatError(f"{column} {value!r} {bad}; ids name files under features/ and must be plain "
                              f"names", path=path, key=f"line {line}, column {column}")


def _inside(root_real, path, where):
    real = os.path.realpath(path)
    if real != root_real and not real.startswith(root_real.rstrip(os.sep) + os.sep):
        raise DataFormatError(f"resolves to {real}, outside the input directory {root_real} (a symlink?): "
                              f"refused; reads stay inside the input directory", path=path, key=where)


def clip_features(input_dir, video_id, clip_id, where=None, max_array_bytes=MAX_ARRAY_BYTES):
    """`{modality: (array, path)}` of one clip's feature files. Every file is
    checked to resolve (symlinks followed) inside `input_dir`; `where` names
    the label.csv row in errors."""
    root_real = os.path.realpath(input_dir)
    where = where or f"{video_id}$_${clip_id}"
    out = {}
    npz = os.path.join(input_dir, "features", video_id, f"{clip_id}.npz")
    has_npz = os.path.isfile(npz)
    if has_npz:
        _inside(root_real, npz, where)
    for m in MODALITIES:
        if has_npz:
            x = _load_array(npz, m, max_array_bytes)
            if x is not None:
                out[m] = (x, f"{npz}:{m}")
                continue
        npy = os.path.join(input_dir, "features", m, video_id, f"{clip_id}.npy")
        if os.path.isfile(npy):
            _inside(root_real, npy, where)
            out[m] = (_load_array(npy, None, max_array_bytes), npy)
    return out


def read_label_csv(path, dataset="custom", label_range="auto"):
    """Rows of `label.csv` as dicts with parsed labels, checked.

    Each row dict holds `line` (the 1-based line it starts on), the ids,
    `text`, `mode` and the parsed labels; `text_na` counts text cells that
    were missing-value markers (stored as "").
    """
    if label_range == "auto":
        label_range = (-1.0, 1.0) if "sims" in str(dataset).lower() else (-3.0, 3.0)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            records = []
            start = 1
            for cells in reader:
                records.append((start, cells))
                start = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataFormatError(f"cannot read: {e}", path=path) from None
    if not records:
        raise DataFormatError("empty file: expected a header line " + ",".join(REQUIRED_COLUMNS) + ",...",
                              path=path)
    header = [h.strip() for h in records[0][1]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataFormatError(f"missing columns {missing}; header is {header}", path=path)
    body = [(line, cells) for line, cells in records[1:] if any(c.strip() for c in cells)]
    wrong = [(line, len(cells)) for line, cells in body if len(cells) != len(header)]
    if wrong:
        shown = ", ".join(f"line {line} ({n} fields)" for line, n in wrong[:10])
        more = f" and {len(wrong) - 10} more" if len(wrong) > 10 else ""
        raise DataFormatError(f"{len(wrong)} row(s) do not have the header's {len(header)} fields: {shown}{more}; "
                              f"a comma inside a field (the text) must be quoted: \"a, b\"", path=path)
    if not body:
        raise DataFormatError("no rows after the header: nothing to convert", path=path)
    rows = [(line, dict(zip(header, cells))) for line, cells in body]
    unimodal_filled = {c: [bool(r[c].strip()) for _, r in rows] for c in UNIMODAL if c in header}
    kept = []
    for c, filled in unimodal_filled.items():
        if all(filled):
            kept.append(c)
        elif any(filled):
            line = rows[filled.index(False)][0]
            raise DataFormatError(f"{c} is filled for some rows but empty on line {line}; fill it for "
                                  f"every row or none", path=path, key=c)
    out = []
    seen = {}
    for line, r in rows:
        vid, cid = r["video_id"].strip(), r["clip_id"].strip()
        where = f"line {line} ({vid}$_${cid})"
        if not vid or not cid:
            raise DataFormatError("empty video_id or clip_id", path=path, key=f"line {line}")
        check_id(vid, "video_id", path, line)
        check_id(cid, "clip_id", path, line)
        if (vid, cid) in seen:
            raise DataFormatError(f"duplicate (video_id, clip_id) of line {seen[(vid, cid)]}", path=path, key=where)
        seen[(vid, cid)] = line
        mode = _MODES.get(r["mode"].strip().lower())
        if mode is None:
            raise DataFormatError(f"mode {r['mode']!r} is not train/valid/test", path=path, key=where)
        text = r["text"]
        na = text.strip() in TEXT_NA_MARKERS
        item = {"line": line, "video_id": vid, "clip_id": cid, "text": "" if na else text, "text_na": na,
                "mode": mode}
        for col, name in [("label", "sentiment")] + [(c, UNIMODAL[c]) for c in kept]:
            try:
                y = float(r[col])
            except (TypeError, ValueError):
                raise DataFormatError(f"{col} {r[col]!r} is not a number", path=path, key=where) from None
            if not np.isfinite(y):
                raise DataFormatError(f"{col} is {r[col].strip()!r}: a label must be a finite number",
                                      path=path, key=where)
            if label_range and not label_range[0] <= y <= label_range[1]:
                raise DataFormatError(f"{col} {y} outside [{label_range[0]}, {label_range[1]}]",
                                      path=path, key=where)
            item[name] = np.float32(y)
        out.append(item)
    return out, [UNIMODAL[c] for c in kept], label_range


def read_labelcsv(input_dir, *, dataset="custom", label_range="auto", nonfinite="zero", modality_dims="auto",
                  max_array_bytes=MAX_ARRAY_BYTES, verbose=False):
    """Builds `(splits, meta)` from an MMSA-FET-style directory (module docstring).

    Args:
        input_dir: directory holding `label.csv` and `features/`.
        dataset: name written to the schema (a name containing "sims" sets the
            label range to [-1, 1]).
        label_range: `(lo, hi)`, "auto", or None (finiteness only).
        nonfinite: "zero" (repair, counted) or "error" for NaN/inf features.
        modality_dims: `{modality: width}` for modalities that have no file
            for any clip (they are then empty `[0, width]` in every example:
            missing, masked out); "auto" takes `DATASET_DIMS[dataset]`, and
            for another dataset such a modality is an error naming this
            option. A width given for a modality that has files must match
            them. Naming all three widths also admits a directory without
            any feature file (raw text only).
        max_array_bytes: cap on the bytes one feature array may declare.
        verbose: log progress.

    Returns:
        `(splits, meta)`; `meta["holds"]` says per modality (and for the raw
        text) what the data holds, for the conversion summary.
    """
    if nonfinite not in ("zero", "error"):
        raise ValueError(f"nonfinite must be 'zero' or 'error'; got {nonfinite!r}")
    explicit = {} if modality_dims in ("auto", None) else dict(modality_dims)
    for m, d in explicit.items():
        if m not in MODALITIES or not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise ValueError(f"modality_dims must map {MODALITIES} to positive ints; got {m!r}: {d!r}")
    fallback = dict(DATASET_DIMS.get(str(dataset).lower(), {})) if modality_dims == "auto" else {}
    fallback.update(explicit)
    label_path = os.path.join(input_dir, "label.csv")
    if not os.path.isfile(label_path):
        raise DataFormatError("no label.csv", path=input_dir)
    rows, unimodal, label_range = read_label_csv(label_path, dataset, label_range)
    log = logging.getLogger(__name__)
    repairs = {}

    def count(name, n=1):
        if n:
            repairs[name] = repairs.get(name, 0) + int(n)

    dims = {}
    sources = [label_path]
    splits = {}
    for n, r in enumerate(rows):
        ex = {"id": f"{r['video_id']}$_${r['clip_id']}", "raw_text": r["text"], "sentiment": r["sentiment"]}
        count("text_na_markers_emptied", r["text_na"])
        for name in unimodal:
            ex[name] = r[name]
        where = f"line {r['line']} ({r['video_id']}$_${r['clip_id']})"
        for m, (x, path) in clip_features(input_dir, r["video_id"], r["clip_id"], where, max_array_bytes).items():
            if m in dims and x.shape[1] != dims[m]:
                raise DataFormatError(f"{m} width {x.shape[1]} differs from other clips' {dims[m]}", path=path)
            if m in explicit and x.shape[1] != explicit[m]:
                raise DataFormatError(f"{m} width {x.shape[1]} differs from modality_dims[{m!r}]={explicit[m]}",
                                      path=path)
            dims[m] = x.shape[1]
            if not x.shape[0]:
                count(f"clips_with_empty_{m}_array")  # no steps: missing, and counted
            bad = ~np.isfinite(x)
            if bad.any():
                if nonfinite == "error":
                    raise DataFormatError(f"{int(bad.sum())} NaN/inf values", path=path, key=m)
                count(f"nonfinite_feature_values_zeroed/{m}", bad.sum())
                x = np.where(bad, 0.0, x).astype(np.float32)
            ex[m] = x
            sources.append(path.split(".npz:")[0] + ".npz" if ".npz:" in path else path)
        splits.setdefault(r["mode"], []).append(ex)
        if verbose and (n + 1) % 500 == 0:
            log.info("labelcsv: %d/%d clips", n + 1, len(rows))
    layout = ("features/<video_id>/<clip_id>.npz (keys text, audio, vision) or "
              "features/<modality>/<video_id>/<clip_id>.npy")
    first = f"{rows[0]['video_id']}/{rows[0]['clip_id']}"
    if not dims and set(explicit) != set(MODALITIES):
        raise DataFormatError(
            f"no feature file for any of the {len(rows)} clips (expected {layout}; the first clip, line "
            f"{rows[0]['line']}, would be features/{first}.npz); to convert the raw text alone, with text "
            f"features extracted later by recipes/extract_text_features.py, pass all three widths: "
            f"modality_dims={{'text': 768, 'audio': D, 'vision': D}}", path=input_dir)
    holds = {}
    n_clips = len(rows)
    for m in MODALITIES:
        if m in dims:
            continue
        if m not in fallback:
            raise DataFormatError(
                f"no {m} feature file for any clip (looked for {layout}), and the dataset {dataset!r} has no "
                f"known {m} width; a missing modality still needs one (it becomes zeros with an all-False "
                f"mask): pass modality_dims={{'{m}': D}} (--reader_options='{{\"modality_dims\": "
                f"{{\"{m}\": D}}}}')", path=input_dir)
        dims[m] = int(fallback[m])
        holds[m] = (f"no {m} features in the source: every clip carries {m} as missing (dim {dims[m]} "
                    f"reserved, all-False mask)")
        if m == "text":
            holds[m] += "; extract them from the raw text with recipes/extract_text_features.py"
    for examples in splits.values():
        for ex in examples:
            for m in dims:
                if m not in ex:
                    count(f"clips_missing_{m}")
                    ex[m] = np.zeros((0, dims[m]), np.float32)
    for m in MODALITIES:
        if m not in holds and repairs.get(f"clips_missing_{m}"):
            holds[m] = f"features for {n_clips - repairs[f'clips_missing_{m}']} of {n_clips} clips (dim {dims[m]})"
    n_text = sum(bool(r["text"].strip()) for r in rows)
    holds["raw_text"] = f"raw text for {n_text} of {n_clips} clips"
    ranges = {"sentiment": list(label_range)} if label_range else {}
    for name in unimodal:
        if label_range:
            ranges[name] = list(label_range)
    meta = {
        "dataset": dataset,
        "sources": sorted(set(sources), key=sources.index),
        "repairs": repairs,
        "label_ranges": ranges,
        "holds": holds,
        "labelcsv": {"modality_dims": {m: dims[m] for m in MODALITIES}},
    }
    return {s: splits[s] for s in ("train", "valid", "test") if s in splits}, meta
