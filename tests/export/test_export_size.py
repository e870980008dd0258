"""Issue 18: exports hold the weights alone; `model.keras` keeps the
optimizer only when asked."""

import os
import zipfile

import h5py
import keras
import numpy as np
import tensorflow as tf

from keras_msa.export import export_saved_model
from keras_msa.export import load_serving_fn
from keras_msa.export import serve_numpy
from keras_msa.models import LFDNN
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic


def _trained_one_step():
    """A small LF-DNN after one Adam step, so every slot exists."""
    keras.utils.set_random_seed(0)
    data = tiny_synthetic(train=8, valid=8, test=8)
    model = LFDNN()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(data["train"].to_tf_dataset(4), epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations) == 1
    return model, data


def _h5_names(path):
    names = []
    with zipfile.ZipFile(path) as zf, zf.open("model.weights.h5") as f, h5py.File(f, "r") as h5:
        h5.visit(names.append)
    return names


def test_savedmodel_holds_no_optimizer_slot(tmp_path):
    model, data = _trained_one_step()
    batch = small_batch(data["test"], 4)
    export_dir = str(tmp_path / "m" / "1")
    export_saved_model(model, export_dir, batch)
    names = [name for name, _ in tf.train.list_variables(os.path.join(export_dir, "variables", "variables"))]
    assert not [n for n in names if "optimizer" in n or "momentum" in n or "velocity" in n], names
    # The weights are all there: one checkpoint entry per model variable at least.
    assert len([n for n in names if "VARIABLE_VALUE" in n]) >= len(model.weights)
    # The model is still compiled and can keep training after the export.
    assert model.compiled and model.optimizer is not None
    out = serve_numpy(load_serving_fn(export_dir), batch)["sentiment"]
    np.testing.assert_allclose(out, np.asarray(model(batch)["sentiment"]), atol=1e-5)


def test_keras_file_keeps_optimizer_only_when_asked(tmp_path):
    from keras_msa.export.saved_model import save_keras_model

    model, data = _trained_one_step()
    batch = small_batch(data["test"], 4)
    lean = save_keras_model(model, str(tmp_path / "lean.keras"))
    full = save_keras_model(model, str(tmp_path / "full.keras"), keep_optimizer=True)
    assert not [n for n in _h5_names(lean) if n.startswith("optimizer")]
    assert [n for n in _h5_names(full) if n.startswith("optimizer")]
    # Adam's two slots per weight: the lean file is well under half the full one.
    assert os.path.getsize(lean) < 0.5 * os.path.getsize(full)
    want = np.asarray(model(batch)["sentiment"])
    # Saving without the optimizer leaves the live model as it was: it keeps training.
    assert model.compiled and int(model.optimizer.iterations) == 1
    model.fit(data["train"].to_tf_dataset(4), epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations) == 2

    lean_model = keras.saving.load_model(lean)
    full_model = keras.saving.load_model(full)
    assert not lean_model.compiled
    assert full_model.compiled and int(full_model.optimizer.iterations) == 1
    for loaded in (lean_model, full_model):
        np.testing.assert_array_equal(np.asarray(loaded(batch)["sentiment"]), want)
    # Both still train: the lean one after an ordinary compile.
    lean_model.compile(optimizer=keras.optimizers.Adam(1e-3))
    for loaded in (lean_model, full_model):
        before = [np.array(w) for w in loaded.trainable_weights]
        loaded.fit(data["train"].to_tf_dataset(4), epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)
        assert any(not np.array_equal(b, np.array(w)) for b, w in zip(before, loaded.trainable_weights))
