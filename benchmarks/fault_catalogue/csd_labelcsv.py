"""Fault catalogue, area `csd_labelcsv`: hostile or careless inputs for the
CMU-MultimodalSDK `.csd` (HDF5), MMSA-FET `label.csv` and AVEC 2019 readers.

Classes covered: files outside the input read into the dataset (HDF5
external links, external storage, virtual datasets, soft links through
external links; `..`/absolute ids and symlinks in label.csv and AVEC),
links that dangle or loop, declared sizes that would allocate gigabytes,
values that change on the way to float32, rows with a wrong field count,
inputs with nothing to convert, missing-value markers stored as text,
modalities dropped instead of carried as missing, and summaries that
misreport what a dataset holds.

    python benchmarks/fault_catalogue/csd_labelcsv.py
    cd /tmp && PYTHONPATH=/path/to/old/checkout python /path/to/benchmarks/fault_catalogue/csd_labelcsv.py

Run it from outside any checkout: the harness starts isolated cases with
`python -c`, whose sys.path begins with the current directory, so from a
checkout's root they would import that checkout instead of PYTHONPATH's.
A MemoryError (the 4 GiB cap of isolated cases stopping an allocation the
reader should have refused) counts as "security".
"""

import importlib.util
import json
import os
import shutil
import sys
import zipfile

import numpy as np

# The harness runs isolated cases with exec() and no __file__; it sets
# sys.argv[0] to this file then.
_HERE = os.path.abspath(globals().get("__file__") or sys.argv[0])
sys.path.insert(0, os.path.dirname(_HERE))
import harness  # noqa: E402

SECRET = b"S2SECRET-7f3a-ok"  # 16 bytes: one fixed-length word token


# --------------------------------------------------------------------------
# Helpers (keras_msa is imported inside them, so PYTHONPATH picks the checkout)
# --------------------------------------------------------------------------


def _attempt(fn):
    try:
        return fn(), None
    except MemoryError as e:  # an allocation the cap should have stopped
        return None, e
    except Exception as e:  # noqa: BLE001 - the case judges any failure
        return None, e


def _clear(err, *needles):
    """`handled` when `err` is the readers' own error (DataFormatError or a
    ValueError about an option) and names one of `needles`; else
    `poor_message`."""
    from keras_msa.data.errors import DataFormatError

    if isinstance(err, MemoryError):
        # Only the catalogue's 4 GiB cap stopped it: without one the reader
        # would have tried to take the machine's memory.
        return "security"
    if isinstance(err, (DataFormatError, ValueError)) and harness.names_any(str(err), *needles):
        return "handled"
    return "poor_message"


def _leaks(result):
    """True when the secret bytes (or numbers) made it into the examples."""
    if result is None:
        return False
    splits = result[0]
    for examples in splits.values():
        for ex in examples:
            if SECRET.decode() in str(ex.get("raw_text", "")):
                return True
            for m in ("text", "audio", "vision"):
                x = ex.get(m)
                if x is not None and np.size(x) and np.any(np.isclose(np.asarray(x), 4242.0)):
                    return True
    return False


def _write_csd(path, root, data):
    import h5py

    with h5py.File(path, "w") as f:
        g = f.create_group(root)
        d = g.create_group("data")
        for vid, (features, intervals) in data.items():
            d[f"{vid}/features"] = features
            d[f"{vid}/intervals"] = np.asarray(intervals, np.float64)
        g.create_group("metadata")["root name"] = np.array([root.encode()])
    return str(path)


def _words(tokens):
    n = len(tokens)
    return (np.array([[t.encode()] for t in tokens], dtype="S16"),
            np.stack([np.arange(n) * 0.5, np.arange(n) * 0.5 + 0.5], 1))


def _csd_dir(tmp, words=True, audio=False):
    """A small CMU-SDK directory: labels for v1 (2 segments) and v2 (1)."""
    d = os.path.join(tmp, "in")
    os.makedirs(d, exist_ok=True)
    _write_csd(os.path.join(d, "Toy_Labels.csd"), "L", {
        "v1": (np.array([[1.0], [-1.0]], np.float32), [[0.0, 1.0], [1.0, 2.0]]),
        "v2": (np.array([[0.5]], np.float32), [[0.0, 2.0]]),
    })
    if words:
        _write_csd(os.path.join(d, "Toy_TimestampedWords.csd"), "W",
                   {"v1": _words(["good", "sp", "bad", "fine"]), "v2": _words(["hello", "there"])})
    if audio:
        _write_csd(os.path.join(d, "Toy_COVAREP.csd"), "A", {
            "v1": (np.ones((4, 3), np.float32), [[0, 0.5], [0.5, 1], [1, 1.5], [1.5, 2]]),
            "v2": (np.ones((2, 3), np.float32), [[0, 1], [1, 2]]),
        })
    with open(os.path.join(d, "standard_folds.json"), "w") as f:
        json.dump({"train": ["v1"], "valid": ["v2"], "test": []}, f)
    return d


