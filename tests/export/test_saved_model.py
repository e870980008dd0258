import numpy as np
import pytest

from keras_msa.export import export_saved_model
from keras_msa.export import load_serving_fn
from keras_msa.export import serve_numpy
from keras_msa.models import LFDNN
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic


def test_signature_has_named_inputs_and_sentiment_output(tmp_path):
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 4)
    model = LFDNN()
    model(batch)
    export_saved_model(model, str(tmp_path / "m" / "1"), batch)
    fn = load_serving_fn(str(tmp_path / "m" / "1"))
    inputs = fn.structured_input_signature[1]
    assert set(inputs) == set(batch)
    assert inputs["text"].shape.as_list() == [None, None, 16]
    assert inputs["text_mask"].dtype.name == "bool"
    assert set(fn.structured_outputs) == {"sentiment"}
    # Variable time length: a longer sequence works too.
    longer = {k: np.concatenate([v, v], axis=1) for k, v in batch.items()}
    out = serve_numpy(fn, longer)["sentiment"]
    np.testing.assert_allclose(out, np.asarray(model(longer)["sentiment"]), atol=1e-5)
    with pytest.raises(KeyError, match="'audio'"):
        serve_numpy(fn, {k: v for k, v in batch.items() if k != "audio"})


def test_failed_export_leaves_nothing_behind(tmp_path):
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 2)
    model = LFDNN()
    model(batch)
    bad = dict(batch)
    bad["text"] = bad["text"][..., :3]  # wrong width: refused before anything is written
    with pytest.raises(ValueError, match=r"'text'.*expected \[batch, time, 16\]"):
        export_saved_model(model, str(tmp_path / "x" / "1"), bad)
    assert not (tmp_path / "x").exists()
    import tensorflow as tf

    def failing_save(*args, **kwargs):
        raise RuntimeError("killed while writing")

    real_save = tf.saved_model.save
    tf.saved_model.save = failing_save
    try:
        with pytest.raises(RuntimeError, match="killed while writing"):
            export_saved_model(model, str(tmp_path / "x" / "1"), batch)
    finally:
        tf.saved_model.save = real_save
    assert list((tmp_path / "x").iterdir()) == []


# --- issue 13: what an export may replace, and what serving accepts ---------

import inspect  # noqa: E402
import os  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_msa.data.validation import NonFiniteInputError  # noqa: E402
from keras_msa.export.saved_model import ExportTargetError  # noqa: E402
from keras_msa.models import TeCaFN  # noqa: E402


@pytest.fixture(scope="module")
def built():
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 4)
    keras.utils.set_random_seed(0)
    model = LFDNN(hidden_dims={"text": 8, "audio": 4, "vision": 4}, fusion_dim=8)
    model(batch)
    return model, batch


def test_default_overwrite_is_refusal():
    from keras_msa.export import export_text_saved_model

    for fn in (export_saved_model, export_text_saved_model):
        assert inspect.signature(fn).parameters["overwrite"].default is False


def test_export_into_the_run_directory_keeps_the_model(built, tmp_path):
    model, batch = built
    run = tmp_path / "run"
    run.mkdir()
    source = run / "model.keras"
    source.write_bytes(b"the trained model")
    (run / "metrics.json").write_text("{}")
    for overwrite in (False, True):
        with pytest.raises(ExportTargetError, match=r"holds the model being exported"):
            export_saved_model(model, str(run), batch, overwrite=overwrite, source_path=str(source))
    # Without source_path, the user's files still are not an earlier export.
    with pytest.raises(ExportTargetError, match=r"not an earlier SavedModel export.*--overwrite"):
        export_saved_model(model, str(run), batch)
    assert source.read_bytes() == b"the trained model" and (run / "metrics.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary left


def test_version_folders_are_never_replaced(built, tmp_path):
    model, batch = built
    root = tmp_path / "saved_models" / "lfdnn"
    export_saved_model(model, str(root / "1"), batch)
    export_saved_model(model, str(root / "2"), batch)
    for overwrite in (False, True):
        with pytest.raises(ExportTargetError, match=r"version folders.*\(1, 2\).*lfdnn/3"):
            export_saved_model(model, str(root), batch, overwrite=overwrite)
    assert (root / "1" / "saved_model.pb").exists() and (root / "2" / "saved_model.pb").exists()


def test_earlier_export_is_replaced_and_user_files_need_overwrite(built, tmp_path):
    model, batch = built
    target = tmp_path / "m" / "1"
    export_saved_model(model, str(target), batch)
    (target / "variables" / "marker").write_text("old")
    # Still only SavedModel names at the top: an earlier export, replaced.
    export_saved_model(model, str(target), batch)
    assert not (target / "variables" / "marker").exists()
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]  # old one deleted, nothing aside
    (target / "README.txt").write_text("mine")
    with pytest.raises(ExportTargetError, match=r"README.txt.*--overwrite"):
        export_saved_model(model, str(target), batch)
    assert (target / "README.txt").read_text() == "mine"
    export_saved_model(model, str(target), batch, overwrite=True)
    assert not (target / "README.txt").exists() and (target / "saved_model.pb").exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ExportTargetError, match="is not a directory"):
        export_saved_model(model, str(a_file), batch, overwrite=True)
    with pytest.raises(ExportTargetError, match="is a file, not a directory"):
        export_saved_model(model, str(a_file / "1"), batch)
    assert a_file.read_text() == "x"


