"""A raw-media model (preprocessor inside) exported by recipes/export.py: its
serving_default takes the sentence, the waveform with its length and the face
crops with their count, and gives the Keras numbers (1e-5), also for the
TensorFlow Serving REST request the README shows."""

import json
import os

import numpy as np
import pytest
from absl import flags

from keras_msa.export import load_serving_fn
from keras_msa.export import serve_numpy
from keras_msa.export.saved_model import save_keras_model
from keras_msa.preprocessing.testing import tiny_bert_preset
from keras_msa.preprocessing.testing import tiny_media_model


# Decoding, a model with a pretrained CNN and a SavedModel export: tens of seconds.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory, load_recipe):
    root = tmp_path_factory.mktemp("raw_export")
    model = tiny_media_model(tiny_bert_preset(root / "bert"))
    path = str(root / "model.keras")
    save_keras_model(model, path)
    export = load_recipe("export")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["export.py", f"--model_path={path}", f"--export_dir={root / 'saved_model' / '1'}"])
    export.main([])
    export_dir = str(root / "saved_model" / "1")
    return model, export_dir, load_serving_fn(export_dir)


def test_signature_takes_raw_media(exported):
    _, _, serving_fn = exported
    specs = serving_fn.structured_input_signature[1]
    got = {k: (s.dtype.name, s.shape.as_list()) for k, s in specs.items()}
    assert got == {
        "text": ("string", [None]),
        "waveform": ("float32", [None, None]),
        "waveform_length": ("int32", [None]),
        "faces": ("uint8", [None, None, 64, 64, 3]),
        "face_count": ("int32", [None]),
    }


def test_served_scores_equal_keras_on_raw_inputs_with_missing_modalities(exported):
    model, _, serving_fn = exported
    raw = model.preprocessor.probe_inputs(batch_size=4, samples=5000, frames=2, seed=7)
    raw["text"][2] = ""
    served = serve_numpy(serving_fn, raw)["sentiment"]
    expected = np.asarray(model(raw, training=False)["sentiment"])
    assert np.isfinite(served).all()
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_rest_instances_request_of_the_readme(exported):
    """The JSON body of `POST /v1/models/<name>:predict` (row format,
    `instances`), decoded as TensorFlow Serving decodes it, gives the same
    number as the Keras model."""
    model, export_dir, serving_fn = exported
    rng = np.random.default_rng(3)
    instance = {
        "text": "i really loved this movie",
        "waveform": (0.1 * rng.standard_normal(3200)).round(4).tolist(),
        "waveform_length": 3200,
        "faces": rng.integers(0, 256, (2, 64, 64, 3)).tolist(),
        "face_count": 2,
    }
    body = json.loads(json.dumps({"signature_name": "serving_default", "instances": [instance]}))
    rows = body["instances"]
    batch = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    served = serve_numpy(serving_fn, batch)["sentiment"]
    batch["waveform"] = batch["waveform"].astype("float32")
    batch["faces"] = batch["faces"].astype("uint8")
    np.testing.assert_allclose(served, np.asarray(model(batch)["sentiment"]), atol=1e-5)
    assert os.path.isfile(os.path.join(export_dir, "saved_model.pb"))
