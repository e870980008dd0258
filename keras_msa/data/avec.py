"""AVEC 2019 Detecting Depression Sub-challenge (E-DAIC) reader.

Layout read (the real release's, kept as downloaded)::

    <input>/
      labels/train_split.csv   Participant_ID,Gender,PHQ_Binary,PHQ_Score,...
      labels/dev_split.csv     (the split files may also sit in <input>/ itself)
      labels/test_split.csv
      <pid>_P/features/<pid>_<feature set>.csv   one row per frame
      <pid>_P/features/<pid>_<feature set>.npy   or a (T, D) array
      <pid>_P/<pid>_Transcript.csv               optional: Start_Time,End_Time,Text,Confidence

Label columns are matched leniently (case, spaces, ``-`` and ``_`` ignored): the
participant is ``Participant_ID`` / ``participant`` / ``id``; the PHQ-8 total is
``PHQ_Score`` / ``PHQ8_Score`` / ``PHQ-8`` / ``PHQ8``; other columns
(``PHQ_Binary``, ``Gender``, PTSD scores) are ignored. Split files are found by
name: ``train*.csv``, ``dev*.csv`` (or ``valid*``), ``test*.csv`` (e.g. DAIC-WOZ's
``train_split_Depression_AVEC2017.csv``, ``full_test_split.csv``); ``dev`` becomes
the ``valid`` split.

Feature sets map to modalities by argument: ``audio="OpenSMILE2.3.0_egemaps"``
and ``vision="OpenFace2.1.0_Pose_gaze_AUs"`` by default (the release's eGeMAPS
low-level descriptors and OpenFace pose/gaze/action units), ``text`` optional
(a feature set of word vectors, or None). A CSV feature file is read with its
delimiter sniffed (openSMILE writes ``;``, OpenFace ``,``); column names are
stripped of spaces and the bookkeeping columns ``name, frameTime, frame,
timestamp, face_id, confidence, success`` are dropped; the rest (numeric) are
the features, in file order. ``pool=k`` averages consecutive blocks of k frames
(E-DAIC's eGeMAPS runs at 100 frames/s over ~16-minute interviews; ``pool=100``
gives one step per second); ``max_len`` then keeps the first `max_len` steps.

Examples: ``id`` (the participant id as a string), ``phq8`` (float32, the
PHQ-8 total, 0-24, what ``SSGDL(task="phq8")`` and the AVEC metrics take),
``audio``/``vision``/(``text``) float32 ``[L, D]``, and ``raw_text`` when
``transcripts=True`` and the transcript exists.

Every modality is in every example (docs/data.md: a missing modality is zeros with
an all-False mask, never an absent key). A modality whose feature set is None
(text, by default) is an empty ``[0, D]`` array in every example, ``D`` from
the reader option ``modality_dims`` (default ``{"text": 768}``, the BERT width
the other readers reserve; audio and vision have no default, and the error
names the option).

Reads stay inside the input directory: a participant id must be a plain name
(no path separator, not ``.``/``..``, not absolute), and a feature or
transcript file whose real path (symlinks resolved) lies outside the input
directory is refused.

Errors (`DataFormatError` naming file, key and problem): a split file without
a participant or PHQ-8 column, an empty participant id or one that is not a
plain name, a PHQ-8 that is not a number or outside [0, 24], a participant in
two splits or twice in one, no participant in any split file, a feature file
that cannot be parsed, has no numeric column, complex values, finite values
beyond the float32 range, an ``.npy`` header that declares more than its file
holds or more than ``max_array_bytes``, or a width that differs between
sessions; a transcript that cannot be read or parsed. Counted repairs in ``meta["repairs"]``: ``sessions_missing_<modality>``
(no file for that participant: empty ``[0, D]`` sequence, masked out
downstream), ``sessions_with_empty_<modality>_file`` (a header without frames:
the same), ``nonfinite_feature_values_zeroed/<modality>`` (NaN/inf set to 0;
``nonfinite="error"`` raises), ``non_numeric_feature_values_zeroed/<modality>``.
"""

import csv
import glob
import logging
import os
import re

import numpy as np

from keras_msa.data.errors import DataFormatError
from keras_msa.data.labelcsv import MAX_ARRAY_BYTES
from keras_msa.data.labelcsv import check_id
from keras_msa.data.labelcsv import load_array

