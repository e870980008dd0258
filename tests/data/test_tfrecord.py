"""TFRecord writer/reader: exact round trip, batch contract, shuffling,
atomic writes, errors."""

import json
import os

import numpy as np
import pytest

from keras_msa.data.errors import DataFormatError
from keras_msa.data.tfrecord import load_split
from keras_msa.data.tfrecord import read_examples
from keras_msa.data.tfrecord import read_schema
from keras_msa.data.tfrecord import write_dataset


def make_examples(n, seed=0, split="train", tokens=True, missing_audio_every=3):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = int(rng.integers(1, 7))
        a = 0 if i % missing_audio_every == 0 else int(rng.integers(1, 9))
        ex = {
            "id": f"{split}-{i}",
            "raw_text": f"ünïcode words {i}",
            "text": rng.standard_normal((t, 4)).astype(np.float32),
            "audio": rng.standard_normal((a, 3)).astype(np.float32),
            "vision": rng.standard_normal((int(rng.integers(1, 5)), 2)).astype(np.float32),
            "sentiment": np.float32(rng.uniform(-3, 3)),
            "sentiment_text": np.float32(rng.uniform(-3, 3)),
            "emotions": rng.integers(0, 2, size=4).astype(np.float32),
        }
        # Bit patterns that a text or float64 path would not keep.
        ex["text"][0, 0] = np.float32(1.0) + np.finfo(np.float32).eps
        ex["text"][0, -1] = np.float32(-0.0)
        ex["text"][-1, 0] = np.finfo(np.float32).tiny / 2  # subnormal
        if tokens:
            ex["text_token_ids"] = rng.integers(0, 30000, size=t).astype(np.int64)
            ex["text_padding_mask"] = np.ones(t, np.int64)
            ex["text_segment_ids"] = np.zeros(t, np.int64)
        out.append(ex)
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfr")
    src = root / "source.bin"
    src.write_bytes(b"source bytes")
    data = {"train": make_examples(11, 0, "train"), "valid": make_examples(4, 1, "valid"),
            "test": make_examples(0, 2, "test")}
    out = root / "ds"
    schema = write_dataset(out, data, dataset="toy", sources=[src], label_ranges={"sentiment": (-3, 3)},
                           repairs={"audio_neg_inf_to_zero": 2}, extra={"note": 1}, examples_per_shard=4,
                           progress=False)
    return out, data, schema


def test_round_trip_is_exact(written):
    out, data, _ = written
    for split, examples in data.items():
        back = list(read_examples(out, split))
        assert len(back) == len(examples)
        for a, b in zip(examples, back):
            assert set(a) == set(b)
            assert a["id"] == b["id"] and a["raw_text"] == b["raw_text"]
            for k in ("text", "audio", "vision"):
                assert b[k].dtype == np.float32 and b[k].shape == a[k].shape
                assert a[k].tobytes() == b[k].tobytes(), k  # bit-exact
            for k in ("text_token_ids", "text_padding_mask", "text_segment_ids"):
                np.testing.assert_array_equal(a[k], b[k])
            for k in ("sentiment", "sentiment_text", "emotions"):
                assert np.asarray(a[k], np.float32).tobytes() == b[k].tobytes()


def test_schema_contents(written, tmp_path):
    out, data, schema = written
    assert read_schema(out) == schema
    assert schema["dataset"] == "toy"
    assert schema["splits"] == {"train": 11, "valid": 4, "test": 0}
    assert schema["shards"]["train"] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert sorted(os.listdir(out)) == sorted(["schema.json"] + sum(schema["shards"].values(), []))
    mods = schema["modalities"]
    assert mods["text"]["dim"] == 4 and mods["audio"]["dim"] == 3 and mods["vision"]["dim"] == 2
    all_ex = data["train"] + data["valid"]
    assert mods["audio"]["max_length"] == max(len(e["audio"]) for e in all_ex)
    assert mods["audio"]["missing"] == sum(len(e["audio"]) == 0 for e in all_ex)
    assert schema["labels"]["sentiment"]["declared_range"] == [-3.0, 3.0]
    lo, hi = schema["labels"]["sentiment"]["observed_range"]
    assert lo == pytest.approx(min(float(e["sentiment"]) for e in all_ex))
    assert schema["labels"]["emotions"]["shape"] == [4]
    assert schema["repairs"] == {"audio_neg_inf_to_zero": 2} and schema["extra"] == {"note": 1}
    import hashlib

    assert schema["sources"][0]["sha256"] == hashlib.sha256(b"source bytes").hexdigest()
    assert schema["keras_msa_version"] and schema["created"]


