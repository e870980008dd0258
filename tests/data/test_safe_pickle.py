"""The restricted unpickler: data loads, code does not run."""

import builtins
import os
import pickle

import numpy as np
import pytest

from keras_msa.data.errors import DataFormatError
from keras_msa.data.fixtures import mmsa_arrays
from keras_msa.data.fixtures import write_pickle
from keras_msa.data.safe_pickle import UnsafePickleError
from keras_msa.data.safe_pickle import safe_load
from keras_msa.data.safe_pickle import safe_loads


class _WritesFile:
    """Unpickling this calls `builtins.open(target, "w")` (creates the file)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (builtins.open, (self.target, "w"))


class _RunsShell:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _Execs:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (builtins.exec, (f"open({self.target!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_WritesFile, _RunsShell, _Execs])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, payload, protocol):
    target = tmp_path / "pwned.txt"
    # Hidden inside an otherwise valid MMSA-like structure.
    data = {"train": {"audio": np.zeros((1, 2, 3), np.float32), "evil": payload(str(target))}}
    path = write_pickle(data, tmp_path / "evil.pkl", protocol=protocol)
    # test_plain_pickle_would_have_run_the_payload shows the payload is live.
    with pytest.raises(UnsafePickleError) as info:
        safe_load(path)
    assert not target.exists()
    msg = str(info.value)
    assert "evil.pkl" in msg and "refusing to load global" in msg
    assert any(name in msg for name in ("io.open", "builtins.open", "__builtin__.open", "posix.system", "nt.system",
                                          "builtins.exec", "__builtin__.exec"))
    assert isinstance(info.value, pickle.UnpicklingError) and isinstance(info.value, DataFormatError)


def test_plain_pickle_would_have_run_the_payload(tmp_path):
    """Control: the same payload does write the file with `pickle.loads`."""
    target = tmp_path / "control.txt"
    pickle.loads(pickle.dumps(_WritesFile(str(target)))).close()
    assert target.exists()


def test_other_globals_refused():
    import collections

    for obj in (collections.Counter(a=1), np.random.default_rng(0), lambda: 0.0):
        try:
            data = pickle.dumps(obj)
        except (pickle.PicklingError, AttributeError):
            continue
        with pytest.raises(UnsafePickleError):
            safe_loads(data, source="x.pkl")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_loads_real_layout_mmsa(tmp_path, protocol):
    data = mmsa_arrays(aligned=False, sims=True, neg_inf=2)
    import collections

    data["extra"] = {"tuple": (1, 2.5, None, True), "set": {1, 2}, "frozen": frozenset({3}), "bytes": b"\x00\xff",
                     "od": collections.OrderedDict(a=1), "scalar": np.float64(2.5), "i": np.int64(7),
                     "dtype": np.dtype("int16"), "bool": np.bool_(True), "complex": 1 + 2j}
    path = write_pickle(data, tmp_path / "unaligned_50.pkl", protocol=protocol)
    back = safe_load(path)
    for split in ("train", "valid", "test"):
        for k, v in data[split].items():
            if isinstance(v, np.ndarray):
                assert back[split][k].dtype == v.dtype
                np.testing.assert_array_equal(back[split][k], v)
            else:
                assert back[split][k] == v
    assert back["extra"] == data["extra"]


def test_truncated_and_corrupt(tmp_path):
    path = tmp_path / "aligned_50.pkl"
    write_pickle(mmsa_arrays(), path)
    blob = path.read_bytes()
    for cut in (len(blob) // 2, 300, 5):
        path.write_bytes(blob[:cut])
        with pytest.raises(DataFormatError, match="truncated or empty pickle") as info:
            safe_load(path)
        assert str(path) in str(info.value) and "download it again" in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(DataFormatError, match="truncated"):
        safe_load(path)
    path.write_bytes(b"this is not a pickle at all")
    with pytest.raises(DataFormatError, match="corrupt"):
        safe_load(path)
    with pytest.raises(FileNotFoundError):
        safe_load(tmp_path / "absent.pkl")


class _Reduce:
    """Pickles as `f(*args)` with BUILD `state`: lets a test forge any reduce tuple."""

    def __init__(self, f, args, state=None):
        self.f, self.args, self.state = f, args, state

    def __reduce__(self):
        return (self.f, self.args) if self.state is None else (self.f, self.args, self.state)


def _forged_dtype(spec, state):
    return _Reduce(np.dtype, (spec, False, True), state)


def _multiarray(name):
    try:
        return getattr(__import__("numpy._core.multiarray", fromlist=[name]), name)
    except ImportError:  # numpy 1
        return getattr(__import__("numpy.core.multiarray", fromlist=[name]), name)


def _forged_array(shape, dtype, raw):
    _reconstruct = _multiarray("_reconstruct")
    return _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, shape, dtype, False, raw))


_POINTER = (0x4141414141).to_bytes(8, "little")


@pytest.mark.parametrize("name,obj", [
    # An object field declared with flags 0: numpy would read the bytes as a pointer.
    ("struct_object_field", _forged_array(
        (1,), _forged_dtype("V8", (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0)), _POINTER)),
    ("object_dtype_flags0", _forged_array((1,), _forged_dtype("O8", (3, "|", None, None, None, -1, -1, 0)),
                                          _POINTER)),
    ("subarray_of_objects", _forged_array(
        (1,), _forged_dtype("V16", (3, "|", (np.dtype("O"), (2,)), None, None, 16, 8, 0)), _POINTER * 2)),
    ("object_scalar", _Reduce(_multiarray("scalar"),
                              (_forged_dtype("O8", (3, "|", None, None, None, -1, -1, 0)), _POINTER))),
])
def test_forged_object_arrays_are_refused(tmp_path, name, obj):
    path = write_pickle({"train": {"id": obj}}, tmp_path / f"{name}.pkl", protocol=2)
    # Before the fix these loaded, and reading the item segfaulted.
    with pytest.raises(UnsafePickleError, match="refusing this pickle") as info:
        safe_load(path)
    assert f"{name}.pkl" in str(info.value) and "object" in str(info.value)


def test_dtypes_and_arrays_rebuilt_exactly(tmp_path):
    values = {
        "struct": np.array([(1.5, [1, 2]), (2.5, [3, 4])], dtype=[("a", "<f4"), ("b", "<i2", (2,))]),
        "titled": np.zeros(2, dtype=[(("Title", "t"), ">f8")]),
        "fortran": np.asfortranarray(np.arange(6, dtype=">i4").reshape(2, 3)),
        "strings": np.array(["ab", "cdé"]), "bytes": np.array([b"x", b"yz"]), "zero_d": np.array(3.5),
        "empty": np.zeros((0, 4)), "objects": np.array([[1, "a"], [None, (2,)]], dtype=object),
        "bools": np.array([True, False]), "c": np.array([1 + 2j], np.complex64),
    }
    for protocol in (2, 4, 5):
        path = write_pickle(values, tmp_path / "v.pkl", protocol=protocol)
        back = safe_load(path)
        with open(path, "rb") as f:
            expected = pickle.load(f)  # numpy's own loading (it turns non-native byte orders native)
        for k, v in expected.items():
            assert type(back[k]) is np.ndarray and back[k].dtype == v.dtype, k
            assert back[k].shape == v.shape and back[k].flags.f_contiguous == v.flags.f_contiguous, k
            assert back[k].tolist() == v.tolist() if v.dtype.hasobject else back[k].tobytes() == v.tobytes(), k
            assert back[k].tolist() == values[k].tolist() if v.dtype.hasobject else np.array_equal(back[k], values[k])
        assert back["fortran"].flags.f_contiguous and back["struct"].flags.writeable


def test_datetime_and_bare_globals_refused():
    with pytest.raises(UnsafePickleError, match="datetime"):
        safe_loads(pickle.dumps(np.zeros(2, "M8[s]")), source="d.pkl")
    with pytest.raises(UnsafePickleError, match="data holds"):
        safe_loads(pickle.dumps(np.dtype), source="d.pkl")
    with pytest.raises(UnsafePickleError, match="called directly"):
        safe_loads(pickle.dumps(_Reduce(np.ndarray, ((2**27,), "f8"))), source="d.pkl")


def test_allocation_cap(tmp_path):
    # 39 bytes that ask for bytearray(2**28) (before the fix: 256 MiB allocated).
    blob = pickle.dumps(_Reduce(bytearray, (2**28,)), protocol=2)
    path = tmp_path / "tiny.pkl"
    path.write_bytes(blob)
    with pytest.raises(DataFormatError, match="cap") as info:
        safe_load(path)
    msg = str(info.value)
    assert "tiny.pkl" in msg and "bytearray(268435456)" in msg and "max_allocation_factor" in msg
    assert f"{len(blob)} bytes" in msg
    # The cap is the documented factor x size + floor, and the options raise it.
    assert len(safe_load(path, min_allocation_bytes=2**28 + 2**20)) == 2**28
    with pytest.raises(DataFormatError, match="cap"):
        safe_loads(pickle.dumps(_Reduce(bytearray, (2**21,))), min_allocation_bytes=2**20)
    # Huge declared shapes and memo indices, and opcode floods, are refused before allocating.
    with pytest.raises(DataFormatError, match="cap"):
        safe_loads(pickle.dumps(_forged_array((2**40,), np.dtype("O"), [])))
    with pytest.raises(DataFormatError, match="memo index"):
        safe_loads(b"\x80\x02N" + b"r" + (680825748).to_bytes(4, "little") + b".")
    with pytest.raises(DataFormatError, match="cap"):
        safe_loads(b"\x80\x04" + b"\x8f" * 20000 + b".", min_allocation_bytes=0, max_allocation_factor=8)
    # A real layout stays far below the default cap.
    real = write_pickle(mmsa_arrays(n=(30, 10, 10), seq=20), tmp_path / "aligned_50.pkl")
    safe_load(real, min_allocation_bytes=0)


def test_directory_and_invalid_strings(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        safe_load(tmp_path)
    raw = np.array(["ab"]).tobytes()[:-4] + (0x110000).to_bytes(4, "little")
    with pytest.raises(DataFormatError, match="code point"):
        safe_loads(pickle.dumps(_forged_array((1,), np.dtype("<U2"), raw)), source="u.pkl")