PHQ8_RANGE = (0.0, 24.0)
DEFAULT_AUDIO = "OpenSMILE2.3.0_egemaps"
DEFAULT_VISION = "OpenFace2.1.0_Pose_gaze_AUs"
BOOKKEEPING_COLUMNS = ("name", "frametime", "frame", "timestamp", "face_id", "faceid", "confidence", "success")
#: Widths of modalities read without a feature set (`read_avec(modality_dims=)`).
MISSING_DIMS = {"text": 768}
_FLOAT32_MAX = float(np.finfo(np.float32).max)

_ID_COLUMNS = ("participantid", "participant", "id", "pid")
_SCORE_COLUMNS = ("phqscore", "phq8score", "phq8", "phq", "phq8total", "phqtotal")
_SPLIT_PREFIXES = (("train", "train"), ("dev", "valid"), ("valid", "valid"), ("val", "valid"),
                   ("fulltest", "test"), ("test", "test"))


def _norm(name):
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _has_score_column(path):
    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return False
    return any(_norm(h) in _SCORE_COLUMNS for h in header)


def find_split_files(input_dir):
    """`{split: csv path}` of the label split files in `input_dir/labels` (or,
    when that holds none, `input_dir`). Where two files fit one split (DAIC-WOZ
    ships `test_split_Depression_AVEC2017.csv` without scores and
    `full_test_split.csv` with them), the one with a PHQ-8 column is taken."""
    for folder in (os.path.join(input_dir, "labels"), input_dir):
        candidates = {}
        for path in sorted(glob.glob(os.path.join(folder, "*.csv"))):
            name = _norm(os.path.basename(path))
            for prefix, split in _SPLIT_PREFIXES:
                if name.startswith(prefix) and "split" in name:
                    candidates.setdefault(split, []).append(path)
                    break
        if not candidates:
            continue
        found = {}
        for split, paths in candidates.items():
            scored = [p for p in paths if _has_score_column(p)]
            if len(paths) > 1 and len(scored) != 1:
                raise DataFormatError(
                    f"several {split} split files {[os.path.basename(p) for p in paths]}; keep one", path=folder)
            found[split] = scored[0] if len(paths) > 1 else paths[0]
        return found
    return {}


def read_split_labels(path):
    """`[(participant id, PHQ-8)]` of one split file, in file order."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataFormatError(f"cannot read the labels file: {e}", path=path) from None
    if not rows:
        raise DataFormatError("empty labels file (no header)", path=path)
    header = [_norm(h) for h in rows[0]]
    id_col = next((header.index(c) for c in _ID_COLUMNS if c in header), None)
    score_col = next((header.index(c) for c in _SCORE_COLUMNS if c in header), None)
    if id_col is None or score_col is None:
        raise DataFormatError(
            f"needs a participant column (Participant_ID) and a PHQ-8 column (PHQ_Score / PHQ8_Score); "
            f"header is {rows[0]}", path=path)
    out = []
    seen = set()
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) <= max(id_col, score_col):
            raise DataFormatError(f"line {line} has {len(row)} fields, expected {len(rows[0])}", path=path)
        pid = row[id_col].strip()
        if not pid:
            raise DataFormatError(f"empty participant id (column {rows[0][id_col]!r})", path=path, key=f"line {line}")
        try:
            as_float = float(pid)
            if as_float.is_integer():
                pid = str(int(as_float))
        except (ValueError, OverflowError):
            pass
        check_id(pid, rows[0][id_col].strip(), path, line)
        key = f"line {line} participant {pid}"
        try:
            score = float(row[score_col])
        except ValueError:
            raise DataFormatError(f"PHQ-8 {row[score_col]!r} is not a number", path=path, key=key) from None
        if not np.isfinite(score) or not PHQ8_RANGE[0] <= score <= PHQ8_RANGE[1]:
            raise DataFormatError(f"PHQ-8 {score} outside [0, 24]", path=path, key=key)
        if pid in seen:
            raise DataFormatError("participant listed twice", path=path, key=key)
        seen.add(pid)
        out.append((pid, score))
    return out


def _check_float32(x, path):
    with np.errstate(invalid="ignore"):
        big = np.abs(x) > _FLOAT32_MAX
    if big.any():
        t, j = (int(i) for i in np.argwhere(big)[0])
        raise DataFormatError(f"{int(big.sum())} finite values exceed the float32 range (first: frame {t}, "
                              f"column {j}, {x[t, j]!r}); the features must fit float32 (rescale them)", path=path)


def read_feature_file(path, max_array_bytes=MAX_ARRAY_BYTES):
    """A feature file as float32 `(T, D)` plus the number of non-numeric cells
    (set to NaN here; the caller repairs or raises)."""
    if path.endswith(".npy"):
        x = load_array(path, None, max_array_bytes)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DataFormatError(f"expected a real numeric (T, D) array; got {x.dtype} {x.shape}", path=path)
        _check_float32(x.astype(np.float64), path)
        return x.astype(np.float32), 0
    rows = _read_delimited(path, ";", "cannot parse the feature file")
    if not rows:
        raise DataFormatError("empty feature file (no header)", path=path)
    header = [h.strip() for h in rows[0]]
    keep = [i for i, h in enumerate(header) if _norm(h) not in {_norm(c) for c in BOOKKEEPING_COLUMNS}]
    if not keep:
        raise DataFormatError(f"no feature column; header is {header}", path=path)
    body = [r for r in rows[1:] if r and any(c.strip() for c in r)]
    x = np.full((len(body), len(keep)), np.nan, np.float64)
    bad = 0
    for t, row in enumerate(body):
        if len(row) != len(header):
            raise DataFormatError(f"line {t + 2} has {len(row)} fields, the header {len(header)}", path=path)
        for j, i in enumerate(keep):
            try:
                x[t, j] = float(row[i])
            except ValueError:
                bad += 1
    if body and bad == x.size:
        raise DataFormatError(f"no numeric feature values (columns {[header[i] for i in keep]})", path=path)
    _check_float32(x, path)
    return x.astype(np.float32), bad


def _read_delimited(path, alternative, failure):
    """Rows of the CSV at `path`, split on `alternative` when its header holds
    more of it than commas (AVEC files come both ways); `failure` starts the
    error message when the file cannot be read or parsed."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            head = f.readline()
            f.seek(0)
            delimiter = alternative if head.count(alternative) > head.count(",") else ","
            return list(csv.reader(f, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataFormatError(f"{failure}: {e}", path=path) from None


def _pool(x, pool, max_len):
    if pool and pool > 1 and x.shape[0]:
        n = -(-x.shape[0] // pool)
        pad = n * pool - x.shape[0]
        sums = np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)]).reshape(n, pool, -1).sum(1)
        counts = np.full((n, 1), float(pool), np.float32)
        counts[-1, 0] = pool - pad
        x = (sums / counts).astype(np.float32)
    if max_len is not None:
        x = x[:max_len]
    return x


