"""Fault catalogue, area `pickles`: hostile or careless MMSA and MulT pickles
against `keras_msa.data.safe_pickle`, `read_mmsa` and `read_mult`.

Classes covered: forged numpy objects through the allow-listed globals
(object fields declared without their flags, object dtypes fed raw bytes,
subarrays of objects, object scalars), allocations far beyond the file's size
(`bytearray(n)`, `bytes(n)`, `numpy.ndarray(shape)`, huge declared shapes,
huge memo indices, opcode floods), strings numpy cannot read back, code that
would run, the dataset (label range, metric scale) taken from directory names
or unknown names, contradictions between a name and the content, duplicate and
malformed ids, attention masks that are not 0/1 runs, invalid IEMOCAP pairs,
missing transcripts turned into "nan"/"None", float64 values that overflow
float32, empty splits, directories passed as pickles, widths that change
between splits, and the repairs the readers must keep counting.

    cd /tmp && python /path/to/benchmarks/fault_catalogue/pickles.py
    cd /tmp && PYTHONPATH=/path/to/old/checkout python /path/to/benchmarks/fault_catalogue/pickles.py

Run it from outside any checkout: isolated cases start with `python -c`,
whose sys.path begins with the current directory. In isolated cases (a 4 GiB
address-space cap) a crash or a MemoryError counts as "security".
"""

import os
import pickle
import struct
import sys

import numpy as np

# The harness runs isolated cases with exec() and no __file__; it sets
# sys.argv[0] to this file then.
_HERE = os.path.abspath(globals().get("__file__") or sys.argv[0])
sys.path.insert(0, os.path.dirname(_HERE))
import harness  # noqa: E402

# --------------------------------------------------------------------------
# Helpers (keras_msa is imported inside them, so PYTHONPATH picks the checkout)
# --------------------------------------------------------------------------


class _R:
    """Pickles as `f(*args)` (+ BUILD `state`): forges any reduce tuple."""

    def __init__(self, f, args, state=None):
        self.f, self.args, self.state = f, args, state

    def __reduce__(self):
        return (self.f, self.args) if self.state is None else (self.f, self.args, self.state)


def _np_core(name, submodule="multiarray"):
    import importlib

    for prefix in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{prefix}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(name)


def _dtype(spec, state):
    return _R(np.dtype, (spec, False, True), state)


def _array(shape, dtype, raw):
    return _R(_np_core("_reconstruct"), (np.ndarray, (0,), b"b"), (1, shape, dtype, False, raw))


_POINTER = struct.pack("<Q", 0x4141414141)


def _attempt(fn):
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - the case judges any failure
        return None, e


def _judge_error(err, *needles):
    """`handled` when `err` is the readers' own error (DataFormatError or a
    ValueError about an option) and names one of `needles`; a MemoryError is
    `security` (only the catalogue's cap stopped the allocation); anything
    else `poor_message`."""
    from keras_msa.data.errors import DataFormatError

    if isinstance(err, MemoryError) or "MemoryError" in str(err) or "Unable to allocate" in str(err):
        return "security"
    if isinstance(err, (DataFormatError, ValueError)) and harness.names_any(str(err), *needles):
        return "handled"
    return "poor_message"


