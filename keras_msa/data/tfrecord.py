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

import datetime
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from keras_msa.data.errors import DataFormatError

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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


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
):
    """Writes `splits` as TFRecord shards plus `schema.json`, atomically.

    Args:
        output_dir: the directory to create. It must not exist or be empty,
            unless `overwrite=True` (then it is replaced at the very end, once
            the new data is complete).
        splits: `{split_name: iterable of example dicts}` (see the module
            docstring for the keys). Iterables are consumed once, streaming.
        dataset: the dataset's name (e.g. `"mosi"`), stored in the schema.
        sources: paths of the source files (or directories); their sha256
            checksums go into the schema.
        label_ranges: `{label: (lo, hi)}` declared ranges; a label outside
            its range is an error.
        repairs: `{repair name: count}` the reader made, stored and reported.
        extra: a JSON-serialisable dict stored under `"extra"`.
        examples_per_shard: records per shard file.
        progress: print progress to stderr (True: every 1000 examples; an int:
            every that many).
        overwrite: replace an existing non-empty `output_dir`.

    Returns:
        The schema dict (also written to `<output_dir>/schema.json`).

    Raises:
        FileExistsError: `output_dir` is not empty and `overwrite` is False.
        DataFormatError: an example is malformed; the message names the split,
            example index and id, the key and expected vs actual.
    """
    import tensorflow as tf

    import keras_msa

    output_dir = os.path.abspath(os.fspath(output_dir))
    if examples_per_shard < 1:
        raise ValueError(f"examples_per_shard must be >= 1, got {examples_per_shard}.")
    _check_target(output_dir, overwrite)
    every = 1000 if progress is True else int(progress or 0)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.tmp-", dir=parent)
    start = time.time()
    try:
        stats = _Stats()
        split_sizes, shard_files = {}, {}
        for split, examples in splits.items():
            split = str(split)
            if not split or "/" in split or split.startswith("."):
                raise ValueError(f"Invalid split name {split!r}.")
            written, names, writer, shard = 0, [], None, 0
            for index, ex in enumerate(examples):
                record = _encode_example(ex, split, index, stats, label_ranges)
                if writer is None:
                    name = f".{split}-{shard:05d}.part"
                    names.append(name)
                    writer = tf.io.TFRecordWriter(os.path.join(tmp, name))
                writer.write(record)
                written += 1
                if written % examples_per_shard == 0:
                    writer.close()
                    writer, shard = None, shard + 1
                if every and written % every == 0:
                    _progress(progress, f"{dataset}/{split}: {written} examples written ({time.time() - start:.1f}s)")
            if writer is not None:
                writer.close()
            if not names:  # an empty split still gets one (empty) shard
                names.append(f".{split}-00000.part")
                tf.io.TFRecordWriter(os.path.join(tmp, names[0])).close()
            final = []
            for i, name in enumerate(names):
                target = f"{split}-{i:05d}-of-{len(names):05d}.tfrecord"
                os.replace(os.path.join(tmp, name), os.path.join(tmp, target))
                final.append(target)
            split_sizes[split] = written
            shard_files[split] = final
            _progress(progress, f"{dataset}/{split}: {written} examples in {len(final)} shard(s)")
        schema = _make_schema(
            dataset, split_sizes, shard_files, stats, label_ranges, repairs, extra,
            source_checksums(sources), keras_msa.__version__,
        )
        with open(os.path.join(tmp, SCHEMA_FILE), "w") as f:
            json.dump(schema, f, indent=2, sort_keys=False)
            f.write("\n")
        _commit(tmp, output_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _progress(progress, f"wrote {output_dir} ({sum(split_sizes.values())} examples, {time.time() - start:.1f}s)")
    return schema


def _check_target(output_dir, overwrite):
    if os.path.exists(output_dir):
        if not os.path.isdir(output_dir):
            raise FileExistsError(f"{output_dir}: exists and is not a directory.")
        if os.listdir(output_dir) and not overwrite:
            raise FileExistsError(
                f"{output_dir}: exists and is not empty; pass overwrite=True (--overwrite) to replace it."
            )


def _commit(tmp, output_dir, overwrite):
    """Renames `tmp` to `output_dir`; an existing directory is moved aside
    first and removed only once the new one is in place."""
    _check_target(output_dir, overwrite)
    old = None
    if os.path.exists(output_dir):
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
        shutil.rmtree(old, ignore_errors=True)


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
    """The schema dict of a converted directory.

    Raises:
        FileNotFoundError: no `schema.json` (not a converted directory).
        DataFormatError: the schema is not valid JSON or lacks required keys.
    """
    path = os.path.join(os.fspath(data_dir), SCHEMA_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: no schema file; is {data_dir} a directory written by recipes/convert.py "
            f"(keras_msa.data.write_dataset)?"
        )
    try:
        with open(path) as f:
            schema = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataFormatError(f"corrupt schema (not valid JSON: {e})", path=path) from e
    if not isinstance(schema, dict):
        raise DataFormatError("corrupt schema (not a JSON object)", path=path)
    missing = [k for k in ("splits", "shards", "modalities", "labels") if k not in schema]
    if missing:
        raise DataFormatError(f"corrupt schema: missing keys {missing}", path=path)
    if schema.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise DataFormatError(
            f"written by a newer keras_msa (format_version {schema['format_version']}); upgrade keras_msa",
            path=path,
        )
    return schema


def _shard_paths(data_dir, schema, split):
    if split not in schema["splits"]:
        raise KeyError(f"{data_dir}: no split '{split}'; the data has {sorted(schema['splits'])}.")
    paths = [os.path.join(os.fspath(data_dir), name) for name in schema["shards"][split]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataFormatError(f"missing shard files {missing}", path=data_dir, key=split)
    return paths


def _feature_spec(schema):
    import tensorflow as tf

    spec = {
        "id": tf.io.FixedLenFeature([], tf.string),
        "raw_text": tf.io.VarLenFeature(tf.string),
    }
    for m in schema["modalities"]:
        spec[m] = tf.io.FixedLenFeature([], tf.string, default_value=b"")
        spec[f"{m}_length"] = tf.io.FixedLenFeature([], tf.int64, default_value=0)
    for k in schema.get("tokens", {}).get("keys", []):
        spec[k] = tf.io.VarLenFeature(tf.int64)
    for k, info in schema["labels"].items():
        spec[k] = tf.io.FixedLenFeature(info["shape"], tf.float32)
    return spec


def read_examples(data_dir, split):
    """Yields the examples of `split` as numpy dicts, exactly as written.

    Keys: `id` (str), `raw_text` (str, when present), each modality float32
    `[L, D]` (L = 0 where missing), token arrays int64 `[L]`, targets
    float32 (scalars as 0-d arrays, `emotions` `[4]`).
    """
    import tensorflow as tf

    schema = read_schema(data_dir)
    paths = _shard_paths(data_dir, schema, split)
    for record in tf.data.TFRecordDataset(paths):
        # Not `as_numpy_iterator()`: after some in-process Keras/distribute
        # work it was seen handing back numpy values it then fails on.
        raw = record.numpy() if hasattr(record, "numpy") else np.asarray(record).item()
        proto = tf.train.Example.FromString(raw).features.feature
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

    The dataset's `cardinality()` is known.
    """
    import tensorflow as tf

    schema = read_schema(data_dir)
    paths = _shard_paths(data_dir, schema, split)
    n = int(schema["splits"][split])
    spec = _feature_spec(schema)
    lengths = _pad_lengths(schema, pad_to or {})
    if include_raw_text is None:
        include_raw_text = bool(schema.get("raw_text"))
    token_keys = list(schema.get("tokens", {}).get("keys", []))
    labels = schema["labels"]

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
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
            v = tf.cast(tf.sparse.to_dense(ex[k]), tf.int32)[:t]
            v = tf.pad(v, [[0, t - tf.shape(v)[0]]])
            inputs[k] = tf.ensure_shape(v, [t])
        if include_raw_text:
            inputs["raw_text"] = tf.sparse.to_dense(ex["raw_text"], default_value=b"")[:1]
            inputs["raw_text"] = tf.reshape(tf.pad(inputs["raw_text"], [[0, 1 - tf.shape(inputs["raw_text"])[0]]]), [])
        if include_ids:
            inputs["id"] = ex["id"]
        targets = {}
        for k, info in labels.items():
            targets[k] = tf.reshape(ex[k], info["shape"] or [1])
        return inputs, targets

    ds = tf.data.TFRecordDataset(paths)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    if shuffle and n > 1:
        buffer = n if shuffle_buffer is None else max(1, min(int(shuffle_buffer), n))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
