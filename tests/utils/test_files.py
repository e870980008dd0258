import os

import pytest

from keras_msa.utils.files import atomic_path
from keras_msa.utils.files import atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    atomic_write_text(str(path), "first")
    atomic_write_text(str(path), "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["metrics.json"]


def test_failure_keeps_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(str(path), suffix=".keras") as tmp:
            assert tmp.endswith(".keras") and os.path.dirname(tmp) == str(tmp_path)
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_failure_before_first_write_creates_nothing(tmp_path):
    path = tmp_path / "ckpt.npz"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(str(path), suffix=".npz", fsync=True):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []
