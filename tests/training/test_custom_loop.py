"""The custom loop optimises what `fit` optimises and resumes exactly."""

import keras
import numpy as np
import pytest

from keras_msa.models import LFDNN
from keras_msa.testing import tiny_synthetic
from keras_msa.training.callbacks import BestWeights
from keras_msa.training.callbacks import ValidationMetrics
from keras_msa.training.checkpointing import CheckpointDirectory
from keras_msa.training.distributed import CustomLoop
from keras_msa.training.distributed import epoch_seed
from keras_msa.training.distributed import steps_for
from keras_msa.training.history import HistoryCSV
from keras_msa.training.history import read_history_csv

SMALL = dict(hidden_dims={"text": 8, "audio": 4, "vision": 4}, fusion_dim=8)


@pytest.fixture(scope="module")
def bench():
    return tiny_synthetic(train=80, valid=32, test=16)


def _model(bench, seed=0, **kw):
    keras.utils.set_random_seed(seed)
    model = LFDNN(**{**SMALL, **kw})
    model(next(iter(bench["train"].to_tf_dataset(4)))[0])
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


def test_custom_loop_steps_equal_fit_steps(bench):
    ds = bench["train"].to_tf_dataset(16).take(3)
    a = _model(bench, dropout=0.0)
    b = _model(bench, dropout=0.0)
    for v, w in zip(b.variables, a.variables):
        v.assign(np.asarray(w))
    a.fit(ds, epochs=1, verbose=0, shuffle=False)
    history = CustomLoop(b).fit(lambda epoch: ds, steps_per_epoch=3, epochs=1)
    for v, w in zip(b.trainable_variables, a.trainable_variables):
        np.testing.assert_allclose(np.asarray(v), np.asarray(w), atol=1e-6, rtol=0)
    assert int(b.optimizer.iterations) == 3 == int(a.optimizer.iterations)
    assert np.isfinite(history[0]["loss"])


def test_custom_loop_sets_epoch_and_learns(bench):
    model = _model(bench)
    base = bench["train"].to_tf_dataset(1).unbatch()
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(float(self.model.epoch.numpy()))

    history = CustomLoop(model).fit(lambda e: base.batch(16), steps_per_epoch=5, epochs=6, callbacks=[Spy()])
    assert seen == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    losses = [h["loss"] for h in history]
    assert losses[-1] < 0.8 * losses[0], losses


def _mae(model, ds):
    p = np.concatenate([np.asarray(model(x)["sentiment"]) for x, _ in ds]).reshape(-1)
    t = np.concatenate([np.asarray(y["sentiment"]) for _, y in ds]).reshape(-1)
    return {"mae": float(np.abs(p - t).mean())}


def _run(bench, directory, epochs=4, stop_at=None, scramble=False):
    """Trains with checkpoints every 3 steps; `stop_at` simulates a crash at
    that global step (an exception out of the loop). `scramble` overwrites
    the fresh model's variables and advances the random generators, so that
    a resumed run can only match by restoring them from the checkpoint."""
    model = _model(bench, dropout=0.3)
    if scramble:
        rng = np.random.default_rng(5)
        for v in model.variables:
            v.assign(rng.normal(size=v.shape).astype(v.dtype) if "float" in str(v.dtype)
                     else np.asarray(v) + 17)
        np.random.rand(11)
    base = bench["train"].to_tf_dataset(1).unbatch()
    valid = bench["valid"].to_tf_dataset(32)

    def make_dataset(epoch):
        return base.shuffle(80, seed=epoch_seed(7, epoch), reshuffle_each_iteration=False).batch(16)

    class Crash(keras.callbacks.Callback):
        step = 0

        def on_train_batch_end(self, batch, logs=None):
            Crash.step += 1
            if stop_at is not None and Crash.step == stop_at:
                raise RuntimeError("simulated crash")

    best = BestWeights(monitor="val_mae", mode="min", patience=0)
    history = HistoryCSV(str(directory / "history.csv"))
    callbacks = [ValidationMetrics(valid, _mae), best, history, Crash()]
    loop = CustomLoop(model)
    loop.fit(make_dataset, steps_per_epoch=steps_for(80, 16, False), epochs=epochs, callbacks=callbacks,
             checkpoints=CheckpointDirectory(str(directory / "ckpt")), checkpoint_every_steps=3,
             fingerprint={"seed": 7})
    return model, best


def test_resume_after_crash_matches_uninterrupted_run(bench, tmp_path):
    full, full_best = _run(bench, tmp_path / "full")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(bench, tmp_path / "crashed", stop_at=13)  # epoch 3, step 3 of 5
    latest = CheckpointDirectory(str(tmp_path / "crashed" / "ckpt")).latest()
    assert latest.endswith("ckpt-0000000012.npz")  # mid-epoch: 12 = 2 * 5 + 2
    resumed, resumed_best = _run(bench, tmp_path / "crashed", scramble=True)
    for a, b in zip(resumed.variables, full.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(resumed.optimizer.iterations) == int(full.optimizer.iterations) == 20
    assert resumed_best.best == full_best.best and resumed_best.best_epoch == full_best.best_epoch
    h_full = read_history_csv(str(tmp_path / "full" / "history.csv"))
    h_res = read_history_csv(str(tmp_path / "crashed" / "history.csv"))
    assert h_res["epoch"] == h_full["epoch"] == [1, 2, 3, 4]
    np.testing.assert_array_equal(h_res["loss"], h_full["loss"])
    np.testing.assert_array_equal(h_res["val_mae"], h_full["val_mae"])


def test_resume_refuses_another_configuration(bench, tmp_path):
    _run(bench, tmp_path, epochs=1)
    model = _model(bench)
    loop = CustomLoop(model)
    base = bench["train"].to_tf_dataset(16)
    with pytest.raises(ValueError, match="differs in: seed"):
        loop.fit(lambda e: base, steps_per_epoch=5, epochs=2,
                 checkpoints=CheckpointDirectory(str(tmp_path / "ckpt")), fingerprint={"seed": 8})


def test_custom_loop_needs_a_compiled_model():
    with pytest.raises(ValueError, match="compiled model"):
        CustomLoop(LFDNN(**SMALL))
