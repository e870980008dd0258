"""CMU-MultimodalSDK computational sequences (`.csd`) and their alignment.

A computational sequence is an HDF5 file with one root group::

    /<root>/data/<video_id>/features    (n, d)  float (features) or bytes (words)
    /<root>/data/<video_id>/intervals   (n, 2)  [start, end] in seconds
    /<root>/metadata/<key>              strings (often a (1,) array of bytes)

A dataset is a *labels* sequence (one row per opinion segment; its interval is
the segment's span, its features the segment's label(s)) plus any number of
feature sequences and, optionally, a word sequence (bytes tokens, ``sp`` =
silence). Building examples means cutting every other sequence at the label
segments, as the SDK's ``mmdataset.align(labels)`` does.

Alignment rule (`overlapping_rows`), the same for features and words
-------------------------------------------------------------------

For a segment ``[s, e]`` a row ``[a, b]`` is taken when it overlaps the segment
by more than ``epsilon`` seconds (default 1e-4 s, far below any frame period;
it absorbs the float32 rounding of the label file's times)::

    min(b, e) - max(a, s) > epsilon

Rows of zero length (``a == b``: point events) are taken when ``s <= a < e``.
Taken rows keep their values and their time order (sorted by start, ties kept
in file order); `align_sequence` also returns their intervals clipped to the
segment, as the SDK does. Consequences, on purpose (they are the SDK's):

* a row that straddles a segment edge belongs to **both** neighbouring
  segments (it overlaps each); a row that merely touches an edge
  (``b == s`` or ``a == e``) belongs to neither;
* segments that overlap each other (they do in CMU-MOSI) share the rows of
  their common span.

A segment's text (``raw_text``) is its taken word tokens, in time order, with
``sp`` (silence) and empty tokens dropped, decoded as UTF-8 and joined by one
space. ``word_rule="midpoint"`` is an alternative for words only: a word
belongs to the segment holding its midpoint (``s <= (a + b) / 2 < e``), so a
straddling word goes to exactly one of two adjacent segments.

Segment ids
-----------

The labels sequence stores a video's segments as rows; row ``i`` (0-based, in
file order) is segment ``k = i + 1`` and gets the id ``"<video_id>_<k>"`` (the
CMU-MOSI naming; the SDK's ``align`` names it ``"<video_id>[<i>]"``). File order
is kept even where the label file's rows are not sorted by time (two CMU-MOSI
videos).

Checks and repairs (`read_computational_sequence`, `read_csd`)
---------------------------------------------------------------

A `.csd` reads itself and nothing else (`audit_hdf5`, run before any data is
read): external links, soft links that dangle, loop or run through an
external link, hard links back to an enclosing group (cycles), datasets with
external storage (raw bytes of any other file) and virtual datasets are
refused, naming the object's HDF5 path and the kind. ``allow_external=True``
follows external links, external storage and virtual datasets and lists every
file they read in ``meta["sources"]`` (dangling links and cycles are refused
either way). The datasets a file declares may not add up to more than
``max_read_bytes`` (default 64 times the file size, at least 256 MiB), so a
small file cannot make the reader allocate gigabytes of fill values.

Errors (`DataFormatError`, naming file, HDF5 key and problem): a file that is
not readable HDF5 (truncated, corrupt), no root group / no ``data`` group, a
video without ``features`` or ``intervals``, intervals not shaped (n, 2), row
counts of features and intervals that differ, non-finite interval times or
``end < start``, bytes features where numbers are expected, complex or
zero-width features, finite values beyond the float32 range (they would turn
into inf), a label that is NaN/inf or outside the dataset's range, a video in
two folds, a folds file that is not ``{split: [video ids]}``, folds that
select no labelled segment at all.

Repairs, counted in ``meta["repairs"]`` (never silent):

* ``nonfinite_feature_values_zeroed/<modality>``: NaN/inf feature values set to 0
  (what MMSA does with COVAREP's -inf); ``nonfinite="error"`` raises instead.
* ``segments_missing_<modality>``: segments whose video has no rows in that
  modality's file or no overlapping rows (the modality is then an empty
  ``[0, d]`` sequence: missing, masked out downstream).
* ``segments_without_words``: segments with no word token (``raw_text`` "").
* ``word_tokens_not_utf8_replaced``: word tokens that are not valid UTF-8
  (their bad bytes become U+FFFD).
* ``fold_videos_without_labels``: fold videos absent from the labels file
  (skipped); ``labelled_videos_not_in_folds``: labelled videos in no fold
  (left out); ``videos_without_segments``: labelled videos with zero rows.
"""

import glob
import json
import logging
import os

import numpy as np

from keras_msa.data.errors import DataFormatError

