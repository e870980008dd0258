"""keras_msa.data.csd: a `.csd` reads itself and nothing else.

HDF5 can make a file read other files (external links, external storage,
virtual datasets) or loop (soft links, hard links to an ancestor). These
tests build each kind with h5py, one at a time and then in random mixtures
(a bounded, seeded fuzz test), and check that the reader refuses them by
default, naming the object and the kind, and that `allow_external=True`
follows them and lists every file read in `meta["sources"]`.
"""

import json
import os
import time

import h5py
import numpy as np
import pytest

from keras_msa.data.csd import read_computational_sequence
from keras_msa.data.csd import read_csd
from keras_msa.data.errors import DataFormatError

SECRET = b"TOP-SECRET-BYTES"

#: kind -> (refused by default, refused even with allow_external, words in the message)
KINDS = {
    "hard": (False, False, None),
    "soft_inside": (False, False, None),
    "soft_dangling": (True, True, "dangling"),
    "soft_cycle": (True, True, "cycle"),
    "hard_cycle": (True, True, "cycle"),
    "external_link": (True, False, "external link"),
    "soft_to_external": (True, False, "external link"),  # named at the soft or the external link
    "external_storage": (True, False, "external storage"),
    "virtual": (True, False, "virtual dataset"),
}


def _labels(group, vids):
    for i, vid in enumerate(vids):
        v = group.create_group(vid)
        v["features"] = np.array([[0.5 * i], [-0.5]], np.float32)
        v["intervals"] = np.array([[0.0, 1.0], [1.0, 2.0]], np.float64)


def write_hostile(tmp, kinds, rng=None, name="Toy_Labels.csd"):
    """A labels `.csd` with one object of each kind in `kinds` (placed under
    `/L/metadata` or `/L/data/v1`, picked by `rng`); returns `(path, files the
    kinds make HDF5 read, the HDF5 paths of the objects injected)`."""
    rng = rng or np.random.default_rng(0)
    secret = os.path.join(tmp, "secret.bin")
    with open(secret, "wb") as f:
        f.write(SECRET * 4)
    other = os.path.join(tmp, "other.h5")
    with h5py.File(other, "w") as f:
        _labels(f.create_group("d"), ["ov"])
        f["x"] = np.arange(4, dtype=np.float32)
    path = os.path.join(tmp, name)
    reads, where = set(), {}
    with h5py.File(path, "w") as f:
        data = f.create_group("L/data")
        _labels(data, ["v1", "v2"])
        f.create_group("L/metadata")["root name"] = np.array([b"L"])
        for n, kind in enumerate(kinds):
            # Where the reader reads (metadata values) or walks past (extra
            # names inside a video group); the audit must look everywhere.
            parent = ["L/metadata", "L/data/v1"][int(rng.integers(0, 2))]
            if kind in ("hard_cycle", "soft_cycle"):
                parent = "L/data/v2"
            key = f"{parent}/{kind}_{n}"
            where[kind] = "/" + key
            if kind == "hard":
                f[key] = f["L/data/v1/intervals"]
            elif kind == "soft_inside":
                f[key] = h5py.SoftLink("/L/data/v1/features")
            elif kind == "soft_dangling":
                f[key] = h5py.SoftLink("/L/nothing/here")
            elif kind == "soft_cycle":
                f[key] = h5py.SoftLink(f"/{key}_b")
                f[key + "_b"] = h5py.SoftLink("/" + key)
            elif kind == "hard_cycle":
                f[key] = f["L/data"]
            elif kind == "external_link":
                f[key] = h5py.ExternalLink(other, "/x")
                reads.add(other)
            elif kind == "soft_to_external":
                f[f"L/ext_{n}"] = h5py.ExternalLink(other, "/d")
                f[key] = h5py.SoftLink(f"/L/ext_{n}/ov/features")
                where[kind] = (f"/L/ext_{n}", "/" + key)
                reads.add(other)
            elif kind == "external_storage":
                f.create_dataset(key, (len(SECRET),), dtype="u1", external=[(secret, 0, len(SECRET))])
                reads.add(secret)
            elif kind == "virtual":
                layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
                layout[:] = h5py.VirtualSource(other, "x", shape=(4,))
                f.create_virtual_dataset(key, layout, fillvalue=0)
                reads.add(other)
            else:
                raise AssertionError(kind)
    return path, reads, where


def named(where, message):
    return any(w in message for w in ((where,) if isinstance(where, str) else where))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_link_and_storage_kind(tmp_path, kind):
    refused, refused_always, words = KINDS[kind]
    path, reads, where = write_hostile(str(tmp_path), [kind])
    if refused:
        with pytest.raises(DataFormatError) as err:
            read_computational_sequence(path)
        message = str(err.value)
        assert path in message and named(where[kind], message) and words in message, message
        if not refused_always:
            assert "allow_external=True" in message
    else:
        seq = read_computational_sequence(path)
        assert sorted(seq.data) == ["v1", "v2"] and seq.files_read == []
    if refused_always:
        with pytest.raises(DataFormatError, match=words):
            read_computational_sequence(path, allow_external=True)
    else:
        seq = read_computational_sequence(path, allow_external=True)
        assert set(seq.files_read) == {os.path.realpath(p) for p in reads}


