"""TFRecord shards + a JSON schema: the one on-disk form every dataset is
converted into, and the `tf.data` pipeline that reads it back.

Layout of a converted directory::

    <output_dir>/
        schema.json
        train-00000-of-00002.tfrecord
        train-00001-of-00002.tfrecord
        valid-00000-of-00001.tfrecord
        ...

Each record is one `tf.train.Example` holding one *unpadded* example:

* `id` (bytes), `raw_text` (bytes; zero or one value: absent when the
  source has no text);
* for each modality `m` in `text`, `audio`, `vision`: `m` = the float32
  features `[L, D]` as little-endian bytes (bit-exact), `m_length` = L
  (0 = the modality is missing for this example);
* `text_token_ids`, `text_padding_mask`, `text_segment_ids` (int64 lists);
* targets as float32 lists (`sentiment`, `sentiment_text`,
  `sentiment_audio`, `sentiment_vision`, `humor`, `phq8`: one value;
  `emotions`: four).

`schema.json` records the dataset name, split sizes and shard files,
per-modality widths and maximum lengths, label names, shapes and
declared/observed ranges, sha256 checksums of the source files, the repairs
the reader made (`{name: count}`), the keras_msa version and the creation
time.

`write_dataset` writes into a temporary directory next to `output_dir` and
renames it at the end, so an error or Ctrl-C never leaves a half-written
directory that looks complete. `read_examples` returns the exact values that
were written; `load_split` gives the padded, masked batches of DATA.md.
"""

import contextlib
import datetime
import json
import math
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time

import numpy as np

from keras_msa.data.errors import DataFormatError
from keras_msa.utils.files import make_temp_dir

SCHEMA_FILE = "schema.json"
FORMAT_NAME = "keras_msa.tfrecord"
FORMAT_VERSION = 1

MODALITIES = ("text", "audio", "vision")
TOKEN_KEYS = ("text_token_ids", "text_padding_mask", "text_segment_ids")
#: Target name -> shape of one example's value.
TARGET_SHAPES = {
    "sentiment": (),
    "sentiment_text": (),
    "sentiment_audio": (),
    "sentiment_vision": (),
    "emotions": (4,),
    "humor": (),
    "phq8": (),
}
EMOTION_NAMES = ("happy", "sad", "angry", "neutral")
_KNOWN_KEYS = ("id", "raw_text") + MODALITIES + TOKEN_KEYS + tuple(TARGET_SHAPES)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _sha256(path, chunk=1 << 20):
    from keras_msa.data.checksums import sha256_file

    return sha256_file(path, chunk)


def source_checksums(sources):
    """`[{"path", "sha256", "bytes"}]` for files (directories: every file in them)."""
    out = []
    for src in sources or ():
        src = os.fspath(src)
        if os.path.isdir(src):
            files = sorted(
                os.path.join(root, name) for root, _, names in os.walk(src) for name in names
            )
        elif os.path.isfile(src):
            files = [src]
        else:
            raise FileNotFoundError(f"{src}: source file not found (needed for its checksum).")
        for path in files:
            out.append({"path": os.path.abspath(path), "sha256": _sha256(path), "bytes": os.path.getsize(path)})
    return out


def _where(split, index, example_id, key=None):
    where = f"split '{split}', example {index} (id={example_id!r})"
    return f"{where}, key '{key}'" if key else where


class _Stats:
    """What the schema reports, gathered while writing."""

    def __init__(self):
        self.modality_dims = {}
        self.empty_dims = {}
        self.modality_max = {}
        self.modality_min = {}
        self.modality_missing = {}
        self.token_keys = set()
        self.token_max = 0
        self.targets = None  # set of names, fixed by the first example
        self.target_min = {}
        self.target_max = {}
        self.raw_text = 0


