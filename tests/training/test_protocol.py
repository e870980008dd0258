"""Issue 15: paper training protocols applied by --preset, schedules that
survive a restart, no selection on test, M3SA's auto key in the custom loop."""

import math
import time
import warnings

import keras
import numpy as np
import pytest

from keras_msa.models import CrossSent
from keras_msa.models import LFDNN
from keras_msa.models import M3SA
from keras_msa.models import MulG
from keras_msa.models import SSGDL
from keras_msa.models import TeCaFN
from keras_msa.models.base import MODALITIES
from keras_msa.training.protocol import GroupedAdamW
from keras_msa.training.protocol import WarmupLinearDecay
from keras_msa.training.protocol import make_optimizer
from keras_msa.training.protocol import resolve_protocol
from keras_msa.training.runner import TrainConfig
from keras_msa.training.runner import train

SYNTHETIC = {"seq_len": 6, "min_len": 6, "text_dim": 8, "audio_dim": 4, "vision_dim": 4, "window": 2,
             "offset": 1, "compute_text_only_floor": False}


class _Stop(keras.callbacks.Callback):
    """Stops a run after `epochs` epochs, or raises after `steps` steps (a
    crash mid-epoch, after the checkpoint of the step before)."""

    def __init__(self, epochs=None, steps=None):
        super().__init__()
        self.epochs, self.steps, self.seen = epochs, steps, 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.steps is not None and self.seen >= self.steps:
            raise KeyboardInterrupt("simulated kill")
        self.seen += 1

    def on_epoch_end(self, epoch, logs=None):
        if self.epochs is not None and epoch + 1 >= self.epochs:
            self.model.stop_training = True


def _add_callbacks(monkeypatch, cls, *extra):
    original = cls.training_callbacks
    monkeypatch.setattr(cls, "training_callbacks",
                        lambda self, validation_data=None: list(original(self, validation_data)) + list(extra))


# ----------------------------------------------------------- resolution

def test_protocol_sources_flags_and_the_826_reading():
    p = resolve_protocol(CrossSent, "mosi", {"epochs": 3, "clipnorm": None})
    assert p["batch_size"] == {"value": 8, "source": "paper", "note": p["batch_size"]["note"]}
    assert p["epochs"] == {"value": 3, "source": "flag"}
    assert p["clipnorm"]["value"] == 2.0 and p["clipnorm"]["source"] == "paper"  # None = flag not given
    assert resolve_protocol(CrossSent, "mosei")["epochs"]["value"] == 26
    sims = resolve_protocol(CrossSent, "sims")
    assert (sims["batch_size"]["value"], sims["epochs"]["value"]) == (16, 35)
    assert resolve_protocol(SSGDL, "mosi")["learning_rate"] == {"value": 6e-5, "source": "ARCHITECTURES.md"}
    assert resolve_protocol(LFDNN, None)["learning_rate"] == {"value": 1e-3, "source": "our choice"}
    with pytest.raises(ValueError, match=r"--weight_decay must be 0 with --optimizer=adam"):
        resolve_protocol(MulG, "mosi", {"weight_decay": 0.1})
    with pytest.raises(ValueError, match=r"--clipvalue must be unset when --clipnorm is set"):
        resolve_protocol(CrossSent, "mosi", {"clipvalue": 1.0})


def test_warmup_linear_decay_is_a_function_of_the_step():
    s = WarmupLinearDecay(2e-3, warmup_steps=4, total_steps=10, decay="linear")
    steps = np.arange(12)
    want = np.where(steps < 4, 2e-3 * (steps + 1) / 4, 2e-3 * np.maximum(0, (10 - steps - 1) / 6))
    np.testing.assert_allclose([float(s(i)) for i in steps], want, rtol=1e-6)
    assert WarmupLinearDecay.from_config(s.get_config()).get_config() == s.get_config()