def test_load_split_batches(written):
    out, data, schema = written
    ds = load_split(out, "train", batch_size=4)
    assert int(ds.cardinality()) == 3
    assert int(load_split(out, "train", batch_size=4, drop_remainder=True).cardinality()) == 2
    assert int(load_split(out, "test", batch_size=4).cardinality()) == 0
    batches = list(ds)
    assert len(batches) == 3
    x, y = batches[0]
    t_max = schema["modalities"]["text"]["max_length"]
    assert x["text"].shape == (4, t_max, 4) and x["text"].dtype.name == "float32"
    assert x["text_mask"].dtype.name == "bool" and x["audio"].shape[1] == schema["modalities"]["audio"]["max_length"]
    assert x["text_token_ids"].shape == (4, schema["tokens"]["max_length"]) and x["text_token_ids"].dtype.name == "int32"
    assert y["sentiment"].shape == (4, 1) and y["emotions"].shape == (4, 4)
    assert x["raw_text"].shape == (4,)
    flat = [(b[0], b[1]) for b in batches]
    i = 0
    for xb, yb in flat:
        for j in range(xb["text"].shape[0]):
            ex = data["train"][i]
            for m in ("text", "audio", "vision"):
                L = len(ex[m])
                mask = xb[f"{m}_mask"][j].numpy()
                assert mask.sum() == L and mask[:L].all()
                np.testing.assert_array_equal(xb[m][j, :L].numpy(), ex[m])
                assert not xb[m][j, L:].numpy().any()
            np.testing.assert_array_equal(xb["text_token_ids"][j, : len(ex["text"])], ex["text_token_ids"])
            assert yb["sentiment"][j, 0].numpy() == ex["sentiment"]
            assert xb["raw_text"][j].numpy().decode() == ex["raw_text"]
            i += 1
    # Missing audio (length 0): zeros and an all-False mask.
    assert len(data["train"][0]["audio"]) == 0
    assert not batches[0][0]["audio_mask"][0].numpy().any() and not batches[0][0]["audio"][0].numpy().any()


def test_pad_to_and_options(written):
    out, _, _ = written
    x, _ = next(iter(load_split(out, "valid", batch_size=2, pad_to={"audio": 20, "text": 2},
                                include_raw_text=False, include_ids=True)))
    assert x["audio"].shape == (2, 20, 3) and x["text"].shape == (2, 2, 4)
    assert x["text_token_ids"].shape == (2, 2) and "raw_text" not in x
    assert [s.decode() for s in x["id"].numpy()] == ["valid-0", "valid-1"]
    assert x["text_mask"].numpy().sum(axis=1).max() <= 2


def test_shuffle_is_seeded(written):
    out, _, _ = written

    def order(seed, epochs=2):
        ds = load_split(out, "train", batch_size=5, shuffle=True, seed=seed, include_ids=True)
        return [[s.decode() for b in ds for s in b[0]["id"].numpy()] for _ in range(epochs)]

    a, b, c = order(3), order(3), order(4)
    assert a == b and a != c
    assert sorted(a[0]) == sorted(f"train-{i}" for i in range(11))
    assert a[0] != a[1]  # a new order every epoch
    # `sample_index` is the record's position in the split whatever the shuffle.
    ds = load_split(out, "train", batch_size=5, shuffle=True, seed=3, include_ids=True, include_index=True)
    for x, _ in ds:
        assert x["sample_index"].dtype == "int32"
        assert [s.decode() for s in x["id"].numpy()] == [f"train-{i}" for i in x["sample_index"].numpy()]


def _leftovers(parent, name):
    return [p for p in os.listdir(parent) if p.startswith(f".{name}.")]