def _check_features(x, split, index, eid, key, stats):
    arr = np.asarray(x)
    if arr.size == 0 and arr.ndim <= 1:
        return np.zeros((0, stats.modality_dims.get(key, 0)), np.float32)
    if arr.ndim != 2:
        raise DataFormatError(
            f"expected float32 features [length, dim]; got shape {list(arr.shape)} "
            f"dtype {arr.dtype}", key=_where(split, index, eid, key)
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataFormatError(
            f"expected float32 features [length, dim]; got dtype {arr.dtype} "
            f"(shape {list(arr.shape)})", key=_where(split, index, eid, key)
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    dim = stats.modality_dims.get(key)
    if arr.shape[0] and dim and arr.shape[1] != dim:
        raise DataFormatError(
            f"feature width mismatch: expected [length, {dim}] (fixed by earlier examples), "
            f"got {list(arr.shape)}", key=_where(split, index, eid, key)
        )
    if arr.size and not np.isfinite(arr).all():
        step, ch = np.argwhere(~np.isfinite(arr))[0]
        raise DataFormatError(
            f"non-finite feature value {arr[step, ch]} at step {step}, channel {ch}; "
            f"clean or repair it in the reader (and count the repair)",
            key=_where(split, index, eid, key),
        )
    return arr


def _encode_example(ex, split, index, stats, label_ranges):
    import tensorflow as tf

    if not isinstance(ex, dict):
        raise DataFormatError(f"expected an example dict, got {type(ex).__name__}", key=f"split '{split}', example {index}")
    eid = ex.get("id")
    if eid is None:
        raise DataFormatError("missing 'id'", key=_where(split, index, None))
    if isinstance(eid, bytes):
        eid = eid.decode("utf-8")
    eid = str(eid)
    unknown = sorted(set(ex) - set(_KNOWN_KEYS))
    if unknown:
        raise DataFormatError(
            f"unknown keys {unknown}; an example holds only {list(_KNOWN_KEYS)}",
            key=_where(split, index, eid),
        )
    feat = {"id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[eid.encode("utf-8")]))}
    raw = ex.get("raw_text")
    if raw is not None:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        if not isinstance(raw, str):
            raise DataFormatError(f"raw_text must be a string, got {type(raw).__name__}",
                                  key=_where(split, index, eid, "raw_text"))
        feat["raw_text"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw.encode("utf-8")]))
        stats.raw_text += 1
    for m in MODALITIES:
        if m not in ex or ex[m] is None:
            if m in stats.modality_dims or m in stats.empty_dims:
                stats.modality_missing[m] = stats.modality_missing.get(m, 0) + 1
                stats.modality_min[m] = 0
            continue
        arr = _check_features(ex[m], split, index, eid, m, stats)
        length, dim = arr.shape
        if length and m not in stats.modality_dims:
            stats.modality_dims[m] = int(dim)
        elif not length:
            # Only a guess while every example so far was empty.
            stats.empty_dims.setdefault(m, int(dim))
        stats.modality_max[m] = max(stats.modality_max.get(m, 0), int(length))
        stats.modality_min[m] = min(stats.modality_min.get(m, length), int(length))
        if length == 0:
            stats.modality_missing[m] = stats.modality_missing.get(m, 0) + 1
        feat[m] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[arr.astype("<f4").tobytes()]))
        feat[f"{m}_length"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(length)]))
    token_len = None
    for k in TOKEN_KEYS:
        if k not in ex or ex[k] is None:
            continue
        arr = np.asarray(ex[k])
        if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
            raise DataFormatError(
                f"expected an integer array [length]; got shape {list(arr.shape)} dtype {arr.dtype}",
                key=_where(split, index, eid, k),
            )
        if token_len is not None and len(arr) != token_len:
            raise DataFormatError(
                f"length {len(arr)} differs from the other token arrays' {token_len}",
                key=_where(split, index, eid, k),
            )
        token_len = len(arr)
        stats.token_keys.add(k)
        stats.token_max = max(stats.token_max, token_len)
        feat[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=arr.astype(np.int64).tolist()))
    names = [k for k in TARGET_SHAPES if k in ex and ex[k] is not None]
    if stats.targets is None:
        if "sentiment" not in names and not names:
            raise DataFormatError(
                f"no target: expected at least one of {list(TARGET_SHAPES)}", key=_where(split, index, eid)
            )
        stats.targets = list(names)
    elif set(names) != set(stats.targets):
        raise DataFormatError(
            f"targets {sorted(names)} differ from the dataset's {sorted(stats.targets)} "
            f"(every example must carry the same labels)", key=_where(split, index, eid),
        )
    for k in names:
        shape = TARGET_SHAPES[k]
        arr = np.asarray(ex[k])
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise DataFormatError(f"expected a number, got dtype {arr.dtype}", key=_where(split, index, eid, k))
        want = int(np.prod(shape)) if shape else 1
        if arr.size != want:
            raise DataFormatError(
                f"expected shape {list(shape) or '[] (a scalar)'}, got {list(arr.shape)}",
                key=_where(split, index, eid, k),
            )
        values = arr.astype(np.float32).reshape(-1)
        if not np.isfinite(values).all():
            raise DataFormatError(f"non-finite label {values.tolist()}", key=_where(split, index, eid, k))
        rng = (label_ranges or {}).get(k)
        if rng is not None and ((values < rng[0]).any() or (values > rng[1]).any()):
            raise DataFormatError(
                f"label {values.tolist()} outside the declared range [{rng[0]}, {rng[1]}]",
                key=_where(split, index, eid, k),
            )
        stats.target_min[k] = min(stats.target_min.get(k, math.inf), float(values.min()))
        stats.target_max[k] = max(stats.target_max.get(k, -math.inf), float(values.max()))
        feat[k] = tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))
    return tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString()


def _progress(enabled, message):
    if enabled:
        print(f"[keras_msa.data] {message}", file=sys.stderr, flush=True)


def _notice(message):
    """Always printed: things the user must know even with progress off
    (what was deleted, what was kept and why)."""
    print(f"[keras_msa.data] {message}", file=sys.stderr, flush=True)


#: Names inside a directory that `write_dataset` writes (shards while being
#: written, final shards, the schema); a leftover holding anything else is
#: not ours and is never deleted.
_OUR_FILE = re.compile(r"^(schema\.json|\.[^/]+-\d{5}\.part|[^/]+-\d{5}-of-\d{5}\.tfrecord)$")
#: `tempfile.mkdtemp` appends 8 characters from this alphabet to the prefix.
_MKDTEMP_TAIL = r"[a-z0-9_]{8}"


def _leftover_pattern(output_dir, kind):
    """Names of `write_dataset`'s siblings of `output_dir`: `kind` "tmp" (a
    conversion in progress or killed) or "old" (the previous dataset, moved
    aside during a replacement)."""
    return re.compile(rf"^\.{re.escape(os.path.basename(output_dir))}\.{kind}-{_MKDTEMP_TAIL}$")


def is_dataset_dir(path):
    """True when `path` is a directory holding a `schema.json` that
    `write_dataset` wrote (its `format` is `keras_msa.tfrecord`)."""
    schema_path = os.path.join(os.fspath(path), SCHEMA_FILE)
    if not os.path.isdir(path) or not os.path.isfile(schema_path):
        return False
    try:
        with open(schema_path) as f:
            schema = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(schema, dict) and schema.get("format") == FORMAT_NAME


def _overlap(output_real, source):
    """How `output_real` relates to `source` ("is", "contains", "is inside"), or None."""
    src = os.path.realpath(os.fspath(source))
    if src == output_real:
        return "is", src
    try:
        common = os.path.commonpath([output_real, src])
    except ValueError:  # different drives
        return None
    if common == output_real:
        return "contains", src
    if common == src:
        return "is inside", src
    return None


