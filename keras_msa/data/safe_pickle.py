"""Loading pickles from strangers without running their code, without
forged numpy objects and without unbounded allocations.

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
  (protocol 5 in-band buffers);
* numpy scalars: `numpy.core.multiarray.scalar` / `numpy._core.multiarray.scalar`;
* containers and atoms: `builtins` (or Python 2's `__builtin__`) `dict`,
  `list`, `tuple`, `set`, `frozenset`, `str`, `bytes`, `bytearray`, `int`,
  `float`, `complex`, `bool`; `collections.OrderedDict`;
* `_codecs.encode` with a latin-1, ASCII or UTF-8 codec, which protocol-2
  pickles use to rebuild `bytes` objects.

None of the numpy globals is handed to numpy as it stands. numpy trusts the
state a pickle gives a dtype (`dtype.__setstate__`): a forged state can
declare an object field without the flags that tell numpy it holds
references, and numpy then reads bytes from the file as object pointers (a
segfault, or worse). So the names above resolve to keras_msa's own
constructors, which rebuild every dtype from its validated state through
numpy's public constructors and every array from a dtype built that way:

* dtypes: booleans, integers, floats, complex numbers, fixed-width `S`/`U`
  strings, Python objects (`O`), and structured or subarray dtypes made of
  those, but never one that holds objects inside a structure; datetimes and
  plain `V` voids are refused.
* arrays: a dtype without objects is filled from raw bytes whose length must
  match the shape; an object array (`O`) only from the list of its items,
  which the unpickler itself built from the allowed objects above.
* scalars: only of dtypes without objects, from exactly `itemsize` bytes.

Allocation cap: a pickle of a few bytes can ask for `bytearray(2**30)`, an
array of shape (2**40,), a memo slot numbered 680,825,748 (the C unpickler's
memo is an array) or a million empty sets (216 bytes each from 1-byte
opcodes). Before anything is built, one pass over the opcodes
(`pickletools.genops`, which builds nothing) refuses memo indices far beyond
the entries made so far and counts what the opcodes will make; while loading,
everything the allowed constructors allocate (array data, `bytes` /
`bytearray` of a length, containers built from others) is counted too. The
budget is `max_allocation_factor` x the file's size + `min_allocation_bytes`
(defaults `DEFAULT_MAX_ALLOCATION_FACTOR` = 8 and
`DEFAULT_MIN_ALLOCATION_BYTES` = 64 MiB). Measured: an MMSA-layout file of
dense arrays counts 1.0x its size; object arrays of 200,000 short strings
(ids, transcripts) 4.1x (protocol 2) to 5.3x (protocol 4). A file
over the budget is refused with `PickleAllocationError`, which names the
file, the cap and how to raise it (`safe_load(path,
max_allocation_factor=...)`, the readers' option of the same name, or
`recipes/convert.py --reader_options='{"max_allocation_factor": 64}'`).

PyTorch checkpoints: `load_torch_checkpoint` reads a `.pth` written by
`torch.save` (a zip holding a pickle and raw storages) the same way, with
`TorchCheckpointUnpickler`, which adds exactly the names a state dict of
tensors needs (`torch._utils._rebuild_tensor_v2`, `torch.<Type>Storage`),
resolved to keras_msa's numpy readers; torch is never imported.
"""

import collections
import io
import os
import pickle
import pickletools
import re

import numpy as np

from keras_msa.data.errors import DataFormatError

#: The budget of a pickle, in multiples of its file size (plus the floor).
DEFAULT_MAX_ALLOCATION_FACTOR = 8.0
#: What any pickle may allocate, however small the file.
DEFAULT_MIN_ALLOCATION_BYTES = 64 << 20
# numpy 2 allows 64 dimensions (numpy 1: 32); no data file needs more than a few.
_MAX_DIMS = 32
# What one container slot built by `list(...)`, `dict(...)`, ... costs, at most.
_SLOT_BYTES = 64
# What the object one opcode makes costs (CPython sizes, rounded up); strings
# add their length. An empty set is the worst: 216 bytes from a 1-byte opcode.
_OPCODE_BYTES = {"EMPTY_SET": 216, "FROZENSET": 216, "EMPTY_DICT": 64, "DICT": 64, "EMPTY_LIST": 56, "LIST": 56,
                 "TUPLE": 48, "TUPLE1": 48, "TUPLE2": 56, "TUPLE3": 64, "EMPTY_TUPLE": 0}
_OPCODE_DEFAULT_BYTES = 48
# Memo slots a pickle may skip: the C unpickler's memo is an array, so
# `LONG_BINPUT 680825748` (5 bytes) would allocate 5 GiB of it. Picklers
# number memo entries 0, 1, 2, ...
_MEMO_SLACK = 1024


class UnsafePickleError(DataFormatError, pickle.UnpicklingError):
    """A pickle names a global outside the allow-list, or asks the allowed ones
    for something they refuse (a forged dtype, an object scalar); nothing was
    run."""


class PickleAllocationError(UnsafePickleError):
    """A pickle asks to allocate more than its budget (see the module doc)."""


def _numpy_attr(submodule, name):
    """`numpy._core.<submodule>.<name>` (numpy 2) or `numpy.core...` (numpy 1)."""
    import importlib

    for prefix in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{prefix}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {submodule}.{name}")


