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

Errors (`DataFormatError`, naming file, line/key and problem): missing
columns, an unknown mode, a label that is not a number or outside the range
(``[-1, 1]`` for a dataset named ``*sims*``, else ``[-3, 3]``), unimodal labels
filled for only some rows, a duplicate ``(video_id, clip_id)``, an array that
cannot be read, is not numeric, not 1-D/2-D, or whose width differs between
clips. Counted repairs in ``meta["repairs"]``: ``clips_missing_<modality>`` (no
array for that clip: empty ``[0, D]`` sequence, masked out downstream),
``nonfinite_feature_values_zeroed/<modality>`` (NaN/inf set to 0, as MMSA does
for -inf audio; ``nonfinite="error"`` raises).
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


def _load_array(path, key=None):
    try:
        if key is None:
            x = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as z:
                if key not in z.files:
                    return None
                x = z[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataFormatError(f"cannot read the array (corrupt or pickled?): {e}", path=path, key=key) from None
    if not np.issubdtype(x.dtype, np.number):
        raise DataFormatError(f"expected numbers; got dtype {x.dtype}", path=path, key=key)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise DataFormatError(f"expected (L, D) or (D,); got shape {x.shape}", path=path, key=key)
    return x.astype(np.float32)


def clip_features(input_dir, video_id, clip_id):
    """`{modality: (array, path)}` of one clip's feature files."""
    out = {}
    npz = os.path.join(input_dir, "features", video_id, f"{clip_id}.npz")
    for m in MODALITIES:
        if os.path.isfile(npz):
            x = _load_array(npz, m)
            if x is not None:
                out[m] = (x, f"{npz}:{m}")
                continue
        npy = os.path.join(input_dir, "features", m, video_id, f"{clip_id}.npy")
        if os.path.isfile(npy):
            out[m] = (_load_array(npy), npy)
    return out


def read_label_csv(path, dataset="custom", label_range="auto"):
    """Rows of `label.csv` as dicts with parsed labels, checked."""
    if label_range == "auto":
        label_range = (-1.0, 1.0) if "sims" in str(dataset).lower() else (-3.0, 3.0)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataFormatError(f"cannot read: {e}", path=path) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataFormatError(f"missing columns {missing}; header is {header}", path=path)
    unimodal_filled = {c: [bool((r.get(c) or "").strip()) for r in rows] for c in UNIMODAL if c in header}
    kept = []
    for c, filled in unimodal_filled.items():
        if all(filled) and rows:
            kept.append(c)
        elif any(filled):
            line = filled.index(False) + 2
            raise DataFormatError(f"{c} is filled for some rows but empty on line {line}; fill it for "
                                  f"every row or none", path=path, key=c)
    out = []
    seen = set()
    for line, r in enumerate(rows, start=2):
        vid, cid = (r["video_id"] or "").strip(), (r["clip_id"] or "").strip()
        where = f"line {line} ({vid}$_${cid})"
        if not vid or not cid:
            raise DataFormatError("empty video_id or clip_id", path=path, key=f"line {line}")
        if (vid, cid) in seen:
            raise DataFormatError("duplicate (video_id, clip_id)", path=path, key=where)
        seen.add((vid, cid))
        mode = _MODES.get((r["mode"] or "").strip().lower())
        if mode is None:
            raise DataFormatError(f"mode {r['mode']!r} is not train/valid/test", path=path, key=where)
        item = {"video_id": vid, "clip_id": cid, "text": r["text"] or "", "mode": mode}
        for col, name in [("label", "sentiment")] + [(c, UNIMODAL[c]) for c in kept]:
            try:
                y = float(r[col])
            except (TypeError, ValueError):
                raise DataFormatError(f"{col} {r[col]!r} is not a number", path=path, key=where) from None
            if not np.isfinite(y) or (label_range and not label_range[0] <= y <= label_range[1]):
                raise DataFormatError(f"{col} {y} outside [{label_range[0]}, {label_range[1]}]",
                                      path=path, key=where)
            item[name] = np.float32(y)
        out.append(item)
    return out, [UNIMODAL[c] for c in kept], label_range


def read_labelcsv(input_dir, *, dataset="custom", label_range="auto", nonfinite="zero", verbose=False):
    """Builds `(splits, meta)` from an MMSA-FET-style directory (module docstring).

    Args:
        input_dir: directory holding `label.csv` and `features/`.
        dataset: name written to the schema (a name containing "sims" sets the
            label range to [-1, 1]).
        label_range: `(lo, hi)`, "auto", or None (finiteness only).
        nonfinite: "zero" (repair, counted) or "error" for NaN/inf features.
        verbose: log progress.
    """
    if nonfinite not in ("zero", "error"):
        raise ValueError(f"nonfinite must be 'zero' or 'error'; got {nonfinite!r}")
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
        for name in unimodal:
            ex[name] = r[name]
        for m, (x, path) in clip_features(input_dir, r["video_id"], r["clip_id"]).items():
            if m in dims and x.shape[1] != dims[m]:
                raise DataFormatError(f"{m} width {x.shape[1]} differs from other clips' {dims[m]}", path=path)
            dims[m] = x.shape[1]
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
    for examples in splits.values():
        for ex in examples:
            for m in dims:
                if m not in ex:
                    count(f"clips_missing_{m}")
                    ex[m] = np.zeros((0, dims[m]), np.float32)
    ranges = {"sentiment": list(label_range)} if label_range else {}
    for name in unimodal:
        if label_range:
            ranges[name] = list(label_range)
    meta = {
        "dataset": dataset,
        "sources": sorted(set(sources), key=sources.index),
        "repairs": repairs,
        "label_ranges": ranges,
    }
    return {s: splits[s] for s in ("train", "valid", "test") if s in splits}, meta
