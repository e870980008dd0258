"""A tiny runner for the fault catalogue: hostile or careless inputs against
every entry point, each judged by what a user would experience.

Each area module (`pickles.py`, `csd_labelcsv.py`, ...) defines cases with
`@case("name", isolate=False)`. A case function gets a fresh temporary
directory and returns one outcome:

* `"handled"`: refused with an error naming the file/key/flag and what was
  expected, or accepted and processed correctly;
* `"poor_message"`: refused, but the message does not say which
  file/key/flag or what was expected (a raw TensorFlow/h5py/zipfile error);
* `"silent_wrong"`: accepted, and the result is wrong without a word;
* `"data_loss"`: a file the user did not name for deletion is gone or damaged;
* `"security"`: code ran, memory was exhausted, a file outside the input was
  read, or the process crashed.

Cases marked `isolate=True` run in a subprocess; a crash there (a segfault,
the memory cap) counts as `"security"`.

Run one area (against whichever keras_msa is first on `sys.path`):

    python benchmarks/fault_catalogue/pickles.py
    PYTHONPATH=/path/to/old/checkout python benchmarks/fault_catalogue/pickles.py
"""

import json
import os
import subprocess
import sys
import tempfile
import traceback

OUTCOMES = ("handled", "poor_message", "silent_wrong", "data_loss", "security")

_CASES = {}


def case(name, isolate=False):
    """Registers a case function `fn(tmp_dir) -> outcome` under `name`."""

    def decorator(fn):
        _CASES[(fn.__module__, name)] = (fn, isolate)
        fn.case_name = name
        return fn

    return decorator


def names_any(message, *needles):
    """True when `message` mentions at least one of `needles` (case-insensitive)."""
    low = str(message).lower()
    return any(str(n).lower() in low for n in needles)


def _run_in_process(fn):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            outcome = fn(tmp)
        except Exception:  # an unexpected escape from the case itself
            traceback.print_exc()
            outcome = "poor_message"
    if outcome not in OUTCOMES:
        raise ValueError(f"case returned {outcome!r}; expected one of {OUTCOMES}")
    return outcome


def _run_isolated(module_file, name, memory_limit_gb=4):
    code = (
        "import resource, sys, json\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({memory_limit_gb} << 30, {memory_limit_gb} << 30))\n"
        f"sys.argv = [{module_file!r}, '--one', {name!r}]\n"
        f"exec(compile(open({module_file!r}).read(), {module_file!r}, 'exec'), "
        f"{{'__name__': '__main__', '__file__': {module_file!r}}})\n"
    )
    # Run from a neutral directory: `python -c` puts the working directory
    # first on sys.path, which would shadow the checkout PYTHONPATH names.
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=600, cwd=cwd)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("OUTCOME "):
            return line.split(" ", 1)[1].strip()
    # Died without an answer: segfault, memory cap, abort.
    sys.stderr.write(f"[{name}] exited {proc.returncode}: {proc.stderr[-400:]}\n")
    return "security"


def main(module_name, module_file):
    """Runs the cases of `module_name`; prints one line per case and the counts."""
    argv = sys.argv[1:]
    cases = {n: v for (m, n), v in _CASES.items() if m == module_name}
    if argv[:1] == ["--one"]:
        fn, _ = cases[argv[1]]
        print("OUTCOME", _run_in_process(fn), flush=True)
        return
    counts = {o: 0 for o in OUTCOMES}
    rows = []
    for name, (fn, isolate) in cases.items():
        outcome = _run_isolated(module_file, name) if isolate else _run_in_process(fn)
        counts[outcome] += 1
        rows.append((name, outcome))
        print(f"{outcome:13s} {name}", flush=True)
    print(json.dumps({"area": os.path.basename(module_file), "cases": len(rows), **counts}))