_NUMPY_SCALAR = _numpy_attr("multiarray", "scalar")
_SPEC = re.compile(r"([biufcSUVOMm])(\d+)")
_NUMERIC_SIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8, 10, 12, 16),
                  "c": (8, 16, 20, 24, 32)}
_CODECS = ("latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1", "ascii", "us-ascii",
           "utf-8", "utf8", "utf_8")


class _NdarrayMarker:
    """What `numpy.ndarray` resolves to: only `_reconstruct` accepts it. It is
    not a class (NEWOBJ fails) and calling it is refused: `numpy.ndarray(shape)`
    would allocate whatever shape the file declares."""

    __slots__ = ("unpickler",)

    def __init__(self, unpickler):
        self.unpickler = unpickler

    def __call__(self, *args, **kwargs):
        raise self.unpickler.unsafe(f"numpy.ndarray{_short(args)} called directly (it would allocate the "
                                    "declared shape); arrays are rebuilt only from their pickled data")

    def __repr__(self):
        return "numpy.ndarray"


class _Proxy:
    """Stands for a numpy object while the pickle loads: pickle's BUILD opcode
    calls `__setstate__` on whatever the constructor returned, so the real
    object is made here, from a validated state, and swapped in at the end."""

    __slots__ = ("unpickler", "value", "done")
    kind = "object"

    def __init__(self, unpickler, value=None, done=False):
        self.unpickler = unpickler
        self.value = value
        self.done = done

    def __setstate__(self, state):
        raise self.unpickler.unsafe(f"a pickle may not set the state of a numpy {self.kind} ({_short(state)})")

    def result(self):
        if not self.done:
            raise self.unpickler.corrupt(f"a numpy {self.kind} is used before its state was set")
        return self.value


class _ScalarProxy(_Proxy):
    __slots__ = ()
    kind = "scalar"


class _DtypeProxy(_Proxy):
    __slots__ = ("spec",)
    kind = "dtype"

    def __init__(self, unpickler, spec):
        super().__init__(unpickler)
        self.spec = spec

    def __setstate__(self, state):
        if self.done:
            raise self.unpickler.unsafe(f"dtype '{self.spec}' gets a state after it was used or set")
        self.value = self.unpickler.build_dtype(self.spec, state)
        self.done = True

    def result(self):
        if not self.done:
            # numpy always pickles a dtype with its state; without one, the
            # spec alone decides (and a bare 'V' is refused there).
            self.value = self.unpickler.build_dtype(self.spec, None)
            self.done = True
        return self.value


class _ArrayProxy(_Proxy):
    __slots__ = ()
    kind = "array"

    def __setstate__(self, state):
        if self.done:
            raise self.unpickler.unsafe("an array gets a second state")
        self.value = self.unpickler.build_array(state)
        self.done = True


_CONTAINERS = (list, tuple, dict, collections.OrderedDict, set, frozenset)


def _short(obj, limit=80):
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


class SafeUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` that resolves only the allow-list of this module,
    rebuilds numpy objects itself and caps what the file may allocate.

    Args:
        file: a binary file object.
        source: a name for error messages (the file's path).
        encoding: how Python 2 `str` objects are decoded ("latin1" also makes
            Python 2 numpy pickles load).
        max_bytes: the allocation budget in bytes (see the module doc);
            `None` = unlimited (only for data you trust; `safe_load` always
            sets one).
        cap_help: how a user raises the cap, for the error message.
    """

    def __init__(self, file, source=None, encoding="latin1", max_bytes=None, cap_help=None):
        super().__init__(file, encoding=encoding)
        self._file = file
        self.source = source
        self.max_bytes = max_bytes
        self.cap_help = cap_help
        self.allocated = 0
        self._factories = {
            "_reconstruct": self._reconstruct,
            "scalar": self._scalar,
            "_frombuffer": self._frombuffer,
            "ndarray": _NdarrayMarker(self),
            "dtype": self._dtype,
        }

    # -- errors -----------------------------------------------------------------
    def unsafe(self, message):
        return UnsafePickleError(f"refusing this pickle: {message}. Nothing from the file was executed.",
                                 path=self.source)

    def corrupt(self, message):
        return DataFormatError(f"corrupt pickle: {message}.", path=self.source)

    def charge(self, nbytes, what):
        """Counts `nbytes` against the budget before they are allocated."""
        self.allocated += int(nbytes)
        if self.max_bytes is not None and self.allocated > self.max_bytes:
            raise PickleAllocationError(
                f"this pickle asks for more memory than its cap allows ({what}: {int(nbytes):,} bytes, "
                f"{self.allocated:,} in all; cap {int(self.max_bytes):,} bytes"
                + (f" = {self.cap_help}" if self.cap_help else "")
                + "). Real data pickles are dense arrays and stay far below it; if you trust this file, "
                "raise the cap with max_allocation_factor or min_allocation_bytes (recipes/convert.py "
                "--reader_options='{\"max_allocation_factor\": 64}').",
                path=self.source,
            )

    # -- globals ----------------------------------------------------------------
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"refusing to load global '{module}.{name}': this pickle would import "
                f"and run it, and keras_msa only admits numpy arrays, numpy scalars and "
                f"plain containers in data pickles. Nothing from the file was executed.",
                path=self.source,
            )
        if module.startswith("numpy"):
            return self._factories[name]
        return _BUILTIN_WRAPPERS[name](self)

    def persistent_load(self, pid):
        raise UnsafePickleError(
            f"refusing persistent id {_short(pid)}: data pickles have none.", path=self.source
        )

    def prescan(self, f):
        """Walks the opcodes once without building anything: refuses memo
        indices far beyond the entries made so far, and counts the objects
        the opcodes will make against the budget."""
        memo = 0
        cost = 0
        try:
            for op, arg, _ in pickletools.genops(f):
                name = op.name
                if name == "MEMOIZE":
                    memo += 1
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    if not _is_int(arg) or arg < 0 or arg > memo + _MEMO_SLACK:
                        raise self.unsafe(f"memo index {_short(arg)} after {memo} entries (the unpickler would "
                                          "allocate a table that large)")
                    memo = max(memo, arg + 1)
                cost += _OPCODE_BYTES.get(name, _OPCODE_DEFAULT_BYTES)
                if isinstance(arg, str):
                    cost += len(arg)
                if name == "STOP":
                    break
        except ValueError as e:  # pickletools' word for a malformed or short stream
            if any(w in str(e) for w in ("exhausted", "but only", "not enough data", "no newline")):
                raise DataFormatError(f"truncated or empty pickle ({e}); download it again.", path=self.source) from e
            raise DataFormatError(f"corrupt or not a pickle ({e}).", path=self.source) from e
        self.charge(cost, "the objects its opcodes make")

    def load(self):
        """Checks the opcodes (when the file can be re-read), loads, and swaps
        the rebuilt numpy objects in."""
        seekable = getattr(self._file, "seekable", None)
        if seekable is not None and seekable():
            start = self._file.tell()
            self.prescan(self._file)
            self._file.seek(start)
        obj = super().load()
        try:
            return self._resolve(obj, {})
        except RecursionError as e:
            raise self.corrupt("containers nested too deeply") from e

    # -- numpy ------------------------------------------------------------------
    def _dtype(self, spec, align=False, copy=False):
        if not isinstance(spec, str) or not _SPEC.fullmatch(spec):
            raise self.unsafe(f"numpy dtype spec {_short(spec)} is not a kind letter and a size (as 'f4', 'O8')")
        return _DtypeProxy(self, spec)

    def _real_dtype(self, dt, what):
        if isinstance(dt, _DtypeProxy):
            return dt.result()
        raise self.corrupt(f"{what} is {_short(dt)}, not a numpy dtype")

    def build_dtype(self, spec, state):
        """A numpy dtype for `spec` ('f4', 'U3', 'V8', ...) and a pickled
        dtype state, checked item by item and made by numpy's constructors."""
        kind, size = spec[0], int(spec[1:])
        if state is None:
            endian, subarray, names, fields, elsize = "|", None, None, None, -1
        else:
            if not isinstance(state, tuple) or not ((len(state) == 8 and state[0] == 3)
                                                    or (len(state) == 9 and state[0] == 4)):
                raise self.unsafe(f"dtype '{spec}' has state {_short(state)}; numpy writes (3, endian, "
                                  f"subarray, names, fields, itemsize, alignment, flags) (version 4: + metadata)")
            _, endian, subarray, names, fields, elsize, alignment, flags = state[:8]
            if endian not in ("<", ">", "|", "="):
                raise self.unsafe(f"dtype '{spec}' has byte order {_short(endian)}; expected '<', '>', '|' or '='")
            if not (_is_int(elsize) and _is_int(alignment) and _is_int(flags)):
                raise self.unsafe(f"dtype '{spec}' has non-integer itemsize/alignment/flags in {_short(state)}")
            if len(state) == 9 and state[8] not in (None, {}):
                raise self.unsafe(f"dtype '{spec}' carries metadata {_short(state[8])} (datetimes and "
                                  "dtypes with metadata are not read from data pickles)")
        structured = subarray is not None or names is not None or fields is not None
        if kind in _NUMERIC_SIZES or kind in "O":
            if structured:
                raise self.unsafe(f"dtype '{spec}' declares fields or a subarray in its state")
            if kind == "O":
                if size not in (4, 8):
                    raise self.unsafe(f"object dtype '{spec}' has size {size}")
                return np.dtype(object)
            if size not in _NUMERIC_SIZES[kind]:
                raise self.unsafe(f"dtype '{spec}' has no such size")
            dt = np.dtype(spec)
            return dt.newbyteorder(endian) if endian in "<>" and dt.itemsize > 1 else dt
        if kind in "SU":
            if structured:
                raise self.unsafe(f"dtype '{spec}' declares fields or a subarray in its state")
            nbytes = elsize if state is not None and elsize >= 0 else size * (4 if kind == "U" else 1)
            if nbytes < 0 or (kind == "U" and nbytes % 4):
                raise self.unsafe(f"string dtype '{spec}' has itemsize {elsize}")
            dt = np.dtype(f"{kind}{nbytes // 4 if kind == 'U' else nbytes}")
            return dt.newbyteorder(endian) if kind == "U" and endian in "<>" else dt
        if kind in "Mm":
            raise self.unsafe(f"datetime/timedelta dtype '{spec}' (not part of any data format keras_msa reads)")
        # 'V': a structure or a subarray; a bare void has nothing to read.
        if state is None or not structured:
            raise self.unsafe(f"void dtype '{spec}' without fields or subarray")
        if elsize != size:
            raise self.unsafe(f"dtype '{spec}' has itemsize {elsize} in its state")
        if subarray is not None:
            if names is not None or fields is not None:
                raise self.unsafe(f"dtype '{spec}' declares both a subarray and fields")
            if not (isinstance(subarray, tuple) and len(subarray) == 2 and isinstance(subarray[1], tuple)
                    and len(subarray[1]) <= _MAX_DIMS and all(_is_int(d) and d >= 0 for d in subarray[1])):
                raise self.unsafe(f"dtype '{spec}' has subarray {_short(subarray)}; expected (dtype, shape)")
            base = self._real_dtype(subarray[0], f"the base of subarray dtype '{spec}'")
            self._refuse_refs(base, spec)
            dt = np.dtype((base, subarray[1]))
            if dt.itemsize != size:
                raise self.unsafe(f"subarray dtype '{spec}' is {dt.itemsize} bytes wide, not {size}")
            return dt
        if not (isinstance(names, tuple) and names and all(isinstance(n, str) for n in names)
                and len(set(names)) == len(names) and isinstance(fields, dict)):
            raise self.unsafe(f"structured dtype '{spec}' has names {_short(names)} and fields {_short(fields)}; "
                              "expected a tuple of distinct names and a dict of (dtype, offset[, title])")
        formats, offsets, titles = [], [], []
        for name in names:
            entry = fields.get(name)
            if not (isinstance(entry, tuple) and len(entry) in (2, 3) and _is_int(entry[1])
                    and (len(entry) == 2 or entry[2] is None or isinstance(entry[2], str))):
                raise self.unsafe(f"field '{name}' of dtype '{spec}' is {_short(entry)}; expected "
                                  "(dtype, offset[, title])")
            sub = self._real_dtype(entry[0], f"field '{name}' of dtype '{spec}'")
            self._refuse_refs(sub, spec)
            if entry[1] < 0 or entry[1] + sub.itemsize > size:
                raise self.unsafe(f"field '{name}' of dtype '{spec}' lies outside its {size} bytes")
            formats.append(sub)
            offsets.append(entry[1])
            titles.append(entry[2] if len(entry) == 3 else None)
        extra = set(fields) - set(names) - {t for t in titles if t is not None}
        if extra:
            raise self.unsafe(f"dtype '{spec}' has fields {sorted(map(str, extra))} that are not in its names")
        try:
            dt = np.dtype({"names": list(names), "formats": formats, "offsets": offsets, "itemsize": size,
                           **({"titles": titles} if any(t is not None for t in titles) else {})})
        except (TypeError, ValueError) as e:
            raise self.unsafe(f"structured dtype '{spec}' is inconsistent ({e})") from e
        self._refuse_refs(dt, spec)
        return dt

    def _refuse_refs(self, dt, spec):
        if dt.hasobject:
            raise self.unsafe(f"dtype '{spec}' puts Python objects inside a structure or subarray "
                              f"({dt}); data pickles hold objects only in plain object arrays")

    def _shape(self, shape, what):
        if isinstance(shape, list):
            shape = tuple(shape)
        if not (isinstance(shape, tuple) and len(shape) <= _MAX_DIMS and all(_is_int(d) and d >= 0 for d in shape)):
            raise self.corrupt(f"{what} has shape {_short(shape)}; expected a tuple of at most {_MAX_DIMS} "
                               "non-negative integers")
        count = 1
        for d in shape:
            count *= d
        return shape, count

    def _reconstruct(self, cls, shape, typecode):
        if not isinstance(cls, _NdarrayMarker):
            raise self.unsafe(f"numpy _reconstruct of {_short(cls)}; only numpy.ndarray is rebuilt")
        return _ArrayProxy(self)

    def build_array(self, state):
        """The array for a pickled ndarray state `(1, shape, dtype, fortran, data)`."""
        if not isinstance(state, tuple) or len(state) not in (4, 5) or (len(state) == 5 and state[0] != 1):
            raise self.unsafe(f"ndarray state {_short(state)}; numpy writes (1, shape, dtype, is_fortran, data)")
        shape, dt, fortran, raw = state[-4:]
        dt = self._real_dtype(dt, "the dtype of an array")
        shape, count = self._shape(shape, "an array")
        if not isinstance(fortran, (bool, int)) or fortran not in (0, 1):
            raise self.corrupt(f"an array has is_fortran {_short(fortran)}")
        if dt.hasobject:
            if dt != np.dtype(object):
                raise self.unsafe(f"an array of dtype {dt} (objects inside a structure)")
            if not isinstance(raw, list):
                raise self.unsafe(f"an object array of shape {list(shape)} comes as {type(raw).__name__} "
                                  "instead of the list of its items (raw bytes would be read as pointers)")
            self.charge(count * 8, f"object array of shape {list(shape)}")
            if len(raw) != count:
                raise self.corrupt(f"an object array of shape {list(shape)} has {len(raw)} items")
            items = [self._resolve(x, {}) for x in raw]
        else:
            self.charge(count * max(dt.itemsize, 1), f"array of shape {list(shape)} and dtype {dt}")
            if isinstance(raw, str):  # Python 2 pickles: the bytes decoded as latin-1
                raw = raw.encode("latin1")
            if not isinstance(raw, (bytes, bytearray)):
                raise self.corrupt(f"an array of dtype {dt} has data of type {type(raw).__name__}, not bytes")
            if len(raw) != count * dt.itemsize:
                raise self.corrupt(f"an array of shape {list(shape)} and dtype {dt} needs "
                                   f"{count * dt.itemsize} bytes of data, the file has {len(raw)}")
            items = raw
        arr = np.ndarray.__new__(np.ndarray, (0,), "b")
        arr.__setstate__((1, shape, dt, bool(fortran), items))
        return self._check_text(arr)

    def _check_text(self, arr, dt=None):
        """numpy stores `U` strings as UCS-4 code points and fails (SystemError)
        on reading one above U+10FFFF, so such bytes are refused here."""
        dt = arr.dtype if dt is None else dt
        if dt.fields:
            for name in dt.names:
                self._check_text(arr[name])
        elif dt.subdtype is not None:
            self._check_text(arr, dt.subdtype[0])
        elif dt.kind == "U" and arr.size and dt.itemsize:
            codes = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=dt.byteorder.replace("|", "=") + "u4")
            if codes.size and int(codes.max()) > 0x10FFFF:
                raise self.corrupt(f"a string array of dtype {dt} holds code point {int(codes.max()):#x}, "
                                   "beyond Unicode's U+10FFFF")
        return arr

    def _frombuffer(self, buf, dtype, shape, order, axis_order=None):
        dt = self._real_dtype(dtype, "the dtype of a protocol-5 array")
        if dt.hasobject:
            raise self.unsafe(f"a protocol-5 buffer array of dtype {dt} (raw bytes would be read as pointers)")
        if not isinstance(buf, (bytes, bytearray)):
            raise self.corrupt(f"a protocol-5 array has a buffer of type {type(buf).__name__}")
        shape, count = self._shape(shape, "a protocol-5 array")
        self.charge(count * max(dt.itemsize, 1), f"array of shape {list(shape)} and dtype {dt}")
        if len(buf) != count * dt.itemsize or dt.itemsize == 0:
            raise self.corrupt(f"a protocol-5 array of shape {list(shape)} and dtype {dt} needs "
                               f"{count * dt.itemsize} bytes, the buffer has {len(buf)}")
        if order not in ("C", "F", "K"):
            raise self.corrupt(f"a protocol-5 array has order {_short(order)}")
        array = np.frombuffer(buf, dtype=dt)
        if order == "K" and axis_order is not None:
            if not isinstance(axis_order, (tuple, list)) or sorted(axis_order) != list(range(len(shape))):
                raise self.corrupt(f"a protocol-5 array has axis order {_short(axis_order)} for shape {list(shape)}")
            array = array.reshape(shape, order="C").transpose(axis_order)
        else:
            array = array.reshape(shape, order="C" if order == "K" else order)
        return _ArrayProxy(self, self._check_text(array), done=True)

    def _scalar(self, dtype, data=None):
        dt = self._real_dtype(dtype, "the dtype of a numpy scalar")
        if dt.hasobject:
            raise self.unsafe("a numpy object scalar (numpy would read the object from the pickle's bytes)")
        if not isinstance(data, (bytes, bytearray)) and isinstance(data, str):
            data = data.encode("latin1")
        if not isinstance(data, (bytes, bytearray)) or len(data) != dt.itemsize:
            raise self.corrupt(f"a numpy scalar of dtype {dt} needs {dt.itemsize} bytes, got {_short(data)}")
        self._check_text(np.frombuffer(bytes(data), dtype=dt))
        return _ScalarProxy(self, _NUMPY_SCALAR(dt, bytes(data)), done=True)

    # -- the swap ---------------------------------------------------------------
    def _resolve(self, obj, seen):
        """`obj` with every proxy replaced by its numpy object (in place for
        lists, dicts, sets and object arrays, so shared references stay shared)."""
        if isinstance(obj, _Proxy):
            return obj.result()
        t = type(obj)
        if t in (str, bytes, bytearray, int, float, bool, complex) or obj is None:
            return obj
        if not (t in _CONTAINERS or isinstance(obj, (np.generic, np.dtype, np.ndarray))):
            # A bare allowed global (`numpy.dtype`, `builtins.list`, ...) left
            # in the data: a data file never holds one.
            raise self.unsafe(f"the data holds {_short(obj)} (a {t.__name__}); data pickles hold only "
                              "containers, numbers, strings and numpy arrays")
        key = id(obj)
        if key in seen:
            return seen[key]
        seen[key] = obj
        if t is list:
            for i, x in enumerate(obj):
                r = self._resolve(x, seen)
                if r is not x:
                    obj[i] = r
        elif t in (dict, collections.OrderedDict):
            pairs = [(self._resolve(k, seen), self._resolve(v, seen)) for k, v in obj.items()]
            if any(a is not k or b is not v for (a, b), (k, v) in zip(pairs, obj.items())):
                obj.clear()
                obj.update(pairs)
        elif t is set:
            items = [self._resolve(x, seen) for x in obj]
            obj.clear()
            obj.update(items)
        elif t in (tuple, frozenset):
            items = [self._resolve(x, seen) for x in obj]
            if any(a is not b for a, b in zip(items, obj)):
                seen[key] = t(items)
        elif t is np.ndarray and obj.dtype.hasobject:
            for index in np.ndindex(obj.shape):
                x = obj[index]
                r = self._resolve(x, seen)
                if r is not x:
                    obj[index] = r
        return seen[key]


def _sized(unpickler, arg, what):
    if isinstance(arg, (str, bytes, bytearray, list, tuple, dict, set, frozenset, collections.OrderedDict)):
        unpickler.charge(len(arg) * _SLOT_BYTES, what)
        return
    if isinstance(arg, _Proxy):
        raise unpickler.corrupt(f"{what} of a numpy {arg.kind}")
    raise unpickler.unsafe(f"{what} of a {type(arg).__name__}")


def _container(cls):
    def factory(unpickler):
        def make(*args, **kwargs):
            if kwargs or len(args) > 1:
                raise unpickler.unsafe(f"{cls.__name__}() with arguments {_short(args)} {_short(kwargs)}")
            if args:
                _sized(unpickler, args[0], f"{cls.__name__}()")
            return cls(*args)

        return make

    return factory


def _byteslike(cls):
    def factory(unpickler):
        def make(source=b"", *args):
            if _is_int(source):
                if source < 0:
                    raise unpickler.corrupt(f"{cls.__name__}({source})")
                unpickler.charge(source, f"{cls.__name__}({source})")
            elif isinstance(source, str):
                _check_codec(unpickler, args, f"{cls.__name__}()")
                unpickler.charge(len(source) * 4, f"{cls.__name__}() of a string")
            elif isinstance(source, bool) or source is None:
                raise unpickler.unsafe(f"{cls.__name__}({source!r})")
            else:
                _sized(unpickler, source, f"{cls.__name__}()")
            return cls(source, *args)

        return make

    return factory


def _check_codec(unpickler, args, what):
    if args and (not isinstance(args[0], str) or args[0].lower() not in _CODECS):
        raise unpickler.unsafe(f"{what} with codec {_short(args[0])}; only latin-1, ASCII and UTF-8")


def _str_factory(unpickler):
    def make(obj="", *args):
        if isinstance(obj, (bytes, bytearray)):
            _check_codec(unpickler, args, "str()")
            unpickler.charge(len(obj) * 4, "str() of bytes")
            return str(obj, *args)
        if isinstance(obj, (str, int, float, complex)) and not args:
            return str(obj)
        raise unpickler.unsafe(f"str() of a {type(obj).__name__}")

    return make


def _plain(fn):
    def factory(unpickler):
        def make(*args, **kwargs):
            for a in list(args) + list(kwargs.values()):
                if isinstance(a, _Proxy):
                    raise unpickler.corrupt(f"{fn.__name__}() of a numpy {a.kind}")
            return fn(*args, **kwargs)

        return make

    return factory


def _encode_factory(unpickler):
    import _codecs

    def encode(obj, encoding="utf-8", errors="strict"):
        if not isinstance(obj, str) or not isinstance(encoding, str) or encoding.lower() not in _CODECS:
            raise unpickler.unsafe(f"_codecs.encode({type(obj).__name__}, {_short(encoding)}): only strings "
                                   "with a latin-1, ASCII or UTF-8 codec")
        unpickler.charge(len(obj) * 4, "_codecs.encode")
        return _codecs.encode(obj, encoding, errors)

    return encode


_BUILTIN_WRAPPERS = {
    "dict": _container(dict),
    "list": _container(list),
    "tuple": _container(tuple),
    "set": _container(set),
    "frozenset": _container(frozenset),
    "OrderedDict": _container(collections.OrderedDict),
    "bytes": _byteslike(bytes),
    "bytearray": _byteslike(bytearray),
    "str": _str_factory,
    "int": _plain(int),
    "float": _plain(float),
    "complex": _plain(complex),
    "bool": _plain(bool),
    "encode": _encode_factory,
}


def _build_allowed():
    allowed = set()
    for prefix in ("numpy.core", "numpy._core"):
        allowed |= {(f"{prefix}.multiarray", "_reconstruct"), (f"{prefix}.multiarray", "scalar"),
                    (f"{prefix}.numeric", "_frombuffer")}
    allowed |= {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("_codecs", "encode")}
    for mod in ("builtins", "__builtin__"):
        for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
                     "int", "float", "complex", "bool"):
            allowed.add((mod, name))
    return frozenset(allowed)


_ALLOWED = _build_allowed()


def allocation_cap(file_size, max_allocation_factor=None, min_allocation_bytes=None):
    """`(cap_bytes, description)` for a file of `file_size` bytes."""
    factor = DEFAULT_MAX_ALLOCATION_FACTOR if max_allocation_factor is None else max_allocation_factor
    floor = DEFAULT_MIN_ALLOCATION_BYTES if min_allocation_bytes is None else min_allocation_bytes
    try:
        factor, floor = float(factor), int(floor)
    except (TypeError, ValueError) as e:
        raise ValueError(f"max_allocation_factor must be a number and min_allocation_bytes an integer; "
                         f"got {max_allocation_factor!r}, {min_allocation_bytes!r}") from e
    if not factor >= 0 or floor < 0:
        raise ValueError(f"max_allocation_factor and min_allocation_bytes must be >= 0; got {factor}, {floor}")
    cap = int(factor * file_size) + floor
    return cap, f"max_allocation_factor {factor:g} x {file_size:,} bytes + {floor:,}"


def safe_loads(data, source=None, max_allocation_factor=None, min_allocation_bytes=None):
    """Unpickles `data` (bytes) with `SafeUnpickler`, capped as `safe_load`."""
    cap, help_text = allocation_cap(len(data), max_allocation_factor, min_allocation_bytes)
    return _load(io.BytesIO(data), source, cap, help_text)


def safe_load(path, max_allocation_factor=None, min_allocation_bytes=None):
    """Unpickles the file at `path` with `SafeUnpickler`.

    Args:
        path: the pickle.
        max_allocation_factor: the allocation budget in multiples of the
            file's size (default `DEFAULT_MAX_ALLOCATION_FACTOR`).
        min_allocation_bytes: the budget's floor (default
            `DEFAULT_MIN_ALLOCATION_BYTES`).

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: `path` is a directory.
        UnsafePickleError: the pickle names a global outside the allow-list or
            forges a numpy object; `PickleAllocationError` (a subclass) when
            it asks for more than its budget.
        DataFormatError: the file is truncated, corrupt or not a pickle.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory; expected a pickle file (.pkl) inside it")
    with open(path, "rb") as f:
        cap, help_text = allocation_cap(os.fstat(f.fileno()).st_size, max_allocation_factor, min_allocation_bytes)
        return _load(f, path, cap, help_text)


def _load(f, source, max_bytes=None, cap_help=None):
    try:
        return SafeUnpickler(f, source=source, max_bytes=max_bytes, cap_help=cap_help).load()
    except DataFormatError:  # UnsafePickleError included: already says where and why
        raise
    except EOFError as e:
        raise DataFormatError(
            f"truncated or empty pickle (ran out of data: {e or 'EOF'}); download it again.",
            path=source,
        ) from e
    except MemoryError as e:
        raise DataFormatError(
            "the pickle needs more memory than this machine has (a corrupt length?)", path=source
        ) from e
    except RecursionError as e:
        raise DataFormatError("corrupt pickle: containers nested too deeply.", path=source) from e
    except (pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            OverflowError, UnicodeDecodeError) as e:
        raise DataFormatError(
            f"corrupt or not a pickle ({type(e).__name__}: {e}).", path=source
        ) from e


# -- PyTorch checkpoints (.pth) ------------------------------------------------
#
# `torch.save` writes a zip: `<name>/data.pkl` (a pickle of the object, e.g. a
# state dict), `<name>/data/<key>` (one raw little-endian buffer per storage)
# and `<name>/byteorder`. In the pickle a tensor is
# `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
# requires_grad, backward_hooks)`, the storage a persistent id
# `("storage", torch.<Type>Storage, key, location, numel)`. The .pth mode
# resolves exactly those names, to keras_msa's own readers that build numpy
# arrays from the zip's buffers; torch is never imported, and every other
# global is refused as in data pickles.

