"""Resumable-training checkpoints: everything a run needs to continue
exactly where it stopped.

A checkpoint holds the model's variables (weights, the `epoch` counter and the
dropout seed-generator states), the optimizer's variables (step count, moments,
loss scale), the position in the data (epoch and batches done in it), the
Python/NumPy/Keras random states, and the state of the callbacks that carry
information across epochs (best weights, early-stopping patience, history).

Each checkpoint is one `.npz` file written to a temporary name in the same
directory, flushed to disk and then renamed (`os.replace` is atomic on POSIX
file systems), so a run killed at any instant leaves either the previous
complete checkpoint or the new complete one, never a half-written file.
Temporary leftovers of a killed writer are deleted on the next start.
"""

import glob
import json
import os
import random
import re
import warnings
import zipfile

import numpy as np

from keras_msa.utils.files import atomic_path

_NAME = re.compile(r"^ckpt-(\d{10})\.npz$")


class CorruptCheckpointError(ValueError):
    """A checkpoint file exists but cannot be read back."""

    def __init__(self, problem, path):
        self.problem = str(problem)
        self.path = str(path)
        super().__init__(f"{self.path}: {self.problem}")


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class CheckpointDirectory:
    """A directory of numbered checkpoints `ckpt-<global step>.npz`.

    Args:
        directory: where the checkpoints live (created if needed).
        keep: how many of the newest checkpoints to keep.

    Example:

    >>> import tempfile, numpy as np
    >>> ckpts = CheckpointDirectory(tempfile.mkdtemp())
    >>> path = ckpts.save(3, {"w": np.ones(2)}, {"epoch": 0})
    >>> arrays, meta = ckpts.load(ckpts.latest())
    >>> meta["epoch"], arrays["w"].tolist()
    (0, [1.0, 1.0])
    """

    def __init__(self, directory, keep=2):
        if keep < 1:
            raise ValueError(f"keep must be >= 1; got {keep}.")
        self.directory = directory
        self.keep = keep
        self._verified = set()
        os.makedirs(directory, exist_ok=True)
        # A writer killed between mkstemp and rename leaves a temporary file:
        # it was never a checkpoint, so it is safe to delete.
        for leftover in glob.glob(os.path.join(directory, ".tmp-ckpt-*")):
            try:
                os.remove(leftover)
            except OSError:
                pass

    def paths(self):
        """Complete checkpoints, oldest first (only the training process
        should construct a `CheckpointDirectory`; watchers use
        `latest_checkpoint`)."""
        found = []
        for name in os.listdir(self.directory):
            m = _NAME.match(name)
            if m:
                found.append((int(m.group(1)), os.path.join(self.directory, name)))
        return [p for _, p in sorted(found)]

    def latest(self):
        """Path of the newest checkpoint that loads, or `None` when there is
        none.

        A checkpoint renamed into place is complete when written, but the disk
        or a copy can damage it later. A newest checkpoint that does not load
        (truncated, a failed checksum, missing metadata) is renamed aside to
        `<name>.corrupt` (kept for inspection, ignored from then on) and the
        previous one is used, with a warning naming both. When none loads the
        error lists each file and its fault.
        """
        paths = self.paths()
        faults = []
        for path in reversed(paths):
            fault = self._fault(path)
            if fault is None:
                for bad, why in faults:
                    aside = bad + ".corrupt"
                    os.replace(bad, aside)
                    warnings.warn(
                        f"Checkpoint {bad} is unreadable ({why}); resuming from the previous complete "
                        f"checkpoint {path} instead. The damaged file was renamed to {aside}.",
                        stacklevel=2,
                    )
                return path
            faults.append((path, fault))
        if faults:
            listed = "; ".join(f"{p}: {why}" for p, why in faults)
            raise CorruptCheckpointError(
                f"no checkpoint there can be read ({listed}). Delete them (or use a new "
                f"--output_dir) to train from the start.",
                self.directory,
            )
        return None

    def _fault(self, path):
        """`None` when `path` loads as a checkpoint, else what is wrong with
        it. A file verified once is not read again while unchanged."""
        try:
            st = os.stat(path)
        except OSError as e:
            return str(e)
        key = (path, st.st_size, st.st_mtime_ns)
        if key in self._verified:
            return None
        try:
            self.load(path)
        except CorruptCheckpointError as e:
            return e.problem
        self._verified.add(key)
        return None

    def save(self, step, arrays, meta):
        """Writes `arrays` (name -> numpy array) and `meta` (JSON-able dict)
        as `ckpt-<step>.npz` atomically; returns its path."""
        for name in arrays:
            if name.startswith("__"):
                raise ValueError(f"Array names starting with '__' are reserved; got '{name}'.")
        payload = dict(arrays)
        # The array names let `load` tell a complete checkpoint from one that
        # lost members.
        meta = dict(meta, __arrays__=sorted(arrays))
        payload["__meta__"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        final = os.path.join(self.directory, f"ckpt-{int(step):010d}.npz")
        with atomic_path(final, suffix=".npz", fsync=True) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **payload)
        _fsync_dir(self.directory)
        for old in self.paths()[: -self.keep]:
            try:
                os.remove(old)
            except OSError:
                pass
        return final

    @staticmethod
    def load(path):
        """Returns `(arrays, meta)` of a checkpoint file, or raises
        `CorruptCheckpointError` naming the file and its fault (every array is
        read, so the zip checksums of all of them are checked)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if "__meta__" not in data.files:
                    raise CorruptCheckpointError("not a keras_msa checkpoint (no metadata)", path)
                arrays = {k: data[k] for k in data.files if k != "__meta__"}
                meta = json.loads(bytes(data["__meta__"]).decode("utf-8"))
        except CorruptCheckpointError:
            raise
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
            raise CorruptCheckpointError(f"{type(e).__name__}: {e}", path) from None
        if not isinstance(meta, dict):
            raise CorruptCheckpointError("its metadata is not a JSON object", path)
        listed = meta.get("__arrays__")
        if listed is not None and sorted(listed) != sorted(arrays):
            missing = sorted(set(listed) - set(arrays))
            raise CorruptCheckpointError(f"arrays missing: {missing[:5]}", path)
        meta.pop("__arrays__", None)
        return arrays, meta


def latest_checkpoint(directory):
    """Newest complete checkpoint in `directory` (or `None`), read without
    touching anything: safe to call while another process is training."""
    if not os.path.isdir(directory):
        return None
    found = sorted((int(m.group(1)), n) for n in os.listdir(directory) if (m := _NAME.match(n)))
    return os.path.join(directory, found[-1][1]) if found else None


def capture_rng_state():
    """`(arrays, meta)` of the Python, NumPy and Keras global random states.

    (Dropout masks come from per-layer seed generators whose states are model
    variables, saved with the weights.)"""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [version, list(mt), gauss],
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    arrays = {"rng/numpy_key": np.asarray(np_state[1])}
    gen = _keras_global_seed_generator()
    if gen is not None:
        arrays["rng/keras_global"] = np.asarray(gen.state.numpy() if hasattr(gen.state, "numpy") else gen.state)
    return arrays, meta


def restore_rng_state(arrays, meta):
    version, mt, gauss = meta["python"]
    random.setstate((version, tuple(mt), gauss))
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, arrays["rng/numpy_key"], pos, has_gauss, cached))
    if "rng/keras_global" in arrays:
        import keras

        gen = _keras_global_seed_generator()
        if gen is None:
            # Creating it here (as Keras would on first use) lets the saved
            # state carry over.
            gen = keras.random.SeedGenerator(0)
            from keras.src.backend.common import global_state

            global_state.set_global_attribute("global_seed_generator", gen)
        gen.state.assign(arrays["rng/keras_global"])


def _keras_global_seed_generator():
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # pragma: no cover - private path moved
        return None
    return global_state.get_global_attribute("global_seed_generator")


def variables_to_arrays(prefix, variables):
    """`{f"{prefix}/{i}": value}` plus the variables' paths (to check that a
    checkpoint belongs to the same model when it is restored)."""
    arrays = {f"{prefix}/{i}": np.asarray(v.numpy() if hasattr(v, "numpy") else v) for i, v in enumerate(variables)}
    return arrays, [getattr(v, "path", getattr(v, "name", str(i))) for i, v in enumerate(variables)]


def assign_from_arrays(prefix, variables, arrays, paths, what):
    """Assigns the arrays saved by `variables_to_arrays` back, with a clear
    error when the checkpoint does not match (count or shapes)."""
    saved = sum(1 for k in arrays if k.startswith(prefix + "/"))
    if saved != len(variables):
        raise ValueError(
            f"The checkpoint holds {saved} {what} variables but the {what} has "
            f"{len(variables)}: it was written by a different configuration. "
            f"Use a new --output_dir or delete the old checkpoints."
        )
    for i, v in enumerate(variables):
        value = arrays[f"{prefix}/{i}"]
        if tuple(value.shape) != tuple(v.shape):
            raise ValueError(
                f"Checkpoint {what} variable {i} ('{paths[i]}') has shape "
                f"{tuple(value.shape)}; the {what}'s '{getattr(v, 'path', v.name)}' "
                f"has {tuple(v.shape)}."
            )
        v.assign(value)
