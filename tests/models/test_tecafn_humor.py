"""TeCaFN on UR-FUNNY (`task="humor"`): two-way humour logits, their softmax
cross-entropy as the task loss and binary accuracy from evaluation, each
against NumPy."""

import keras
import numpy as np
import pytest

from keras_msa.models import TeCaFN
from keras_msa.training.evaluation import evaluate_model
from keras_msa.training.evaluation import monitor_for

SMALL = dict(hidden_dim=8, unimodal_hidden=8, num_layers=1, num_heads=2, dropout=0.0, seed=0)


def batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = {
        "text": rng.standard_normal((n, 5, 6)).astype("float32"),
        "text_mask": np.arange(5)[None, :] < rng.integers(1, 6, n)[:, None],
        "audio": rng.standard_normal((n, 4, 3)).astype("float32"),
        "audio_mask": np.ones((n, 4), bool),
        "vision": rng.standard_normal((n, 3, 2)).astype("float32"),
        "vision_mask": np.ones((n, 3), bool),
    }
    return x, {"humor": rng.integers(0, 2, (n, 1)).astype("float32")}


@pytest.fixture(scope="module")
def humor_model():
    keras.utils.set_random_seed(0)
    model = TeCaFN.from_preset("urfunny", **SMALL)
    x, _ = batch()
    model(x)
    # The output layer starts at zero (equal logits): random weights make the
    # loss and the decisions depend on the sample.
    rng = np.random.default_rng(3)
    model.head.kernel.assign(rng.normal(0, 2.0, model.head.kernel.shape).astype("float32"))
    model.head.bias.assign(np.array([0.1, -0.2], "float32"))
    return model


def test_humor_head_loss_matches_numpy_cross_entropy(humor_model):
    model = humor_model
    assert model.task == "humor" and model.get_config()["task"] == "humor"
    x, y = batch()
    out = model(x)
    logits = np.asarray(out["humor"], np.float64)
    assert logits.shape == (6, 2) and out["humor"].dtype == "float32"
    np.testing.assert_allclose(np.asarray(out["sentiment"])[:, 0], logits[:, 1] - logits[:, 0], rtol=1e-6, atol=1e-6)
    labels = y["humor"][:, 0].astype(int)
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -np.mean(log_softmax[np.arange(6), labels])
    np.testing.assert_allclose(float(model.primary_loss(x, y, out)), expected, rtol=1e-5)
    # Inference: no auxiliary term, so the objective is the cross-entropy alone.
    np.testing.assert_allclose(float(model.compute_loss(x, y, out, training=False)), expected, rtol=1e-5)
    assert set(model.loss_components) == {"task"}
    # Training: the contrastive and pair terms come on top, as for sentiment.
    model.compute_loss(x, y, model(x, training=True))
    assert {"task", "tcon", "bicon", "pair"} <= set(model.loss_components)
    with pytest.raises(KeyError, match="needs a 'humor' target"):
        model.primary_loss(x, {"sentiment": y["humor"]}, out)
    with pytest.raises(ValueError, match="unknown task"):
        TeCaFN(task="emotions")


def test_evaluation_reports_binary_accuracy(humor_model):
    import tensorflow as tf

    model = humor_model
    x, y = batch(n=12, seed=5)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    metrics = evaluate_model(model, ds)
    logits = np.asarray(model(x)["humor"])
    expected = np.mean(np.argmax(logits, 1) == y["humor"][:, 0].astype(int))
    assert 0 < expected < 1  # both kinds of decision are exercised
    assert metrics == {"acc": pytest.approx(expected)}
    assert monitor_for("humor") == ("val_acc", "max")