def test_replacement_is_atomic(built, tmp_path, monkeypatch):
    """A failure while moving the new export in leaves the old one in place."""
    model, batch = built
    target = tmp_path / "m" / "1"
    export_saved_model(model, str(target), batch)
    before = (target / "saved_model.pb").read_bytes()
    real_replace = os.replace
    calls = []

    def failing_second_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old aside, then the new one in: fail that
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_second_replace)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, str(target), batch)
    monkeypatch.undo()
    assert (target / "saved_model.pb").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]


def test_unbuilt_model_and_example_of_other_widths(built, tmp_path):
    model, batch = built
    with pytest.raises(ValueError, match="never built"):
        export_saved_model(LFDNN(), str(tmp_path / "u" / "1"), batch)
    wide = dict(batch)
    wide["audio"] = np.zeros((4, 12, 7), "float32")
    with pytest.raises(ValueError, match=r"'audio'.*expected \[batch, time, 5\].*\[4, 12, 7\]"):
        export_saved_model(model, str(tmp_path / "w" / "1"), wide)
    assert not (tmp_path / "u").exists() or list((tmp_path / "u").iterdir()) == []


@pytest.fixture(scope="module")
def served(built, tmp_path_factory):
    model, batch = built
    export_dir = str(tmp_path_factory.mktemp("served") / "1")
    export_saved_model(model, export_dir, batch)
    return model, batch, load_serving_fn(export_dir)


def test_rank_width_and_dtype_errors_name_the_input(served):
    _, batch, fn = served
    tensors = {k: tf.constant(v) for k, v in batch.items()}
    rank2 = dict(tensors, text=tensors["text"][0])
    # The raw signature (what TensorFlow Serving runs) no longer broadcasts a
    # rank-2 text over the rows.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"tensor text \[12,16\].*expected shape \[\?,\?,16\]"):
        fn._fn(**rank2)
    with pytest.raises(ValueError, match=r"'text' must have shape \[batch, time, 16\] \(rank 3\); got \[12, 16\]"):
        fn(**rank2)
    with pytest.raises(ValueError, match=r"'text' must have shape"):
        serve_numpy(fn, dict(batch, text=batch["text"][0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"tensor audio \[4,12,2\].*\[\?,\?,5\]"):
        fn._fn(**dict(tensors, audio=tensors["audio"][..., :2]))
    with pytest.raises(ValueError, match=r"'audio' must have shape \[batch, time, 5\]"):
        serve_numpy(fn, dict(batch, audio=batch["audio"][..., :2]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"input `vision` has batch size 3 but input `audio` has 4"):
        fn._fn(**dict(tensors, vision=tensors["vision"][:3], vision_mask=tensors["vision_mask"][:3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`audio_mask` has shape \[4 5\].*\[4 12\] of input `audio`"):
        fn._fn(**dict(tensors, audio_mask=tensors["audio_mask"][:, :5]))
    with pytest.raises(ValueError, match=r"'text_mask' must be boolean"):
        serve_numpy(fn, dict(batch, text_mask=np.full((4, 12), 0.5, "float32")))
    with pytest.raises(ValueError, match=r"'audio' holds .* beyond the range of float32"):
        serve_numpy(fn, dict(batch, audio=batch["audio"].astype("float64") * 1e300))
    with pytest.raises(KeyError, match="has no input"):
        fn(**dict(tensors, extra=tensors["text"]))


def _nonfinite_cases(model, batch, fn):
    clean = model(batch, training=False)["sentiment"]
    for value in (np.nan, np.inf, -np.inf):
        bad = {k: v.copy() for k, v in batch.items()}
        bad["audio"][2, 3, 1] = value
        expected = r"NaN or inf in a real \(unmasked\) step of input `audio` at \[row, step\] = \[2, 3\]"
        with pytest.raises(NonFiniteInputError, match=expected):
            model(bad, training=False)
        with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
            model.predict(bad, verbose=0)
        with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
            serve_numpy(fn, bad)
        # The same values under the mask are padding: outputs equal the clean ones.
        padded = {k: v.copy() for k, v in batch.items()}
        padded["audio_mask"][2, 3:] = False
        zeros = {k: v.copy() for k, v in padded.items()}
        zeros["audio"][2, 3:] = 0.0
        padded["audio"][2, 3:] = value
        want = np.asarray(model(zeros, training=False)["sentiment"])
        for out in (model(padded, training=False)["sentiment"], model.predict(padded, verbose=0)["sentiment"],
                    serve_numpy(fn, padded)["sentiment"]):
            assert np.all(np.isfinite(out))
            np.testing.assert_allclose(np.asarray(out), want, atol=1e-5, rtol=0)
    assert np.all(np.isfinite(np.asarray(clean)))


def test_nonfinite_real_steps_are_rejected_alike_lfdnn(served):
    _nonfinite_cases(*served)


def test_nonfinite_real_steps_are_rejected_alike_attention_model(tmp_path):
    # TeCaFN: text-centred cross-modal attention (the cheapest attention model to trace).
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 4)
    keras.utils.set_random_seed(0)
    model = TeCaFN(hidden_dim=8, unimodal_hidden=8, num_layers=1, num_heads=2)
    model(batch)
    export_dir = str(tmp_path / "tecafn" / "1")
    export_saved_model(model, export_dir, batch)
    _nonfinite_cases(model, batch, load_serving_fn(export_dir))
