"""Fault catalogue, conversion output and TFRecord reading: `recipes/convert.py`
(where it writes, what it replaces, its flags), `write_dataset` (atomic
replacement, leftovers, concurrent writers, permissions, empty splits) and
`load_split` / `read_examples` (schema.json against the records: lengths,
widths, labels, counts, truncated/corrupt/missing shards, shard paths).

    python benchmarks/fault_catalogue/convert_tfrecord.py
    PYTHONPATH=/path/to/old/checkout python benchmarks/fault_catalogue/convert_tfrecord.py

Each case is judged by what a user experiences (see harness.py). keras_msa
and the recipe are imported inside the cases, so PYTHONPATH decides which
checkout is tested. Only APIs that exist in both old and new checkouts are
used, so that the same case runs before and after.
"""

import errno
import importlib.util
import json
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import case  # noqa: E402
from harness import names_any  # noqa: E402

_CACHE = {}


# ----------------------------------------------------------------- helpers
def _root():
    import keras_msa

    return os.path.dirname(os.path.dirname(os.path.abspath(keras_msa.__file__)))


def _convert():
    """recipes/convert.py of the tested checkout, imported once (absl flags)."""
    if "convert" not in _CACHE:
        path = os.path.join(_root(), "recipes", "convert.py")
        spec = importlib.util.spec_from_file_location("catalogue_convert", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _CACHE["convert"] = module
    return _CACHE["convert"]


def _cli(*flags):
    """`recipes/convert.py` run in-process as from the command line:
    `(exit status, error text)`; an exception escaping main is what the user
    sees above the traceback."""
    from absl import flags as absl_flags

    convert = _convert()
    fl = absl_flags.FLAGS
    fl.unparse_flags()
    try:
        fl(["convert.py", *flags])
        convert.main([])
        return 0, ""
    except SystemExit as e:
        return int(e.code or 0), ""
    except Exception as e:  # what absl prints, last line of the traceback
        return 1, f"{type(e).__name__}: {e}"
    finally:
        fl.unparse_flags()


def _recipe(*flags):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = _root() + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, os.path.join(_root(), "recipes", "convert.py"), *flags],
                          capture_output=True, text=True, timeout=300, env=env)
    return proc.returncode, proc.stderr[-2000:]


def _pickle(directory, name="aligned_50.pkl", n=(6, 3, 4)):
    from keras_msa.data.fixtures import mmsa_arrays
    from keras_msa.data.fixtures import write_pickle

    os.makedirs(directory, exist_ok=True)
    return str(write_pickle(mmsa_arrays(n=n), os.path.join(directory, name)))


