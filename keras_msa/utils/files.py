"""Files that are either complete or absent, with the permissions the user's
umask asks for."""

import contextlib
import os
import tempfile


def current_umask():
    """The process's umask, read without changing it where the OS allows.

    On Linux it comes from `/proc/self/status`. Elsewhere the only way is
    `os.umask(0)` followed by restoring the old value; between the two calls
    another thread creating a file would get mode bits from umask 0, so that
    fallback is only used where nothing better exists.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def honour_umask(path):
    """Gives `path` the mode a plain `open()` / `os.mkdir()` would have given
    it: `0o666 & ~umask` for a file, `0o777 & ~umask` for a directory.

    `tempfile.mkstemp` / `mkdtemp` create 0600 files and 0700 directories
    (right for private scratch space, wrong for outputs that are renamed into
    place and meant to be read by the group or a serving process).
    """
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~current_umask())


def make_temp_dir(prefix, dir):
    """`tempfile.mkdtemp(prefix=prefix, dir=dir)` with umask permissions, for
    a directory that will be renamed into place as an output."""
    path = tempfile.mkdtemp(prefix=prefix, dir=dir)
    try:
        honour_umask(path)
    except BaseException:
        os.rmdir(path)
        raise
    return path


@contextlib.contextmanager
def atomic_path(path, suffix="", fsync=False):
    """Yields a temporary path beside `path`; renames it onto `path` when the
    block ends without error, and removes it otherwise.

    Writers (`model.save`, `np.savez`, plain `open`) write to the yielded path,
    so a crash, a SIGKILL or Ctrl-C never leaves a half-written `path` behind:
    readers see the old file or the new one. `suffix` keeps extensions that
    writers check (`.keras`, `.npz`). With `fsync`, the data reaches the disk
    before the rename. The file gets the mode the umask asks for (as `open`
    would give it), not `mkstemp`'s 0600.

    The temporary name is `.tmp-<name of path>-<random><suffix>`, so whoever
    owns `path` can recognise and delete what a killed writer left (e.g.
    `.tmp-ckpt-*` for `ckpt-*.npz`).

    Example:

        with atomic_path("runs/x/metrics.json") as tmp:
            with open(tmp, "w") as f:
                f.write("{}")
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.path.basename(path)}-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        # After the writer, not before: a writer that deletes and recreates
        # the file would otherwise undo it.
        honour_umask(tmp)
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
