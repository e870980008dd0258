import json
import os
import random

import keras
import numpy as np
import pytest

from keras_msa.training import checkpointing as C
from keras_msa.training.checkpointing import CheckpointDirectory
from keras_msa.training.checkpointing import CorruptCheckpointError


def test_save_load_roundtrip_and_keep(tmp_path):
    ckpts = CheckpointDirectory(str(tmp_path), keep=2)
    assert ckpts.latest() is None
    for step in (3, 7, 12):
        ckpts.save(step, {"w": np.full((2, 3), step, np.float32), "i": np.arange(step)}, {"epoch": step // 5})
    names = sorted(os.listdir(tmp_path))
    assert names == ["ckpt-0000000007.npz", "ckpt-0000000012.npz"]
    arrays, meta = ckpts.load(ckpts.latest())
    assert meta == {"epoch": 2}
    np.testing.assert_array_equal(arrays["w"], np.full((2, 3), 12, np.float32))
    assert arrays["w"].dtype == np.float32 and arrays["i"].tolist() == list(range(12))
    with pytest.raises(ValueError, match="reserved"):
        ckpts.save(13, {"__meta__": np.zeros(1)}, {})
    with pytest.raises(ValueError, match="keep"):
        CheckpointDirectory(str(tmp_path), keep=0)


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpts = CheckpointDirectory(str(tmp_path))
    ckpts.save(1, {"w": np.ones(3)}, {"epoch": 0})

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpts.save(2, {"w": np.zeros(3)}, {"epoch": 1})
    assert os.listdir(tmp_path) == ["ckpt-0000000001.npz"]
    arrays, _ = ckpts.load(ckpts.latest())
    np.testing.assert_array_equal(arrays["w"], np.ones(3))


def test_leftover_temporary_files_are_removed_and_ignored(tmp_path):
    (tmp_path / ".tmp-ckpt-abc.npz").write_bytes(b"half written")
    (tmp_path / "ckpt-12.npz").write_bytes(b"not our name pattern")
    ckpts = CheckpointDirectory(str(tmp_path))
    assert not (tmp_path / ".tmp-ckpt-abc.npz").exists()
    assert ckpts.latest() is None


def test_rng_state_roundtrip():
    keras.utils.set_random_seed(3)
    arrays, meta = C.capture_rng_state()
    expected = (random.random(), np.random.rand(3).tolist())
    random.random(), np.random.rand(5)
    C.restore_rng_state(arrays, meta)
    assert (random.random(), np.random.rand(3).tolist()) == expected


def test_assign_from_arrays_checks_the_model():
    a = [keras.Variable(np.zeros((2, 2)), name="a"), keras.Variable(np.zeros(3), name="b")]
    arrays, paths = C.variables_to_arrays("model", [np.ones((2, 2)), np.arange(3.0)])
    C.assign_from_arrays("model", a, arrays, paths, "model")
    np.testing.assert_array_equal(np.asarray(a[1]), np.arange(3.0))
    with pytest.raises(ValueError, match="holds 2 model variables but the model has 1"):
        C.assign_from_arrays("model", a[:1], arrays, paths, "model")
    arrays["model/1"] = np.zeros(4)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        C.assign_from_arrays("model", a, arrays, paths, "model")


def test_latest_checkpoint_reads_without_cleaning(tmp_path):
    assert C.latest_checkpoint(str(tmp_path / "absent")) is None
    ckpts = CheckpointDirectory(str(tmp_path), keep=3)
    ckpts.save(9, {"w": np.ones(1)}, {})
    ckpts.save(10, {"w": np.ones(1)}, {})
    (tmp_path / ".tmp-ckpt-writing.npz").write_bytes(b"another process is writing")
    assert C.latest_checkpoint(str(tmp_path)).endswith("ckpt-0000000010.npz")
    assert (tmp_path / ".tmp-ckpt-writing.npz").exists()


def _three_checkpoints(tmp_path):
    ckpts = CheckpointDirectory(str(tmp_path / "c"), keep=3)
    for step in (1, 2, 3):
        ckpts.save(step, {"w": np.full(4, float(step))}, {"epoch": step})
    return ckpts


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "no_meta", "lost_array"])
def test_corrupt_latest_falls_back_to_the_previous_with_a_warning(tmp_path, damage):
    ckpts = _three_checkpoints(tmp_path)
    newest = ckpts.latest()
    data = open(newest, "rb").read()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":  # one byte of the array data: the zip checksum fails
        i = data.index(np.full(4, 3.0).tobytes())
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
    elif damage == "empty":
        data = b""
    with open(newest, "wb") as f:
        if damage == "no_meta":
            np.savez(f, w=np.ones(4))
        elif damage == "lost_array":
            meta = {"epoch": 3, "__arrays__": ["v", "w"]}
            np.savez(f, w=np.ones(4), __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        else:
            f.write(data)
    previous = os.path.join(ckpts.directory, "ckpt-0000000002.npz")
    with pytest.warns(UserWarning, match=rf"{newest} is unreadable .*resuming from .*{previous}"):
        assert ckpts.latest() == previous
    assert CheckpointDirectory.load(previous)[1]["epoch"] == 2
    assert os.path.exists(newest + ".corrupt") and not os.path.exists(newest)
    # A new checkpoint after the fallback is the newest one again.
    ckpts.save(3, {"w": np.zeros(4)}, {"epoch": 3})
    assert ckpts.latest() == newest


def test_no_readable_checkpoint_names_every_file(tmp_path):
    ckpts = _three_checkpoints(tmp_path)
    for path in ckpts.paths():
        open(path, "wb").close()
    with pytest.raises(CorruptCheckpointError, match=r"no checkpoint there can be read .*ckpt-0000000003.npz.*"
                                                     r"ckpt-0000000001.npz"):
        ckpts.latest()
    assert len(ckpts.paths()) == 3  # nothing renamed when there is nothing to fall back to
