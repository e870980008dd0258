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

Errors (`DataFormatError` naming file, key and problem): a split file without
a participant or PHQ-8 column, a PHQ-8 that is not a number or outside
[0, 24], a participant in two splits or twice in one, a feature file that
cannot be parsed, has no numeric column, or a width that differs between
sessions. Counted repairs in ``meta["repairs"]``: ``sessions_missing_<modality>``
(no file for that participant: empty ``[0, D]`` sequence, masked out
downstream), ``nonfinite_feature_values_zeroed/<modality>`` (NaN/inf set to 0;
``nonfinite="error"`` raises), ``non_numeric_feature_values_zeroed/<modality>``.
"""

import csv
import glob
import logging
import os
import re

import numpy as np

from keras_msa.data.errors import DataFormatError

PHQ8_RANGE = (0.0, 24.0)
DEFAULT_AUDIO = "OpenSMILE2.3.0_egemaps"
DEFAULT_VISION = "OpenFace2.1.0_Pose_gaze_AUs"
BOOKKEEPING_COLUMNS = ("name", "frametime", "frame", "timestamp", "face_id", "faceid", "confidence", "success")

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
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
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
        try:
            pid = str(int(float(pid)))
        except ValueError:
            pass
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


def read_feature_file(path):
    """A feature file as float32 `(T, D)` plus the number of non-numeric cells
    (set to NaN here; the caller repairs or raises)."""
    if path.endswith(".npy"):
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataFormatError(f"cannot read the array: {e}", path=path) from None
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
            raise DataFormatError(f"expected a numeric (T, D) array; got {x.dtype} {x.shape}", path=path)
        return x.astype(np.float32), 0
    try:
        with open(path, newline="") as f:
            head = f.readline()
            f.seek(0)
            delimiter = ";" if head.count(";") > head.count(",") else ","
            rows = list(csv.reader(f, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataFormatError(f"cannot parse the feature file: {e}", path=path) from None
    if not rows:
        raise DataFormatError("empty feature file (no header)", path=path)
    header = [h.strip() for h in rows[0]]
    keep = [i for i, h in enumerate(header) if _norm(h) not in {_norm(c) for c in BOOKKEEPING_COLUMNS}]
    if not keep:
        raise DataFormatError(f"no feature column; header is {header}", path=path)
    body = [r for r in rows[1:] if r and any(c.strip() for c in r)]
    x = np.full((len(body), len(keep)), np.nan, np.float32)
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
    return x, bad


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
    with open(path, newline="") as f:
        head = f.readline()
        f.seek(0)
        delimiter = "\t" if head.count("\t") > head.count(",") else ","
        rows = list(csv.reader(f, delimiter=delimiter))
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
    verbose=False,
):
    """Builds `(splits, meta)` from an AVEC 2019 DDS directory (module docstring).

    Args:
        input_dir: the release's root.
        audio, vision, text: feature-set names (the part after `<pid>_` in
            `<pid>_P/features/<pid>_<name>.csv|.npy`) for each modality, or
            None to leave the modality out.
        transcripts: add `raw_text` from `<pid>_P/<pid>_Transcript.csv`.
        pool: average consecutive blocks of `pool` frames.
        max_len: keep at most this many (pooled) steps.
        nonfinite: "zero" (repair, counted) or "error".
        dataset: name written to the schema.
        verbose: log progress.

    Returns:
        `(splits, meta)` with `splits = {"train"|"valid"|"test": [examples]}`.
    """
    if nonfinite not in ("zero", "error"):
        raise ValueError(f"nonfinite must be 'zero' or 'error'; got {nonfinite!r}")
    if not os.path.isdir(input_dir):
        raise DataFormatError("input directory not found", path=input_dir)
    split_files = find_split_files(input_dir)
    if not split_files:
        raise DataFormatError("no label split files (train_split.csv, dev_split.csv, test_split.csv) "
                              "in the directory or its labels/ folder", path=input_dir)
    feature_sets = {m: n for m, n in (("text", text), ("audio", audio), ("vision", vision)) if n}
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
                            path = candidate
                if path is None:
                    count(f"sessions_missing_{m}")
                    ex[m] = None
                    continue
                x, non_numeric = read_feature_file(path)
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
                ex[m] = _pool(x, pool, max_len)
                sources.append(path)
            if transcripts:
                tpath = os.path.join(session, f"{pid}_Transcript.csv")
                if os.path.isfile(tpath):
                    ex["raw_text"] = read_transcript(tpath)
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
    meta = {
        "dataset": dataset,
        "sources": sources,
        "repairs": repairs,
        "label_ranges": {"phq8": list(PHQ8_RANGE)},
        "avec": {"feature_sets": feature_sets, "pool": pool, "max_len": max_len},
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
