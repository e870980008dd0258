"""Files that are either complete or absent."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path, suffix="", fsync=False):
    """Yields a temporary path beside `path`; renames it onto `path` when the
    block ends without error, and removes it otherwise.

    Writers (`model.save`, `np.savez`, plain `open`) write to the yielded path,
    so a crash, a SIGKILL or Ctrl-C never leaves a half-written `path` behind:
    readers see the old file or the new one. `suffix` keeps extensions that
    writers check (`.keras`, `.npz`). With `fsync`, the data reaches the disk
    before the rename.

    Example:

        with atomic_path("runs/x/metrics.json") as tmp:
            with open(tmp, "w") as f:
                f.write("{}")
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text, newline=None):
    """Writes `text` to `path` through `atomic_path`."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline=newline) as f:
            f.write(text)