def test_atomic_on_error_and_interrupt(tmp_path):
    good = make_examples(5)

    def failing(exc):
        yield from good[:3]
        raise exc

    out = tmp_path / "ds"
    for exc in (RuntimeError("reader broke"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            write_dataset(out, {"train": good, "valid": failing(exc)}, dataset="toy", examples_per_shard=2,
                          progress=False)
        assert not out.exists() and _leftovers(tmp_path, "ds") == []


def test_refuses_existing_unless_overwrite(tmp_path):
    out = tmp_path / "ds"
    write_dataset(out, {"train": make_examples(2)}, dataset="a", progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_dataset(out, {"train": make_examples(3)}, dataset="b", progress=False)
    assert read_schema(out)["dataset"] == "a"
    # A failing overwrite keeps the old data.
    with pytest.raises(DataFormatError):
        write_dataset(out, {"train": [{"id": "x", "text": np.zeros((2, 2, 2), np.float32), "sentiment": 0.0}]},
                      dataset="c", overwrite=True, progress=False)
    assert read_schema(out)["dataset"] == "a"
    write_dataset(out, {"train": make_examples(3)}, dataset="b", overwrite=True, progress=False)
    assert read_schema(out)["splits"] == {"train": 3}
    assert _leftovers(tmp_path, "ds") == []
    empty = tmp_path / "empty"
    empty.mkdir()
    write_dataset(empty, {"train": make_examples(1)}, dataset="e", progress=False)
    assert read_schema(empty)["splits"] == {"train": 1}


def test_progress_output(tmp_path, capsys):
    write_dataset(tmp_path / "ds", {"train": make_examples(5)}, dataset="toy", progress=2)
    err = capsys.readouterr().err
    assert "toy/train: 2 examples written" in err and "toy/train: 4 examples written" in err
    assert "5 examples in 1 shard" in err


def _bad(tmp_path, example, match, **kw):
    base = {"id": "clip-7", "text": np.zeros((3, 4), np.float32), "sentiment": np.float32(0.5)}
    first = dict(base, id="clip-0")
    base.update(example)
    with pytest.raises(DataFormatError, match=match) as info:
        write_dataset(tmp_path / "bad", {"train": [first, base]}, dataset="toy", progress=False, **kw)
    assert not (tmp_path / "bad").exists() and _leftovers(tmp_path, "bad") == []
    return str(info.value)


def test_bad_inputs(tmp_path):
    msg = _bad(tmp_path, {"text": np.zeros((3, 5), np.float32)}, "width mismatch")
    assert "split 'train'" in msg and "clip-7" in msg and "'text'" in msg and "[length, 4]" in msg and "[3, 5]" in msg
    nan = np.zeros((3, 4), np.float32)
    nan[1, 2] = np.nan
    assert "step 1, channel 2" in _bad(tmp_path, {"text": nan}, "non-finite")
    _bad(tmp_path, {"text": np.zeros((3, 4, 1), np.float32)}, r"shape \[3, 4, 1\]")
    _bad(tmp_path, {"text": np.zeros((3, 4), np.int32)}, "dtype int32")
    _bad(tmp_path, {"sentiment": np.float32(3.5)}, "outside the declared range", label_ranges={"sentiment": (-3, 3)})
    _bad(tmp_path, {"sentiment": np.float32(np.inf)}, "non-finite label")
    _bad(tmp_path, {"emotions": np.zeros(3)}, "differ from the dataset")
    _bad(tmp_path, {"color": 1}, "unknown keys")
    _bad(tmp_path, {"text_token_ids": np.zeros(3, np.float32)}, "integer array")
    _bad(tmp_path, {"sentiment": np.zeros(2, np.float32)}, "scalar")


def test_read_errors(tmp_path, written):
    with pytest.raises(FileNotFoundError, match="schema"):
        read_schema(tmp_path)
    (tmp_path / "schema.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="corrupt schema"):
        read_schema(tmp_path)
    (tmp_path / "schema.json").write_text(json.dumps({"dataset": "x"}))
    with pytest.raises(DataFormatError, match="missing keys"):
        read_schema(tmp_path)
    out, _, _ = written
    with pytest.raises(KeyError, match="no split 'dev'"):
        load_split(out, "dev")


def test_synthetic_benchmark_trains_from_tfrecord(tmp_path):
    import keras

    from keras_msa.data.synthetic import make_synthetic_benchmark
    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import train

    options = {"seq_len": 12, "min_len": 12, "text_dim": 16, "window": 4, "offset": 1,
               "compute_text_only_floor": False}
    bench = make_synthetic_benchmark(seed=0, splits={"train": 64, "valid": 16, "test": 16}, **options)
    data_dir = tmp_path / "synthetic"
    write_dataset(data_dir, {s: bench[s].examples() for s in bench}, dataset="synthetic", progress=False)
    x, y = next(iter(load_split(data_dir, "test", batch_size=16)))
    np.testing.assert_array_equal(x["text"].numpy(), bench["test"].inputs["text"])
    np.testing.assert_array_equal(x["audio_mask"].numpy(), bench["test"].inputs["audio_mask"])
    np.testing.assert_array_equal(y["sentiment"].numpy(), bench["test"].targets["sentiment"])
    keras.backend.clear_session()
    config = TrainConfig(model="lfdnn", model_config={"hidden_dims": {"text": 8, "audio": 4, "vision": 4},
                                                      "fusion_dim": 8},
                         data=str(data_dir), epochs=1, batch_size=16, output_dir=str(tmp_path / "run"), verbose=0)
    results, _ = train(config)
    assert np.isfinite(results["test"]["mae"])
    assert os.path.exists(tmp_path / "run" / "model.keras")


# --------------------------------------------------------------------------
# Outputs: never over an input, atomic replacement, leftovers, permissions
# --------------------------------------------------------------------------


def _tiny(n=3, split="train"):
    return make_examples(n, 5, split, tokens=False)


def test_refuses_output_that_is_contains_or_is_inside_a_source(tmp_path):
    project = tmp_path / "project"
    (project / "raw").mkdir(parents=True)
    src = project / "raw" / "mosi.pkl"
    src.write_bytes(b"the only copy")
    (project / "notes.txt").write_text("keep me")
    link = tmp_path / "link"
    link.symlink_to(project / "raw")
    cases = [(project, [src], "a parent of the input"), (project / "raw", [src], "a parent of the input"),
             (src, [src], "is the input"), (link, [src], "a parent of the input"),
             (project / "raw" / "out", [src, project / "raw"], "inside the input")]
    for out, sources, match in cases:
        with pytest.raises(ValueError, match=match) as info:
            write_dataset(out, {"train": _tiny()}, dataset="toy", sources=sources[:1], protected=sources[1:],
                          overwrite=True, progress=False)
        assert str(sources[-1]) in str(info.value) and "refusing to write the output" in str(info.value)
    assert src.read_bytes() == b"the only copy" and (project / "notes.txt").read_text() == "keep me"
    assert sorted(os.listdir(project)) == ["notes.txt", "raw"] and os.listdir(project / "raw") == ["mosi.pkl"]


def test_overwrite_through_a_symlink_replaces_its_target(tmp_path):
    real = tmp_path / "store" / "ds"
    write_dataset(real, {"train": _tiny(2)}, dataset="a", progress=False)
    link = tmp_path / "ds"
    link.symlink_to(real)
    write_dataset(link, {"train": _tiny(3)}, dataset="b", overwrite=True, progress=False)
    assert link.is_symlink() and read_schema(link)["dataset"] == "b" and read_schema(real)["splits"] == {"train": 3}
    assert sorted(os.listdir(tmp_path)) == ["ds", "store"] and os.listdir(tmp_path / "store") == ["ds"]


def test_next_run_removes_only_our_leftovers(tmp_path, capsys):
    killed = tmp_path / ".ds.tmp-abc12_xy"
    killed.mkdir()
    (killed / ".train-00000.part").write_bytes(b"half a shard")
    (killed / "train-00000-of-00002.tfrecord").write_bytes(b"")
    foreign = tmp_path / ".ds.tmp-keepme00"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("not ours")
    other_output = tmp_path / ".dsx.tmp-abc12_xy"
    other_output.mkdir()
    write_dataset(tmp_path / "ds", {"train": _tiny()}, dataset="toy", progress=False)
    err = capsys.readouterr().err
    assert not killed.exists() and f"removed {killed}" in err
    assert (foreign / "thesis.tex").exists() and f"kept {foreign}" in err
    assert other_output.exists()
    assert sorted(os.listdir(tmp_path)) == [".ds.tmp-keepme00", ".dsx.tmp-abc12_xy", "ds"]


def test_a_second_writer_of_the_same_output_fails_at_once(tmp_path):
    import threading

    out = tmp_path / "ds"
    seen = {}

    def first():
        yield from _tiny(2)
        worker = threading.Thread(target=second)
        worker.start()
        worker.join()
        yield from _tiny(1)

    def second():
        try:
            write_dataset(out, {"train": _tiny(5)}, dataset="second", overwrite=True, progress=False)
            seen["second"] = "wrote"
        except FileExistsError as e:
            seen["second"] = str(e)

    write_dataset(out, {"train": first()}, dataset="first", progress=False)
    assert "another conversion is writing" in seen["second"]
    assert read_schema(out)["dataset"] == "first" and os.listdir(tmp_path) == ["ds"]


def test_disk_full_mid_write_leaves_the_old_dataset(tmp_path, monkeypatch):
    import errno

    import tensorflow as tf

    out = tmp_path / "ds"
    write_dataset(out, {"train": _tiny(2)}, dataset="old", progress=False)
    real_write, calls = tf.io.TFRecordWriter.write, []

    def write(self, record):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, record)

    monkeypatch.setattr(tf.io.TFRecordWriter, "write", write)
    with pytest.raises(OSError, match="No space"):
        write_dataset(out, {"train": _tiny(6)}, dataset="new", overwrite=True, examples_per_shard=2, progress=False)
    assert read_schema(out)["dataset"] == "old" and os.listdir(tmp_path) == ["ds"]


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_output_permissions_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        out = tmp_path / "ds"
        write_dataset(out, {"train": _tiny()}, dataset="toy", progress=False)
    finally:
        os.umask(old)
    assert os.stat(out).st_mode & 0o777 == dir_mode
    assert {os.stat(out / name).st_mode & 0o777 for name in os.listdir(out)} == {file_mode}


def test_empty_train_or_valid_split_is_refused(tmp_path):
    with pytest.raises(DataFormatError, match=r"split 'valid'.*no examples.*mode=valid.*allow_empty"):
        write_dataset(tmp_path / "a", {"train": _tiny(), "valid": []}, dataset="toy", progress=False)
    with pytest.raises(DataFormatError, match=r"split 'train'.*nothing to train on"):
        write_dataset(tmp_path / "b", {"train": iter(()), "valid": _tiny()}, dataset="toy", progress=False)
    assert os.listdir(tmp_path) == []
    schema = write_dataset(tmp_path / "c", {"train": [], "valid": [], "test": _tiny(2, "test")}, dataset="toy",
                           allow_empty=("train", "valid"), progress=False)
    assert schema["splits"] == {"train": 0, "valid": 0, "test": 2}


def test_bad_output_paths_and_shard_sizes(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        write_dataset(blocker, {"train": _tiny()}, dataset="toy", overwrite=True, progress=False)
    with pytest.raises(NotADirectoryError, match=r"file, not a directory"):
        write_dataset(blocker / "ds", {"train": _tiny()}, dataset="toy", progress=False)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="examples_per_shard must be an integer >= 1"):
            write_dataset(tmp_path / "ds", {"train": _tiny()}, dataset="toy", examples_per_shard=bad, progress=False)
    assert os.listdir(tmp_path) == ["file"] and blocker.read_text() == "x"


# --------------------------------------------------------------------------
# Reading: the schema is checked against the records
# --------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path):
    out = tmp_path / "small"
    write_dataset(out, {"train": make_examples(5, 3, tokens=False)}, dataset="toy", examples_per_shard=2,
                  progress=False)
    return out


def _edit_schema(out, fn):
    schema = json.loads((out / "schema.json").read_text())
    fn(schema)
    (out / "schema.json").write_text(json.dumps(schema))


def _iterate(out, **kw):
    for _ in load_split(out, "train", batch_size=2, **kw):
        pass


def test_schema_smaller_than_records_is_an_error_not_a_truncation(small):
    def shrink(schema):
        schema["modalities"]["text"]["max_length"] = 1

    _edit_schema(small, shrink)
    with pytest.raises(DataFormatError, match=r"train-00000-of-00003.tfrecord.*field 'text'.*max_length is 1"):
        load_split(small, "train")
    with pytest.raises(DataFormatError, match=r"field 'text'.*max_length is 1"):
        list(read_examples(small, "train"))


def test_a_later_record_longer_than_the_schema_fails_naming_shard_and_field(tmp_path):
    import tensorflow as tf

    examples = _tiny(4)
    for i, steps in enumerate([2, 2, 2, 6]):  # the first record of each shard is short
        examples[i]["text"] = np.ones((steps, 4), np.float32)
    out = tmp_path / "ds"
    write_dataset(out, {"train": examples}, dataset="toy", examples_per_shard=2, progress=False)
    _edit_schema(out, lambda schema: schema["modalities"]["text"].update(max_length=3))
    load_split(out, "train")  # the cheap check at load time sees only first records
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"DataFormatError: .*train-00001-of-00002.tfrecord: "
                                                             r"record 1 \(id='train-3'\), field 'text': schema.json "
                                                             r"disagrees with the records: 6 steps, but the schema's "
                                                             r"max_length is 3"):
        _iterate(out)


def test_schema_width_that_disagrees_with_records(small):
    def widen(schema):
        schema["modalities"]["audio"]["dim"] = 5

    _edit_schema(small, widen)
    with pytest.raises(DataFormatError, match=r"train-0000\d-of-00003.tfrecord.*field 'audio'.*(width 3.0).*"
                                              r"schema's dim is 5"):
        load_split(small, "train")


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_truncated_or_corrupt_shard_is_named(small, damage):
    import tensorflow as tf

    shard = small / "train-00001-of-00003.tfrecord"
    data = bytearray(shard.read_bytes())
    if damage == "truncate":
        shard.write_bytes(bytes(data[:-20]))
        with pytest.raises(DataFormatError, match=r"train-00001-of-00003.tfrecord: shard is truncated or corrupt"
                                                  r".*re-run the conversion"):
            load_split(small, "train")
    else:
        data[-10] ^= 0xFF  # the last record's payload: same size, bad checksum
        shard.write_bytes(bytes(data))
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"train-00001-of-00003.tfrecord: shard is truncated "
                                                                 r"or corrupt \(after record 1: corrupted record"):
            _iterate(small)
    with pytest.raises(DataFormatError, match=r"train-00001-of-00003.tfrecord: shard is truncated or corrupt"):
        list(read_examples(small, "train"))


def test_schema_counts_that_disagree_with_records(small):
    import tensorflow as tf

    def older_and_wrong(schema):  # a schema without shard sizes, claiming one record more
        del schema["shard_sizes"]
        schema["splits"]["train"] = 6

    _edit_schema(small, older_and_wrong)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"small: split 'train': the shards hold 5 records, "
                                                             r"but schema.json says 6"):
        _iterate(small)
    with pytest.raises(DataFormatError, match="hold 5 records, but schema.json says 6"):
        list(read_examples(small, "train"))