MODALITIES = ("text", "audio", "vision")
SILENCE_TOKENS = ("sp",)

#: Label ranges of the datasets this reader knows.
LABEL_RANGES = {"mosi": (-3.0, 3.0), "mosei": (-3.0, 3.0), "pom": (1.0, 7.0)}

#: Widths given to modalities without a feature file (`read_csd(missing_dims=)`).
MISSING_DIMS = {"mosi": {"text": 768, "audio": 5, "vision": 20}, "mosei": {"text": 768, "audio": 74, "vision": 35}}

#: File-name keywords used to find feature sequences in a directory when
#: `features` is not given (case-insensitive substring of the file name).
FEATURE_KEYWORDS = {
    "text": ("glove", "bert", "word_vectors", "wordvectors"),
    "audio": ("covarep", "opensmile", "wav2vec", "audio"),
    "vision": ("facet", "openface", "visual", "vision"),
}

_SPLIT_ALIASES = {"dev": "valid", "val": "valid", "validation": "valid", "valid": "valid",
                  "train": "train", "test": "test"}


class ComputationalSequence:
    """One `.csd` file read into memory.

    Attributes:
        path: the file.
        root: the root group's name.
        data: ``{video_id: (features, intervals)}``; features are float32
            ``(n, d)`` or, for word sequences, an object array of ``str``
            tokens ``(n,)``; intervals float64 ``(n, 2)``.
        metadata: ``{key: str}``.
        is_words: whether the features are bytes tokens.
        files_read: other files HDF5 read for it (only with
            `allow_external=True`; empty otherwise).
        tokens_not_utf8: word tokens that were not valid UTF-8 (decoded with
            U+FFFD replacement characters).
    """

    def __init__(self, path, root, data, metadata, is_words):
        self.path = path
        self.root = root
        self.data = data
        self.metadata = metadata
        self.is_words = is_words
        self.files_read = []
        self.tokens_not_utf8 = 0

    @property
    def dim(self):
        """Feature width (1 for words), or None when the file has no rows."""
        for features, _ in self.data.values():
            return 1 if self.is_words else int(features.shape[1])
        return None

    def __repr__(self):
        return (f"ComputationalSequence(root={self.root!r}, videos={len(self.data)}, "
                f"dim={self.dim}, words={self.is_words})")


def _is_utf8(raw):
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _metadata_value(dataset):
    value = dataset[()]
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        if flat.size == 1:
            return _decode(flat[0])
        return [_decode(v) for v in flat]
    return _decode(value)


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0


def _external_storage_file(name, csd_path):
    # HDF5's own rule for external raw data: absolute as is, else under
    # HDF5_EXTFILE_PREFIX ("${ORIGIN}" = the file's folder), else the cwd.
    name = _decode(name)
    if os.path.isabs(name):
        return name
    prefix = os.environ.get("HDF5_EXTFILE_PREFIX")
    if prefix:
        prefix = prefix.replace("${ORIGIN}", os.path.dirname(os.path.abspath(csd_path)))
        return os.path.abspath(os.path.join(prefix, name))
    return os.path.abspath(name)


def _virtual_source_file(name, csd_path):
    if name == ".":
        return os.path.abspath(csd_path)
    if os.path.isabs(name):
        return name
    beside = os.path.join(os.path.dirname(os.path.abspath(csd_path)), name)
    return beside if os.path.exists(beside) else os.path.abspath(name)