def _examples(n, split="train", text_len=None, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = text_len[i] if text_len else int(rng.integers(1, 6))
        out.append({
            "id": f"{split}-{i}",
            "text": rng.standard_normal((t, 4)).astype(np.float32),
            "audio": rng.standard_normal((int(rng.integers(1, 5)), 3)).astype(np.float32),
            "sentiment": np.float32(rng.uniform(-3, 3)),
            "emotions": rng.integers(0, 2, size=4).astype(np.float32),
        })
    return out


def _dataset(tmp, name="ds", per_shard=2, **kw):
    from keras_msa.data.tfrecord import write_dataset

    out = os.path.join(tmp, name)
    data = {"train": _examples(5, **kw), "valid": _examples(2, "valid", seed=1)}
    write_dataset(out, data, dataset="toy", examples_per_shard=per_shard, progress=False)
    return out


def _edit_schema(out, fn):
    path = os.path.join(out, "schema.json")
    with open(path) as f:
        schema = json.load(f)
    fn(schema)
    with open(path, "w") as f:
        json.dump(schema, f)


def _iterate(out, split="train", **kw):
    from keras_msa.data.tfrecord import load_split

    batches = list(load_split(out, split, batch_size=2, **kw))
    return batches


def _load_judgement(out, *needles, split="train", wrong=None):
    """Loading `out` after damage: handled when the error names one of
    `needles` (the shard, the field); `wrong(batches)` says whether an
    accepted load returned wrong data."""
    try:
        batches = _iterate(out, split)
    except Exception as e:
        return "handled" if names_any(str(e), *needles) and names_any(str(e), "re-run", "schema") else "poor_message"
    return "silent_wrong" if wrong is None or wrong(batches) else "handled"


def _listing(path):
    return sorted(os.listdir(path))


# ------------------------------------------ where the output goes (data loss)
@case("convert.py --overwrite with --output a parent of the input (exit code, input kept)")
def cli_output_parent_of_input(tmp):
    project = os.path.join(tmp, "project")
    src = _pickle(os.path.join(project, "MOSI"))
    open(os.path.join(project, "notes.txt"), "w").write("years of work")
    rc, err = _recipe("--format=mmsa", f"--input={src}", f"--output={project}", "--overwrite", "--progress=false")
    if not os.path.isfile(src) or not os.path.isfile(os.path.join(project, "notes.txt")):
        return "data_loss"
    return "handled" if rc != 0 and names_any(err, src) else "poor_message"


def _refused_keeping(fn, keep, *needles):
    try:
        fn()
    except Exception as e:
        if not all(os.path.exists(p) for p in keep):
            return "data_loss"
        return "handled" if names_any(str(e), *needles) else "poor_message"
    return "data_loss" if not all(os.path.exists(p) for p in keep) else "silent_wrong"


@case("convert --overwrite with --output the input's own directory")
def output_is_input_directory(tmp):
    src = _pickle(os.path.join(tmp, "MOSI"))
    return _refused_keeping(lambda: _convert().convert("mmsa", src, os.path.dirname(src), overwrite=True,
                                                       progress=False), [src], src)


@case("convert --overwrite with --output the input file itself")
def output_is_input_file(tmp):
    src = _pickle(tmp)
    return _refused_keeping(lambda: _convert().convert("mmsa", src, src, overwrite=True, progress=False),
                            [src], src)


@case("convert --overwrite with --output two levels above the input")
def output_is_grandparent(tmp):
    src = _pickle(os.path.join(tmp, "proj", "raw", "MOSI"))
    other = os.path.join(tmp, "proj", "paper.tex")
    open(other, "w").write("draft")
    return _refused_keeping(lambda: _convert().convert("mmsa", src, os.path.join(tmp, "proj"), overwrite=True,
                                                       progress=False), [src, other], src)


@case("convert --overwrite with --output a symlink to the input's directory")
def output_symlink_to_input_dir(tmp):
    src = _pickle(os.path.join(tmp, "MOSI"))
    link = os.path.join(tmp, "out")
    os.symlink(os.path.dirname(src), link)
    return _refused_keeping(lambda: _convert().convert("mmsa", src, link, overwrite=True, progress=False),
                            [src], src)


@case("write_dataset over its own source dataset (derived data, overwrite=True)")
def derived_over_source(tmp):
    from keras_msa.data.tfrecord import read_examples
    from keras_msa.data.tfrecord import write_dataset

    src = _dataset(tmp)
    data = {s: list(read_examples(src, s)) for s in ("train", "valid")}
    return _refused_keeping(lambda: write_dataset(src, data, dataset="derived", sources=[src], overwrite=True,
                                                  progress=False),
                            [os.path.join(src, "schema.json")], src)


@case("write_dataset into a directory inside its source directory")
def output_inside_source_dir(tmp):
    from keras_msa.data.tfrecord import write_dataset

    raw = os.path.join(tmp, "raw")
    os.makedirs(raw)
    open(os.path.join(raw, "a.csd"), "wb").write(b"features")
    try:
        write_dataset(os.path.join(raw, "tfrecord"), {"train": _examples(2), "valid": _examples(1, "valid")},
                      dataset="toy", sources=[raw], progress=False)
    except Exception as e:
        return "handled" if names_any(str(e), raw) else "poor_message"
    # Accepted: the raw-data tree now holds derived files, and the next
    # conversion from it checksums (and may read) them as sources.
    return "silent_wrong"


@case("overwrite=True replaces an earlier dataset atomically when the reader fails midway")
def overwrite_reader_fails(tmp):
    from keras_msa.data.tfrecord import read_schema
    from keras_msa.data.tfrecord import write_dataset

    out = _dataset(tmp)

    def failing():
        yield from _examples(2)
        raise RuntimeError("reader broke")

    try:
        write_dataset(out, {"train": failing()}, dataset="new", overwrite=True, progress=False)
    except RuntimeError:
        pass
    try:
        ok = read_schema(out)["dataset"] == "toy"
    except Exception:
        return "data_loss"
    return "handled" if ok and _listing(tmp) == ["ds"] else "silent_wrong"


def _disk_full(tmp, target):
    import tensorflow as tf

    from keras_msa.data.tfrecord import read_schema
    from keras_msa.data.tfrecord import write_dataset

    out = _dataset(tmp)
    calls = []
    if target == "records":
        owner, name = tf.io.TFRecordWriter, "write"
    else:
        owner, name = json, "dump"
    real = getattr(owner, name)

    def full(*args, **kwargs):
        calls.append(1)
        if target == "schema" or len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    setattr(owner, name, full)
    try:
        write_dataset(out, {"train": _examples(6), "valid": _examples(2, "valid")}, dataset="new", overwrite=True,
                      examples_per_shard=2, progress=False)
        outcome = "silent_wrong"
    except OSError as e:
        outcome = "handled" if names_any(str(e), "space") else "poor_message"
    finally:
        setattr(owner, name, real)
    try:
        kept = read_schema(out)["dataset"] == "toy"
    except Exception:
        return "data_loss"
    if not kept:
        return "data_loss"
    return outcome if _listing(tmp) == ["ds"] else "silent_wrong"


@case("disk full while writing shards (overwrite): old dataset kept, nothing left behind")
def disk_full_records(tmp):
    return _disk_full(tmp, "records")


@case("disk full while writing schema.json (overwrite): old dataset kept, nothing left behind")
def disk_full_schema(tmp):
    return _disk_full(tmp, "schema")


# ----------------------------------------------------- leftovers, concurrency
@case("partial output of a killed conversion (.<out>.tmp-*) is removed by the next run")
def killed_leftover_removed(tmp):
    from keras_msa.data.tfrecord import write_dataset

    killed = os.path.join(tmp, ".ds.tmp-k1lled_0")
    os.makedirs(killed)
    open(os.path.join(killed, ".train-00000.part"), "wb").write(b"half a shard")
    write_dataset(os.path.join(tmp, "ds"), {"train": _examples(2), "valid": _examples(1, "valid")}, dataset="toy",
                  progress=False)
    return "handled" if not os.path.exists(killed) else "silent_wrong"


@case("a look-alike .<out>.tmp-* directory holding user files is kept")
def lookalike_leftover_kept(tmp):
    from keras_msa.data.tfrecord import write_dataset

    mine = os.path.join(tmp, ".ds.tmp-mythesis")
    os.makedirs(mine)
    open(os.path.join(mine, "thesis.tex"), "w").write("mine")
    write_dataset(os.path.join(tmp, "ds"), {"train": _examples(2), "valid": _examples(1, "valid")}, dataset="toy",
                  progress=False)
    return "handled" if os.path.isfile(os.path.join(mine, "thesis.tex")) else "data_loss"


@case("leftovers of another output (.<out>x.tmp-*) are kept")
def other_output_leftover_kept(tmp):
    from keras_msa.data.tfrecord import write_dataset

    other = os.path.join(tmp, ".dsx.tmp-abcdefgh")
    os.makedirs(other)
    open(os.path.join(other, ".train-00000.part"), "wb").write(b"theirs")
    write_dataset(os.path.join(tmp, "ds"), {"train": _examples(2), "valid": _examples(1, "valid")}, dataset="toy",
                  progress=False)
    return "handled" if os.path.exists(other) else "data_loss"


@case("previous dataset moved aside (.<out>.old-*) by a cut replacement is not deleted without overwrite")
def old_aside_kept(tmp):
    from keras_msa.data.tfrecord import write_dataset

    aside = os.path.join(tmp, ".ds.old-abcdefgh")
    write_dataset(aside, {"train": _examples(2), "valid": _examples(1, "valid")}, dataset="previous",
                  progress=False)
    write_dataset(os.path.join(tmp, "ds"), {"train": _examples(2), "valid": _examples(1, "valid")}, dataset="toy",
                  progress=False)
    return "handled" if os.path.isfile(os.path.join(aside, "schema.json")) else "data_loss"


@case("two conversions into the same output at the same time")
def concurrent_writers(tmp):
    from keras_msa.data.tfrecord import read_schema
    from keras_msa.data.tfrecord import write_dataset

    out = os.path.join(tmp, "ds")
    seen = {}

    def second():
        try:
            write_dataset(out, {"train": _examples(4), "valid": _examples(1, "valid")}, dataset="second",
                          overwrite=True, progress=False)
            seen["second"] = None
        except Exception as e:
            seen["second"] = str(e)

    def first():
        yield from _examples(2)
        worker = threading.Thread(target=second)
        worker.start()
        worker.join()
        yield from _examples(1)

    try:
        write_dataset(out, {"train": first(), "valid": _examples(1, "valid")}, dataset="first", overwrite=True,
                      progress=False)
    except Exception as e:
        seen["first"] = str(e)
    if seen.get("second") is None and "first" not in seen:
        # Both "succeeded": one silently replaced the other's output.
        return "silent_wrong"
    message = seen.get("second") or seen.get("first")
    ok = read_schema(out)["dataset"] in ("first", "second") and _listing(tmp) == ["ds"]
    return "handled" if ok and names_any(message, "another conversion", "is writing") else "poor_message"


@case("overwrite through a symlinked output keeps the link and leaves nothing behind")
def symlinked_output(tmp):
    from keras_msa.data.tfrecord import read_schema

    real = _dataset(os.path.join(tmp, "store"))
    link = os.path.join(tmp, "ds")
    os.symlink(real, link)
    from keras_msa.data.tfrecord import write_dataset

    write_dataset(link, {"train": _examples(3), "valid": _examples(1, "valid")}, dataset="new", overwrite=True,
                  progress=False)
    ok = os.path.islink(link) and read_schema(real)["dataset"] == "new" and _listing(tmp) == ["ds", "store"]
    return "handled" if ok else "silent_wrong"


# ------------------------------------------------------------ output paths
@case("--output is an existing file")
def output_is_file(tmp):
    target = os.path.join(tmp, "out")
    open(target, "w").write("x")
    return _refused_keeping(lambda: _convert().convert("mmsa", _pickle(tmp), target, overwrite=True,
                                                       progress=False), [target], "not a directory")


@case("--output below an existing file")
def output_parent_is_file(tmp):
    blocker = os.path.join(tmp, "file")
    open(blocker, "w").write("x")
    return _refused_keeping(lambda: _convert().convert("mmsa", _pickle(tmp), os.path.join(blocker, "ds"),
                                                       progress=False), [blocker], "not a directory", "is a file")


@case("--output in a directory that cannot be written")
def output_unwritable(tmp):
    target = "/proc/self/keras_msa_out"  # not writable, even for root
    try:
        _convert().convert("mmsa", _pickle(tmp), target, progress=False)
    except Exception as e:
        return "handled" if names_any(str(e), "/proc/self") and names_any(str(e), "permission", "cannot") \
            else "poor_message"
    return "silent_wrong"


# ------------------------------------------------------------------- flags
@case("--examples_per_shard=0")
def examples_per_shard_zero(tmp):
    rc, err = _cli("--format=mmsa", f"--input={_pickle(tmp)}", f"--output={os.path.join(tmp, 'o')}",
                   "--examples_per_shard=0", "--progress=false")
    return "handled" if rc != 0 and names_any(err, "examples_per_shard") else "poor_message"


@case("--examples_per_shard=-3")
def examples_per_shard_negative(tmp):
    rc, err = _cli("--format=mmsa", f"--input={_pickle(tmp)}", f"--output={os.path.join(tmp, 'o')}",
                   "--examples_per_shard=-3", "--progress=false")
    return "handled" if rc != 0 and names_any(err, "examples_per_shard") else "poor_message"


@case("--reader_options with unquoted keys (bad JSON)")
def reader_options_bad_json(tmp):
    rc, err = _cli("--format=mmsa", f"--input={_pickle(tmp)}", f"--output={os.path.join(tmp, 'o')}",
                   "--reader_options={dataset: mosi}", "--progress=false")
    return "handled" if rc != 0 and names_any(err, "--reader_options") and names_any(err, "column") \
        else "poor_message"


@case("--reader_options is a JSON list, not an object")
def reader_options_list(tmp):
    rc, err = _cli("--format=mmsa", f"--input={_pickle(tmp)}", f"--output={os.path.join(tmp, 'o')}",
                   "--reader_options=[1, 2]", "--progress=false")
    return "handled" if rc != 0 and names_any(err, "--reader_options") else "poor_message"


@case("--reader_options with an option the reader does not take")
def reader_options_unknown(tmp):
    rc, err = _cli("--format=mmsa", f"--input={_pickle(tmp)}", f"--output={os.path.join(tmp, 'o')}",
                   '--reader_options={"bogus": 1}', "--progress=false")
    return "handled" if rc != 0 and names_any(err, "bogus") else "poor_message"


@case("--input that does not exist")
def input_missing(tmp):
    missing = os.path.join(tmp, "nowhere.pkl")
    rc, err = _cli("--format=mmsa", f"--input={missing}", f"--output={os.path.join(tmp, 'o')}", "--progress=false")
    return "handled" if rc != 0 and names_any(err, missing) else "poor_message"


# ------------------------------------------------------------ empty splits
def _empty_split(tmp, splits, name):
    from keras_msa.data.tfrecord import write_dataset

    try:
        write_dataset(os.path.join(tmp, "o"), splits, dataset="toy", progress=False)
    except Exception as e:
        return "handled" if names_any(str(e), name) and names_any(str(e), "empty", "no examples") \
            else "poor_message"
    return "silent_wrong"


@case("an empty validation split is refused at conversion")
def empty_valid_split(tmp):
    return _empty_split(tmp, {"train": _examples(3), "valid": [], "test": _examples(2, "test")}, "valid")


@case("an empty train split (a streaming reader that yields nothing) is refused at conversion")
def empty_train_split(tmp):
    return _empty_split(tmp, {"train": iter(()), "valid": _examples(2, "valid")}, "train")


@case("a reader with no validation split: the user is told how to make one")
def no_valid_split(tmp):
    import contextlib
    import io

    import numpy as np

    convert = _convert()

    def reader(path, **kwargs):
        ex = {"id": "a", "text": np.zeros((2, 3), np.float32), "sentiment": 0.5}
        return {"train": [ex], "test": [dict(ex, id="b")]}, {"dataset": "custom"}

    real, err = convert.get_reader, io.StringIO()
    convert.get_reader = lambda fmt: reader
    try:
        with contextlib.redirect_stderr(err):
            convert.convert("labelcsv", _pickle(tmp), os.path.join(tmp, "o"), progress=False)
    except Exception as e:
        return "handled" if names_any(str(e), "valid") else "poor_message"
    finally:
        convert.get_reader = real
    return "handled" if names_any(err.getvalue(), "mode=valid") else "silent_wrong"


# --------------------------------------------------------- permissions
def _with_umask(mask, fn):
    old = os.umask(mask)
    try:
        return fn()
    finally:
        os.umask(old)


@case("converted dataset under umask 022 is group/world readable (0755 dir, 0644 files)")
def dataset_umask_022(tmp):
    out = _with_umask(0o022, lambda: _dataset(tmp))
    modes = {os.stat(os.path.join(out, n)).st_mode & 0o777 for n in os.listdir(out)}
    return "handled" if os.stat(out).st_mode & 0o777 == 0o755 and modes == {0o644} else "silent_wrong"


@case("converted dataset under umask 077 stays private (0700 dir, 0600 files)")
def dataset_umask_077(tmp):
    out = _with_umask(0o077, lambda: _dataset(tmp))
    modes = {os.stat(os.path.join(out, n)).st_mode & 0o777 for n in os.listdir(out)}
    return "handled" if os.stat(out).st_mode & 0o777 == 0o700 and modes == {0o600} else "security"


@case("atomic_write_text (metrics, history) under umask 022 gives 0644")
def atomic_file_umask(tmp):
    from keras_msa.utils.files import atomic_write_text

    path = os.path.join(tmp, "metrics.json")
    _with_umask(0o022, lambda: atomic_write_text(path, "{}"))
    return "handled" if os.stat(path).st_mode & 0o777 == 0o644 else "silent_wrong"


@case("a checkpoint writer killed mid-write: its temporary file is cleaned on the next start")
def killed_checkpoint_temp(tmp):
    from keras_msa.training.checkpointing import CheckpointDirectory
    from keras_msa.utils.files import atomic_path

    manager = atomic_path(os.path.join(tmp, "ckpt-0000000003.npz"), suffix=".npz")
    partial = manager.__enter__()  # never exited: what SIGKILL leaves
    open(partial, "wb").write(b"half")
    CheckpointDirectory(tmp)
    return "handled" if not os.path.exists(partial) else "silent_wrong"


# ------------------------------------------- schema.json against the records
@case("schema max_length smaller than the records (would truncate every sequence)")
def schema_max_length_small(tmp):
    out = _dataset(tmp)
    _edit_schema(out, lambda s: s["modalities"]["text"].update(max_length=1))
    return _load_judgement(out, "train-0000", "text", wrong=lambda b: True)


@case("schema max_length smaller than a later record only (first records fit)")
def schema_max_length_later_record(tmp):
    out = _dataset(tmp, text_len=[2, 5, 2, 2, 2])
    _edit_schema(out, lambda s: s["modalities"]["text"].update(max_length=3))
    return _load_judgement(out, "train-00000-of", "text", wrong=lambda b: True)


@case("schema dim disagrees with the records")
def schema_dim_wrong(tmp):
    out = _dataset(tmp)
    _edit_schema(out, lambda s: s["modalities"]["audio"].update(dim=5))
    return _load_judgement(out, "train-0000", "audio")


@case("schema dim disagrees with the records, read with read_examples")
def schema_dim_wrong_read_examples(tmp):
    from keras_msa.data.tfrecord import read_examples

    out = _dataset(tmp)
    _edit_schema(out, lambda s: s["modalities"]["audio"].update(dim=5))
    try:
        list(read_examples(out, "train"))
    except Exception as e:
        return "handled" if names_any(str(e), "train-0000") and names_any(str(e), "audio") else "poor_message"
    return "silent_wrong"


@case("schema lists a label the records do not hold")
def schema_extra_label(tmp):
    out = _dataset(tmp)
    _edit_schema(out, lambda s: s["labels"].update(humor={"shape": [], "declared_range": None,
                                                          "observed_range": [0, 1]}))
    return _load_judgement(out, "train-0000", "humor")


@case("schema drops a modality the records hold (audio silently lost)")
def schema_drops_modality(tmp):
    out = _dataset(tmp)
    _edit_schema(out, lambda s: s["modalities"].pop("audio"))
    return _load_judgement(out, "train-0000", "audio", wrong=lambda b: True)


@case("schema counts one record more than the shards hold (older schema, no per-shard sizes)")
def schema_count_larger(tmp):
    out = _dataset(tmp)

    def edit(s):
        s.pop("shard_sizes", None)
        s["splits"]["train"] = 6

    _edit_schema(out, edit)
    return _load_judgement(out, "train", "6")


@case("schema counts one record less than the shards hold")
def schema_count_smaller(tmp):
    out = _dataset(tmp)
    _edit_schema(out, lambda s: s["splits"].update(train=4))
    return _load_judgement(out, "train", "4", wrong=lambda b: sum(int(x["text"].shape[0]) for x, _ in b) != 5)


# --------------------------------------------------------------- shard files
def _damage(out, name, how):
    path = os.path.join(out, name)
    data = bytearray(open(path, "rb").read())
    if how == "truncate":
        data = data[:-20]
    elif how == "flip":
        data[-10] ^= 0xFF
    elif how == "empty":
        data = b""
    open(path, "wb").write(bytes(data))
    return path


@case("truncated TFRecord shard")
def shard_truncated(tmp):
    out = _dataset(tmp)
    path = _damage(out, "train-00001-of-00003.tfrecord", "truncate")
    return _load_judgement(out, path)


@case("corrupt TFRecord shard, same size (bad checksum)")
def shard_corrupt(tmp):
    out = _dataset(tmp)
    path = _damage(out, "train-00001-of-00003.tfrecord", "flip")
    return _load_judgement(out, path)


@case("shard emptied to 0 bytes")
def shard_empty(tmp):
    out = _dataset(tmp)
    path = _damage(out, "train-00002-of-00003.tfrecord", "empty")
    return _load_judgement(out, path)


@case("truncated shard read with read_examples")
def shard_truncated_read_examples(tmp):
    from keras_msa.data.tfrecord import read_examples

    out = _dataset(tmp)
    path = _damage(out, "train-00001-of-00003.tfrecord", "truncate")
    try:
        list(read_examples(out, "train"))
    except Exception as e:
        return "handled" if names_any(str(e), path) and names_any(str(e), "re-run") else "poor_message"
    return "silent_wrong"


@case("a shard file is missing")
def shard_missing(tmp):
    from keras_msa.data.tfrecord import load_split

    out = _dataset(tmp)
    os.remove(os.path.join(out, "train-00002-of-00003.tfrecord"))
    try:
        load_split(out, "train")
    except Exception as e:
        return "handled" if names_any(str(e), "train-00002-of-00003") else "poor_message"
    return "silent_wrong"


def _outside_shard(tmp, out, name):
    """A schema whose shard list points out of the dataset directory at a
    TFRecord file that is not part of it."""
    from keras_msa.data.tfrecord import write_dataset

    write_dataset(os.path.join(tmp, "private"), {"train": _examples(1, "secret"), "valid": _examples(1, "v")},
                  dataset="private", progress=False)
    target = os.path.join(tmp, "private", "train-00000-of-00001.tfrecord")
    _edit_schema(out, lambda s: (s["shards"].update(train=[name(target)]), s.pop("shard_sizes", None),
                                 s["splits"].update(train=1)))


def _read_outside_judgement(out):
    try:
        batches = _iterate(out, include_ids=True)
    except Exception as e:
        return "handled" if names_any(str(e), "shard") else "poor_message"
    ids = [i.decode() for x, _ in batches for i in x["id"].numpy()]
    return "security" if any(i.startswith("secret") for i in ids) else "silent_wrong"


@case("schema shard name climbs out of the dataset (../)")
def shard_path_traversal(tmp):
    out = _dataset(tmp)
    _outside_shard(tmp, out, lambda target: os.path.join("..", "private", os.path.basename(target)))
    return _read_outside_judgement(out)


@case("schema shard name is an absolute path")
def shard_absolute_path(tmp):
    out = _dataset(tmp)
    _outside_shard(tmp, out, lambda target: target)
    return _read_outside_judgement(out)


# ------------------------------------------------------------ schema.json
def _schema_error(out, *needles):
    from keras_msa.data.tfrecord import load_split

    try:
        load_split(out, "train")
    except Exception as e:
        return "handled" if names_any(str(e), *needles) else "poor_message"
    return "silent_wrong"


@case("schema.json is not valid JSON")
def schema_bad_json(tmp):
    out = _dataset(tmp)
    open(os.path.join(out, "schema.json"), "w").write('{"splits": {,}')
    return _schema_error(out, "schema.json")


@case("schema.json shard list is a string, not a list")
def schema_shards_string(tmp):
    out = _dataset(tmp)
    _edit_schema(out, lambda s: s["shards"].update(train=s["shards"]["train"][0]))
    return _schema_error(out, "shards/train", "shard list")


@case("schema.json modality dim is negative")
def schema_dim_negative(tmp):
    out = _dataset(tmp)
    _edit_schema(out, lambda s: s["modalities"]["text"].update(dim=-4))
    return _schema_error(out, "modalities/text", "'text'")


@case("schema.json written by a newer keras_msa")
def schema_newer_version(tmp):
    out = _dataset(tmp)
    _edit_schema(out, lambda s: s.update(format_version=99))
    return _schema_error(out, "newer")


@case("load_split of a split the data does not have")
def unknown_split(tmp):
    from keras_msa.data.tfrecord import load_split

    out = _dataset(tmp)
    try:
        load_split(out, "dev")
    except Exception as e:
        return "handled" if names_any(str(e), "dev") and names_any(str(e), "valid") else "poor_message"
    return "silent_wrong"


@case("write_dataset with a split name that is a path (../x)")
def split_name_path(tmp):
    from keras_msa.data.tfrecord import write_dataset

    try:
        write_dataset(os.path.join(tmp, "ds"), {"../x": _examples(2), "train": _examples(1)}, dataset="toy",
                      progress=False)
    except Exception as e:
        return "handled" if names_any(str(e), "../x") else "poor_message"
    return "security" if os.path.exists(os.path.join(tmp, "x-00000-of-00001.tfrecord")) else "silent_wrong"


if __name__ == "__main__":
    harness.main(__name__, os.path.abspath(__file__))