def test_schema_fields_are_checked(small, tmp_path):
    outside = tmp_path / "secret.tfrecord"
    outside.write_bytes(b"")
    edits = [
        (lambda s: s["shards"].update(train=["../secret.tfrecord"] + s["shards"]["train"][1:]),
         r"shards/train.*not a plain file name"),
        (lambda s: s["splits"].update(train="5"), r"splits.*number of examples"),
        (lambda s: s["modalities"]["text"].update(dim=-1), r"modalities/text.*dim >= 0"),
        (lambda s: s["labels"]["emotions"].update(shape=[3]), r"labels/emotions.*shape \[3\] differs"),
        (lambda s: s["shard_sizes"]["train"][0].update(records=1), r"shard_sizes/train.*hold 4 records"),
    ]
    original = (small / "schema.json").read_text()
    for edit, match in edits:
        (small / "schema.json").write_text(original)
        _edit_schema(small, edit)
        with pytest.raises(DataFormatError, match=match):
            load_split(small, "train")
    (small / "schema.json").write_text("{\n  \"splits\": {,\n}")
    with pytest.raises(DataFormatError, match=r"schema.json: corrupt schema \(not valid JSON: .* line 2, column 14"):
        read_schema(small)


def test_missing_shard_says_what_to_do(small):
    os.remove(small / "train-00002-of-00003.tfrecord")
    with pytest.raises(DataFormatError, match=r"missing shard file.*train-00002-of-00003.tfrecord.*re-run"):
        load_split(small, "train")
