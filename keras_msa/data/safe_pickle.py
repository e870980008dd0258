"""Loading pickles from strangers without running their code.

A pickle is a program: every global it names is imported and called while it
loads, so `pickle.load` on a downloaded file can run anything
(`os.system`, `builtins.exec`, ...). Research datasets (MMSA, MulT) are
distributed as pickles, so keras_msa loads them with `SafeUnpickler`, which
resolves only an allow-list of globals: what numpy arrays, numpy scalars and
dtypes and plain Python containers need. Everything else is refused with
`UnsafePickleError` *before* it is imported or called.

Allowed globals (module, name):

* numpy arrays: `numpy.core.multiarray._reconstruct` /
  `numpy._core.multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype`,
  `numpy.core.numeric._frombuffer` / `numpy._core.numeric._frombuffer`
  (protocol 5 out-of-band buffers);
* numpy scalars: `numpy.core.multiarray.scalar` / `numpy._core.multiarray.scalar`;
* containers and atoms: `builtins` (or Python 2's `__builtin__`) `dict`,
  `list`, `tuple`, `set`, `frozenset`, `str`, `bytes`, `bytearray`, `int`,
  `float`, `complex`, `bool`; `collections.OrderedDict`;
* `_codecs.encode`, which protocol-2 pickles use to rebuild `bytes` objects
  (it only turns a string into bytes with a codec).

Object arrays (numpy arrays of Python strings, as `raw_text` and `id` are)
load through the same path: their items are plain strings.
"""

import collections
import io
import pickle

import numpy as np

from keras_msa.data.errors import DataFormatError


class UnsafePickleError(DataFormatError, pickle.UnpicklingError):
    """A pickle names a global outside the allow-list; nothing was run."""


def _numpy_attr(submodule, name):
    """`numpy._core.<submodule>.<name>` (numpy 2) or `numpy.core...` (numpy 1)."""
    import importlib

    for prefix in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{prefix}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {submodule}.{name}")


def _build_allowed():
    import builtins
    import _codecs

    allowed = {}
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = lambda: _numpy_attr("multiarray", "_reconstruct")
        allowed[(f"{prefix}.multiarray", "scalar")] = lambda: _numpy_attr("multiarray", "scalar")
        allowed[(f"{prefix}.numeric", "_frombuffer")] = lambda: _numpy_attr("numeric", "_frombuffer")
    allowed[("numpy", "ndarray")] = lambda: np.ndarray
    allowed[("numpy", "dtype")] = lambda: np.dtype
    for mod in ("builtins", "__builtin__"):
        for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
                     "int", "float", "complex", "bool"):
            allowed[(mod, name)] = (lambda n=name: getattr(builtins, n))
    allowed[("collections", "OrderedDict")] = lambda: collections.OrderedDict
    allowed[("_codecs", "encode")] = lambda: _codecs.encode
    return allowed


_ALLOWED = _build_allowed()


class SafeUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` that resolves only the allow-list of this module.

    Args:
        file: a binary file object.
        source: a name for error messages (the file's path).
        encoding: how Python 2 `str` objects are decoded ("latin1" also makes
            Python 2 numpy pickles load).
    """

    def __init__(self, file, source=None, encoding="latin1"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module, name):
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise UnsafePickleError(
                f"refusing to load global '{module}.{name}': this pickle would import "
                f"and run it, and keras_msa only admits numpy arrays, numpy scalars and "
                f"plain containers in data pickles. Nothing from the file was executed.",
                path=self.source,
            )
        return factory()

    def persistent_load(self, pid):
        raise UnsafePickleError(
            f"refusing persistent id {pid!r}: data pickles have none.", path=self.source
        )


def safe_loads(data, source=None):
    """Unpickles `data` (bytes) with `SafeUnpickler`."""
    return _load(io.BytesIO(data), source)


def safe_load(path):
    """Unpickles the file at `path` with `SafeUnpickler`.

    Raises:
        FileNotFoundError: no such file.
        UnsafePickleError: the pickle names a global outside the allow-list.
        DataFormatError: the file is truncated, corrupt or not a pickle.
    """
    path = str(path)
    with open(path, "rb") as f:
        return _load(f, path)


def _load(f, source):
    try:
        return SafeUnpickler(f, source=source).load()
    except UnsafePickleError:
        raise
    except EOFError as e:
        raise DataFormatError(
            f"truncated or empty pickle (ran out of data: {e or 'EOF'}); download it again.",
            path=source,
        ) from e
    except (pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError, OverflowError, UnicodeDecodeError) as e:
        raise DataFormatError(
            f"corrupt or not a pickle ({type(e).__name__}: {e}).", path=source
        ) from e
