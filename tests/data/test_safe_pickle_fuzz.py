"""Fuzzing the restricted unpickler over pickle opcodes and numpy dtype states.

Every input must either load into plain containers and numpy objects that can
be read in full (no forged object pointers), or be refused with
`DataFormatError` (`UnsafePickleError` is one). The fuzzing runs in a child
process, so a segfault fails the test (naming the case) instead of killing
pytest. Fixed seed, bounded to a few seconds.
"""

import json
import os
import subprocess
import sys

_CASES = 1500
_SECONDS = 15.0  # a safety stop on a loaded machine; 1,500 cases take about 3 s


def _worker(seed, out_dir):
    import collections
    import pickle
    import random
    import struct
    import time

    import numpy as np

    from keras_msa.data.errors import DataFormatError
    from keras_msa.data.safe_pickle import safe_loads

    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct
        from numpy.core.multiarray import scalar

    class R:
        """Pickles as `f(*args)` (+ BUILD `state`): forges any reduce tuple."""

        def __init__(self, f, args, state=None):
            self.f, self.args, self.state = f, args, state

        def __reduce__(self):
            return (self.f, self.args) if self.state is None else (self.f, self.args, self.state)

    rng = random.Random(seed)
    plain = [np.dtype(s) for s in ("f4", ">i2", "u1", "?", "c8", "f8", "U3", "S2", "i8")]
    honest = [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.asfortranarray(np.arange(6, dtype=">i4").reshape(2, 3)),
        np.array(["ab", "cd é"], dtype=object),
        np.array([b"x", b"yz"]),
        np.zeros((0, 4), np.float64),
        np.array(3.5),
        np.zeros(3, dtype=[("a", "<f4"), ("b", "<i2", (2,))]),
        np.array([[1, 2]], dtype=object),
        np.float64(2.5), np.int16(-3), np.str_("s"), np.dtype("U4"),
        {"train": {"id": np.array(["v$_$0"], dtype=object), "audio": np.ones((1, 2, 3), np.float32)}},
        collections.OrderedDict(a=[1, (2, 3.0)]), {1, 2}, frozenset({b"q"}), bytearray(b"ab"), 1 + 2j,
    ]

    def rand_dtype(depth=0):
        choice = rng.random()
        if choice < 0.5 or depth > 1:
            return rng.choice(plain + [np.dtype(object)])
        return forged_dtype(depth + 1)

    def forged_dtype(depth=0):
        kind = rng.choice(["V", "V", "O", "f", "U", "S", "M", "i", "x"])
        size = rng.choice([0, 1, 2, 4, 8, 12, 16, 24, 2**31])
        spec = f"{kind}{size}"
        names = fields = subarray = None
        if kind == "V" and rng.random() < 0.6:
            names = tuple(rng.sample(["a", "b", "c"], rng.randint(1, 3)))
            fields = {n: (rand_dtype(depth), rng.choice([0, 4, 8, -4, size])) for n in names}
            if rng.random() < 0.2:
                fields["extra"] = (np.dtype("f4"), 0)
        elif kind == "V":
            subarray = (rand_dtype(depth), tuple(rng.choice([1, 2, 3]) for _ in range(rng.randint(0, 2))))
        state = (rng.choice([3, 3, 3, 4, 2]), rng.choice(["<", ">", "|", "=", "?"]), subarray, names, fields,
                 rng.choice([-1, size, size + 4, 0]), rng.choice([-1, 1, 4, 8]), rng.choice([0, 0, 63, 16, 8, 1]))
        if state[0] == 4:
            state = state + (rng.choice([None, {}, (None, (b"s", 1, 1, 1))]),)
        if rng.random() < 0.05:
            state = state[: rng.randint(0, len(state))]
        return R(np.dtype, (spec, False, True), state)

    def forged_array():
        dt = rand_dtype() if rng.random() < 0.5 else forged_dtype()
        shape = tuple(rng.choice([0, 1, 2, 3, 2**40]) for _ in range(rng.randint(0, 3)))
        if rng.random() < 0.5:
            raw = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 4, 8, 16, 24, 48])))
        else:
            raw = [rng.choice(["s", 1, None, b"b", [1], (2,)]) for _ in range(rng.choice([0, 1, 2, 3, 6]))]
        if rng.random() < 0.1:
            return R(scalar, (dt, raw if isinstance(raw, bytes) else struct.pack("<Q", 0x41414141)))
        return R(_reconstruct, (np.ndarray, (0,), b"b"), (1, shape, dt, rng.random() < 0.2, raw))

    def mutate(blob):
        blob = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(blob) + 1)
            if op < 0.4 and blob:
                blob[min(pos, len(blob) - 1)] = rng.getrandbits(8)
            elif op < 0.6:
                blob[pos:pos] = rng.choice([b"(", b"t", b"R", b"b", b"]", b"a", b"e", b"}", b"s", b"u", b"\x94",
                                            b"h\x00", b"2", b"0", b".", b"N", b"\x85", b"\x86", b"\x87", b"q\x00"])
            elif op < 0.8:
                del blob[pos: pos + rng.randint(1, 8)]
            else:
                other = pickle.dumps(rng.choice(honest), protocol=rng.choice([2, 4, 5]))
                start = rng.randrange(len(other))
                blob[pos:pos] = other[start: start + rng.randint(1, 24)]
        return bytes(blob)

    def touch(obj, seen, depth=0):
        """Reads everything in `obj`; fails on what must never come out."""
        if id(obj) in seen or depth > 50:
            return
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            assert type(obj) is np.ndarray, type(obj)
            if obj.dtype.hasobject:
                assert obj.dtype == np.dtype(object), f"object field in {obj.dtype}"
                for x in obj.reshape(-1):
                    touch(x, seen, depth + 1)
            else:
                obj.tobytes()
                repr(obj)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for x in obj:
                touch(x, seen, depth + 1)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                touch(k, seen, depth + 1)
                touch(v, seen, depth + 1)
        else:
            assert isinstance(obj, (str, bytes, bytearray, int, float, complex, type(None), np.generic, np.dtype)), \
                type(obj)
            if isinstance(obj, np.dtype):
                assert not obj.hasobject or obj == np.dtype(object), obj
            repr(obj)

    counts = {"loaded": 0, "refused": 0}
    failures = []
    last = os.path.join(out_dir, "last_case.pkl")
    start = time.monotonic()
    for i in range(_CASES):
        if time.monotonic() - start > _SECONDS:
            break
        r = rng.random()
        if r < 0.35:
            blob = pickle.dumps({"x": forged_array()}, protocol=rng.choice([2, 4]))
        elif r < 0.5:
            blob = pickle.dumps(forged_dtype(), protocol=rng.choice([2, 4]))
        else:
            blob = mutate(pickle.dumps(rng.choice(honest), protocol=rng.choice([2, 3, 4, 5])))
        with open(last, "wb") as f:
            f.write(blob)
        try:
            obj = safe_loads(blob, source="fuzz.pkl", min_allocation_bytes=1 << 20)
        except DataFormatError as e:
            assert "fuzz.pkl" in str(e), str(e)
            counts["refused"] += 1
            continue
        except Exception as e:  # anything else is a bug of the reader
            failures.append(f"case {i}: {type(e).__name__}: {e} ({blob.hex()[:200]})")
            continue
        try:
            touch(obj, set())
        except AssertionError as e:
            failures.append(f"case {i}: loaded something forbidden: {e} ({blob.hex()[:200]})")
        counts["loaded"] += 1
    print(json.dumps({"counts": counts, "failures": failures[:10], "n_failures": len(failures)}))


def test_fuzz_pickle_opcodes_and_dtype_states(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "1234", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    last = tmp_path / "last_case.pkl"
    assert proc.returncode == 0, (
        f"the fuzz worker died with exit code {proc.returncode} (a crash inside numpy?); last case "
        f"{last.read_bytes().hex() if last.exists() else '?'}\n{proc.stderr[-2000:]}"
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["n_failures"] == 0, report["failures"]
    # The fuzzing reached both sides: inputs that load and inputs refused.
    assert report["counts"]["loaded"] > 30 and report["counts"]["refused"] > 500, report["counts"]


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(int(sys.argv[2]), sys.argv[3])