def audit_hdf5(handle, path, allow_external=False, max_read_bytes="auto"):
    """Checks every link and dataset of an open HDF5 file before anything is read.

    A `.csd` is one self-contained file, so by default the reader refuses
    whatever would make HDF5 read another file (or loop): external links,
    soft links that are dangling, loop or leave the file, hard links back to
    an ancestor group (a cycle), datasets with external storage (raw bytes of
    any file) and virtual datasets (mapped onto other datasets or files).
    With `allow_external=True` external links, external storage and virtual
    datasets are followed and every file they read is returned; dangling
    links and cycles are refused either way.

    The declared size of every dataset counts against `max_read_bytes`
    ("auto": 64 times the file size, at least 256 MiB), so a tiny file that
    declares a huge (fill-value) dataset fails here instead of allocating it.

    Returns:
        The other files the datasets would read (absolute paths, sorted;
        empty unless `allow_external`).

    Raises:
        DataFormatError: naming the file, the object's path and the link or
            storage kind.
    """
    import h5py

    size = os.path.getsize(path)
    if max_read_bytes == "auto":
        cap = max(256 << 20, 64 * size)
        cap_note = "64 times the file size, at least 256 MiB"
    elif max_read_bytes is None:
        cap, cap_note = None, None
    else:
        cap, cap_note = int(max_read_bytes), f"max_read_bytes={int(max_read_bytes)}"
    own = os.path.realpath(path)
    opt_in = "; pass allow_external=True (reader option) to follow it and list the files it reads"
    files = set()
    checked = set()
    total = [0]

    def ident(obj):
        return (os.path.realpath(obj.file.filename), h5py.h5o.get_info(obj.id).addr)

    def check_dataset(dset, where):
        external = dset.external
        if external:
            targets = [_external_storage_file(e[0], path) for e in external]
            if not allow_external:
                raise DataFormatError(f"dataset with external storage (its bytes live in {targets}): "
                                      f"refused, a .csd must be self-contained{opt_in}", path=path, key=where)
            files.update(targets)
        if dset.is_virtual:
            targets = sorted({_virtual_source_file(_decode(s.file_name), path) for s in dset.virtual_sources()})
            if not allow_external:
                raise DataFormatError(f"virtual dataset (mapped onto {targets}): refused, a .csd must be "
                                      f"self-contained{opt_in}", path=path, key=where)
            files.update(t for t in targets if os.path.realpath(t) != own)
        declared = 0 if dset.shape is None else int(np.prod(dset.shape, dtype=np.float64) * dset.dtype.itemsize)
        total[0] += declared
        if cap is not None and total[0] > cap:
            raise DataFormatError(
                f"dataset declares shape {dset.shape} {dset.dtype} ({_human(declared)}); with the datasets before "
                f"it the file would allocate {_human(total[0])} from {_human(size)} on disk, over the cap of "
                f"{_human(cap)} ({cap_note}); pass max_read_bytes=<bytes> (reader option) if the file is "
                f"genuine", path=path, key=where)

    def resolve_soft(gpath, target, where, depth):
        if depth > 32:
            raise DataFormatError(f"soft link to {target} loops (more than 32 soft links): link cycle",
                                  path=path, key=where)
        full = target if target.startswith("/") else f"{gpath.rstrip('/')}/{target}"
        cur, cur_path = handle["/"], ""
        for part in [p for p in full.split("/") if p and p != "."]:
            step = cur.get(part, getlink=True) if isinstance(cur, h5py.Group) else None
            if step is None:
                raise DataFormatError(f"soft link to {target} leads nowhere (dangling)", path=path, key=where)
            if isinstance(step, h5py.ExternalLink):
                raise DataFormatError(f"soft link to {target} leaves the file through the external link "
                                      f"{cur_path}/{part} (to {step.filename}:{step.path}): refused{opt_in}",
                                      path=path, key=where)
            if isinstance(step, h5py.SoftLink):
                cur = resolve_soft(cur_path or "/", step.path, where, depth + 1)
            else:
                cur = cur[part]
            cur_path = f"{cur_path}/{part}"
        return cur

    def visit(group, gpath, ancestors):
        for name in group:
            where = f"{gpath.rstrip('/')}/{_decode(name)}"
            try:
                link = group.get(name, getlink=True)
            except Exception as e:  # noqa: BLE001 - an unreadable link table is a corrupt file
                raise DataFormatError(f"unreadable link: {e}", path=path, key=where) from None
            if isinstance(link, h5py.ExternalLink):
                if not allow_external:
                    raise DataFormatError(f"external link to {link.filename}:{link.path}: refused, a .csd must "
                                          f"be self-contained{opt_in}", path=path, key=where)
            elif isinstance(link, h5py.SoftLink):
                pass
            elif not isinstance(link, h5py.HardLink):
                raise DataFormatError(f"link of unsupported kind {type(link).__name__}: refused",
                                      path=path, key=where)
            kind = type(link).__name__.replace("Link", " link").lower()
            if isinstance(link, h5py.SoftLink) and not allow_external:
                # Resolved by hand: letting HDF5 resolve it would already open
                # the other file when the path runs through an external link.
                resolve_soft(gpath, link.path, where, 0)
            try:
                obj = group[name]
            except KeyError:
                target = getattr(link, "path", "?")
                raise DataFormatError(f"{kind} to {target} leads nowhere (dangling)", path=path, key=where) from None
            except RuntimeError as e:  # HDF5's "too many links"
                raise DataFormatError(f"{kind} to {getattr(link, 'path', '?')} loops ({e}): link cycle",
                                      path=path, key=where) from None
            except (OSError, ValueError) as e:
                raise DataFormatError(f"{kind} cannot be resolved: {e}", path=path, key=where) from None
            obj_file = os.path.realpath(obj.file.filename)
            if obj_file != own:
                if not allow_external:
                    raise DataFormatError(f"{kind} leaves the file (into {obj_file}): refused{opt_in}",
                                          path=path, key=where)
                files.add(obj_file)
            key = ident(obj)
            if isinstance(obj, h5py.Group):
                if key in ancestors:
                    raise DataFormatError(f"{kind} back to an enclosing group: link cycle", path=path, key=where)
                if key in checked:
                    continue
                checked.add(key)
                visit(obj, where, ancestors | {key})
            elif isinstance(obj, h5py.Dataset):
                if key in checked:
                    continue
                checked.add(key)
                check_dataset(obj, where)

    root = handle["/"]
    start = ident(root)
    checked.add(start)
    visit(root, "/", {start})
    return sorted(files)


