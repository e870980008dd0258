"""What the MMSA parity tests share: reading the EF-LSTM and LF-DNN
fixtures (tests/fixtures/mmsa/make_fixtures.py), comparing one training step
with MMSA's, and comparing gradients placed on the Keras variables (TFN and
LMF too)."""

import os

import numpy as np
import pytest
import tensorflow as tf

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "mmsa")


class MMSAStep:
    """Loads `<name>.npz` as (weights, gradients, arrays) and checks a
    train-mode step against the fixture's."""

    @staticmethod
    def load(name):
        with np.load(os.path.join(FIXTURES, name)) as f:
            data = {k: f[k] for k in f.files}
        weights = {k[2:]: v for k, v in data.items() if k.startswith("w/")}
        grads = {k[2:]: v for k, v in data.items() if k.startswith("g/")}
        return weights, grads, data

    @staticmethod
    def check_training_step(model, batch, data, grads, weight_pairs):
        """Runs `model` in train mode on `batch`, checks its output and L1
        loss against `train_M`/`loss` and every gradient against MMSA's,
        placed on the Keras variables by `weight_pairs(model, grads,
        gradients=True)`. Returns the largest gradient difference."""
        with tf.GradientTape() as tape:
            pred = model(batch, training=True)
            loss = model.compute_loss(batch, {"sentiment": data["labels"]}, pred)
        np.testing.assert_allclose(np.asarray(pred["sentiment"]), data["train_M"], atol=1e-4)
        np.testing.assert_allclose(float(loss), float(data["loss"]), atol=1e-4)
        ours = tape.gradient(loss, model.trainable_weights)
        pairs, _ = weight_pairs(model, grads, gradients=True)
        want = {id(var): value for var, value, _ in pairs}
        assert len(want) == len(model.trainable_weights)
        return MMSAStep.compare_gradients(model, ours, want)

    @staticmethod
    def compare_gradients(model, ours, want, atol=1e-3):
        """Asserts each gradient in `ours` (in `model.trainable_weights`
        order) equals MMSA's `want[id(variable)]` to `atol`; returns the
        largest difference."""
        worst = 0.0
        for var, got in zip(model.trainable_weights, ours):
            got = np.asarray(got)
            worst = max(worst, float(np.abs(got - want[id(var)]).max()))
            np.testing.assert_allclose(got, want[id(var)], atol=atol, err_msg=var.path)
        return worst


@pytest.fixture(scope="session")
def mmsa_step():
    return MMSAStep