def test_group_rates_scale_update_and_weight_decay():
    """One AdamW step on two variables, one in a group at a tenth of the
    rate: each moves by its own rate (first Adam step: lr * g / (|g| + eps'))
    plus decoupled decay at its own rate."""
    a = keras.Variable(np.array([1.0, -2.0], "float32"), name="a")
    b = keras.Variable(np.array([3.0], "float32"), name="b")
    proto = {"optimizer": "adamw", "learning_rate": 1e-2, "backbone_learning_rate": 1e-3, "weight_decay": 0.5,
             "epsilon": 1e-8, "epochs": 1}
    opt = make_optimizer(proto, steps_per_epoch=1, parameter_groups={"text_backbone": [b]})
    assert isinstance(opt, GroupedAdamW) and opt.group_learning_rates() == pytest.approx(
        {"main": 1e-2, "text_backbone": 1e-3})
    g = [np.array([0.5, -0.25], "float32"), np.array([2.0], "float32")]
    opt.apply_gradients(zip([keras.ops.convert_to_tensor(x) for x in g], [a, b]))
    eps_hat = 1e-8 / math.sqrt(1 - 0.999)  # Keras folds the bias correction into epsilon
    for var, start, grad, lr in ((a, [1.0, -2.0], g[0], 1e-2), (b, [3.0], g[1], 1e-3)):
        start = np.array(start)
        decayed = start - start * 0.5 * lr
        want = decayed - lr * grad / (np.abs(grad) + eps_hat)
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-5)


# ----------------------------------------------- point 1: presets applied

PAPER_RUNS = [
    (CrossSent, "mosi", {"hidden_dim": 8, "num_layers": 2, "num_attention_heads": 2, "gmra_heads": 2,
                         "adapter_dim": 4}, 8),
    (SSGDL, "mosi", {"hidden_dim": 8, "num_heads": 2, "min_width": 4}, 64),
    (MulG, "mosi", {"hidden_dim": 4, "num_layers": 1}, 128),
    (M3SA, "sims", {"hidden_dim": 5, "num_heads": 5, "num_scales": 2, "ratio": 2}, 64),
    (TeCaFN, "mosi", {"hidden_dim": 8, "unimodal_hidden": 8, "num_layers": 1, "num_heads": 2}, 32),
]


@pytest.mark.slow
@pytest.mark.parametrize("cls,preset,small,batch", PAPER_RUNS, ids=[c[0].__name__ for c in PAPER_RUNS])
def test_preset_run_uses_the_paper_protocol(tmp_path, monkeypatch, cls, preset, small, batch):
    """The optimizer, its rates, clipping, the batches and the epoch budget
    the run actually used are the preset's (one epoch is run: the loop was
    given the full budget)."""
    _add_callbacks(monkeypatch, cls, _Stop(epochs=1))
    want = resolve_protocol(cls, preset)
    config = TrainConfig(model=cls.registry_name, preset=preset, model_config=small, output_dir=str(tmp_path),
                         synthetic_sizes={"train": batch + 1, "valid": 4, "test": 4}, synthetic_options=SYNTHETIC,
                         synthetic_unimodal_labels=cls is M3SA, verbose=0)
    results, model = train(config)
    v = {k: e["value"] for k, e in want.items()}
    opt = model.optimizer
    assert isinstance(opt, keras.optimizers.AdamW if v["optimizer"] == "adamw" else keras.optimizers.Adam)
    assert isinstance(opt, keras.optimizers.AdamW) == (v["optimizer"] == "adamw")
    assert float(opt.epsilon) == pytest.approx(v["epsilon"])
    assert (opt.global_clipnorm, opt.clipvalue, opt.clipnorm) == (v["clipnorm"], v["clipvalue"], None)
    if v["optimizer"] == "adamw":
        assert float(opt.weight_decay) == pytest.approx(v["weight_decay"])
    steps = results["steps_per_epoch"]
    assert steps == 2 and results["train_batch_size"] == v["batch_size"] == batch
    schedule = opt._learning_rate
    total = steps * v["epochs"]
    assert (schedule.learning_rate, schedule.total_steps) == (v["learning_rate"], total)
    assert schedule.warmup_steps == (round(v["warmup_proportion"] * total) if v["warmup_proportion"] else 0)
    # The rate in force now (after one epoch) is the schedule's at that step.
    assert int(opt.iterations) == steps
    assert opt.group_learning_rates()["main"] == pytest.approx(float(schedule(steps)), rel=1e-6)
    assert results["epochs_budget"] == v["epochs"] and results["epochs_run"] == 1
    assert results["seed"] == v["seed"]
    saved = results["protocol"]
    assert {k: e["value"] for k, e in saved.items() if k != "monitor"} == {k: x for k, x in v.items()
                                                                          if k != "monitor"}
    assert saved["monitor"]["value"] == (v["monitor"] or "mae")