def _touch(obj, seen=None):
    """Reads every value (what a reader does next); a forged pointer crashes here."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            for x in obj.reshape(-1).tolist():
                repr(x)
        else:
            obj.tobytes()
            repr(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _touch(v, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _touch(v, seen)
    else:
        repr(obj)


def _write(tmp, obj, name="aligned_50.pkl", protocol=4, sub=None):
    folder = os.path.join(tmp, sub) if sub else tmp
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def _write_bytes(tmp, blob, name="tiny.pkl"):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(blob)
    return path


def _mmsa(**kw):
    from keras_msa.data.fixtures import mmsa_arrays

    return mmsa_arrays(**kw)


def _mult(**kw):
    from keras_msa.data.fixtures import mult_arrays

    return mult_arrays(**kw)


def _read_mmsa(path, **kw):
    from keras_msa.data.mmsa import read_mmsa

    return read_mmsa(path, **kw)


def _read_mult(path, **kw):
    from keras_msa.data.mult import read_mult

    return read_mult(path, **kw)


def _safe_load_touch(path):
    from keras_msa.data.safe_pickle import safe_load

    obj = safe_load(path)
    _touch(obj)
    return obj


def _forged_load(tmp, obj):
    """A forged object inside a real MMSA layout, loaded and read."""
    data = _mmsa()
    data["train"]["id"] = obj
    path = _write(tmp, data, protocol=2)
    result, err = _attempt(lambda: _safe_load_touch(path))
    if err is None:
        return "security"  # a forged object came out of the loader
    return _judge_error(err, "aligned_50.pkl") if harness.names_any(str(err), "object", "refus") else "poor_message"


def _alloc_case(tmp, obj_or_blob, *needles):
    """A tiny file asking for a big allocation: loading it must be refused."""
    path = _write_bytes(tmp, obj_or_blob) if isinstance(obj_or_blob, bytes) else _write(tmp, obj_or_blob, "tiny.pkl")
    from keras_msa.data.safe_pickle import safe_load

    result, err = _attempt(lambda: safe_load(path))
    if err is None:
        return "security"  # allocated what the file asked for
    return _judge_error(err, *needles)


# --------------------------------------------------------------------------
# Forged numpy objects (isolated: the old loader segfaults on them)
# --------------------------------------------------------------------------


@harness.case("forged_struct_object_field_flags0", isolate=True)
def _(tmp):
    dt = _dtype("V8", (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0))
    return _forged_load(tmp, _array((6,), dt, _POINTER * 6))


@harness.case("forged_object_dtype_flags0_raw_bytes", isolate=True)
def _(tmp):
    return _forged_load(tmp, _array((6,), _dtype("O8", (3, "|", None, None, None, -1, -1, 0)), _POINTER * 6))


@harness.case("forged_subarray_of_objects", isolate=True)
def _(tmp):
    dt = _dtype("V16", (3, "|", (np.dtype("O"), (2,)), None, None, 16, 8, 0))
    return _forged_load(tmp, _array((6,), dt, _POINTER * 12))


@harness.case("forged_object_scalar", isolate=True)
def _(tmp):
    return _forged_load(tmp, [_R(_np_core("scalar"), (_dtype("O8", (3, "|", None, None, None, -1, -1, 0)),
                                                      _POINTER))] * 6)


@harness.case("forged_object_field_through_read_mmsa", isolate=True)
def _(tmp):
    data = _mmsa()
    dt = _dtype("V8", (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0))
    data["train"]["raw_text"] = _array((6,), dt, _POINTER * 6)
    path = _write(tmp, data, protocol=2)
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi"))
    if err is None:
        return "security"
    return _judge_error(err, "refus", "object")


@harness.case("string_array_with_invalid_code_point", isolate=True)
def _(tmp):
    data = _mmsa()
    raw = (0x110000).to_bytes(4, "little") * 6
    data["train"]["raw_text"] = _array((6,), np.dtype("<U1"), raw)
    path = _write(tmp, data, protocol=2)
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi"))
    if err is None:
        return "silent_wrong"
    return _judge_error(err, "code point", "raw_text")


@harness.case("code_running_global_refused")
def _(tmp):
    data = _mmsa()
    target = os.path.join(tmp, "pwned")
    data["train"]["evil"] = _R(os.system, (f"touch {target}",))
    path = _write(tmp, data)
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi"))
    if os.path.exists(target):
        return "security"
    return _judge_error(err, "refusing to load global") if err else "security"


@harness.case("protocol5_object_buffer")
def _(tmp):
    fb = _R(_np_core("_frombuffer", "numeric"),
            (bytearray(_POINTER * 2), np.dtype("O"), (2,), "C"))
    path = _write(tmp, {"train": {"id": fb}}, protocol=5)
    result, err = _attempt(lambda: _safe_load_touch(path))
    if err is None:
        return "security"
    return _judge_error(err, "tiny.pkl", "aligned_50.pkl", "object")


# --------------------------------------------------------------------------
# Allocations far beyond the file's size (isolated: 4 GiB cap)
# --------------------------------------------------------------------------


@harness.case("bytearray_2_30_from_39_bytes", isolate=True)
def _(tmp):
    return _alloc_case(tmp, _R(bytearray, (2**30,)), "cap")


@harness.case("bytes_2_30_from_a_few_bytes", isolate=True)
def _(tmp):
    return _alloc_case(tmp, _R(bytes, (2**30,)), "cap")


@harness.case("ndarray_called_with_huge_shape", isolate=True)
def _(tmp):
    return _alloc_case(tmp, _R(np.ndarray, ((2**28,), "f8")), "ndarray", "cap")


@harness.case("object_array_huge_declared_shape", isolate=True)
def _(tmp):
    return _alloc_case(tmp, _array((2**31,), np.dtype("O"), []), "cap")


@harness.case("float_array_huge_declared_shape", isolate=True)
def _(tmp):
    return _alloc_case(tmp, _array((2**40,), np.dtype("f8"), b"\x00" * 8), "cap", "needs")


@harness.case("memo_index_680_million", isolate=True)
def _(tmp):
    return _alloc_case(tmp, b"\x80\x02N" + b"r" + (680825748).to_bytes(4, "little") + b".", "memo index")


@harness.case("empty_set_opcode_flood", isolate=True)
def _(tmp):
    # 4 MB of EMPTY_SET opcodes: about 900 MB of sets (216 bytes per opcode byte).
    return _alloc_case(tmp, b"\x80\x04" + b"\x8f" * (4 << 20) + b".", "cap")


@harness.case("list_of_bytes_amplification", isolate=True)
def _(tmp):
    # list(bytes(2**26)): 64 MiB of bytes, then 512 MiB of list slots.
    return _alloc_case(tmp, _R(list, (_R(bytes, (2**26,)),)), "cap")


@harness.case("allocation_cap_raisable_per_reader", isolate=True)
def _(tmp):
    # A legitimate file over a tight cap must say how to raise it, and raising it must work.
    path = _write(tmp, _mmsa())
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi", max_allocation_factor=0.5,
                                              min_allocation_bytes=0))
    if err is None:
        return "security"  # no cap at all
    if not harness.names_any(str(err), "max_allocation_factor"):
        return "poor_message"
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi", max_allocation_factor=16))
    return "handled" if err is None else "poor_message"


# --------------------------------------------------------------------------
# Which dataset (label range, metric scale)
# --------------------------------------------------------------------------


@harness.case("sims_file_under_mosei_directory")
def _(tmp):
    path = _write(tmp, _mmsa(sims=True, dims=(16, 33, 709)), sub="mosei_exp")
    result, err = _attempt(lambda: _read_mmsa(path))
    if err is not None:
        return _judge_error(err, "sims")
    return "handled" if result[1]["dataset"] == "sims" else "silent_wrong"


@harness.case("mosi_file_under_sims_directory")
def _(tmp):
    path = _write(tmp, _mmsa(), sub="sims_runs")
    result, err = _attempt(lambda: _read_mmsa(path))
    if err is not None:
        return "poor_message"  # a MOSI file refused for SIMS's label range
    return "handled" if result[1]["dataset"] == "mosi" else "silent_wrong"


@harness.case("explicit_dataset_contradicts_widths")
def _(tmp):
    path = _write(tmp, _mmsa(sims=True, dims=(16, 33, 709)))
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosei"))
    if err is None:
        return "silent_wrong"
    return _judge_error(err, "contradict")


@harness.case("file_name_contradicts_widths")
def _(tmp):
    path = _write(tmp, _mmsa(), name="sims_aligned_39.pkl")
    result, err = _attempt(lambda: _read_mmsa(path))
    if err is None:
        return "handled" if result[1]["dataset"] == "mosi" else "silent_wrong"
    return "handled" if harness.names_any(str(err), "file name") and "MOSI" in str(err) else "poor_message"


@harness.case("unknown_dataset_name_mmsa")
def _(tmp):
    path = _write(tmp, _mmsa())
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi2"))
    if err is None:
        return "silent_wrong"  # no label range checked
    return _judge_error(err, "unknown dataset")


@harness.case("unknown_dataset_name_mult")
def _(tmp):
    path = _write(tmp, _mult(), name="mosi_data.pkl")
    result, err = _attempt(lambda: _read_mult(path, dataset="meld"))
    if err is None:
        return "silent_wrong"
    return _judge_error(err, "unknown dataset")


@harness.case("mult_mosei_under_iemocap_directory")
def _(tmp):
    path = _write(tmp, _mult(dims=(12, 74, 35)), name="data.pkl", sub="iemocap_runs")
    result, err = _attempt(lambda: _read_mult(path))
    if err is not None:
        return "poor_message"  # refused as IEMOCAP because of the directory
    return "handled" if result[1]["dataset"] == "mosei" else "silent_wrong"


@harness.case("sims_unimodal_labels_with_mosi_widths")
def _(tmp):
    path = _write(tmp, _mmsa(sims=True))
    result, err = _attempt(lambda: _read_mmsa(path))
    if err is None:
        return "silent_wrong" if result[1]["dataset"] != "sims" else "handled"
    return _judge_error(err, "unimodal", "contradict")


# --------------------------------------------------------------------------
# Ids, masks, labels, transcripts
# --------------------------------------------------------------------------


def _mmsa_error_case(tmp, mutate, *needles, **kw):
    data = _mmsa(**kw)
    mutate(data)
    path = _write(tmp, data)
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi" if not kw.get("sims") else "sims"))
    if err is None:
        return "silent_wrong"
    return _judge_error(err, *needles)


@harness.case("duplicate_ids_in_split")
def _(tmp):
    def m(d):
        d["train"]["id"][3] = d["train"]["id"][1]
    return _mmsa_error_case(tmp, m, "duplicate")


@harness.case("duplicate_ids_across_splits")
def _(tmp):
    def m(d):
        d["test"]["id"][0] = d["train"]["id"][0]
    return _mmsa_error_case(tmp, m, "another split", "duplicate")


@harness.case("id_none")
def _(tmp):
    def m(d):
        d["valid"]["id"][1] = None
    return _mmsa_error_case(tmp, m, "valid/id")


@harness.case("id_float")
def _(tmp):
    def m(d):
        d["valid"]["id"][1] = 2.5
    return _mmsa_error_case(tmp, m, "valid/id")


@harness.case("attention_mask_of_2")
def _(tmp):
    def m(d):
        d["train"]["text_bert"][2, 1, 0] = 2
    return _mmsa_error_case(tmp, m, "attention mask")


@harness.case("attention_mask_with_a_hole")
def _(tmp):
    def m(d):
        d["train"]["text_bert"][1, 1, 1] = 0
    return _mmsa_error_case(tmp, m, "attention mask")


@harness.case("negative_token_ids")
def _(tmp):
    def m(d):
        d["test"]["text_bert"][0, 0, 1] = -7
    return _mmsa_error_case(tmp, m, "token id")


@harness.case("raw_text_nan")
def _(tmp):
    data = _mmsa()
    data["train"]["raw_text"][1] = float("nan")
    path = _write(tmp, data)
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi"))
    if err is not None:
        return "poor_message"
    ex = result[0]["train"][1]
    return "silent_wrong" if ex.get("raw_text") in ("nan", "NaN") else "handled"


@harness.case("raw_text_none_counted")
def _(tmp):
    data = _mmsa()
    data["train"]["raw_text"][2] = None
    path = _write(tmp, data)
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi"))
    if err is not None:
        return "poor_message"
    ex = result[0]["train"][2]
    if ex.get("raw_text") == "None":
        return "silent_wrong"
    return "handled" if result[1]["repairs"].get("raw_text_missing") == 1 else "silent_wrong"


@harness.case("iemocap_pair_1_1")
def _(tmp):
    data = _mult(kind="iemocap", dims=(6, 74, 35))
    data["valid"]["labels"][2, 1] = [1.0, 1.0]
    path = _write(tmp, data, name="iemocap_data.pkl")
    result, err = _attempt(lambda: _read_mult(path))
    if err is None:
        return "silent_wrong"
    return "handled" if harness.names_any(str(err), "example 2") and "sad" in str(err) else "poor_message"


@harness.case("iemocap_pair_0_0")
def _(tmp):
    data = _mult(kind="iemocap", dims=(6, 74, 35))
    data["train"]["labels"][0, 3] = [0.0, 0.0]
    path = _write(tmp, data, name="iemocap_data.pkl")
    result, err = _attempt(lambda: _read_mult(path))
    if err is None:
        return "silent_wrong"
    return "handled" if harness.names_any(str(err), "example 0") and "neutral" in str(err) else "poor_message"


@harness.case("nan_label_named")
def _(tmp):
    def m(d):
        d["valid"]["regression_labels"][1] = np.nan
    return _mmsa_error_case(tmp, m, "non-finite label at example 1")


@harness.case("label_array_wrong_length")
def _(tmp):
    def m(d):
        d["train"]["regression_labels"] = d["train"]["regression_labels"][:-2]
    return _mmsa_error_case(tmp, m, "disagree")


@harness.case("float64_audio_overflows_float32")
def _(tmp):
    def m(d):
        d["train"]["audio"] = d["train"]["audio"].astype(np.float64)
        d["train"]["audio"][0, 1, 2] = 1e300
    return _mmsa_error_case(tmp, m, "overflows float32")


@harness.case("float64_label_overflows_float32")
def _(tmp):
    def m(d):
        d["valid"]["regression_labels"] = d["valid"]["regression_labels"].astype(np.float64)
        d["valid"]["regression_labels"][0] = 1e39
    return _mmsa_error_case(tmp, m, "overflows float32")


@harness.case("mult_float64_overflows_float32")
def _(tmp):
    data = _mult()
    data["test"]["vision"] = data["test"]["vision"].astype(np.float64)
    data["test"]["vision"][0, -1, 0] = -1e300
    path = _write(tmp, data, name="mosi_data.pkl")
    result, err = _attempt(lambda: _read_mult(path))
    if err is None:
        return "silent_wrong"
    return _judge_error(err, "overflows float32")


@harness.case("vision_width_changes_between_splits")
def _(tmp):
    data = _mmsa()
    data["valid"]["vision"] = data["valid"]["vision"][:, :, :7]
    path = _write(tmp, data)
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi"))
    if err is None:
        from keras_msa.data.tfrecord import write_dataset

        result2, err = _attempt(lambda: write_dataset(os.path.join(tmp, "out"), result[0], dataset="mosi",
                                                      progress=False))
        if err is None:
            return "silent_wrong"
    return _judge_error(err, "vision")


@harness.case("neg_inf_audio_repair_still_counted")
def _(tmp):
    path = _write(tmp, _mmsa(neg_inf=3))
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi"))
    if err is not None:
        return "poor_message"
    ok = result[1]["repairs"].get("audio_neg_inf_to_zero") == 3
    ok = ok and not any(np.isinf(ex["audio"]).any() for ex in result[0]["train"])
    return "handled" if ok else "silent_wrong"


# --------------------------------------------------------------------------
# Files and splits
# --------------------------------------------------------------------------


@harness.case("directory_passed_as_mmsa_pickle")
def _(tmp):
    _write(tmp, _mmsa())
    result, err = _attempt(lambda: _read_mmsa(tmp, dataset="mosi"))
    if err is None:
        return "silent_wrong"
    return "handled" if harness.names_any(str(err), "is a directory") else "poor_message"


@harness.case("directory_passed_as_mult_pickle")
def _(tmp):
    _write(tmp, _mult(), name="mosi_data.pkl")
    result, err = _attempt(lambda: _read_mult(tmp))
    if err is None:
        return "silent_wrong"
    return "handled" if harness.names_any(str(err), "is a directory") else "poor_message"


@harness.case("empty_valid_split_as_lists")
def _(tmp):
    data = _mmsa()
    data["valid"] = {k: [] for k in data["valid"]}
    path = _write(tmp, data)
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi"))
    if err is not None:
        return _judge_error(err, "empty")
    return "handled" if result[0]["valid"] == [] and len(result[0]["train"]) == 6 else "silent_wrong"


@harness.case("every_split_empty")
def _(tmp):
    data = {s: {k: [] for k in ("id", "text", "audio", "vision", "regression_labels")}
            for s in ("train", "valid", "test")}
    path = _write(tmp, data)
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi"))
    if err is None:
        return "silent_wrong"
    return _judge_error(err, "empty", "no examples")


@harness.case("truncated_pickle")
def _(tmp):
    path = _write(tmp, _mmsa())
    with open(path, "r+b") as f:
        f.truncate(300)
    result, err = _attempt(lambda: _read_mmsa(path, dataset="mosi"))
    if err is None:
        return "silent_wrong"
    return _judge_error(err, "truncated")


if __name__ == "__main__":
    harness.main(__name__, _HERE)