def read_computational_sequence(path, root=None, allow_external=False, max_read_bytes="auto"):
    """Reads a `.csd` file into a `ComputationalSequence`.

    Every link and dataset is checked first (`audit_hdf5`): external links,
    soft links that dangle, loop or leave the file, link cycles, external
    storage and virtual datasets are refused unless `allow_external=True`,
    and a file may not declare more than `max_read_bytes` of data.

    Args:
        path: the `.csd` (HDF5) file.
        root: the root group's name; default: the file's only root group.
        allow_external: follow external links, external storage and virtual
            datasets; the files they read are in the result's `files_read`.
        max_read_bytes: cap on the bytes the file's datasets declare
            ("auto": 64 times the file size, at least 256 MiB; None: no cap).

    Raises:
        DataFormatError: naming the file, the HDF5 key and the problem (see the
            module docstring).

    Example:

    >>> seq = read_computational_sequence("CMU_MOSI_Opinion_Labels.csd")  # doctest: +SKIP
    >>> features, intervals = seq.data["03bSnISJMiM"]  # doctest: +SKIP
    """
    import h5py

    path = str(path)
    if not os.path.isfile(path):
        raise DataFormatError("file not found", path=path)
    try:
        handle = h5py.File(path, "r")
    except OSError as e:
        raise DataFormatError(
            f"not a readable HDF5 computational sequence (truncated or corrupt file?): {e}", path=path
        ) from None
    with handle as f:
        files_read = audit_hdf5(f, path, allow_external=allow_external, max_read_bytes=max_read_bytes)
        roots = [k for k in f.keys() if isinstance(f[k], h5py.Group)]
        if root is None:
            if len(roots) != 1:
                raise DataFormatError(
                    f"expected exactly one root group, found {roots}; pass root=", path=path, key="/"
                )
            root = roots[0]
        elif root not in f:
            raise DataFormatError(f"no root group {root!r}; the file holds {roots}", path=path, key="/")
        group = f[root]
        if "data" not in group or not isinstance(group["data"], h5py.Group):
            raise DataFormatError(
                "missing the 'data' group of a computational sequence", path=path, key=f"/{root}/data"
            )
        metadata = {}
        if "metadata" in group:
            for key in group["metadata"]:
                try:
                    metadata[key] = _metadata_value(group["metadata"][key])
                except Exception as e:  # noqa: BLE001 - any h5py failure is a corrupt file
                    raise DataFormatError(f"unreadable metadata: {e}", path=path,
                                          key=f"/{root}/metadata/{key}") from None
        data = {}
        kinds = set()
        not_utf8 = 0
        for vid in group["data"]:
            key = f"/{root}/data/{vid}"
            entry = group["data"][vid]
            if not isinstance(entry, h5py.Group):
                raise DataFormatError("expected a group with 'features' and 'intervals'", path=path, key=key)
            for part in ("features", "intervals"):
                if part not in entry:
                    raise DataFormatError(f"missing '{part}'", path=path, key=key)
            try:
                features = entry["features"][()]
                intervals = entry["intervals"][()]
            except Exception as e:  # noqa: BLE001
                raise DataFormatError(f"unreadable data (truncated or corrupt file?): {e}",
                                      path=path, key=key) from None
            features, intervals, kind = _check_entry(features, intervals, path, key)
            if isinstance(kind, tuple):
                kind, bad_tokens = kind
                not_utf8 += bad_tokens
            kinds.add(kind)
            data[_decode(vid)] = (features, intervals)
        if len(kinds) > 1:
            raise DataFormatError("mixes bytes (word) and numeric features across videos", path=path,
                                  key=f"/{root}/data")
    seq = ComputationalSequence(path, _decode(root), data, metadata, is_words=kinds == {"words"})
    seq.files_read = list(files_read)
    seq.tokens_not_utf8 = not_utf8
    return seq