def read_transcript(path):
    """The participant's words from `<pid>_Transcript.csv` (a `Text` or `value` column), joined."""
    rows = _read_delimited(path, "\t", "cannot read the transcript")
    if not rows:
        return ""
    header = [_norm(h) for h in rows[0]]
    col = next((header.index(c) for c in ("text", "value", "transcript") if c in header), None)
    if col is None:
        raise DataFormatError(f"no Text column; header is {rows[0]}", path=path)
    return " ".join(r[col].strip() for r in rows[1:] if len(r) > col and r[col].strip())


def read_avec(
    input_dir,
    *,
    audio=DEFAULT_AUDIO,
    vision=DEFAULT_VISION,
    text=None,
    transcripts=False,
    pool=1,
    max_len=None,
    nonfinite="zero",
    dataset="avec2019",
    modality_dims="auto",
    max_array_bytes=MAX_ARRAY_BYTES,
    verbose=False,
):
    """Builds `(splits, meta)` from an AVEC 2019 DDS directory (module docstring).

    Args:
        input_dir: the release's root.
        audio, vision, text: feature-set names (the part after `<pid>_` in
            `<pid>_P/features/<pid>_<name>.csv|.npy`) for each modality, or
            None to carry the modality as missing (below).
        transcripts: add `raw_text` from `<pid>_P/<pid>_Transcript.csv`.
        pool: average consecutive blocks of `pool` frames.
        max_len: keep at most this many (pooled) steps.
        nonfinite: "zero" (repair, counted) or "error".
        dataset: name written to the schema.
        modality_dims: `{modality: width}` of the modalities without a
            feature set: every example gets an empty `[0, width]` array
            (missing: zeros and an all-False mask in each batch). "auto" is
            `MISSING_DIMS` (text 768); audio or vision without a feature set
            need a width here.
        max_array_bytes: cap on the bytes one `.npy` feature file may declare.
        verbose: log progress.

    Returns:
        `(splits, meta)` with `splits = {"train"|"valid"|"test": [examples]}`.
    """
    if nonfinite not in ("zero", "error"):
        raise ValueError(f"nonfinite must be 'zero' or 'error'; got {nonfinite!r}")
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
        raise ValueError(f"pool must be an int >= 1 (frames averaged per step); got {pool!r}")
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
        raise ValueError(f"max_len must be None or an int >= 1; got {max_len!r}")
    if not os.path.isdir(input_dir):
        raise DataFormatError("input directory not found", path=input_dir)
    root_real = os.path.realpath(input_dir)

    def inside(path, pid):
        real = os.path.realpath(path)
        if not real.startswith(root_real.rstrip(os.sep) + os.sep):
            raise DataFormatError(f"resolves to {real}, outside the input directory {root_real} (a symlink?): "
                                  f"refused; reads stay inside the input directory", path=path,
                                  key=f"participant {pid}")
        return path
    split_files = find_split_files(input_dir)
    if not split_files:
        raise DataFormatError("no label split files (train_split.csv, dev_split.csv, test_split.csv) "
                              "in the directory or its labels/ folder", path=input_dir)
    feature_sets = {m: n for m, n in (("text", text), ("audio", audio), ("vision", vision)) if n}
    widths = dict(MISSING_DIMS) if modality_dims == "auto" else dict(modality_dims or {})
    missing_dims = {}
    for m in ("text", "audio", "vision"):
        if m in feature_sets:
            continue
        d = widths.get(m)
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise DataFormatError(
                f"{m}=None leaves {m} without a feature file, and a missing modality still needs a width (it "
                f"becomes zeros with an all-False mask); pass modality_dims={{'{m}': D}} "
                f"(--reader_options='{{\"modality_dims\": {{\"{m}\": D}}}}') or name a feature set with "
                f"{m}=<name>; got modality_dims[{m!r}] = {d!r}", path=input_dir)
        missing_dims[m] = d
    log = logging.getLogger(__name__)
    repairs = {}

    def count(name, n=1):
        if n:
            repairs[name] = repairs.get(name, 0) + int(n)

    labels = {}
    owner = {}
    for split in ("train", "valid", "test"):
        if split not in split_files:
            continue
        labels[split] = read_split_labels(split_files[split])
        for pid, _ in labels[split]:
            if pid in owner:
                raise DataFormatError(f"participant {pid} is in both {owner[pid]} and {split}",
                                      path=split_files[split], key=pid)
            owner[pid] = split
    if not owner:
        raise DataFormatError(f"no participant in any split file ({[os.path.basename(split_files[s]) for s in labels]})",
                              path=input_dir)

    dims = {}
    sources = [split_files[s] for s in labels]
    splits = {}
    for split, rows in labels.items():
        examples = []
        for n, (pid, score) in enumerate(rows):
            ex = {"id": pid, "phq8": np.float32(score)}
            session = os.path.join(input_dir, f"{pid}_P")
            for m, name in feature_sets.items():
                path = None
                for ext in (".csv", ".npy"):
                    for folder in (os.path.join(session, "features"), session):
                        candidate = os.path.join(folder, f"{pid}_{name}{ext}")
                        if path is None and os.path.isfile(candidate):
                            path = inside(candidate, pid)
                if path is None:
                    count(f"sessions_missing_{m}")
                    ex[m] = None
                    continue
                x, non_numeric = read_feature_file(path, max_array_bytes)
                if m in dims and x.shape[1] != dims[m]:
                    raise DataFormatError(f"{m} width {x.shape[1]} differs from other sessions' {dims[m]}",
                                          path=path)
                dims[m] = x.shape[1]
                bad = ~np.isfinite(x)
                if bad.any():
                    if nonfinite == "error":
                        raise DataFormatError(f"{int(bad.sum())} NaN/inf or non-numeric values", path=path, key=m)
                    count(f"non_numeric_feature_values_zeroed/{m}", non_numeric)
                    count(f"nonfinite_feature_values_zeroed/{m}", int(bad.sum()) - non_numeric)
                    x = np.where(bad, 0.0, x).astype(np.float32)
                if not x.shape[0]:
                    count(f"sessions_with_empty_{m}_file")  # a header and no frames: missing, and counted
                ex[m] = _pool(x, pool, max_len)
                sources.append(path)
            if transcripts:
                tpath = os.path.join(session, f"{pid}_Transcript.csv")
                if os.path.isfile(tpath):
                    ex["raw_text"] = read_transcript(inside(tpath, pid))
                    sources.append(tpath)
                else:
                    count("sessions_missing_transcript")
                    ex["raw_text"] = ""
            examples.append(ex)
            if verbose and (n + 1) % 20 == 0:
                log.info("avec: %s %d/%d sessions", split, n + 1, len(rows))
        splits[split] = examples

    for m in feature_sets:
        if m not in dims:
            raise DataFormatError(f"no '<pid>_{feature_sets[m]}.csv|.npy' file for any participant ({m}); "
                                  f"pass {m}=<feature set> or {m}=None", path=input_dir)
    for examples in splits.values():
        for ex in examples:
            for m in feature_sets:
                if ex[m] is None:
                    ex[m] = np.zeros((0, dims[m]), np.float32)
            for m, d in missing_dims.items():
                ex[m] = np.zeros((0, d), np.float32)
    n_sessions = sum(len(v) for v in splits.values())
    holds = {}
    for m, d in missing_dims.items():
        holds[m] = (f"no {m} feature set named: every session carries {m} as missing (dim {d} reserved, "
                    f"all-False mask)")
        if m == "text" and transcripts:
            holds[m] += "; extract them from the transcripts with recipes/extract_text_features.py"
    for m in feature_sets:
        if repairs.get(f"sessions_missing_{m}"):
            holds[m] = (f"{feature_sets[m]} features for {n_sessions - repairs[f'sessions_missing_{m}']} of "
                        f"{n_sessions} sessions (dim {dims[m]})")
    if transcripts:
        n_text = sum(bool(ex.get("raw_text")) for v in splits.values() for ex in v)
        holds["raw_text"] = f"transcripts for {n_text} of {n_sessions} sessions"
    meta = {
        "dataset": dataset,
        "sources": sources,
        "repairs": repairs,
        "label_ranges": {"phq8": list(PHQ8_RANGE)},
        "avec": {"feature_sets": feature_sets, "pool": pool, "max_len": max_len, "missing_modalities": missing_dims},
        "holds": holds,
    }
    return splits, meta


