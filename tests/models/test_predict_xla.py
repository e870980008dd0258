import keras
import numpy as np
import pytest
from tensorflow.python.framework import config as tf_config

from keras_msa.models import LFDNN
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic


def _model():
    keras.utils.set_random_seed(0)
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 8)
    model = LFDNN(hidden_dims={"text": 8, "audio": 4, "vision": 4}, text_out=8, fusion_dim=8)
    model(batch)
    return model, batch


def test_predict_compiles_with_xla_by_default_and_matches_the_plain_call():
    model, batch = _model()
    # The tests run with op determinism (conftest), under which "auto", as
    # Keras' jit_compile="auto", declines XLA; without it, predict takes XLA
    # while training keeps Keras' own choice (no XLA on a CPU).
    model.compile(optimizer="adam")
    assert not model.predict_uses_xla()
    tf_config.disable_op_determinism()
    try:
        assert model.predict_uses_xla() and not model.jit_compile
    finally:
        tf_config.enable_op_determinism()
    model.compile(optimizer="adam", predict_jit_compile=True)
    got = model.predict(batch, batch_size=8, verbose=0)["sentiment"]
    np.testing.assert_allclose(got, np.asarray(model(batch)["sentiment"]), atol=1e-5, rtol=1e-5)
    assert not model.jit_compile  # restored after building the predict step


def test_predict_xla_can_be_declined_and_is_off_when_eager_or_for_string_inputs():
    model, _ = _model()
    model.compile(optimizer="adam", predict_jit_compile=False)
    assert not model.predict_uses_xla()
    model.compile(optimizer="adam", run_eagerly=True)
    assert not model.predict_uses_xla()
    model.compile(optimizer="adam")
    model.predict_xla_by_default = False  # as MediaModel, whose inputs are strings
    assert not model.predict_uses_xla()
    with pytest.raises(ValueError, match="predict_jit_compile"):
        model.compile(optimizer="adam", predict_jit_compile="yes")
