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
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataFormatError, match="truncated|corrupt") as info:
        safe_load(path)
    assert str(path) in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(DataFormatError, match="truncated"):
        safe_load(path)
    path.write_bytes(b"this is not a pickle at all")
    with pytest.raises(DataFormatError, match="corrupt"):
        safe_load(path)
    with pytest.raises(FileNotFoundError):
        safe_load(tmp_path / "absent.pkl")
