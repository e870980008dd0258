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
    bad["text"] = bad["text"][..., :3]  # wrong width: tracing fails
    with pytest.raises(Exception):
        export_saved_model(model, str(tmp_path / "x" / "1"), bad)
    assert not (tmp_path / "x" / "1").exists()
    assert list((tmp_path / "x").iterdir()) == []