#: `torch.<name>` storage classes -> numpy dtype of their elements.
TORCH_STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "ComplexFloatStorage": "c8", "ComplexDoubleStorage": "c16",
}
_TORCH_REBUILD = ("torch._utils", "_rebuild_tensor_v2")


class _TorchStorageType:
    """What `torch.<X>Storage` resolves to: a name and a dtype, nothing callable."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name = name
        self.dtype = TORCH_STORAGE_DTYPES[name]

    def __repr__(self):
        return f"torch.{self.name}"


class _TorchStorage:
    """A storage read from the zip: a flat numpy array (never handed out bare)."""

    __slots__ = ("key", "array")

    def __init__(self, key, array):
        self.key = key
        self.array = array

    def __repr__(self):
        return f"<storage {self.key}>"


class TorchCheckpointUnpickler(SafeUnpickler):
    """`SafeUnpickler` for the `data.pkl` of a `torch.save` zip.

    Admits, beyond the data-pickle allow-list, `torch._utils._rebuild_tensor_v2`
    and the `torch.<Type>Storage` names of `TORCH_STORAGE_DTYPES`, and
    persistent ids `("storage", <storage type>, key, location, numel)`; each
    storage is read from `<prefix>/data/<key>` of `archive`, its length
    checked against `numel`. Tensors come back as numpy arrays (copies, in
    C order). Everything else is refused with `UnsafePickleError`.

    Args:
        file: the `data.pkl` stream.
        archive: the open `zipfile.ZipFile`.
        prefix: the record prefix (`<name>/`).
        byteorder: "little" or "big" (the zip's `byteorder` record).
        **kwargs: `SafeUnpickler` arguments.
    """

    def __init__(self, file, archive, prefix, byteorder="little", **kwargs):
        super().__init__(file, **kwargs)
        self.archive = archive
        self.prefix = prefix
        self.byteorder = "<" if byteorder == "little" else ">"
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) == _TORCH_REBUILD:
            return self._rebuild_tensor
        if module == "torch" and name in TORCH_STORAGE_DTYPES:
            return _TorchStorageType(name)
        if module.startswith("torch"):
            raise UnsafePickleError(
                f"refusing to load global '{module}.{name}': a .pth is read without torch, and only tensors "
                f"saved by torch.save (torch._utils._rebuild_tensor_v2 over torch.<Type>Storage) are rebuilt; "
                f"save the model's state_dict() (plain tensors), not the model object. Nothing from the file "
                f"was executed.", path=self.source)
        return super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise self.unsafe(f"persistent id {_short(pid)}: a torch.save checkpoint names storages as "
                              "('storage', type, key, location, numel)")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _TorchStorageType):
            raise self.unsafe(f"storage of type {_short(kind)} (not one of torch.{', torch.'.join(TORCH_STORAGE_DTYPES)})")
        if not isinstance(key, str) or not re.fullmatch(r"[0-9A-Za-z_]+", key) or not _is_int(numel) or numel < 0:
            raise self.unsafe(f"storage key {_short(key)} / size {_short(numel)}")
        if key in self._storages:
            return self._storages[key]
        name = f"{self.prefix}data/{key}"
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise self.corrupt(f"the checkpoint names storage '{key}' but the zip has no {name}") from None
        itemsize = 2 if kind.dtype == "bf16" else np.dtype(kind.dtype).itemsize
        if info.file_size != numel * itemsize:
            raise self.corrupt(f"storage '{key}' declares {numel} x {itemsize} bytes but {name} holds "
                               f"{info.file_size}")
        self.charge(info.file_size, f"storage '{key}'")
        raw = self.archive.read(name)
        if kind.dtype == "bf16":
            # bfloat16 is the top half of a float32.
            bits = np.frombuffer(raw, dtype=f"{self.byteorder}u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        else:
            array = np.frombuffer(raw, dtype=np.dtype(kind.dtype).newbyteorder(self.byteorder)).astype(
                np.dtype(kind.dtype).newbyteorder("="))
        storage = _TorchStorage(key, array)
        self._storages[key] = storage
        return storage

    def _rebuild_tensor(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None,
                        *extra):
        if not isinstance(storage, _TorchStorage):
            raise self.unsafe(f"_rebuild_tensor_v2 over {_short(storage)} (expected a storage of the checkpoint)")
        if extra or not isinstance(requires_grad, bool) or (hooks is not None and (
                not isinstance(hooks, collections.OrderedDict) or hooks)) or metadata not in (None, {}):
            raise self.unsafe("_rebuild_tensor_v2 with backward hooks, metadata or extra arguments (a state "
                              "dict's tensors have none)")
        shape, count = self._shape(size, "a tensor's size")
        if not isinstance(stride, tuple) or len(stride) != len(shape) or not all(
                _is_int(s) and s >= 0 for s in stride) or not _is_int(offset) or offset < 0:
            raise self.corrupt(f"tensor stride {_short(stride)} / offset {_short(offset)} for size {shape}")
        flat = storage.array
        if 0 not in shape:
            last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
            if last >= flat.size:
                raise self.corrupt(f"a tensor of size {shape}, stride {stride}, offset {offset} reads past its "
                                   f"storage '{storage.key}' of {flat.size} elements")
        self.charge(count * flat.itemsize, f"a tensor of size {shape}")
        if 0 in shape:
            return np.zeros(shape, flat.dtype)
        view = np.lib.stride_tricks.as_strided(flat[offset:], shape=shape,
                                               strides=[s * flat.itemsize for s in stride], writeable=False)
        return np.array(view, copy=True, order="C")


def load_torch_checkpoint(path, max_allocation_factor=None, min_allocation_bytes=None):
    """Reads a `.pth` written by `torch.save` (the zip format, torch >= 1.6)
    without torch and without running code: tensors become numpy arrays,
    containers stay containers (an `OrderedDict` state dict comes back as
    one), anything else is refused.

    Args:
        path: the `.pth` file.
        max_allocation_factor, min_allocation_bytes: the allocation budget,
            as `safe_load` (the storages count against it).

    Raises:
        FileNotFoundError / IsADirectoryError: no such file.
        UnsafePickleError: the pickle names a global outside the allow-list
            (a pickled model object, or code); nothing was run.
        DataFormatError: not a torch.save zip, or a corrupt one.
    """
    import zipfile

    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory; expected a .pth file written by torch.save")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise DataFormatError(
            "not a torch.save zip archive: only the zip format (torch >= 1.6's default) is read; the legacy "
            "format (torch.save(..., _use_new_zipfile_serialization=False) or torch < 1.6) is not. Re-save it "
            "with torch.save(state_dict, path).", path=path)
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise DataFormatError(f"a torch.save zip holds one <name>/data.pkl; this one holds {len(pickles)} "
                                  f"({', '.join(archive.namelist()[:5])}...)", path=path)
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in archive.namelist():
            byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise DataFormatError(f"{prefix}byteorder says {byteorder!r}; expected 'little' or 'big'",
                                      path=path)
        cap, help_text = allocation_cap(os.path.getsize(path), max_allocation_factor, min_allocation_bytes)
        data = io.BytesIO(archive.read(pickles[0]))
        unpickler = TorchCheckpointUnpickler(data, archive, prefix, byteorder, source=path, max_bytes=cap,
                                             cap_help=help_text)
        try:
            return unpickler.load()
        except DataFormatError:
            raise
        except EOFError as e:
            raise DataFormatError(f"truncated data.pkl in the checkpoint ({e or 'EOF'})", path=path) from e
        except (pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError, AttributeError,
                OverflowError, UnicodeDecodeError, RecursionError, zipfile.BadZipFile) as e:
            raise DataFormatError(f"corrupt checkpoint ({type(e).__name__}: {e}).", path=path) from e