def test_external_storage_contents_never_reach_the_dataset(tmp_path):
    """The catalogue's case: a labels file whose metadata bytes are another
    file's; refused by default, and with the opt-in the file is a source."""
    d = tmp_path / "in"
    d.mkdir()
    path, reads, _ = write_hostile(str(d), ["external_storage"], rng=np.random.default_rng(1))
    (d / "standard_folds.json").write_text(json.dumps({"train": ["v1"], "valid": ["v2"], "test": []}))
    with pytest.raises(DataFormatError, match="external storage"):
        read_csd(str(d), words=False, features={}, dataset="mosi")
    splits, meta = read_csd(str(d), words=False, features={}, dataset="mosi", allow_external=True)
    assert os.path.realpath(str(d / "secret.bin")) in meta["sources"]
    assert meta["csd"]["allow_external"] is True and len(splits["train"]) == 2


def test_fuzz_link_and_storage_kinds(tmp_path):
    """Random mixtures of kinds at random places: refused exactly when a
    hostile kind is present, and its path is named; bounded to ~3 s."""
    rng = np.random.default_rng(20261201)
    names = sorted(KINDS)
    deadline = time.monotonic() + 3.0
    runs = 0
    while time.monotonic() < deadline and runs < 60:
        kinds = sorted(set(rng.choice(names, size=int(rng.integers(1, 4)))))
        tmp = tmp_path / f"case{runs}"
        tmp.mkdir()
        path, reads, where = write_hostile(str(tmp), kinds, rng=rng)
        for allow in (False, True):
            bad = [k for k in kinds if KINDS[k][1 if allow else 0]]
            if bad:
                with pytest.raises(DataFormatError) as err:
                    read_computational_sequence(path, allow_external=allow)
                assert any(named(where[k], str(err.value)) and KINDS[k][2] in str(err.value) for k in bad), (
                    kinds, allow, str(err.value))
            else:
                seq = read_computational_sequence(path, allow_external=allow)
                assert set(seq.files_read) == ({os.path.realpath(p) for p in reads} if allow else set())
                assert set(seq.data) >= {"v1", "v2"}
        runs += 1
    assert runs >= 10


def test_huge_declared_dataset_is_refused_before_allocation(tmp_path):
    path = tmp_path / "huge.csd"
    with h5py.File(path, "w") as f:
        v = f.create_group("R/data/v1")
        # 40 GB declared, nothing written: a few KB on disk.
        v.create_dataset("features", (10**6, 10**4), dtype="f4", chunks=(1, 1000), compression="gzip")
        v["intervals"] = np.zeros((2, 2))
    assert os.path.getsize(path) < 1 << 20
    with pytest.raises(DataFormatError, match=r"huge.csd: /R/data/v1/features: .*37.3 GiB.*max_read_bytes"):
        read_computational_sequence(path)
    with pytest.raises(DataFormatError, match=r"max_read_bytes=1000"):
        read_computational_sequence(path, max_read_bytes=1000)


@pytest.mark.parametrize(
    "features, pattern",
    [
        (np.array([[1e39], [0.0]]), r"1 finite values exceed the float32 range .*row 0, column 0"),
        (np.array([[1 + 2j], [0j]]), "features must be real numbers"),
        (np.zeros((2, 0), np.float32), r"features have no columns \(shape \(2, 0\)\)"),
    ],
)
def test_feature_dtypes_that_would_change_values(tmp_path, features, pattern):
    path = tmp_path / "bad.csd"
    with h5py.File(path, "w") as f:
        v = f.create_group("R/data/v1")
        v["features"] = features
        v["intervals"] = np.array([[0.0, 1.0], [1.0, 2.0]])
    with pytest.raises(DataFormatError, match=f"bad.csd: /R/data/v1/features: {pattern}"):
        read_computational_sequence(path)


def test_no_segment_in_any_fold_is_refused(tmp_path):
    path, _, _ = write_hostile(str(tmp_path), ["hard"])
    with pytest.raises(DataFormatError, match=r"Toy_Labels.csd: no labelled segment in any fold"):
        read_csd(str(tmp_path), words=False, features={}, folds={"train": ["ghost"], "test": []})


def test_word_tokens_that_are_not_utf8_are_counted(tmp_path):
    write_hostile(str(tmp_path), ["hard"])
    with h5py.File(tmp_path / "Toy_Words.csd", "w") as f:
        f["W/data/v1/features"] = np.array([[b"caf\xe9"], [b"ok"]], dtype="S8")
        f["W/data/v1/intervals"] = np.array([[0.0, 0.5], [0.5, 1.0]])
    splits, meta = read_csd(str(tmp_path), features={}, folds={"train": ["v1"]}, missing_dims=None)
    assert splits["train"][0]["raw_text"] == "caf\ufffd ok"
    assert meta["repairs"]["word_tokens_not_utf8_replaced"] == 1
