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


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path):
    return os.stat(path).st_mode & 0o777


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                       (0o002, 0o664, 0o775)])
def test_outputs_honour_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    atomic_write_text(str(tmp_path / "metrics.json"), "{}")
    with atomic_path(str(tmp_path / "model.keras"), suffix=".keras") as tmp:
        with open(tmp, "wb") as f:
            f.write(b"zip")
    assert _mode(tmp_path / "metrics.json") == file_mode
    assert _mode(tmp_path / "model.keras") == file_mode

    from keras_msa.utils.files import current_umask
    from keras_msa.utils.files import make_temp_dir

    assert current_umask() == mask
    assert _mode(make_temp_dir(".x.tmp-", str(tmp_path))) == dir_mode


def test_leftover_of_a_killed_writer_is_named_after_its_target(tmp_path):
    """A writer killed inside the block leaves `.tmp-<name>-*`, the pattern the
    owner of `<name>` cleans up (checkpoints: `.tmp-ckpt-*`)."""
    from keras_msa.training.checkpointing import CheckpointDirectory

    manager = atomic_path(str(tmp_path / "ckpt-0000000003.npz"), suffix=".npz")
    tmp = manager.__enter__()  # never exited: what SIGKILL leaves
    with open(tmp, "wb") as f:
        f.write(b"half")
    assert os.path.basename(tmp).startswith(".tmp-ckpt-0000000003.npz-")
    CheckpointDirectory(str(tmp_path))
    assert os.listdir(tmp_path) == []