def _check_entry(features, intervals, path, key):
    intervals = np.asarray(intervals)
    if intervals.ndim != 2 or intervals.shape[1] != 2:
        raise DataFormatError(f"intervals must be (n, 2) [start, end]; got shape {intervals.shape}",
                              path=path, key=f"{key}/intervals")
    if not np.issubdtype(intervals.dtype, np.number):
        raise DataFormatError(f"intervals must be numeric seconds; got dtype {intervals.dtype}",
                              path=path, key=f"{key}/intervals")
    intervals = intervals.astype(np.float64)
    features = np.asarray(features)
    if features.ndim == 1:
        features = features[:, None]
    if features.ndim != 2:
        raise DataFormatError(f"features must be (n, d); got shape {features.shape}",
                              path=path, key=f"{key}/features")
    if features.shape[0] != intervals.shape[0]:
        raise DataFormatError(
            f"features have {features.shape[0]} rows but intervals have {intervals.shape[0]}",
            path=path, key=key,
        )
    if not np.isfinite(intervals).all():
        row = int(np.argwhere(~np.isfinite(intervals))[0][0])
        raise DataFormatError(f"non-finite time in row {row}: {intervals[row].tolist()}",
                              path=path, key=f"{key}/intervals")
    if (intervals[:, 1] < intervals[:, 0]).any():
        row = int(np.argmax(intervals[:, 1] < intervals[:, 0]))
        raise DataFormatError(f"row {row} ends before it starts: {intervals[row].tolist()}",
                              path=path, key=f"{key}/intervals")
    if features.dtype.kind in ("S", "O", "U"):
        if features.shape[1] != 1:
            raise DataFormatError(f"word tokens must be (n, 1); got shape {features.shape}",
                                  path=path, key=f"{key}/features")
        tokens = np.array([_decode(t).strip() for t in features[:, 0]], dtype=object)
        not_utf8 = sum(1 for t in features[:, 0] if isinstance(t, bytes) and not _is_utf8(t))
        return tokens, intervals, ("words", not_utf8)
    if not np.issubdtype(features.dtype, np.number) or np.issubdtype(features.dtype, np.complexfloating):
        raise DataFormatError(f"features must be real numbers or bytes tokens; got dtype {features.dtype}",
                              path=path, key=f"{key}/features")
    if features.shape[1] == 0 and features.shape[0]:
        raise DataFormatError(f"features have no columns (shape {features.shape})", path=path, key=f"{key}/features")
    if features.dtype.itemsize > 4 or np.issubdtype(features.dtype, np.integer):
        # A finite float64 beyond float32's range would become inf below and
        # then be "repaired" as if the file held inf; say what happened.
        with np.errstate(invalid="ignore"):
            big = np.abs(features.astype(np.float64)) > np.finfo(np.float32).max
        if big.any():
            row, col = (int(i) for i in np.argwhere(big)[0])
            raise DataFormatError(
                f"{int(big.sum())} finite values exceed the float32 range (first: row {row}, column {col}, "
                f"{features[row, col]!r}); the features must fit float32 (rescale them)",
                path=path, key=f"{key}/features")
    return features.astype(np.float32), intervals, "numeric"


def overlapping_rows(intervals, start, end, epsilon=1e-4):
    """Indices of the rows of `intervals` (n, 2) that belong to segment
    `[start, end]` under the module's overlap rule, in time order."""
    intervals = np.asarray(intervals, np.float64)
    if intervals.shape[0] == 0:
        return np.zeros((0,), np.int64)
    a, b = intervals[:, 0], intervals[:, 1]
    overlap = np.minimum(b, end) - np.maximum(a, start)
    point = (a == b) & (a >= start) & (a < end)
    idx = np.nonzero((overlap > epsilon) | point)[0]
    return idx[np.argsort(a[idx], kind="stable")]


def midpoint_rows(intervals, start, end):
    """Indices of the rows whose midpoint lies in `[start, end)`, in time order."""
    intervals = np.asarray(intervals, np.float64)
    if intervals.shape[0] == 0:
        return np.zeros((0,), np.int64)
    mid = 0.5 * (intervals[:, 0] + intervals[:, 1])
    idx = np.nonzero((mid >= start) & (mid < end))[0]
    return idx[np.argsort(intervals[idx, 0], kind="stable")]


def align_sequence(features, intervals, start, end, epsilon=1e-4):
    """The rows of one video's sequence that belong to segment `[start, end]`.

    Returns `(features[rows], clipped_intervals)`, the intervals clipped to the
    segment as the SDK's `align` does.
    """
    rows = overlapping_rows(intervals, start, end, epsilon)
    clipped = np.clip(np.asarray(intervals, np.float64)[rows], start, end)
    return features[rows], clipped


