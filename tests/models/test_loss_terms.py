"""Every term of every model's objective is logged per epoch (issue 15 point 5)."""

import keras
import numpy as np
import pytest

from keras_msa.models import get_model_class
from keras_msa.testing import tiny_synthetic

# Tiny configurations without dropout (so training-mode terms are those of
# the weights `predict` uses at the end).
TINY = {
    "lfdnn": dict(hidden_dims={"text": 4, "audio": 4, "vision": 4}, fusion_dim=4, dropout=0.0),
    "eflstm": dict(hidden_dim=4, head_dim=4, dropout=0.0),
    "mulg": dict(hidden_dim=4, num_layers=1, text_dropout=0.0, attention_dropout=0.0,
                 residual_dropout=0.0, output_dropout=0.0),
    "ssgdl": dict(hidden_dim=8, num_heads=2, kernel_sizes=(3, 5), min_width=4, dropout=0.0),
    "m3sa": dict(hidden_dim=4, num_scales=3, ratio=2, num_heads=2, dropout=0.0),
    "tecafn": dict(hidden_dim=4, unimodal_hidden=4, num_layers=1, num_heads=2, num_hard_negatives=2,
                   dropout=0.0, seed=0),
    # ramp_epochs=0: the ranking terms are on from the first step.
    "crosssent": dict(hidden_dim=8, num_layers=2, num_attention_heads=2, gmra_heads=2, adapter_dim=4,
                      dropout=0.0, gmra_dropout=0.0, ramp_epochs=0, warmup_proportion=0),
}

# The terms of each objective, in training and in evaluation. The synthetic
# targets hold no unimodal labels, so M3SA's `multi_task="auto"` takes its
# contrastive terms (and the detached probes); TeCaFN's contrastive and pair
# terms need the training-mode replacements and exist in training only.
TERMS = {
    "lfdnn": ({"task"}, {"task"}),
    "eflstm": ({"task"}, {"task"}),
    "mulg": ({"task"}, {"task"}),
    "ssgdl": ({"task"}, {"task"}),
    "m3sa": ({"task", "contrastive_text_audio", "contrastive_text_vision", "contrastive_audio_vision",
              "unimodal_probe"},) * 2,
    "tecafn": ({"task", "tcon", "bicon", "pair"}, {"task"}),
    "crosssent": ({"task", "mpr", "eioi"},) * 2,
}


@pytest.fixture(scope="module")
def bench():
    return tiny_synthetic(train=16, valid=8, test=8)


def _terms(history, prefix=""):
    return {k[len(prefix):-len("_loss")] for k in history
            if k.startswith(prefix) and k.endswith("_loss") and k != f"{prefix}loss"
            and (prefix or not k.startswith("val_"))}


@pytest.mark.parametrize("name", sorted(TINY))
def test_fit_logs_every_term_and_they_sum_to_the_loss(name, bench):
    keras.utils.set_random_seed(0)
    model = get_model_class(name)(**TINY[name])
    # Eager keeps the test fast (no tracing); the terms of compiled steps are
    # covered by the metric's own test and by tests/recipes/test_train.py.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    history = model.fit(
        bench["train"].to_tf_dataset(8), validation_data=bench["valid"].to_tf_dataset(8),
        epochs=2, shuffle=False, verbose=0,
    ).history
    train_terms, val_terms = TERMS[name]
    assert _terms(history) == train_terms
    assert _terms(history, "val_") == val_terms
    for prefix, terms in (("", train_terms), ("val_", val_terms)):
        values = np.array([history[f"{prefix}{t}_loss"] for t in sorted(terms)])
        assert values.shape == (len(terms), 2) and np.isfinite(values).all()
        # The logged terms are the weighted values compute_loss adds, so they
        # sum to the logged objective epoch by epoch.
        np.testing.assert_allclose(values.sum(axis=0), history[f"{prefix}loss"], rtol=1e-5, atol=1e-6)
    # The task term against an independent computation: the last epoch's
    # validation error (the model's MSE or MAE) of the final weights, over
    # all validation examples.
    pred = np.asarray(model.predict(bench["valid"].to_tf_dataset(8), verbose=0)["sentiment"]).reshape(-1)
    y = bench["valid"].targets["sentiment"].reshape(-1)
    error = np.abs(pred - y) if model.task_loss == "mae" else (pred - y) ** 2
    np.testing.assert_allclose(history["val_task_loss"][-1], np.mean(error), rtol=1e-4)


def test_custom_loop_logs_every_term(bench):
    from keras_msa.training.distributed import CustomLoop

    keras.utils.set_random_seed(0)
    model = get_model_class("crosssent")(**TINY["crosssent"])
    model(next(iter(bench["train"].to_tf_dataset(8)))[0])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    # Eager: the compiled steps are covered by tests/training.
    loop = CustomLoop(model, run_eagerly=True)
    history = loop.fit(lambda epoch: bench["train"].to_tf_dataset(8), steps_per_epoch=2, epochs=2)
    assert len(history) == 2
    for logs in history:
        assert _terms(logs) == TERMS["crosssent"][0]
        total = sum(logs[f"{t}_loss"] for t in TERMS["crosssent"][0])
        assert np.isfinite(total) and total == pytest.approx(logs["loss"], rel=1e-5)


def test_sample_weight_is_rejected_with_a_clear_error(bench):
    model = get_model_class("lfdnn")(**TINY["lfdnn"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    split = bench["train"]
    with pytest.raises(ValueError, match="does not take sample_weight.*batch statistics"):
        model.fit(split.inputs, split.targets, sample_weight=np.ones(len(split.targets["sentiment"])),
                  batch_size=8, epochs=1, verbose=0)


def test_loss_terms_metric_means_slots_and_reset():
    import tensorflow as tf

    from keras_msa.models.loss_terms import LossTerms

    tracker = LossTerms(capacity=3)
    tracker.update_state({"task": 1.0, "mpr": np.inf}, sample_weight=3.0)
    tracker.update_state({"task": 3.0, "mpr": 0.5}, sample_weight=1.0)
    result = {k: float(v) for k, v in tracker.result().items()}
    # A non-finite term stays in its own slot.
    assert result == {"task_loss": (1.0 * 3 + 3.0) / 4, "mpr_loss": np.inf}
    tracker.reset_state()

    # Compiled steps, as in fit: the terms are found while each step is
    # traced, and each step reports its own (evaluation has no "mpr" here).
    @tf.function
    def train_step(task, mpr):
        tracker.update_state({"task": task, "mpr": mpr}, sample_weight=2.0)
        return tracker.result()

    @tf.function
    def test_step(task):
        tracker.update_state({"task": task}, sample_weight=2.0)
        return tracker.result()

    train_step(tf.constant(1.0), tf.constant(0.25))
    logs = {k: float(v) for k, v in train_step(tf.constant(3.0), tf.constant(0.75)).items()}
    assert logs == {"task_loss": 2.0, "mpr_loss": 0.5}
    tracker.reset_state()
    assert {k: float(v) for k, v in test_step(tf.constant(4.0)).items()} == {"task_loss": 4.0}

    # Slots are kept across resets; one more name than the capacity is refused.
    tracker.update_state({"a": 1.0})
    with pytest.raises(ValueError, match="at most 3 terms"):
        tracker.update_state({"b": 1.0})