def write_synthetic_avec(directory, n_train=24, n_dev=8, n_test=8, seed=0, *, audio_dim=6, vision_dim=8,
                         frames=(30, 60), noise=0.3):
    """Writes a small AVEC 2019-format dataset with a known PHQ-8 signal.

    Per participant two latents ``a, v ~ N(0, 1)``; every frame's audio
    channel 0 is ``a + noise * eps`` and vision channel 0 is ``v + noise *
    eps`` (other channels N(0, 1) noise); ``PHQ-8 = round(24 * sigmoid(a +
    v))``, so the frame means of the two channels predict it almost exactly.
    Files: ``labels/{train,dev,test}_split.csv`` (``Participant_ID, Gender,
    PHQ_Binary, PHQ_Score``), ``<pid>_P/features/<pid>_OpenSMILE2.3.0_egemaps.csv``
    (``;``-separated, ``name;frameTime;...``) and
    ``<pid>_P/features/<pid>_OpenFace2.1.0_Pose_gaze_AUs.csv`` (``frame,
    timestamp, confidence, success, ...``), participants numbered from 300.

    Returns:
        `{split: {participant id: PHQ-8}}` (splits "train", "dev", "test").
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(directory, "labels"), exist_ok=True)
    out = {}
    pid = 300
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        out[split] = {}
        lines = ["Participant_ID,Gender,PHQ_Binary,PHQ_Score"]
        for _ in range(n):
            a, v = rng.standard_normal(2)
            phq = int(np.round(24.0 / (1.0 + np.exp(-(a + v)))))
            t = int(rng.integers(frames[0], frames[1] + 1))
            feat = os.path.join(directory, f"{pid}_P", "features")
            os.makedirs(feat, exist_ok=True)
            xa = rng.standard_normal((t, audio_dim)).astype(np.float32)
            xa[:, 0] = a + noise * rng.standard_normal(t)
            with open(os.path.join(feat, f"{pid}_{DEFAULT_AUDIO}.csv"), "w") as f:
                f.write(";".join(["name", "frameTime"] + [f"lld_{j}" for j in range(audio_dim)]) + "\n")
                for i in range(t):
                    f.write(";".join(["'unknown'", f"{i * 0.01:.2f}"] + [repr(float(x)) for x in xa[i]]) + "\n")
            xv = rng.standard_normal((t, vision_dim)).astype(np.float32)
            xv[:, 0] = v + noise * rng.standard_normal(t)
            with open(os.path.join(feat, f"{pid}_{DEFAULT_VISION}.csv"), "w") as f:
                f.write(", ".join(["frame", "timestamp", "confidence", "success"]
                                  + [f"AU{j:02d}_r" for j in range(vision_dim)]) + "\n")
                for i in range(t):
                    f.write(", ".join([str(i + 1), f"{i * 0.033:.3f}", "0.98", "1"]
                                      + [repr(float(x)) for x in xv[i]]) + "\n")
            lines.append(f"{pid},{int(rng.integers(0, 2))},{int(phq >= 10)},{phq}")
            out[split][str(pid)] = phq
            pid += 1
        with open(os.path.join(directory, "labels", f"{split}_split.csv"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return out