def segment_text(tokens, intervals, start, end, epsilon=1e-4, word_rule="overlap"):
    """The text of segment `[start, end]` from a word sequence: its words in
    time order, `sp` and empty tokens dropped, joined by one space."""
    if word_rule == "overlap":
        rows = overlapping_rows(intervals, start, end, epsilon)
    elif word_rule == "midpoint":
        rows = midpoint_rows(intervals, start, end)
    else:
        raise ValueError(f"word_rule must be 'overlap' or 'midpoint'; got {word_rule!r}")
    words = [tokens[i] for i in rows if tokens[i] and tokens[i] not in SILENCE_TOKENS]
    return " ".join(words)


def _resolve(input_dir, path):
    if path is None:
        return None
    path = str(path)
    if input_dir is not None and not os.path.isabs(path) and not os.path.exists(path):
        path = os.path.join(input_dir, path)
    return path


def _find_one(input_dir, keyword, what):
    # "*WordVectors.csd" (GloVe features) is a text feature file, not the words.
    found = sorted(p for p in glob.glob(os.path.join(input_dir, "*.csd"))
                   if keyword in os.path.basename(p).lower() and "vector" not in os.path.basename(p).lower())
    if len(found) > 1:
        raise DataFormatError(f"several {what} files match '*{keyword}*.csd': "
                              f"{[os.path.basename(p) for p in found]}; pass it explicitly", path=input_dir)
    return found[0] if found else None