# --------------------------------------- point 2: schedules and restarts

CROSSSENT = {"hidden_dim": 8, "num_layers": 2, "num_attention_heads": 2, "gmra_heads": 2, "adapter_dim": 4,
             "ramp_epochs": 3}


@pytest.mark.slow
def test_ramp_advances_under_plain_fit():
    from keras_msa.losses.cosine_ramp_up import cosine_ramp_up
    from keras_msa.testing import tiny_synthetic

    data = tiny_synthetic(train=8, valid=2, test=2, seq_len=6, min_len=6, text_dim=8)
    model = CrossSent(**CROSSSENT, warmup_proportion=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    seen = []
    probe = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(
        float(cosine_ramp_up(model.epoch, model.ramp_epochs))))
    model.fit(data["train"].to_tf_dataset(8), initial_epoch=1, epochs=4, callbacks=[probe], shuffle=False,
              verbose=0)
    want = [0.5 * (1 - math.cos(math.pi * min((e + 1) / 3, 1))) for e in (1, 2, 3)]
    np.testing.assert_allclose(seen, want, rtol=1e-6)
    assert seen[0] < seen[1] == seen[2] == 1.0 and float(model.epoch) == 3.0


@pytest.mark.slow
def test_killed_crosssent_run_resumes_onto_the_uninterrupted_schedule(tmp_path, monkeypatch):
    """Warm-up (5 of 12 steps) and the cosine ramp are both active when the
    run dies at step 3 of epoch 1; the resumed run ends with the weights of
    the uninterrupted one."""
    stop = _Stop()
    _add_callbacks(monkeypatch, CrossSent, stop)

    def config(name):
        return TrainConfig(model="crosssent", preset="mosi", model_config=CROSSSENT, epochs=3,
                           checkpoint_every_steps=1, synthetic_sizes={"train": 32, "valid": 4, "test": 4},
                           synthetic_options=SYNTHETIC, output_dir=str(tmp_path / name), verbose=0)

    full, full_model = train(config("full"))
    assert full["protocol"]["warmup_proportion"]["value"] == 0.4 and full["steps_per_epoch"] == 4
    assert full_model.optimizer._learning_rate.warmup_steps == 5
    full_weights = [np.array(w) for w in full_model.get_weights()]
    full_steps = int(full_model.optimizer.iterations)
    keras.backend.clear_session()
    stop.seen, stop.steps = 0, 3
    with pytest.raises(KeyboardInterrupt):
        train(config("killed"))
    keras.backend.clear_session()
    stop.seen, stop.steps = 0, None
    resumed, model = train(config("killed"))
    assert resumed["resumed_from"] == "ckpt-0000000003.npz"
    assert int(model.optimizer.iterations) == full_steps == 12
    for a, b in zip(model.get_weights(), full_weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert resumed["valid"] == pytest.approx(full["valid"], abs=1e-6)


# ------------------------------------------- point 3: no selection on test

def test_no_validation_split_carves_one_and_reads_test_only_at_the_end(tmp_path, monkeypatch):
    import tensorflow as tf

    from keras_msa.testing import tiny_synthetic

    data = tiny_synthetic(train=40, valid=2, test=6, seq_len=6, min_len=6, text_dim=8)
    reads = []

    def record(y):
        reads.append(time.monotonic())
        return y

    test = data["test"].to_tf_dataset(3).map(
        lambda x, y: (x, {"sentiment": tf.py_function(record, [y["sentiment"]], tf.float32)}))
    ended = []
    _add_callbacks(monkeypatch, LFDNN, keras.callbacks.LambdaCallback(
        on_train_end=lambda logs: ended.append(time.monotonic())))
    config = TrainConfig(model="lfdnn", model_config={"hidden_dims": {m: 4 for m in MODALITIES}, "fusion_dim": 4},
                         epochs=2, batch_size=8, output_dir=str(tmp_path), verbose=0)
    results, _ = train(config, {"train": data["train"].to_tf_dataset(8), "test": test},
                       {"scale": "mosi", "sizes": {"train": 40}})
    assert results["validation_split"] == {"source": "carved from train", "size": 4, "train_size": 36,
                                           "fraction": 0.1, "seed": 0}
    assert results["steps_per_epoch"] == 5  # ceil(36 / 8): the carved samples left train
    assert ended and reads and min(reads) > ended[0]
    assert set(results) >= {"valid", "test"}


# ---------------------------------------- point 4: M3SA auto key, custom loop

M3SA_SMALL = {"hidden_dim": 5, "num_heads": 5, "num_scales": 2, "ratio": 2, "key_modality": "auto",
              "key_warmup_epochs": 1, "multi_task": "none"}


@pytest.mark.slow
def test_m3sa_auto_key_in_the_custom_loop_freezes_unchosen_branches_and_resumes(tmp_path, monkeypatch):
    """The key is chosen after epoch 1; the run dies in epoch 2 and resumes:
    the key survives, only the chosen fusion branch has changed since the
    choice, and no step handed a variable without gradient to the optimizer."""
    snapshots = {}

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                snapshots.update({k: [np.array(w) for w in self.model.fusions[k].get_weights()
                                      + self.model.fused_heads[k].get_weights()] for k in MODALITIES})

    stop = _Stop(steps=5)  # dies in epoch 2, after the choice
    _add_callbacks(monkeypatch, M3SA, Snapshot(), stop)
    config = TrainConfig(model="m3sa", model_config=M3SA_SMALL, epochs=3, batch_size=8, optimizer="adamw",
                         weight_decay=0.01, checkpoint_every_steps=2,
                         synthetic_sizes={"train": 24, "valid": 6, "test": 4}, synthetic_options=SYNTHETIC,
                         output_dir=str(tmp_path), verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(KeyboardInterrupt):
            train(config)
        from keras_msa.training.checkpointing import CheckpointDirectory

        _, meta = CheckpointDirectory.load(str(tmp_path / "checkpoints" / "ckpt-0000000004.npz"))
        key = meta["model_state"]["selected_key_modality"]
        assert key in MODALITIES
        keras.backend.clear_session()
        stop.seen, stop.steps = 0, None
        resumed, model = train(config)
    assert not [w for w in caught if "Gradients do not exist" in str(w.message)]
    assert resumed["resumed_from"] == "ckpt-0000000004.npz"
    assert model.selected_key_modality == key
    assert resumed["best_epoch"] >= 2  # selection restarted after the choice
    for k in MODALITIES:
        after = model.fusions[k].get_weights() + model.fused_heads[k].get_weights()
        same = all(np.array_equal(a, b) for a, b in zip(after, snapshots[k]))
        assert same == (k != key), k  # only the chosen branch still learns


def test_coupled_l2_and_mmsa_protocols_match_pytorch_adam():
    from keras_msa.models import EFLSTM
    from keras_msa.models import MulT
    from keras_msa.training.protocol import check_training_presets

    # MMSA's baselines: every field from the reference framework's settings.
    p = resolve_protocol(MulT, "mosi")
    assert p["clipvalue"] == {"value": 0.6, "source": "MMSA"}
    assert p["gradient_accumulation_steps"]["value"] == 8 and p["epsilon"]["value"] == 1e-8
    q = resolve_protocol(EFLSTM, "mmsa_mosi")
    assert q["l2_weight_decay"] == {"value": 5e-3, "source": "MMSA"} and q["batch_size"]["value"] == 32
    for cls in (MulT, EFLSTM, LFDNN):
        check_training_presets(cls)
    assert make_optimizer(p, steps_per_epoch=4).gradient_accumulation_steps == 8

    # PyTorch's Adam(weight_decay=wd): g <- g + wd * w before the moments.
    wd, lr, eps = 0.1, 0.01, 1e-8
    w0 = np.array([1.0, -2.0, 0.5], np.float32)
    grads = [np.array([0.3, -0.1, 0.2], np.float32), np.array([-0.2, 0.4, 0.1], np.float32)]
    opt = make_optimizer({"optimizer": "adam", "learning_rate": lr, "epsilon": eps, "l2_weight_decay": wd})
    var = keras.Variable(w0.copy())
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
    w, m, v = w0.astype(np.float64), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        g = g + wd * w
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + eps)
    np.testing.assert_allclose(np.asarray(var), w, rtol=1e-5, atol=1e-6)
