"""recipes/convert.py end to end on an MMSA fixture."""

import json
import os
import subprocess
import sys

import numpy as np

from keras_msa.data.fixtures import mmsa_arrays
from keras_msa.data.fixtures import mult_arrays
from keras_msa.data.fixtures import write_pickle
from keras_msa.data.tfrecord import load_split
from keras_msa.data.tfrecord import read_schema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, os.path.join(ROOT, "recipes", "convert.py")] + args,
                          capture_output=True, text=True, env=env, timeout=300)


def test_convert_mmsa_subprocess(tmp_path):
    raw = mmsa_arrays(aligned=False, neg_inf=2)
    src = write_pickle(raw, tmp_path / "unaligned_50.pkl")
    out = tmp_path / "mosi"
    proc = _run(["--format=mmsa", f"--input={src}", f"--output={out}", "--dataset=mosi"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train: 6 examples" in proc.stdout and "audio_neg_inf_to_zero=2" in proc.stdout
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last == {"splits": {"train": 6, "valid": 3, "test": 4}, "repairs": {"audio_neg_inf_to_zero": 2}}
    schema = read_schema(out)
    assert schema["dataset"] == "mosi" and schema["extra"]["format"] == "mmsa"
    import hashlib

    assert schema["sources"][0]["sha256"] == hashlib.sha256(open(src, "rb").read()).hexdigest()
    x, y = next(iter(load_split(out, "test", batch_size=4)))
    np.testing.assert_array_equal(y["sentiment"].numpy()[:, 0], raw["test"]["regression_labels"])
    np.testing.assert_array_equal(x["vision_mask"].numpy().sum(axis=1), raw["test"]["vision_lengths"])
    assert [s.decode() for s in x["raw_text"].numpy()] == list(raw["test"]["raw_text"])

    # An existing output is refused without --overwrite and left as it was.
    proc = _run(["--format=mmsa", f"--input={src}", f"--output={out}"])
    assert proc.returncode != 0 and "overwrite" in proc.stderr
    assert read_schema(out)["dataset"] == "mosi"


def test_convert_refuses_malicious_pickle(tmp_path):
    import builtins

    class Payload:
        def __reduce__(self):
            return (builtins.open, (str(tmp_path / "pwned"), "w"))

    src = write_pickle({"train": Payload()}, tmp_path / "evil.pkl")
    proc = _run(["--format=mult", f"--input={src}", f"--output={tmp_path / 'out'}"])
    assert proc.returncode != 0 and "UnsafePickleError" in proc.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".out.")] == []


def test_convert_in_process_mult_and_missing_reader(tmp_path, load_recipe):
    convert = load_recipe("convert")
    src = write_pickle(mult_arrays(kind="iemocap"), tmp_path / "iemocap_data.pkl")
    schema = convert.convert("mult", src, str(tmp_path / "iemocap"), progress=False)
    assert schema["dataset"] == "iemocap" and "emotions" in schema["labels"]
    assert "train: 6 examples" in convert.summary(schema, str(tmp_path / "iemocap"))
    import pytest

    with pytest.raises(ValueError, match="takes no option"):
        convert.convert("mmsa", src, str(tmp_path / "x"), reader_options={"bogus": 1})