def discover_features(input_dir):
    """`{modality: path}` of the feature sequences in `input_dir`, found by
    file-name keywords (`FEATURE_KEYWORDS`)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(input_dir, "*.csd"))):
        name = os.path.basename(path).lower()
        if "label" in name or ("word" in name and "vector" not in name):
            continue
        for modality, keywords in FEATURE_KEYWORDS.items():
            if any(k in name for k in keywords):
                if modality in found:
                    raise DataFormatError(
                        f"two {modality} feature files: {os.path.basename(found[modality])} and "
                        f"{os.path.basename(path)}; pass features={{'{modality}': ...}}", path=input_dir)
                found[modality] = path
    return found


def read_folds(folds, path=None):
    """`{split: [video ids]}` from a JSON file or a dict; `dev`/`val`/
    `validation` become `valid`."""
    if isinstance(folds, (str, os.PathLike)):
        path = str(folds)
        try:
            with open(path) as f:
                folds = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise DataFormatError(f"cannot read the folds file: {e}", path=path) from None
    if not isinstance(folds, dict) or not all(isinstance(v, (list, tuple)) for v in folds.values()):
        raise DataFormatError("folds must be {split: [video ids]}", path=path)
    out = {}
    owner = {}
    for name, vids in folds.items():
        split = _SPLIT_ALIASES.get(str(name).lower(), str(name))
        if split in out:
            raise DataFormatError(f"split {split!r} given twice (as {name!r})", path=path, key=name)
        out[split] = [str(v) for v in vids]
        for v in out[split]:
            if v in owner and owner[v] != split:
                raise DataFormatError(f"video {v!r} is in both {owner[v]!r} and {split!r}", path=path, key=v)
            owner[v] = split
    return out


def read_csd(
    input_dir=None,
    *,
    labels=None,
    words=None,
    features=None,
    folds=None,
    dataset="mosi",
    label_column=0,
    label_range="auto",
    epsilon=1e-4,
    word_rule="overlap",
    nonfinite="zero",
    missing_dims="auto",
    allow_external=False,
    max_read_bytes="auto",
    verbose=False,
):
    """Builds `(splits, meta)` from CMU-MultimodalSDK computational sequences.

    Every file argument is a path, absolute or relative to `input_dir`; left
    out, it is looked for in `input_dir`: the labels are the one `*label*.csd`,
    the words the one `*word*.csd`, the features found by `discover_features`,
    the folds `standard_folds.json`.

    Args:
        input_dir: directory of the `.csd` files (optional when every path is given).
        labels: the labels `.csd` (one row per segment).
        words: the word `.csd` (bytes tokens); gives each example's
            `raw_text`. False: no words (no `raw_text`).
        features: `{modality: path}` of feature `.csd` files ("text",
            "audio", "vision"); `{}` turns the discovery off. Modalities
            without a file get `missing_dims` (below).
        folds: JSON file or dict `{split: [video ids]}`.
        dataset: dataset name written to the schema ("mosi", "mosei", ...).
        label_column: which label column is `sentiment` (CMU-MOSEI's labels
            file has 7: sentiment then six emotions).
        label_range: `(lo, hi)` that every label must lie in; "auto" takes
            `LABEL_RANGES[dataset]`; None checks only finiteness.
        epsilon: overlap threshold in seconds (module docstring).
        word_rule: "overlap" (the SDK's rule) or "midpoint", for words.
        nonfinite: "zero" (repair, counted) or "error" for NaN/inf features.
        missing_dims: `{modality: width}` of the modalities that have no
            feature file: every example gets an empty `[0, width]` array, so
            the converted data carries the modality as *missing* (zeros and an
            all-False mask in each batch, what docs/data.md asks) instead of
            lacking the key. "auto" takes `MISSING_DIMS[dataset]` (the MMSA
            widths: MOSI text/audio/vision 768/5/20, MOSEI 768/74/35), so a
            model built on it fits the full-feature data too; None or {}
            leaves such modalities out.
        allow_external: follow HDF5 external links, external storage and
            virtual datasets (refused by default, see `audit_hdf5`); every
            file they read is then listed in `meta["sources"]`.
        max_read_bytes: cap on the bytes one file's datasets may declare
            ("auto": 64 times its size, at least 256 MiB).
        verbose: log progress per video.

    Returns:
        `(splits, meta)`: `splits = {split: [example dicts]}` with `id`
        ("<video>_<k>"), `raw_text` (with words), `sentiment` (float), one
        float32 `[L, d]` array per feature modality and an empty `[0, d]`
        one per `missing_dims` modality;
        `meta = {"dataset", "sources", "repairs", "label_ranges", "csd",
        "holds"}`: `csd` the alignment settings, `holds` what the data holds
        per modality and for raw text, in words (both stored by
        recipes/convert.py in the schema's extra; its summary prints `holds`).
    """
    if nonfinite not in ("zero", "error"):
        raise ValueError(f"nonfinite must be 'zero' or 'error'; got {nonfinite!r}")
    if input_dir is not None and not os.path.isdir(input_dir):
        raise DataFormatError("input directory not found", path=input_dir)
    labels = _resolve(input_dir, labels) or (input_dir and _find_one(input_dir, "label", "labels"))
    if not labels:
        raise DataFormatError("no labels .csd (a '*label*.csd' file); pass labels=", path=input_dir)
    if words is False or words == "":
        words = None
    elif words is None:
        words = input_dir and _find_one(input_dir, "word", "words")
    else:
        words = _resolve(input_dir, words)
    if features is None:
        features = discover_features(input_dir) if input_dir else {}
    features = {m: _resolve(input_dir, p) for m, p in features.items()}
    for m in features:
        if m not in MODALITIES:
            raise ValueError(f"features keys must be in {MODALITIES}; got {m!r}")
    if folds is None:
        folds = _resolve(input_dir, "standard_folds.json") if input_dir else None
        if not folds or not os.path.isfile(folds):
            raise DataFormatError("no standard_folds.json; pass folds= (JSON file or "
                                  "{split: [video ids]})", path=input_dir)
    folds_path = str(folds) if isinstance(folds, (str, os.PathLike)) else None
    fold_map = read_folds(_resolve(input_dir, folds) if folds_path else folds)
    if label_range == "auto":
        label_range = LABEL_RANGES.get(str(dataset).lower())

    log = logging.getLogger(__name__)
    audit = {"allow_external": allow_external, "max_read_bytes": max_read_bytes}
    label_seq = read_computational_sequence(labels, **audit)
    if label_seq.is_words:
        raise DataFormatError("the labels file holds bytes tokens, not numeric labels", path=labels)
    word_seq = read_computational_sequence(words, **audit) if words else None
    if word_seq is not None and not word_seq.is_words:
        raise DataFormatError("the words file holds numeric features, not bytes tokens", path=words)
    feature_seqs = {}
    for m, p in features.items():
        seq = read_computational_sequence(p, **audit)
        if seq.is_words:
            raise DataFormatError(f"the {m} features file holds bytes tokens; pass it as words=", path=p)
        feature_seqs[m] = seq

    repairs = {}

    def count(name, n=1):
        if n:
            repairs[name] = repairs.get(name, 0) + int(n)

    if word_seq is not None:
        count("word_tokens_not_utf8_replaced", word_seq.tokens_not_utf8)
    dims = {m: seq.dim for m, seq in feature_seqs.items()}
    if missing_dims == "auto":
        missing_dims = MISSING_DIMS.get(str(dataset).lower(), {})
    missing_dims = {m: int(d) for m, d in (missing_dims or {}).items() if m not in feature_seqs}
    for m in missing_dims:
        if m not in MODALITIES:
            raise ValueError(f"missing_dims keys must be in {MODALITIES}; got {m!r}")
    lo, hi = (None, None) if label_range is None else (float(label_range[0]), float(label_range[1]))
    in_folds = {v for vids in fold_map.values() for v in vids}
    count("labelled_videos_not_in_folds", sum(v not in in_folds for v in label_seq.data))

    splits = {}
    for split, vids in fold_map.items():
        examples = []
        for n_video, vid in enumerate(vids):
            if vid not in label_seq.data:
                count("fold_videos_without_labels")
                continue
            values, spans = label_seq.data[vid]
            if values.shape[0] == 0:
                count("videos_without_segments")
            key = f"/{label_seq.root}/data/{vid}/features"
            if not 0 <= label_column < values.shape[1]:
                raise DataFormatError(f"label_column={label_column} but labels have {values.shape[1]} columns",
                                      path=labels, key=key)
            for i, ((start, end), row) in enumerate(zip(spans, values)):
                y = float(row[label_column])
                if not np.isfinite(y):
                    raise DataFormatError(f"row {i}: label is {y}", path=labels, key=key)
                if lo is not None and not lo <= y <= hi:
                    raise DataFormatError(f"row {i}: label {y} outside the {dataset} range [{lo}, {hi}]",
                                          path=labels, key=key)
                ex = {"id": f"{vid}_{i + 1}", "sentiment": np.float32(y)}
                if word_seq is not None:
                    if vid in word_seq.data:
                        tokens, t_int = word_seq.data[vid]
                        ex["raw_text"] = segment_text(tokens, t_int, start, end, epsilon, word_rule)
                    else:
                        ex["raw_text"] = ""
                    if not ex["raw_text"]:
                        count("segments_without_words")
                for m, seq in feature_seqs.items():
                    if vid in seq.data:
                        x, _ = align_sequence(*seq.data[vid], start, end, epsilon)
                    else:
                        x = np.zeros((0, dims[m] or 0), np.float32)
                    if x.shape[0] == 0:
                        count(f"segments_missing_{m}")
                    bad = ~np.isfinite(x)
                    if bad.any():
                        if nonfinite == "error":
                            raise DataFormatError(
                                f"{int(bad.sum())} NaN/inf values in the rows of segment {i + 1}",
                                path=seq.path, key=f"/{seq.root}/data/{vid}/features")
                        count(f"nonfinite_feature_values_zeroed/{m}", bad.sum())
                        x = np.where(bad, 0.0, x).astype(np.float32)
                    ex[m] = np.ascontiguousarray(x, np.float32)
                for m, d in missing_dims.items():
                    ex[m] = np.zeros((0, d), np.float32)
                    count(f"segments_missing_{m}")
                examples.append(ex)
            if verbose:
                log.info("csd: %s %d/%d videos, %d segments", split, n_video + 1, len(vids), len(examples))
        splits[split] = examples

    n_segments = sum(len(v) for v in splits.values())
    if not n_segments:
        raise DataFormatError(f"no labelled segment in any fold (folds {sorted(fold_map)} list "
                              f"{len(in_folds)} videos; the labels file holds {len(label_seq.data)})",
                              path=labels)
    sources = [labels] + ([words] if words else []) + [features[m] for m in feature_seqs]
    if folds_path:
        sources.append(_resolve(input_dir, folds_path))
    for seq in [label_seq, word_seq] + list(feature_seqs.values()):
        if seq is not None:
            sources.extend(f for f in seq.files_read if f not in sources)
    holds = {}
    if word_seq is not None:
        n_text = n_segments - repairs.get("segments_without_words", 0)
        holds["raw_text"] = f"raw text for {n_text} of {n_segments} segments (from {os.path.basename(words)})"
    for m, seq in feature_seqs.items():
        n_missing = repairs.get(f"segments_missing_{m}", 0)
        if n_missing:
            holds[m] = (f"features for {n_segments - n_missing} of {n_segments} segments "
                        f"(from {os.path.basename(seq.path)}, dim {dims[m]})")
    for m, d in missing_dims.items():
        note = (f"no {m} features in the source: every segment carries {m} as missing "
                f"(dim {d} reserved, all-False mask)")
        if m == "text" and word_seq is not None:
            note += "; extract them from the raw text with recipes/extract_text_features.py"
        holds[m] = note
    meta = {
        "dataset": dataset,
        "sources": sources,
        "repairs": repairs,
        "label_ranges": {"sentiment": [lo, hi]} if lo is not None else {},
        "csd": {
            "alignment": f"rows overlapping the segment by more than {epsilon} s (SDK align); "
                         f"intervals clipped",
            "word_rule": word_rule,
            "segment_id": "<video_id>_<k>, k = 1-based row of the labels file",
            "label_column": label_column,
            "feature_roots": {m: s.root for m, s in feature_seqs.items()},
            "missing_modalities": missing_dims,
            "allow_external": bool(allow_external),
        },
        "holds": holds,
    }
    return splits, meta