def _other_file(tmp):
    """Another HDF5 file outside the input, holding the secret."""
    path = os.path.join(tmp, "other.h5")
    _write_csd(path, "W", {"v2": (np.array([[SECRET]], dtype="S16"), [[0.0, 2.0]])})
    import h5py

    with h5py.File(path, "a") as f:
        f["numbers"] = np.full((2, 3), 4242.0, np.float32)
    return path


def _secret_file(tmp, repeat=1):
    path = os.path.join(tmp, "secret.bin")
    with open(path, "wb") as f:
        f.write(SECRET * repeat)
    return path


def _read_csd(d, **kw):
    from keras_msa.data.csd import read_csd

    return read_csd(d, dataset="mosi", **kw)


def _security_case(d, *needles, **kw):
    result, err = _attempt(lambda: _read_csd(d, **kw))
    if err is None:
        return "security" if _leaks(result) else "silent_wrong"
    return _clear(err, *needles)


_CONVERT = []


def _convert_module():
    if not _CONVERT:
        import keras_msa

        root = os.path.dirname(os.path.dirname(os.path.abspath(keras_msa.__file__)))
        spec = importlib.util.spec_from_file_location("catalogue_convert", os.path.join(root, "recipes", "convert.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _CONVERT.append(module)
    return _CONVERT[0]


# --------------------------------------------------------------------------
# .csd: links and storage
# --------------------------------------------------------------------------


@harness.case("csd_external_storage_word_tokens")
def csd_external_storage_word_tokens(tmp):
    import h5py

    d = _csd_dir(tmp)
    secret = _secret_file(tmp)
    with h5py.File(os.path.join(d, "Toy_TimestampedWords.csd"), "a") as f:
        del f["W/data/v2/features"], f["W/data/v2/intervals"]
        f.create_dataset("W/data/v2/features", (1, 1), dtype="S16", external=[(secret, 0, 16)])
        f["W/data/v2/intervals"] = np.array([[0.0, 2.0]])
    return _security_case(d, "external storage")


@harness.case("csd_external_storage_metadata")
def csd_external_storage_metadata(tmp):
    import h5py

    d = _csd_dir(tmp)
    secret = _secret_file(tmp)
    with h5py.File(os.path.join(d, "Toy_Labels.csd"), "a") as f:
        f.create_dataset("L/metadata/notes", (16,), dtype="u1", external=[(secret, 0, 16)])
    result, err = _attempt(lambda: _read_csd(d))
    # The metadata is read (and the secret file opened) even though no example shows it.
    return "security" if err is None else _clear(err, "external storage")


@harness.case("csd_external_link_video")
def csd_external_link_video(tmp):
    import h5py

    d = _csd_dir(tmp)
    other = _other_file(tmp)
    with h5py.File(os.path.join(d, "Toy_TimestampedWords.csd"), "a") as f:
        del f["W/data/v2"]
        f["W/data/v2"] = h5py.ExternalLink(other, "/W/data/v2")
    return _security_case(d, "external link")


@harness.case("csd_external_link_root_group")
def csd_external_link_root_group(tmp):
    import h5py

    d = _csd_dir(tmp)
    other = _other_file(tmp)
    path = os.path.join(d, "Toy_TimestampedWords.csd")
    os.remove(path)
    with h5py.File(path, "w") as f:
        f["W"] = h5py.ExternalLink(other, "/W")
    return _security_case(d, "external link")


@harness.case("csd_soft_link_through_external_link")
def csd_soft_link_through_external_link(tmp):
    import h5py

    d = _csd_dir(tmp)
    other = _other_file(tmp)
    with h5py.File(os.path.join(d, "Toy_TimestampedWords.csd"), "a") as f:
        del f["W/data/v2"]
        f["hidden"] = h5py.ExternalLink(other, "/W/data")
        f["W/data/v2"] = h5py.SoftLink("/hidden/v2")
    return _security_case(d, "external link", "leaves the file")


@harness.case("csd_virtual_dataset_features")
def csd_virtual_dataset_features(tmp):
    import h5py

    d = _csd_dir(tmp, audio=True)
    other = _other_file(tmp)
    with h5py.File(os.path.join(d, "Toy_COVAREP.csd"), "a") as f:
        del f["A/data/v2/features"]
        layout = h5py.VirtualLayout(shape=(2, 3), dtype="f4")
        layout[:] = h5py.VirtualSource(other, "numbers", shape=(2, 3))
        f.create_virtual_dataset("A/data/v2/features", layout, fillvalue=0)
    return _security_case(d, "virtual dataset")


@harness.case("csd_soft_link_dangling")
def csd_soft_link_dangling(tmp):
    import h5py

    d = _csd_dir(tmp)
    with h5py.File(os.path.join(d, "Toy_TimestampedWords.csd"), "a") as f:
        f["W/data/v3"] = h5py.SoftLink("/W/data/nowhere")
    result, err = _attempt(lambda: _read_csd(d))
    return "silent_wrong" if err is None else _clear(err, "dangling")


@harness.case("csd_soft_link_cycle")
def csd_soft_link_cycle(tmp):
    import h5py

    d = _csd_dir(tmp)
    with h5py.File(os.path.join(d, "Toy_TimestampedWords.csd"), "a") as f:
        f["W/data/v3"] = h5py.SoftLink("/W/data/v4")
        f["W/data/v4"] = h5py.SoftLink("/W/data/v3")
    result, err = _attempt(lambda: _read_csd(d))
    return "silent_wrong" if err is None else _clear(err, "cycle", "loops")


@harness.case("csd_hard_link_cycle")
def csd_hard_link_cycle(tmp):
    import h5py

    d = _csd_dir(tmp)
    with h5py.File(os.path.join(d, "Toy_Labels.csd"), "a") as f:
        f["L/metadata/loop"] = f["L"]
    result, err = _attempt(lambda: _read_csd(d))
    return "silent_wrong" if err is None else _clear(err, "cycle")


@harness.case("csd_soft_link_inside_is_followed")
def csd_soft_link_inside_is_followed(tmp):
    import h5py

    d = _csd_dir(tmp)
    with h5py.File(os.path.join(d, "Toy_Labels.csd"), "a") as f:
        f["L/metadata/alias"] = h5py.SoftLink("/L/metadata/root name")
    result, err = _attempt(lambda: _read_csd(d))
    if err is not None:
        return _clear(err, "never")  # a legitimate file refused
    return "handled" if len(result[0]["train"]) == 2 else "silent_wrong"


@harness.case("csd_allow_external_lists_every_file", isolate=False)
def csd_allow_external_lists_every_file(tmp):
    """With the opt-in the link is followed; the sources must name the file."""
    import h5py

    d = _csd_dir(tmp)
    other = _other_file(tmp)
    with h5py.File(os.path.join(d, "Toy_TimestampedWords.csd"), "a") as f:
        del f["W/data/v2"]
        f["W/data/v2"] = h5py.ExternalLink(other, "/W/data/v2")
    result, err = _attempt(lambda: _read_csd(d, allow_external=True))
    if err is not None:
        # An old reader without the option: it follows links silently anyway.
        result, err = _attempt(lambda: _read_csd(d))
        if err is not None:
            return _clear(err, "external")
    listed = any(os.path.realpath(s) == os.path.realpath(other) for s in result[1]["sources"])
    return "handled" if listed else "security"


# --------------------------------------------------------------------------
# .csd: sizes, values, structure
# --------------------------------------------------------------------------


@harness.case("csd_huge_declared_dataset", isolate=True)
def csd_huge_declared_dataset(tmp):
    import h5py

    d = _csd_dir(tmp, audio=True)
    with h5py.File(os.path.join(d, "Toy_COVAREP.csd"), "a") as f:
        del f["A/data/v2/features"], f["A/data/v2/intervals"]
        # 40 GB of fill values declared in a file of a few KB.
        f.create_dataset("A/data/v2/features", (10**6, 10**4), dtype="f4", chunks=(1, 1000), compression="gzip")
        f.create_dataset("A/data/v2/intervals", (10**6, 2), dtype="f8", chunks=(1000, 2), compression="gzip")
    result, err = _attempt(lambda: _read_csd(d))
    return "silent_wrong" if err is None else _clear(err, "max_read_bytes", "declares")


@harness.case("csd_float64_beyond_float32")
def csd_float64_beyond_float32(tmp):
    d = _csd_dir(tmp, audio=True)
    x = np.ones((4, 3))
    x[1, 1] = 1e39
    _write_csd(os.path.join(d, "Toy_COVAREP.csd"), "A", {"v1": (x, [[0, 0.5], [0.5, 1], [1, 1.5], [1.5, 2]])})
    result, err = _attempt(lambda: _read_csd(d))
    return "silent_wrong" if err is None else _clear(err, "float32")


@harness.case("csd_complex_features")
def csd_complex_features(tmp):
    d = _csd_dir(tmp, audio=True)
    x = np.ones((4, 3)) * (1 + 2j)
    _write_csd(os.path.join(d, "Toy_COVAREP.csd"), "A", {"v1": (x, [[0, 0.5], [0.5, 1], [1, 1.5], [1.5, 2]])})
    result, err = _attempt(lambda: _read_csd(d))
    return "silent_wrong" if err is None else _clear(err, "complex", "real numbers")


@harness.case("csd_zero_width_features")
def csd_zero_width_features(tmp):
    d = _csd_dir(tmp, audio=True)
    _write_csd(os.path.join(d, "Toy_COVAREP.csd"), "A", {"v1": (np.zeros((4, 0), np.float32),
                                                              [[0, 0.5], [0.5, 1], [1, 1.5], [1.5, 2]])})
    result, err = _attempt(lambda: _read_csd(d))
    return "silent_wrong" if err is None else _clear(err, "no columns", "(4, 0)")


@harness.case("csd_folds_select_no_segment")
def csd_folds_select_no_segment(tmp):
    d = _csd_dir(tmp)
    with open(os.path.join(d, "standard_folds.json"), "w") as f:
        json.dump({"train": ["V1"], "valid": ["V2"], "test": []}, f)  # wrong case: nothing matches
    result, err = _attempt(lambda: _read_csd(d))
    return "silent_wrong" if err is None else _clear(err, "no labelled segment", "folds")


@harness.case("csd_word_tokens_not_utf8")
def csd_word_tokens_not_utf8(tmp):
    d = _csd_dir(tmp)
    tokens, times = _words(["good", "bad", "x", "y"])
    tokens[2, 0] = b"caf\xe9"
    _write_csd(os.path.join(d, "Toy_TimestampedWords.csd"), "W", {"v1": (tokens, times)})
    result, err = _attempt(lambda: _read_csd(d))
    if err is not None:
        return _clear(err, "utf-8", "utf8")
    return "handled" if any("utf8" in k for k in result[1]["repairs"]) else "silent_wrong"


@harness.case("csd_nan_interval")
def csd_nan_interval(tmp):
    d = _csd_dir(tmp, audio=True)
    _write_csd(os.path.join(d, "Toy_COVAREP.csd"), "A", {"v1": (np.ones((2, 3), np.float32), [[0, 1], [np.nan, 2]])})
    result, err = _attempt(lambda: _read_csd(d))
    return "silent_wrong" if err is None else _clear(err, "non-finite time", "intervals")


@harness.case("csd_rows_and_intervals_disagree")
def csd_rows_and_intervals_disagree(tmp):
    d = _csd_dir(tmp, audio=True)
    _write_csd(os.path.join(d, "Toy_COVAREP.csd"), "A", {"v1": (np.ones((3, 3), np.float32), [[0, 1], [1, 2]])})
    result, err = _attempt(lambda: _read_csd(d))
    return "silent_wrong" if err is None else _clear(err, "3 rows but intervals have 2")


@harness.case("csd_unsorted_feature_rows")
def csd_unsorted_feature_rows(tmp):
    d = _csd_dir(tmp, audio=True)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    _write_csd(os.path.join(d, "Toy_COVAREP.csd"), "A", {"v1": (x, [[1.5, 2], [0, 0.5], [1, 1.5], [0.5, 1]])})
    result, err = _attempt(lambda: _read_csd(d))
    if err is not None:
        return _clear(err, "never")
    first = result[0]["train"][0]["audio"]  # segment [0, 1]: rows 1 then 3, in time order
    return "handled" if np.array_equal(first, x[[1, 3]]) else "silent_wrong"


@harness.case("csd_truncated_file")
def csd_truncated_file(tmp):
    d = _csd_dir(tmp, audio=True)
    path = os.path.join(d, "Toy_COVAREP.csd")
    _write_csd(path, "A", {"v1": (np.ones((5000, 8), np.float32), np.zeros((5000, 2)))})
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    result, err = _attempt(lambda: _read_csd(d))
    return "silent_wrong" if err is None else _clear(err, "Toy_COVAREP.csd")


@harness.case("csd_label_out_of_range")
def csd_label_out_of_range(tmp):
    d = _csd_dir(tmp)
    _write_csd(os.path.join(d, "Toy_Labels.csd"), "L", {"v1": (np.array([[4.0]], np.float32), [[0.0, 1.0]])})
    result, err = _attempt(lambda: _read_csd(d))
    return "silent_wrong" if err is None else _clear(err, "outside")


@harness.case("csd_summary_of_words_only_dataset")
def csd_summary_of_words_only_dataset(tmp):
    """Raw text for every segment, no feature file: the summary must not read
    as 'text: length 0..0, missing in 3' with no word about the raw text."""
    d = _csd_dir(tmp)
    convert = _convert_module()
    out = os.path.join(tmp, "out")
    schema, err = _attempt(lambda: convert.convert("csd", d, out, dataset="mosi", progress=False))
    if err is not None:
        return _clear(err, "never")
    text = convert.summary(schema, out)
    text_line = [line for line in text.splitlines() if line.strip().startswith("text:")]
    says = harness.names_any(text, "raw text for 3 of 3") and text_line and "missing in 3" not in text_line[0]
    return "handled" if says else "poor_message"


# --------------------------------------------------------------------------
# label.csv
# --------------------------------------------------------------------------

HEADER = "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"
ROWS = [("vA", "1", "i love it", 0.8, "train"), ("vA", "2", "not really", -0.4, "train"),
        ("vB", "1", "so so", 0.0, "valid"), ("vB", "2", "great", 1.0, "test")]


def _lc_dir(tmp, rows=ROWS, modalities=("text", "audio", "vision"), name="in"):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    lines = [HEADER] + [f'{v},{c},"{t}",{y},,,,x,{m}\n' for v, c, t, y, m in rows]
    with open(os.path.join(d, "label.csv"), "w") as f:
        f.write("".join(lines))
    rng = np.random.default_rng(0)
    widths = {"text": 4, "audio": 2, "vision": 3}
    for v, c, *_ in rows:
        os.makedirs(os.path.join(d, "features", v), exist_ok=True)
        arrays = {m: rng.standard_normal((3, widths[m])).astype(np.float32) for m in modalities}
        if arrays:
            np.savez(os.path.join(d, "features", v, f"{c}.npz"), **arrays)
    return d


def _read_lc(d, **kw):
    from keras_msa.data.labelcsv import read_labelcsv

    return read_labelcsv(d, **kw)


def _outside_npz(tmp, rel="secret", name="x"):
    d = os.path.join(tmp, rel)
    os.makedirs(d, exist_ok=True)
    np.savez(os.path.join(d, f"{name}.npz"), text=np.full((2, 4), 4242.0, np.float32))
    return d


def _lc_security(tmp, d, *needles):
    result, err = _attempt(lambda: _read_lc(d, dataset="sims"))
    if err is None:
        return "security" if _leaks(result) else "silent_wrong"
    return _clear(err, *needles)


def _lc_rewrite(d, fn):
    p = os.path.join(d, "label.csv")
    with open(p) as f:
        text = f.read()
    with open(p, "w") as f:
        f.write(fn(text))


@harness.case("labelcsv_dotdot_video_id")
def labelcsv_dotdot_video_id(tmp):
    d = _lc_dir(tmp)
    _outside_npz(tmp)
    _lc_rewrite(d, lambda t: t.replace("vB,2,", "../../secret,x,"))
    return _lc_security(tmp, d, "video_id")


@harness.case("labelcsv_dotdot_clip_id")
def labelcsv_dotdot_clip_id(tmp):
    d = _lc_dir(tmp)
    _outside_npz(tmp)
    _lc_rewrite(d, lambda t: t.replace("vB,2,", "vB,../../../secret/x,"))
    return _lc_security(tmp, d, "clip_id")


@harness.case("labelcsv_absolute_video_id")
def labelcsv_absolute_video_id(tmp):
    d = _lc_dir(tmp)
    secret = _outside_npz(tmp)
    _lc_rewrite(d, lambda t: t.replace("vB,2,", f"{secret},x,"))
    return _lc_security(tmp, d, "video_id")


@harness.case("labelcsv_symlinked_video_folder")
def labelcsv_symlinked_video_folder(tmp):
    d = _lc_dir(tmp)
    secret = _outside_npz(tmp, name="2")
    shutil.rmtree(os.path.join(d, "features", "vB"))
    os.symlink(secret, os.path.join(d, "features", "vB"))
    return _lc_security(tmp, d, "outside the input")


@harness.case("labelcsv_symlinked_feature_file")
def labelcsv_symlinked_feature_file(tmp):
    d = _lc_dir(tmp)
    secret = _outside_npz(tmp)
    target = os.path.join(d, "features", "vB", "2.npz")
    os.remove(target)
    os.symlink(os.path.join(secret, "x.npz"), target)
    return _lc_security(tmp, d, "outside the input")


@harness.case("labelcsv_unquoted_comma")
def labelcsv_unquoted_comma(tmp):
    d = _lc_dir(tmp)
    _lc_rewrite(d, lambda t: t.replace('"not really"', "not, really"))
    result, err = _attempt(lambda: _read_lc(d))
    return "silent_wrong" if err is None else _clear(err, "fields")


@harness.case("labelcsv_unquoted_comma_shifts_a_number")
def labelcsv_unquoted_comma_shifts_a_number(tmp):
    """`rated 5, 0.2` unquoted: without a field-count check the label column
    would read " 0.2" (or the error would blame the label)."""
    d = _lc_dir(tmp)
    _lc_rewrite(d, lambda t: t.replace('"not really",-0.4,,,,x,train', "rated 5, 0.2,-0.4,,,,x,train"))
    result, err = _attempt(lambda: _read_lc(d))
    return "silent_wrong" if err is None else _clear(err, "fields")


@harness.case("labelcsv_missing_field")
def labelcsv_missing_field(tmp):
    d = _lc_dir(tmp)
    _lc_rewrite(d, lambda t: t.replace(",,,,x,valid", ",,,x,valid"))
    result, err = _attempt(lambda: _read_lc(d))
    return "silent_wrong" if err is None else _clear(err, "fields")


@harness.case("labelcsv_header_only")
def labelcsv_header_only(tmp):
    d = _lc_dir(tmp)
    with open(os.path.join(d, "label.csv"), "w") as f:
        f.write(HEADER)
    result, err = _attempt(lambda: _read_lc(d))
    return "silent_wrong" if err is None else _clear(err, "no rows")


@harness.case("labelcsv_empty_file")
def labelcsv_empty_file(tmp):
    d = _lc_dir(tmp)
    open(os.path.join(d, "label.csv"), "w").close()
    result, err = _attempt(lambda: _read_lc(d))
    return "silent_wrong" if err is None else _clear(err, "header", "empty")


@harness.case("labelcsv_no_feature_files")
def labelcsv_no_feature_files(tmp):
    d = _lc_dir(tmp, modalities=())
    result, err = _attempt(lambda: _read_lc(d, dataset="sims"))
    return "silent_wrong" if err is None else _clear(err, "no feature file")


@harness.case("labelcsv_modality_without_files_custom")
def labelcsv_modality_without_files_custom(tmp):
    d = _lc_dir(tmp, modalities=("text", "vision"))
    result, err = _attempt(lambda: _read_lc(d, dataset="custom"))
    if err is not None:
        return _clear(err, "modality_dims")
    ok = all("audio" in ex for v in result[0].values() for ex in v)
    return "handled" if ok else "poor_message"  # models fail later: "The batch has no 'audio' features"


@harness.case("labelcsv_modality_without_files_sims")
def labelcsv_modality_without_files_sims(tmp):
    d = _lc_dir(tmp, modalities=("text", "audio"))
    result, err = _attempt(lambda: _read_lc(d, dataset="sims"))
    if err is not None:
        return _clear(err, "never")
    ok = all("vision" in ex and ex["vision"].shape[0] == 0 for v in result[0].values() for ex in v)
    return "handled" if ok else "poor_message"


@harness.case("labelcsv_nan_text")
def labelcsv_nan_text(tmp):
    d = _lc_dir(tmp)
    _lc_rewrite(d, lambda t: t.replace('"so so"', "nan").replace('"great"', "None"))
    result, err = _attempt(lambda: _read_lc(d))
    if err is not None:
        return _clear(err, "text")
    texts = [ex["raw_text"] for v in result[0].values() for ex in v]
    return "silent_wrong" if "nan" in texts or "None" in texts else "handled"


@harness.case("labelcsv_forged_npy_header", isolate=True)
def labelcsv_forged_npy_header(tmp):
    d = _lc_dir(tmp, modalities=("audio", "vision"))
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 4), np.float32))
    header["shape"] = (10**6, 10**5)  # 400 GB declared
    for v, c, *_ in ROWS:
        os.makedirs(os.path.join(d, "features", "text", v), exist_ok=True)
        with open(os.path.join(d, "features", "text", v, f"{c}.npy"), "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.write(b"\0" * 64)
    result, err = _attempt(lambda: _read_lc(d))
    return "silent_wrong" if err is None else _clear(err, "declares")


@harness.case("labelcsv_npz_member_declares_gigabytes", isolate=True)
def labelcsv_npz_member_declares_gigabytes(tmp):
    d = _lc_dir(tmp)
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 4), np.float32))
    header["shape"] = (10**6, 10**5)
    path = os.path.join(d, "features", "vA", "1.npz")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("text.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
    result, err = _attempt(lambda: _read_lc(d))
    return "silent_wrong" if err is None else _clear(err, "declares", "cap")


@harness.case("labelcsv_float64_beyond_float32")
def labelcsv_float64_beyond_float32(tmp):
    d = _lc_dir(tmp)
    np.savez(os.path.join(d, "features", "vA", "1.npz"), text=np.full((2, 4), 1e39), audio=np.ones((2, 2)),
             vision=np.ones((2, 3)))
    result, err = _attempt(lambda: _read_lc(d))
    return "silent_wrong" if err is None else _clear(err, "float32")


@harness.case("labelcsv_complex_array")
def labelcsv_complex_array(tmp):
    d = _lc_dir(tmp)
    np.savez(os.path.join(d, "features", "vA", "1.npz"), text=np.ones((2, 4)) * 1j, audio=np.ones((2, 2)),
             vision=np.ones((2, 3)))
    result, err = _attempt(lambda: _read_lc(d))
    return "silent_wrong" if err is None else _clear(err, "complex", "expected numbers", "real")


@harness.case("labelcsv_nan_label_range_off")
def labelcsv_nan_label_range_off(tmp):
    d = _lc_dir(tmp)
    _lc_rewrite(d, lambda t: t.replace("0.8,", "nan,", 1))
    result, err = _attempt(lambda: _read_lc(d, label_range=None))
    return "silent_wrong" if err is None else _clear(err, "finite", "nan")


@harness.case("labelcsv_line_numbers_after_multiline_text")
def labelcsv_line_numbers_after_multiline_text(tmp):
    d = _lc_dir(tmp)
    _lc_rewrite(d, lambda t: t.replace('"i love it"', '"i love\nit"').replace("vB,2,", "vB,1,"))
    result, err = _attempt(lambda: _read_lc(d))
    if err is None:
        return "silent_wrong"
    # The duplicate is on physical line 6 (the quoted text spans lines 2-3).
    return "handled" if "line 6" in str(err) else "poor_message"


@harness.case("labelcsv_pickled_npy")
def labelcsv_pickled_npy(tmp):
    d = _lc_dir(tmp, modalities=("text", "vision"))
    os.makedirs(os.path.join(d, "features", "audio", "vA"), exist_ok=True)
    np.save(os.path.join(d, "features", "audio", "vA", "1.npy"), np.array([{"a": 1}], dtype=object),
            allow_pickle=True)
    result, err = _attempt(lambda: _read_lc(d, dataset="sims"))
    return "silent_wrong" if err is None else _clear(err, "pickle")


@harness.case("labelcsv_duplicate_clip")
def labelcsv_duplicate_clip(tmp):
    d = _lc_dir(tmp)
    _lc_rewrite(d, lambda t: t.replace("vB,2,", "vB,1,"))
    result, err = _attempt(lambda: _read_lc(d))
    return "silent_wrong" if err is None else _clear(err, "duplicate")


@harness.case("labelcsv_array_without_steps")
def labelcsv_array_without_steps(tmp):
    d = _lc_dir(tmp)
    np.savez(os.path.join(d, "features", "vA", "1.npz"), text=np.zeros((0, 4)), audio=np.ones((2, 2)),
             vision=np.ones((2, 3)))
    result, err = _attempt(lambda: _read_lc(d))
    if err is not None:
        return _clear(err, "1.npz")
    return "handled" if any("empty" in k or "missing" in k for k in result[1]["repairs"]) else "silent_wrong"


@harness.case("labelcsv_width_differs_between_clips")
def labelcsv_width_differs_between_clips(tmp):
    d = _lc_dir(tmp)
    np.savez(os.path.join(d, "features", "vA", "2.npz"), text=np.ones((2, 9)), audio=np.ones((2, 2)),
             vision=np.ones((2, 3)))
    result, err = _attempt(lambda: _read_lc(d))
    return "silent_wrong" if err is None else _clear(err, "width")


# --------------------------------------------------------------------------
# AVEC 2019
# --------------------------------------------------------------------------


def _avec_dir(tmp, name="in"):
    from keras_msa.data.avec import write_synthetic_avec

    d = os.path.join(tmp, name)
    write_synthetic_avec(d, n_train=4, n_dev=2, n_test=2, seed=1, frames=(6, 10))
    return d


def _read_avec(d, **kw):
    from keras_msa.data.avec import read_avec

    return read_avec(d, **kw)


def _avec_set_pid(d, pid, line=1):
    p = os.path.join(d, "labels", "train_split.csv")
    with open(p) as f:
        lines = f.read().splitlines()
    lines[line] = ",".join([pid] + lines[line].split(",")[1:])
    with open(p, "w") as f:
        f.write("\n".join(lines) + "\n")


def _avec_secret_session(tmp, folder):
    """An AVEC session folder outside the input whose audio is the secret."""
    feat = os.path.join(folder, "features")
    os.makedirs(feat, exist_ok=True)
    base = os.path.basename(folder)[: -len("_P")]
    with open(os.path.join(feat, f"{base}_OpenSMILE2.3.0_egemaps.csv"), "w") as f:
        f.write("name;frameTime;" + ";".join(f"l{j}" for j in range(6)) + "\n")
        f.write("'x';0.0;" + ";".join(["4242.0"] * 6) + "\n")
    return folder


@harness.case("avec_dotdot_participant_id")
def avec_dotdot_participant_id(tmp):
    d = _avec_dir(tmp)
    _avec_secret_session(tmp, os.path.join(tmp, "secret_P"))
    _avec_set_pid(d, "../secret")
    result, err = _attempt(lambda: _read_avec(d))
    if err is None:
        return "security" if _leaks(result) else "silent_wrong"
    return _clear(err, "participant")


@harness.case("avec_absolute_participant_id")
def avec_absolute_participant_id(tmp):
    d = _avec_dir(tmp)
    folder = _avec_secret_session(tmp, os.path.join(tmp, "elsewhere", "abs_P"))
    _avec_set_pid(d, folder[: -len("_P")])
    result, err = _attempt(lambda: _read_avec(d))
    if err is None:
        return "security" if _leaks(result) else "silent_wrong"
    return _clear(err, "participant")


@harness.case("avec_symlinked_session_folder")
def avec_symlinked_session_folder(tmp):
    d = _avec_dir(tmp)
    outside = os.path.join(tmp, "outside")
    os.makedirs(outside)
    shutil.move(os.path.join(d, "300_P"), os.path.join(outside, "300_P"))
    _avec_secret_session(tmp, os.path.join(outside, "300_P"))  # its audio becomes the secret
    os.symlink(os.path.join(outside, "300_P"), os.path.join(d, "300_P"))
    result, err = _attempt(lambda: _read_avec(d))
    if err is None:
        return "security" if _leaks(result) else "silent_wrong"
    return _clear(err, "outside the input")


@harness.case("avec_empty_participant_id")
def avec_empty_participant_id(tmp):
    d = _avec_dir(tmp)
    _avec_set_pid(d, "")
    result, err = _attempt(lambda: _read_avec(d))
    return "silent_wrong" if err is None else _clear(err, "participant")


@harness.case("avec_vision_none_drops_modality")
def avec_vision_none_drops_modality(tmp):
    d = _avec_dir(tmp)
    result, err = _attempt(lambda: _read_avec(d, vision=None))
    if err is not None:
        return _clear(err, "modality_dims")
    ok = all("vision" in ex for v in result[0].values() for ex in v)
    return "handled" if ok else "poor_message"


@harness.case("avec_default_text_is_carried_as_missing")
def avec_default_text_is_carried_as_missing(tmp):
    d = _avec_dir(tmp)
    result, err = _attempt(lambda: _read_avec(d))
    if err is not None:
        return _clear(err, "never")
    ok = all("text" in ex and ex["text"].shape[0] == 0 for v in result[0].values() for ex in v)
    return "handled" if ok else "poor_message"  # a model reading text: "The batch has no 'text' features"


@harness.case("avec_csv_value_beyond_float32")
def avec_csv_value_beyond_float32(tmp):
    d = _avec_dir(tmp)
    f = os.path.join(d, "300_P", "features", "300_OpenSMILE2.3.0_egemaps.csv")
    with open(f) as fh:
        lines = fh.read().splitlines()
    cells = lines[1].split(";")
    cells[3] = "1e39"
    lines[1] = ";".join(cells)
    with open(f, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    result, err = _attempt(lambda: _read_avec(d))
    return "silent_wrong" if err is None else _clear(err, "float32")


@harness.case("avec_forged_npy_header", isolate=True)
def avec_forged_npy_header(tmp):
    d = _avec_dir(tmp)
    os.remove(os.path.join(d, "300_P", "features", "300_OpenSMILE2.3.0_egemaps.csv"))
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 6), np.float32))
    header["shape"] = (10**7, 10**4)
    with open(os.path.join(d, "300_P", "features", "300_OpenSMILE2.3.0_egemaps.npy"), "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 48)
    result, err = _attempt(lambda: _read_avec(d))
    return "silent_wrong" if err is None else _clear(err, "declares")


@harness.case("avec_negative_max_len")
def avec_negative_max_len(tmp):
    d = _avec_dir(tmp)
    result, err = _attempt(lambda: _read_avec(d, max_len=-1))
    return "silent_wrong" if err is None else _clear(err, "max_len")


@harness.case("avec_zero_pool")
def avec_zero_pool(tmp):
    d = _avec_dir(tmp)
    result, err = _attempt(lambda: _read_avec(d, pool=0))
    return "silent_wrong" if err is None else _clear(err, "pool")


@harness.case("avec_transcript_not_utf8")
def avec_transcript_not_utf8(tmp):
    d = _avec_dir(tmp)
    with open(os.path.join(d, "300_P", "300_Transcript.csv"), "wb") as f:
        f.write(b"Start_Time,End_Time,Text\n0,1,caf\xe9 \xff\n")
    result, err = _attempt(lambda: _read_avec(d, transcripts=True))
    return "silent_wrong" if err is None else _clear(err, "Transcript.csv")


@harness.case("avec_no_participants")
def avec_no_participants(tmp):
    d = _avec_dir(tmp)
    for split in ("train", "dev", "test"):
        with open(os.path.join(d, "labels", f"{split}_split.csv"), "w") as f:
            f.write("Participant_ID,PHQ_Score\n")
    result, err = _attempt(lambda: _read_avec(d))
    return "silent_wrong" if err is None else _clear(err, "no participant")


@harness.case("avec_feature_file_without_frames")
def avec_feature_file_without_frames(tmp):
    d = _avec_dir(tmp)
    with open(os.path.join(d, "301_P", "features", "301_OpenSMILE2.3.0_egemaps.csv"), "w") as f:
        f.write("name;frameTime;" + ";".join(f"l{j}" for j in range(6)) + "\n")
    result, err = _attempt(lambda: _read_avec(d))
    if err is not None:
        return _clear(err, "301_OpenSMILE")
    return "handled" if any("empty" in k or "missing" in k for k in result[1]["repairs"]) else "silent_wrong"


@harness.case("avec_phq_out_of_range")
def avec_phq_out_of_range(tmp):
    d = _avec_dir(tmp)
    p = os.path.join(d, "labels", "train_split.csv")
    with open(p) as f:
        lines = f.read().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:-1] + ["30"])
    with open(p, "w") as f:
        f.write("\n".join(lines) + "\n")
    result, err = _attempt(lambda: _read_avec(d))
    return "silent_wrong" if err is None else _clear(err, "outside [0, 24]")


if __name__ == "__main__":
    harness.main(__name__, _HERE)
