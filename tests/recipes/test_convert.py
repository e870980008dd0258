"""recipes/convert.py end to end on an MMSA fixture."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_msa.data.fixtures import mmsa_arrays
from keras_msa.data.fixtures import mult_arrays
from keras_msa.data.fixtures import write_pickle
from keras_msa.data.tfrecord import load_split
from keras_msa.data.tfrecord import read_schema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def convert(load_recipe):
    """recipes/convert.py imported once for the module (its flags can be
    defined only once)."""
    return load_recipe("convert")


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


def test_convert_in_process_mult_and_missing_reader(tmp_path, convert):
    src = write_pickle(mult_arrays(kind="iemocap"), tmp_path / "iemocap_data.pkl")
    schema = convert.convert("mult", src, str(tmp_path / "iemocap"), progress=False)
    assert schema["dataset"] == "iemocap" and "emotions" in schema["labels"]
    assert "train: 6 examples" in convert.summary(schema, str(tmp_path / "iemocap"))

    with pytest.raises(ValueError, match="takes no option"):
        convert.convert("mmsa", src, str(tmp_path / "x"), reader_options={"bogus": 1})


def test_overwrite_never_deletes_the_input(tmp_path, convert):
    """--output at the input's directory or any parent of it, with
    --overwrite, used to delete the input and exit 0."""
    project = tmp_path / "project"
    (project / "MOSI").mkdir(parents=True)
    src = write_pickle(mmsa_arrays(), project / "MOSI" / "aligned_50.pkl")
    (project / "notes.txt").write_text("years of work")
    proc = _run(["--format=mmsa", f"--input={src}", f"--output={project}", "--overwrite", "--progress=false"])
    assert proc.returncode != 0 and "refusing to write the output there" in proc.stderr, proc.stderr[-2000:]
    assert str(src) in proc.stderr
    for out in (project / "MOSI", src):
        with pytest.raises(ValueError, match="refusing to write the output there"):
            convert.convert("mmsa", str(src), str(out), overwrite=True, progress=False)
    assert os.path.isfile(src) and (project / "notes.txt").read_text() == "years of work"
    assert sorted(os.listdir(project)) == ["MOSI", "notes.txt"] and os.listdir(project / "MOSI") == ["aligned_50.pkl"]
    # Beside the input is fine.
    convert.convert("mmsa", str(src), str(project / "MOSI" / "converted"), dataset="mosi", progress=False)
    assert read_schema(project / "MOSI" / "converted")["splits"]["train"] == 6


def test_refused_before_reading(tmp_path, convert, monkeypatch):
    calls = []
    monkeypatch.setattr(convert, "get_reader", lambda fmt: lambda path, **kw: calls.append(path))
    src = tmp_path / "in"
    src.mkdir()
    (src / "label.csv").write_text("x")

    with pytest.raises(ValueError, match=r"--examples_per_shard=0: expected an integer >= 1"):
        convert.convert("labelcsv", str(src), str(tmp_path / "out"), examples_per_shard=0)
    with pytest.raises(ValueError, match=r"--examples_per_shard=-5"):
        convert.convert("labelcsv", str(src), str(tmp_path / "out"), examples_per_shard=-5)
    with pytest.raises(ValueError, match=r"inside the input"):
        convert.convert("labelcsv", str(src), str(src / "out"), overwrite=True)
    with pytest.raises(FileNotFoundError, match=r"--input=.*nowhere: no such file"):
        convert.convert("labelcsv", str(tmp_path / "nowhere"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"--allow_empty_splits=tset: unknown split"):
        convert.convert("labelcsv", str(src), str(tmp_path / "out"), allow_empty_splits=["tset"])
    assert calls == [] and sorted(os.listdir(tmp_path)) == ["in"]


def test_reader_options_json_errors_name_the_flag(convert):

    assert convert.parse_reader_options('{"folds": "f.json"}') == {"folds": "f.json"}
    with pytest.raises(ValueError, match=r"--reader_options: not valid JSON: Expecting property name enclosed in "
                                         r"double quotes at line 1, column 2 \(character 1\)") as info:
        convert.parse_reader_options("{folds: 1}")
    assert "\n  {folds: 1}\n   ^\n" in str(info.value)
    with pytest.raises(ValueError, match=r"--reader_options: expected a JSON object .* got list"):
        convert.parse_reader_options("[1, 2]")


def test_empty_or_absent_validation_split(tmp_path, convert, capsys, monkeypatch):

    src = write_pickle(mmsa_arrays(n=(6, 0, 4)), tmp_path / "aligned_50.pkl")
    with pytest.raises(ValueError, match=r"split 'valid'.*no examples.*allow_empty_splits=valid"):
        convert.convert("mmsa", str(src), str(tmp_path / "out"), dataset="mosi", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["aligned_50.pkl"]
    schema = convert.convert("mmsa", str(src), str(tmp_path / "out"), dataset="mosi", progress=False,
                             allow_empty_splits=["valid"])
    assert schema["splits"] == {"train": 6, "valid": 0, "test": 4}

    def no_valid(path, **kwargs):
        ex = {"id": "a", "text": np.zeros((2, 3), np.float32), "sentiment": 0.5}
        return {"train": [ex], "test": [dict(ex, id="b")]}, {"dataset": "custom"}

    monkeypatch.setattr(convert, "get_reader", lambda fmt: no_valid)
    capsys.readouterr()
    convert.convert("labelcsv", str(src), str(tmp_path / "csv"), progress=False)
    err = capsys.readouterr().err
    assert "no validation split" in err and "mark some rows of label.csv with mode=valid" in err


def test_identify_official_other_mismatch_unknown(tmp_path):
    import hashlib

    from keras_msa.data.checksums import OFFICIAL
    from keras_msa.data.checksums import identify

    # The five hashes MMSA's README publishes, as 64 hex digits each.
    assert len(OFFICIAL) == 5 and all(len(v) == 64 and int(v, 16) >= 0 for v in OFFICIAL.values())
    good = tmp_path / "download" / "MOSI" / "Processed" / "unaligned_50.pkl"
    good.parent.mkdir(parents=True)
    good.write_bytes(b"features" * 1000)
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    table = {"MOSI/Processed/unaligned_50.pkl": digest}
    # Any name: a file is recognised by its hash.
    renamed = tmp_path / "mine.pkl"
    renamed.write_bytes(good.read_bytes())
    got = identify(str(renamed), official=table, others={})
    assert (got["status"], got["name"], got["sha256"]) == ("official", "MOSI/Processed/unaligned_50.pkl", digest)
    other = identify(str(renamed), official={}, others={digest: "MMSA 2021 re-release"})
    assert other["status"] == "other" and "MMSA 2021 re-release" in other["message"]
    # The published name with other bytes (a truncated download): warn, re-download.
    good.write_bytes(b"features" * 999)
    bad = identify(str(good), official=table, others={})
    assert bad["status"] == "mismatch" and bad["name"] == "MOSI/Processed/unaligned_50.pkl"
    assert "Re-download" in bad["message"] and digest in bad["message"]
    assert bad["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
    assert identify(str(tmp_path / "mine.pkl"), official={}, others={})["status"] == "unknown"


def test_convert_prints_and_stores_the_input_sha256(tmp_path, convert, capsys, monkeypatch):
    import hashlib

    from keras_msa.data import checksums

    src = tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl"
    src.parent.mkdir(parents=True)
    write_pickle(mmsa_arrays(aligned=False), src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    # Named like MMSA's file but not the published bytes: converted, with a warning.
    schema = convert.convert("mmsa", str(src), str(tmp_path / "out"), dataset="mosi", progress=False)
    err = capsys.readouterr().err
    assert "Re-download" in err and digest in err
    saved = read_schema(str(tmp_path / "out"))["extra"]["input_sha256"]
    assert saved == {"sha256": digest, "status": "mismatch", "published_name": "MOSI/Processed/unaligned_50.pkl"}
    assert f"input sha256: {digest} (NOT the published" in convert.summary(schema, str(tmp_path / "out"))
    # With its hash in the (injected) published table, it is the official file.
    monkeypatch.setitem(checksums.OFFICIAL, "MOSI/Processed/unaligned_50.pkl", digest)
    schema = convert.convert("mmsa", str(src), str(tmp_path / "out2"), dataset="mosi", progress=False)
    out = capsys.readouterr()
    assert "is the official MOSI/Processed/unaligned_50.pkl" in out.out and "Re-download" not in out.err
    assert schema["extra"]["input_sha256"]["status"] == "official"


def test_convert_refuses_the_dataset_cards_folder(tmp_path, convert):
    src = write_pickle(mult_arrays(kind="iemocap"), tmp_path / "iemocap_data.pkl")
    with pytest.raises(ValueError, match="dataset cards folder.*data/<name>"):
        convert.convert("mult", src, os.path.join(ROOT, "datasets", "iemocap", "converted"), progress=False)
    assert not os.path.exists(os.path.join(ROOT, "datasets", "iemocap", "converted"))