def check_output(output_dir, overwrite=False, protected=()):
    """Raises unless `write_dataset` may write `output_dir`; returns its real
    path (symbolic links resolved: the data goes where the link points).

    Refused: an output that is, contains or is inside any path of
    `protected` (the conversion's input and every source file: replacing
    the output would delete them); an existing file; a non-empty directory
    unless `overwrite`. Cheap: call it before a long read, as
    `recipes/convert.py` does, and `write_dataset` calls it again before it
    replaces anything.

    Raises:
        ValueError: the output overlaps an input source.
        FileExistsError: the output exists and may not be replaced.
    """
    given = os.fspath(output_dir)
    real = os.path.realpath(os.path.abspath(given))
    shown = given if real == os.path.abspath(given) else f"{given} (-> {real})"
    for src in protected or ():
        hit = _overlap(real, src)
        if hit:
            how, path = hit
            what = "the input" if how == "is" else f"{'a parent of' if how == 'contains' else 'inside'} the input"
            raise ValueError(
                f"{shown}: refusing to write the output there: it is {what} {path}, which a replacement "
                f"would delete or mix with the converted data. Choose an output outside every input."
            )
    if os.path.lexists(real) and not os.path.isdir(real):
        raise FileExistsError(f"{shown}: exists and is not a directory; expected a directory (or nothing) there.")
    if os.path.isdir(real) and os.listdir(real) and not overwrite:
        if is_dataset_dir(real):
            what = "holds an earlier keras_msa dataset"
        else:
            names = sorted(os.listdir(real))
            what = (f"is not empty and is not a keras_msa dataset (no schema.json written by keras_msa; it holds "
                    f"{', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
        raise FileExistsError(f"{shown}: {what}; pass overwrite=True (--overwrite) to replace it.")
    return real


try:
    import fcntl
except ImportError:  # not POSIX: no lock, and no deletion of leftovers
    fcntl = None

_HELD_LOCKS = {}
_HELD_LOCKS_GUARD = threading.Lock()


def _lock_path(real_output):
    return os.path.join(os.path.dirname(real_output), f".{os.path.basename(real_output)}.lock")


@contextlib.contextmanager
def output_lock(output_dir):
    """Holds an exclusive lock on `output_dir` (a `.<name>.lock` file beside
    it) so that a second conversion into the same output fails at once
    instead of racing this one, and so that leftovers of killed conversions
    can be deleted without touching a live one. Re-entrant in one thread;
    the lock dies with the process (SIGKILL included).

    Raises:
        FileExistsError: another process or thread is writing `output_dir`.
        PermissionError / NotADirectoryError: the parent cannot be written.
    """
    real = os.path.realpath(os.path.abspath(os.fspath(output_dir)))
    key = (real, threading.get_ident())
    with _HELD_LOCKS_GUARD:
        if key in _HELD_LOCKS:
            _HELD_LOCKS[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield real
        finally:
            with _HELD_LOCKS_GUARD:
                _HELD_LOCKS[key] -= 1
        return
    _make_parent(real, output_dir)
    if fcntl is None:
        yield real
        return
    path = _lock_path(real)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise FileExistsError(
                f"{output_dir}: another conversion is writing this output (process {holder}, lock {path}); "
                f"wait for it to finish or choose another output."
            ) from None
        # The holder before us may have removed the lock file after we opened
        # it: then we hold a lock nobody else can see, so start again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}@{socket.gethostname()}".encode("ascii", "replace"))
        with _HELD_LOCKS_GUARD:
            _HELD_LOCKS[key] = 1
        yield real
    finally:
        with _HELD_LOCKS_GUARD:
            _HELD_LOCKS.pop(key, None)
        # Removed while still held, so no other process can lock this inode
        # after we let go and mistake it for the live lock file.
        try:
            os.remove(path)
        except OSError:
            pass
        os.close(fd)


def _make_parent(real, given):
    parent = os.path.dirname(real)
    try:
        os.makedirs(parent, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise NotADirectoryError(
            f"{given}: cannot create the output: {e.filename or parent} is a file, not a directory."
        ) from e
    except PermissionError as e:
        raise PermissionError(
            f"{given}: cannot create the output's parent directory {parent}: permission denied."
        ) from e
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{given}: cannot write in {parent} (permission denied); choose another output or fix its permissions."
        )


def _remove_leftovers(real_output, overwrite):
    """Deletes what earlier, killed `write_dataset` calls on `real_output`
    left beside it (only under `output_lock`, so none of it is live): partial
    outputs `.<name>.tmp-*`, and previous datasets `.<name>.old-*` moved aside
    by a replacement that was cut before deleting them. Only directories with
    our names holding only our files are touched; each removal is reported."""
    if fcntl is None:
        return []
    parent = os.path.dirname(real_output)
    tmp_name, old_name = _leftover_pattern(real_output, "tmp"), _leftover_pattern(real_output, "old")
    removed = []
    for name in sorted(os.listdir(parent)):
        is_tmp, is_old = bool(tmp_name.match(name)), bool(old_name.match(name))
        path = os.path.join(parent, name)
        if not (is_tmp or is_old) or os.path.islink(path) or not os.path.isdir(path):
            continue
        inside = os.listdir(path)
        if not all(_OUR_FILE.match(n) and os.path.isfile(os.path.join(path, n)) for n in inside):
            _notice(f"kept {path}: it looks like a leftover of a conversion into {real_output} but holds files "
                    f"keras_msa does not write; delete it yourself if it is not needed.")
            continue
        if is_old:
            if not is_dataset_dir(path):
                continue
            if not os.path.isdir(real_output):
                _notice(f"kept {path}: an interrupted replacement moved the previous dataset there and "
                        f"{real_output} is missing; rename it back to restore it.")
                continue
            if not overwrite:
                _notice(f"kept {path}: the dataset {real_output} replaced; delete it or pass overwrite=True.")
                continue
        shutil.rmtree(path)
        removed.append(path)
        what = "partial output of an interrupted conversion" if is_tmp else "superseded copy of the dataset"
        _notice(f"removed {path} ({what} into {real_output}, {len(inside)} file(s))")
    return removed


#: Splits a training run cannot do without when they are present.
REQUIRED_NONEMPTY = ("train", "valid")


def _empty_split_error(split):
    if split == "train":
        why = "there is nothing to train on"
    else:
        why = "a run selects its best epoch and early-stops on it, so it would fail after the first epoch"
    return DataFormatError(
        f"the split has no examples: {why}. Give the reader a non-empty '{split}' split (label.csv: rows with "
        f"mode={split}; CMU .csd: the folds' {split} ids; MMSA/MulT pickles: the '{split}' key), or pass "
        f"allow_empty=('{split}',) (convert.py --allow_empty_splits={split}) to write it anyway",
        key=f"split '{split}'",
    )


def write_dataset(
    output_dir,
    splits,
    *,
    dataset,
    sources=(),
    label_ranges=None,
    repairs=None,
    extra=None,
    examples_per_shard=1000,
    progress=True,
    overwrite=False,
    protected=(),
    allow_empty=(),
):
    """Writes `splits` as TFRecord shards plus `schema.json`, atomically.

    The data is written into a temporary sibling `.<name>.tmp-*` (with the
    permissions the umask gives new directories) and renamed onto
    `output_dir` at the end. An existing output is renamed aside first and
    deleted only once the new one is in place. A second call writing the
    same output at the same time fails at once (a lock file
    `.<name>.lock` beside it); leftovers of killed calls on the same output
    are deleted (and reported on stderr).

    Args:
        output_dir: the directory to create. It must not exist or be empty,
            unless `overwrite=True` (then it is replaced at the very end, once
            the new data is complete). A symbolic link is followed: the data
            replaces the directory it points to.
        splits: `{split_name: iterable of example dicts}` (see the module
            docstring for the keys). Iterables are consumed once, streaming.
        dataset: the dataset's name (e.g. `"mosi"`), stored in the schema.
        sources: paths of the source files (or directories); their sha256
            checksums go into the schema. The output may not be, contain or
            lie inside any of them.
        label_ranges: `{label: (lo, hi)}` declared ranges; a label outside
            its range is an error.
        repairs: `{repair name: count}` the reader made, stored and reported.
        extra: a JSON-serialisable dict stored under `"extra"`.
        examples_per_shard: records per shard file.
        progress: print progress to stderr (True: every 1000 examples; an int:
            every that many).
        overwrite: replace an existing non-empty `output_dir`.
        protected: more paths the output must keep clear of (e.g. the input
            directory a reader read `sources` from).
        allow_empty: split names of `REQUIRED_NONEMPTY` ("train", "valid")
            that may have no examples (evaluation-only data).

    Returns:
        The schema dict (also written to `<output_dir>/schema.json`).

    Raises:
        FileExistsError: `output_dir` is not empty and `overwrite` is False,
            or another call is writing it.
        ValueError: the output overlaps a source or a protected path.
        DataFormatError: an example is malformed (the message names the split,
            example index and id, the key and expected vs actual), or a
            `train`/`valid` split is empty.
    """
    import tensorflow as tf

    import keras_msa

    given = os.fspath(output_dir)
    if isinstance(examples_per_shard, bool) or not isinstance(examples_per_shard, (int, np.integer)) \
            or examples_per_shard < 1:
        raise ValueError(f"examples_per_shard must be an integer >= 1, got {examples_per_shard!r}.")
    sources = [os.fspath(s) for s in (sources or ())]
    keep_clear = sources + [os.fspath(p) for p in (protected or ())]
    for split in splits:
        if split in REQUIRED_NONEMPTY and split not in allow_empty and hasattr(splits[split], "__len__") \
                and len(splits[split]) == 0:
            raise _empty_split_error(split)
    output_dir = check_output(given, overwrite, keep_clear)
    every = 1000 if progress is True else int(progress or 0)
    parent = os.path.dirname(output_dir)
    with output_lock(output_dir):
        _remove_leftovers(output_dir, overwrite)
        try:
            tmp = make_temp_dir(f".{os.path.basename(output_dir)}.tmp-", parent)
        except PermissionError as e:
            raise PermissionError(f"{given}: cannot write in {parent} ({e.strerror}).") from e
        start = time.time()
        writer = None
        try:
            stats = _Stats()
            split_sizes, shard_files, shard_sizes = {}, {}, {}
            for split, examples in splits.items():
                split = str(split)
                if not split or "/" in split or os.sep in split or split.startswith("."):
                    raise ValueError(f"Invalid split name {split!r}.")
                written, names, counts, shard = 0, [], [], 0
                for index, ex in enumerate(examples):
                    record = _encode_example(ex, split, index, stats, label_ranges)
                    if writer is None:
                        name = f".{split}-{shard:05d}.part"
                        names.append(name)
                        counts.append(0)
                        writer = tf.io.TFRecordWriter(os.path.join(tmp, name))
                    writer.write(record)
                    written += 1
                    counts[-1] += 1
                    if written % examples_per_shard == 0:
                        writer.close()
                        writer, shard = None, shard + 1
                    if every and written % every == 0:
                        _progress(progress, f"{dataset}/{split}: {written} examples written "
                                            f"({time.time() - start:.1f}s)")
                if writer is not None:
                    writer.close()
                    writer = None
                if not written and split in REQUIRED_NONEMPTY and split not in allow_empty:
                    raise _empty_split_error(split)
                if not names:  # an empty split still gets one (empty) shard
                    names.append(f".{split}-00000.part")
                    counts.append(0)
                    tf.io.TFRecordWriter(os.path.join(tmp, names[0])).close()
                final, sizes = [], []
                for i, name in enumerate(names):
                    target = f"{split}-{i:05d}-of-{len(names):05d}.tfrecord"
                    os.replace(os.path.join(tmp, name), os.path.join(tmp, target))
                    final.append(target)
                    sizes.append({"records": counts[i], "bytes": os.path.getsize(os.path.join(tmp, target))})
                split_sizes[split] = written
                shard_files[split] = final
                shard_sizes[split] = sizes
                _progress(progress, f"{dataset}/{split}: {written} examples in {len(final)} shard(s)")
            schema = _make_schema(
                dataset, split_sizes, shard_files, stats, label_ranges, repairs, extra,
                source_checksums(sources), keras_msa.__version__,
            )
            schema["shard_sizes"] = shard_sizes
            with open(os.path.join(tmp, SCHEMA_FILE), "w") as f:
                json.dump(schema, f, indent=2, sort_keys=False)
                f.write("\n")
            _commit(tmp, output_dir, given, overwrite, keep_clear)
        except BaseException:
            if writer is not None:
                try:
                    writer.close()
                except Exception:  # the disk that failed the write may fail the close too
                    pass
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _progress(progress, f"wrote {output_dir} ({sum(split_sizes.values())} examples, {time.time() - start:.1f}s)")
    return schema


def _commit(tmp, output_dir, given, overwrite, keep_clear):
    """Renames `tmp` to `output_dir`; an existing directory is moved aside
    first and removed only once the new one is in place."""
    # Checked again: the output may have changed during a long write.
    check_output(given, overwrite, keep_clear)
    old = None
    if os.path.isdir(output_dir):
        if os.listdir(output_dir):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.old-", dir=os.path.dirname(output_dir))
            os.rmdir(old)
            os.replace(output_dir, old)
        else:
            os.rmdir(output_dir)
    try:
        os.replace(tmp, output_dir)
    except BaseException:
        if old is not None and not os.path.exists(output_dir):
            os.replace(old, output_dir)
        raise
    if old is not None:
        try:
            shutil.rmtree(old)
        except OSError as e:
            _notice(f"could not delete the replaced dataset at {old} ({e}); the new one is in place, "
                    f"delete it yourself.")


def _make_schema(dataset, sizes, shards, stats, label_ranges, repairs, extra, checksums, version):
    modalities = {}
    for m in MODALITIES:
        if m in stats.modality_dims or m in stats.empty_dims:
            modalities[m] = {
                "dim": int(stats.modality_dims.get(m, stats.empty_dims.get(m, 0))),
                "max_length": int(stats.modality_max.get(m, 0)),
                "min_length": int(stats.modality_min.get(m, 0)),
                "missing": int(stats.modality_missing.get(m, 0)),
            }
    labels = {}
    for k in stats.targets or []:
        rng = (label_ranges or {}).get(k)
        labels[k] = {
            "shape": list(TARGET_SHAPES[k]),
            "declared_range": None if rng is None else [float(rng[0]), float(rng[1])],
            "observed_range": [stats.target_min.get(k), stats.target_max.get(k)],
        }
        if k == "emotions":
            labels[k]["names"] = list(EMOTION_NAMES)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "splits": dict(sizes),
        "shards": dict(shards),
        "modalities": modalities,
        "tokens": {"keys": [k for k in TOKEN_KEYS if k in stats.token_keys], "max_length": int(stats.token_max)},
        "raw_text": int(stats.raw_text),
        "labels": labels,
        "sources": checksums,
        "repairs": {str(k): int(v) for k, v in (repairs or {}).items()},
        "extra": extra or {},
        "keras_msa_version": version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def read_schema(data_dir):
    """The schema dict of a converted directory, checked for the structure
    the readers rely on (split sizes, shard names, widths, label shapes).

    Raises:
        FileNotFoundError: no `schema.json` (not a converted directory).
        DataFormatError: the schema is not valid JSON, lacks required keys or
            holds values of the wrong kind (the message names the field).
    """
    path = os.path.join(os.fspath(data_dir), SCHEMA_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: no schema file; is {data_dir} a directory written by recipes/convert.py "
            f"(keras_msa.data.write_dataset)?"
        )
    try:
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(
            f"corrupt schema (not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}); "
            f"re-run the conversion", path=path,
        ) from e
    except (ValueError, UnicodeDecodeError) as e:
        raise DataFormatError(f"corrupt schema (not valid JSON: {e}); re-run the conversion", path=path) from e
    if not isinstance(schema, dict):
        raise DataFormatError("corrupt schema (not a JSON object)", path=path)
    missing = [k for k in ("splits", "shards", "modalities", "labels") if k not in schema]
    if missing:
        raise DataFormatError(f"corrupt schema: missing keys {missing}", path=path)
    version = schema.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise DataFormatError(f"corrupt schema: format_version is {version!r}, expected an integer",
                              path=path, key="format_version")
    if version > FORMAT_VERSION:
        raise DataFormatError(
            f"written by a newer keras_msa (format_version {schema['format_version']}); upgrade keras_msa",
            path=path,
        )
    _check_schema_fields(schema, path)
    return schema


def _is_count(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_schema_fields(schema, path):
    def bad(key, message):
        raise DataFormatError(f"corrupt schema: {message}", path=path, key=key)

    splits, shards = schema["splits"], schema["shards"]
    if not isinstance(splits, dict) or not all(_is_count(n) for n in splits.values()):
        bad("splits", f"expected {{split: number of examples >= 0}}, got {splits!r:.200}")
    if not isinstance(shards, dict) or set(shards) != set(splits):
        bad("shards", f"expected one list of shard files per split {sorted(splits)}, "
                      f"got {sorted(shards) if isinstance(shards, dict) else shards!r:.200}")
    for split, names in shards.items():
        if not isinstance(names, list) or not names:
            bad(f"shards/{split}", f"expected a non-empty list of shard file names, got {names!r:.200}")
        for name in names:
            # A shard is a file in the dataset directory, never a path out of it.
            if not isinstance(name, str) or not name or name != os.path.basename(name) or name in (".", "..") \
                    or "/" in name or "\\" in name:
                bad(f"shards/{split}", f"shard {name!r} is not a plain file name inside the dataset directory")
    sizes = schema.get("shard_sizes")
    if sizes is not None:
        if not isinstance(sizes, dict) or set(sizes) != set(splits):
            bad("shard_sizes", f"expected one entry per split {sorted(splits)}")
        for split, entries in sizes.items():
            ok = isinstance(entries, list) and len(entries) == len(shards[split]) and all(
                isinstance(e, dict) and _is_count(e.get("records")) and _is_count(e.get("bytes")) for e in entries)
            if not ok:
                bad(f"shard_sizes/{split}", f"expected {len(shards[split])} entries {{records, bytes}}")
            total = sum(e["records"] for e in entries)
            if total != splits[split]:
                bad(f"shard_sizes/{split}", f"the shards hold {total} records but splits/{split} says "
                                            f"{splits[split]}")
    modalities = schema["modalities"]
    if not isinstance(modalities, dict):
        bad("modalities", f"expected {{modality: {{dim, max_length}}}}, got {modalities!r:.200}")
    for m, info in modalities.items():
        if m not in MODALITIES:
            bad(f"modalities/{m}", f"unknown modality; expected some of {list(MODALITIES)}")
        if not isinstance(info, dict) or not _is_count(info.get("dim")) or not _is_count(info.get("max_length")):
            bad(f"modalities/{m}", f"expected integers dim >= 0 and max_length >= 0, got {info!r:.200}")
    tokens = schema.get("tokens", {})
    if not isinstance(tokens, dict) or not isinstance(tokens.get("keys", []), list) \
            or not set(tokens.get("keys", [])) <= set(TOKEN_KEYS) \
            or (tokens.get("keys") and not _is_count(tokens.get("max_length"))):
        bad("tokens", f"expected {{keys: some of {list(TOKEN_KEYS)}, max_length >= 0}}, got {tokens!r:.200}")
    labels = schema["labels"]
    if not isinstance(labels, dict):
        bad("labels", f"expected {{label: {{shape}}}}, got {labels!r:.200}")
    for k, info in labels.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            bad(f"labels/{k}", f"expected a shape (list of integers), got {info!r:.200}")
        if k in TARGET_SHAPES and tuple(shape) != TARGET_SHAPES[k]:
            bad(f"labels/{k}", f"shape {shape} differs from the label's {list(TARGET_SHAPES[k])}")


def _shard_paths(data_dir, schema, split):
    if split not in schema["splits"]:
        raise KeyError(f"{data_dir}: no split '{split}'; the data has {sorted(schema['splits'])}.")
    paths = [os.path.join(os.fspath(data_dir), name) for name in schema["shards"][split]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataFormatError(
            f"missing shard file(s) {missing} listed in schema.json; the conversion is incomplete or files "
            f"were removed: re-run it", path=data_dir, key=f"split '{split}'",
        )
    sizes = schema.get("shard_sizes", {}).get(split)
    for i, p in enumerate(paths):
        if not os.access(p, os.R_OK):
            raise DataFormatError("shard is not readable (permission denied)", path=p)
        if sizes is not None and os.path.getsize(p) != sizes[i]["bytes"]:
            raise DataFormatError(
                f"shard is truncated or corrupt: {os.path.getsize(p)} bytes, but schema.json recorded "
                f"{sizes[i]['bytes']} ({sizes[i]['records']} records) when it was written: re-run the conversion",
                path=p,
            )
    return paths


def _corrupt(path, detail):
    return DataFormatError(f"shard is truncated or corrupt ({detail}): re-run the conversion", path=path)


def _check_record(proto, schema, path, index):
    """Raises unless the parsed `tf.train.Example` `proto` (record `index` of
    shard `path`) is what the schema describes: same modalities, byte sizes
    that match length x dim, lengths within the schema's maxima, labels of
    the schema's shapes."""
    eid = proto["id"].bytes_list.value[0].decode("utf-8", "replace") if "id" in proto and \
        proto["id"].bytes_list.value else None
    where = f"record {index} (id={eid!r})"

    def bad(field, message):
        raise DataFormatError(f"schema.json disagrees with the records: {message}; re-run the conversion",
                              path=path, key=f"{where}, field '{field}'")

    if eid is None:
        bad("id", "the record has no id")
    for m in MODALITIES:
        if m not in schema["modalities"] and (m in proto or f"{m}_length" in proto):
            bad(m, f"the records hold '{m}' features but the schema lists only {sorted(schema['modalities'])}")
    for m, info in schema["modalities"].items():
        dim, max_len = int(info["dim"]), int(info["max_length"])
        length = int(proto[f"{m}_length"].int64_list.value[0]) if f"{m}_length" in proto and \
            proto[f"{m}_length"].int64_list.value else 0
        nbytes = len(proto[m].bytes_list.value[0]) if m in proto and proto[m].bytes_list.value else 0
        if length < 0 or nbytes != 4 * length * dim:
            width = nbytes / 4 / length if length > 0 else "?"
            bad(m, f"{nbytes // 4} float32 values for {length} steps (width {width}), but the schema's dim is "
                   f"{dim}")
        if length > max_len:
            bad(m, f"{length} steps, but the schema's max_length is {max_len} (loading would cut every longer "
                   f"sequence)")
    tokens = schema.get("tokens", {})
    for k in tokens.get("keys", []):
        if k in proto and len(proto[k].int64_list.value) > int(tokens["max_length"]):
            bad(k, f"{len(proto[k].int64_list.value)} tokens, but the schema's tokens max_length is "
                   f"{tokens['max_length']}")
    for k, info in schema["labels"].items():
        want = int(np.prod(info["shape"])) if info["shape"] else 1
        got = len(proto[k].float_list.value) if k in proto else 0
        if got != want:
            bad(k, f"{got} value(s), but the schema's label shape {info['shape']} needs {want}")


def _read_proto(raw, path, index):
    import tensorflow as tf

    try:
        return tf.train.Example.FromString(raw).features.feature
    except Exception as e:  # protobuf's DecodeError: the record's bytes are not an Example
        raise _corrupt(path, f"record {index} is not a tf.train.Example: {e}") from e


def _tf_message(error):
    """The part of a TensorFlow error message that says what happened."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", error.message)
    return text.split(" [Op:")[0].strip()


def _iter_shard(path, expected=None):
    """Yields `(index, proto)` of the records of one shard, with errors that
    name it (TensorFlow's own name neither the file nor what to do)."""
    import tensorflow as tf

    index = 0
    try:
        for record in tf.data.TFRecordDataset(path):
            # Not `as_numpy_iterator()`: after some in-process Keras/distribute
            # work it was seen handing back numpy values it then fails on.
            raw = record.numpy() if hasattr(record, "numpy") else np.asarray(record).item()
            yield index, _read_proto(raw, path, index)
            index += 1
    except tf.errors.DataLossError as e:
        raise _corrupt(path, f"after record {index}: {_tf_message(e)}") from None
    except tf.errors.OpError as e:
        raise DataFormatError(f"cannot read shard: {_tf_message(e)}", path=path) from None
    if expected is not None and index != expected:
        raise _corrupt(path, f"{index} records, but schema.json recorded {expected}")


def _first_record(path):
    """The bytes of the first record of a TFRecord file (None when empty),
    read directly (a TensorFlow pipeline per shard costs far more). The
    checksums are left to the full read."""
    with open(path, "rb") as f:
        header = f.read(12)  # uint64 length, uint32 masked CRC of the length
        if not header:
            return None
        if len(header) < 12:
            raise _corrupt(path, "the file ends inside the first record's header")
        (length,) = struct.unpack("<Q", header[:8])
        data = f.read(min(length, os.path.getsize(path)))
        if len(data) < length:
            raise _corrupt(path, f"the first record declares {length} bytes, the file holds {len(data)} after it")
        return data


def _check_first_records(schema, split, paths):
    """The cheap check `load_split` makes before building the pipeline: the
    first record of each shard against the schema (every record is checked
    again as it is parsed)."""
    sizes = schema.get("shard_sizes", {}).get(split)
    for i, path in enumerate(paths):
        expected = None if sizes is None else sizes[i]["records"]
        first = _first_record(path)
        if first is None:
            if expected:
                raise _corrupt(path, f"no records, but schema.json recorded {expected}")
            continue
        _check_record(_read_proto(first, path, 0), schema, path, 0)


def _feature_spec(schema):
    import tensorflow as tf

    spec = {
        "id": tf.io.FixedLenFeature([], tf.string, default_value=b""),
        "raw_text": tf.io.VarLenFeature(tf.string),
    }
    for m in schema["modalities"]:
        spec[m] = tf.io.FixedLenFeature([], tf.string, default_value=b"")
        spec[f"{m}_length"] = tf.io.FixedLenFeature([], tf.int64, default_value=0)
    for k in schema.get("tokens", {}).get("keys", []):
        spec[k] = tf.io.VarLenFeature(tf.int64)
    # Variable length, so that a record whose label has the wrong size gets
    # our message (naming the shard) instead of the parser's.
    for k in schema["labels"]:
        spec[k] = tf.io.VarLenFeature(tf.float32)
    return spec


def read_examples(data_dir, split):
    """Yields the examples of `split` as numpy dicts, exactly as written.

    Keys: `id` (str), `raw_text` (str, when present), each modality float32
    `[L, D]` (L = 0 where missing), token arrays int64 `[L]`, targets
    float32 (scalars as 0-d arrays, `emotions` `[4]`). Every record is
    checked against the schema (`DataFormatError` naming the shard, record
    and field); a truncated or corrupt shard is named.
    """
    schema = read_schema(data_dir)
    paths = _shard_paths(data_dir, schema, split)
    sizes = schema.get("shard_sizes", {}).get(split)
    total = 0
    for i, path in enumerate(paths):
        for index, proto in _iter_shard(path, None if sizes is None else sizes[i]["records"]):
            _check_record(proto, schema, path, index)
            total += 1
            ex = {"id": proto["id"].bytes_list.value[0].decode("utf-8")}
            if "raw_text" in proto and proto["raw_text"].bytes_list.value:
                ex["raw_text"] = proto["raw_text"].bytes_list.value[0].decode("utf-8")
            for m, info in schema["modalities"].items():
                dim = int(info["dim"])
                length = int(proto[f"{m}_length"].int64_list.value[0]) if f"{m}_length" in proto else 0
                data = proto[m].bytes_list.value[0] if m in proto else b""
                ex[m] = np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(length, dim)
            for k in schema.get("tokens", {}).get("keys", []):
                if k in proto:
                    ex[k] = np.asarray(proto[k].int64_list.value, np.int64)
            for k, info in schema["labels"].items():
                ex[k] = np.asarray(proto[k].float_list.value, np.float32).reshape(info["shape"])
            yield ex
    if total != int(schema["splits"][split]):
        raise DataFormatError(
            f"the shards hold {total} records, but schema.json says {schema['splits'][split]}: truncated, "
            f"corrupt or replaced shards; re-run the conversion", path=data_dir, key=f"split '{split}'",
        )


def _pad_lengths(schema, pad_to):
    lengths = {}
    for m, info in schema["modalities"].items():
        want = pad_to.get(m) if isinstance(pad_to, dict) else pad_to
        # At least one step, so that a modality missing from every example
        # still gives a [B, 1, D] zero tensor with an all-False mask.
        lengths[m] = int(want) if want is not None else max(int(info["max_length"]), 1)
    tokens = schema.get("tokens", {})
    if tokens.get("keys"):
        want = pad_to.get("text") if isinstance(pad_to, dict) else pad_to
        lengths["tokens"] = int(want) if want is not None else max(int(tokens["max_length"]), 1)
    return lengths


def _fail_unless(ok, raise_error, inputs=()):
    """`True` when `ok` holds; otherwise runs the Python function
    `raise_error(*inputs)`, which raises the `DataFormatError` that explains
    the failure (TensorFlow passes it on as an `InvalidArgumentError` whose
    message starts with it). Python runs only for a failing record."""
    import tensorflow as tf

    def fail():
        return tf.reshape(tf.py_function(raise_error, list(inputs), tf.bool), [])

    return tf.cond(ok, lambda: tf.constant(True), fail)


def _locate(paths, sizes, index):
    """`(shard path, record index in it)` of the `index`-th record of the
    split (Python; only used to explain a failure)."""
    if sizes is not None:
        for path, size in zip(paths, sizes):
            if index < size["records"]:
                return path, index
            index -= size["records"]
        return None, None
    for path in paths:
        count = sum(1 for _ in _iter_shard(path))
        if index < count:
            return path, index
        index -= count
    return None, None


def _diagnose_counts(paths, sizes, n, split, data_dir):
    """Raises the error for a split whose shards did not yield `n` records:
    the first shard that is truncated or corrupt, else the count mismatch."""
    total = 0
    for i, path in enumerate(paths):
        total += sum(1 for _ in _iter_shard(path, None if sizes is None else sizes[i]["records"]))
    raise DataFormatError(f"the shards hold {total} records, but schema.json says {n}: truncated, corrupt or "
                          f"replaced shards; re-run the conversion", path=data_dir, key=f"split '{split}'")


def _records(paths, sizes, n, split, data_dir):
    """`(index, record)` of the split's shards in order, with the record
    count checked: a shard that ends early (TensorFlow's reader stops at a
    truncated or corrupt record; `ignore_errors` turns its error into the
    end of that file) or a split that runs long fails with a message naming
    the shard instead of TensorFlow's "corrupted record at 129"."""
    import tensorflow as tf

    records = tf.data.TFRecordDataset(paths).ignore_errors()
    not_end = tf.data.Dataset.from_tensors(False).repeat()
    # One end marker: its position is the number of records read.
    end = tf.data.Dataset.from_tensors((tf.constant(b""), True))
    ds = tf.data.Dataset.zip((records, not_end)).concatenate(end).enumerate()

    def explain():
        _diagnose_counts(paths, sizes, n, split, data_dir)

    @tf.autograph.experimental.do_not_convert
    def is_record(index, element):
        _, is_end = element
        checked = _fail_unless(tf.where(is_end, tf.equal(index, n), index < n), explain)
        with tf.control_dependencies([checked]):
            return tf.logical_not(is_end)

    @tf.autograph.experimental.do_not_convert
    def drop_flag(index, element):
        return index, element[0]

    ds = ds.filter(is_record).map(drop_flag)
    return ds.apply(tf.data.experimental.assert_cardinality(n))


def load_split(
    data_dir,
    split,
    batch_size=32,
    shuffle=False,
    seed=0,
    pad_to=None,
    drop_remainder=False,
    include_raw_text=None,
    include_ids=False,
    shuffle_buffer=None,
    include_index=False,
):
    """A `tf.data.Dataset` of `(inputs, targets)` batches in DATA.md's layout.

    Features are float32 `[B, T, D]`, zero-padded at the end to the schema's
    longest example of that modality (or `pad_to`: an int for every modality
    or a `{modality: T}` dict; longer sequences are cut to their first T
    steps); `<m>_mask` is boolean `[B, T]`, True on real steps. A missing
    modality (length 0) is zeros with an all-False mask. Token arrays
    (`text_token_ids`, `text_padding_mask`, `text_segment_ids`) come as int32
    `[B, T]`, padded with 0 to the text length. Targets are float32
    `[B, 1]` (`emotions` `[B, 4]`).

    The schema is checked against the records: at once against the shard
    files (present, readable, their recorded sizes) and the first record of
    each shard (`DataFormatError` naming the shard and field), then every
    record as it is parsed (lengths within the schema's maxima, widths, label
    sizes, record counts per shard); a failure there stops the iteration
    with an `InvalidArgumentError` whose message names the shard, record id
    and field.

    Args:
        data_dir: a directory written by `write_dataset`.
        split: the split name.
        batch_size: examples per batch.
        shuffle: shuffle the examples (each epoch differently, but the same
            sequence of epochs for the same `seed`).
        seed: the shuffle seed.
        pad_to: see above.
        drop_remainder: drop the last partial batch.
        include_raw_text: add `raw_text` (tf.string `[B]`) to the inputs;
            None means "when the data has raw text".
        include_ids: add `id` (tf.string `[B]`) to the inputs.
        shuffle_buffer: shuffle buffer size (default: the whole split).
        include_index: add `sample_index` (int32 `[B]`: the example's
            position in the split, the same whatever the shuffle) to the
            inputs, for models with per-sample memory (SelfMM's labels).

    The dataset's `cardinality()` is known.
    """
    import tensorflow as tf

    schema = read_schema(data_dir)
    paths = _shard_paths(data_dir, schema, split)
    _check_first_records(schema, split, paths)
    n = int(schema["splits"][split])
    spec = _feature_spec(schema)
    lengths = _pad_lengths(schema, pad_to or {})
    if include_raw_text is None:
        include_raw_text = bool(schema.get("raw_text"))
    token_keys = list(schema.get("tokens", {}).get("keys", []))
    token_max = int(schema.get("tokens", {}).get("max_length", 0))
    labels = schema["labels"]
    sizes = schema.get("shard_sizes", {}).get(split)
    ds = _records(paths, sizes, n, split, os.fspath(data_dir))

    @tf.autograph.experimental.do_not_convert
    def parse(index, record):
        ex = tf.io.parse_single_example(record, spec)
        # All checks first, on sizes only (cheap); the message is built only
        # for a record that fails.
        checks = []
        for m, info in schema["modalities"].items():
            dim, max_len = int(info["dim"]), int(info["max_length"])
            length = tf.cast(ex[f"{m}_length"], tf.int32)
            checks.append(tf.logical_and(length >= 0, tf.equal(tf.strings.length(ex[m]), 4 * length * dim)))
            checks.append(length <= max_len)
        tokens = {k: tf.cast(tf.sparse.to_dense(ex[k]), tf.int32) for k in token_keys}
        checks += [tf.shape(v)[0] <= token_max for v in tokens.values()]
        values = {k: tf.sparse.to_dense(ex[k]) for k in labels}
        checks += [tf.equal(tf.size(values[k]), int(np.prod(info["shape"])) if info["shape"] else 1)
                   for k, info in labels.items()]

        def explain(raw, position):
            # Only runs for a record that failed: the Python check tells the
            # whole story.
            path, at = _locate(paths, sizes, int(position))
            _check_record(_read_proto(raw.numpy(), path, at), schema, path, at)
            raise DataFormatError("the record disagrees with schema.json; re-run the conversion", path=path,
                                  key=f"record {at}")

        if checks:
            checked = _fail_unless(tf.reduce_all(tf.stack(checks)), explain, [record, index])
            with tf.control_dependencies([checked]):
                ex = {k: tf.identity(v) if isinstance(v, tf.Tensor) else v for k, v in ex.items()}
                tokens = {k: tf.identity(v) for k, v in tokens.items()}
                values = {k: tf.identity(v) for k, v in values.items()}
        inputs = {}
        for m, info in schema["modalities"].items():
            dim, t = int(info["dim"]), lengths[m]
            length = tf.cast(ex[f"{m}_length"], tf.int32)
            x = tf.reshape(tf.io.decode_raw(ex[m], tf.float32, little_endian=True), [length, dim])
            x = x[:t]
            kept = tf.shape(x)[0]
            x = tf.pad(x, [[0, t - kept], [0, 0]])
            inputs[m] = tf.ensure_shape(x, [t, dim])
            inputs[f"{m}_mask"] = tf.range(t) < kept
        for k in token_keys:
            t = lengths["tokens"]
            v = tokens[k][:t]
            v = tf.pad(v, [[0, t - tf.shape(v)[0]]])
            inputs[k] = tf.ensure_shape(v, [t])
        if include_raw_text:
            inputs["raw_text"] = tf.sparse.to_dense(ex["raw_text"], default_value=b"")[:1]
            inputs["raw_text"] = tf.reshape(tf.pad(inputs["raw_text"], [[0, 1 - tf.shape(inputs["raw_text"])[0]]]), [])
        if include_ids:
            inputs["id"] = ex["id"]
        if include_index:
            inputs["sample_index"] = tf.cast(index, tf.int32)
        targets = {}
        for k, info in labels.items():
            targets[k] = tf.ensure_shape(tf.reshape(values[k], info["shape"] or [1]), info["shape"] or [1])
        return inputs, targets

    if shuffle and n > 1:
        buffer = n if shuffle_buffer is None else max(1, min(int(shuffle_buffer), n))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
