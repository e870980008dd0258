"""Checks shared by the model and layer tests (kept in the package so that
users who add a model can run the same checks on it)."""

import copy
import os

import keras
import numpy as np

from keras_msa.data.synthetic import make_synthetic_benchmark

#: Label weights (w_t, w_a, w_v) of `fusion_synthetic`: audio and vision
#: carry as much of the label as the text, so the best text-only predictor
#: (`text_only_bayes_mae`) is far from the Bayes floor and a model can only
#: get below it by reading the other modalities.
FUSION_WEIGHTS = (1.0, 1.0, 1.0)


def tiny_synthetic(seed=0, train=384, valid=96, test=128, **overrides):
    """A small, fast synthetic benchmark with the full generating process.

    Real batches are padded and lose modalities, so this one is too: valid
    lengths vary from 6 to 12 steps (`min_len < seq_len`), and audio and
    vision are each missing (zero features, all-False mask) in about 8% of
    the samples, independently (`missing_rate`; about 15% of the samples
    miss one or both). Pass `missing_rate=0` for complete samples.
    """
    kwargs = dict(
        seed=seed,
        splits={"train": train, "valid": valid, "test": test},
        seq_len=12,
        min_len=6,
        text_dim=16,
        window=4,
        offset=1,
        missing_rate=0.08,
        compute_text_only_floor=False,
    )
    kwargs.update(overrides)
    return make_synthetic_benchmark(**kwargs)


def fusion_synthetic(seed=0, train=384, valid=96, test=256, **overrides):
    """`tiny_synthetic` where audio and vision carry as much signal as text
    (`FUSION_WEIGHTS`), with the text-only floor computed: a model whose
    test MAE is well below `bench["test"].text_only_bayes_mae` must be
    fusing the modalities (the floor holds with missing modalities too,
    since a text-only predictor never sees them)."""
    kwargs = dict(weights=FUSION_WEIGHTS, compute_text_only_floor=True)
    kwargs.update(overrides)
    return tiny_synthetic(seed=seed, train=train, valid=valid, test=test, **kwargs)


def without_modalities(bench, modalities=("audio", "vision")):
    """A copy of `bench` (a dict of splits) in which `modalities` are missing
    from every sample: the fusion-off control of the learning tests, since a
    model trained on it sees the text alone."""
    out = {}
    for name, split in bench.items():
        split = copy.copy(split)
        split.inputs = dict(split.inputs)
        for m in modalities:
            split.inputs[m] = np.zeros_like(split.inputs[m])
            split.inputs[f"{m}_mask"] = np.zeros_like(split.inputs[f"{m}_mask"])
        out[name] = split
    return out


def small_batch(bench, n=4):
    """Copies of the first `n` samples of a split as a numpy batch dict (copies,
    so that a test may edit them without changing a shared fixture)."""
    return {k: np.array(v[:n]) for k, v in bench.inputs.items()}


def train_briefly(model, bench, epochs=20, batch_size=32, learning_rate=3e-3, seed=0):
    """Fits `model` on `bench["train"]` with its own objective; returns the
    test MAE and the mean predictor's test MAE."""
    from keras_msa.training.callbacks import EpochSetter

    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    model.fit(
        bench["train"].to_tf_dataset(batch_size, shuffle=True, seed=seed),
        epochs=epochs,
        # The dataset shuffles itself; fit's shuffle=True would only warn.
        shuffle=False,
        verbose=0,
        callbacks=[EpochSetter()],
    )
    pred = np.asarray(model.predict(bench["test"].to_tf_dataset(64), verbose=0)["sentiment"]).reshape(-1)
    y_test = bench["test"].targets["sentiment"].reshape(-1)
    y_train_mean = bench["train"].targets["sentiment"].mean()
    return float(np.abs(pred - y_test).mean()), float(np.abs(y_test - y_train_mean).mean())


def assert_keras_roundtrip(model, batch, tmp_dir, train_data=None, atol=1e-6):
    """Saves to `.keras`, reloads, checks equal predictions, and that the
    reloaded model keeps training (a train step changes its weights)."""
    path = os.path.join(str(tmp_dir), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    a = model(batch, training=False)
    b = restored(batch, training=False)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), atol=atol, rtol=0)
    if train_data is not None:
        before = [np.array(w) for w in restored.trainable_weights]
        restored.compile(optimizer=keras.optimizers.Adam(1e-3))
        restored.fit(train_data, epochs=1, shuffle=False, verbose=0)
        after = [np.array(w) for w in restored.trainable_weights]
        assert any(not np.allclose(x, y) for x, y in zip(before, after)), "reloaded model did not train"
    return restored


def assert_savedmodel_roundtrip(model, batch, tmp_dir, atol=1e-5):
    """Exports a SavedModel and checks `serving_default` against Keras."""
    from keras_msa.export import export_saved_model
    from keras_msa.export import load_serving_fn
    from keras_msa.export import serve_numpy

    export_dir = os.path.join(str(tmp_dir), "saved_model", "1")
    export_saved_model(model, export_dir, batch)
    served = serve_numpy(load_serving_fn(export_dir), batch)
    expected = model(batch, training=False)
    assert "sentiment" in served
    for k in served:
        np.testing.assert_allclose(served[k], np.asarray(expected[k]), atol=atol, rtol=0)


def missing_modality(batch, modality):
    """A copy of `batch` with `modality` zeroed and masked out entirely."""
    out = dict(batch)
    out[modality] = np.zeros_like(batch[modality])
    out[f"{modality}_mask"] = np.zeros_like(batch[f"{modality}_mask"], dtype=bool)
    return out


def assert_beats_text_only_floor(mae, bench, margin):
    """Asserts that a test MAE is at least `margin` below the best MAE any
    text-only predictor can expect on `bench["test"]` (`fusion_synthetic`
    computes it): only a model that reads audio or vision gets there."""
    floor = bench["test"].text_only_bayes_mae
    assert mae < floor - margin, (
        f"test MAE {mae:.3f} is not {margin} below the text-only floor {floor:.3f} "
        f"(text_only_bayes_mae): the model does not use audio and vision"
    )


#: Tiny configurations of every model with attention maps
#: (`MSAModel.attention_maps`), for the attention tests and the plotting
#: recipe's tests: registry name -> constructor arguments.
ATTENTION_MODEL_CONFIGS = {
    "mulg": {"hidden_dim": 8, "num_layers": 1},
    "ssgdl": {"hidden_dim": 8, "num_heads": 2, "kernel_sizes": (1, 3), "min_width": 4},
    "crosssent": {
        "hidden_dim": 8, "num_layers": 2, "num_attention_heads": 2, "injection_index": 0,
        "gmra_heads": 2, "adapter_dim": 4,
    },
    "tecafn": {"hidden_dim": 10, "unimodal_hidden": 8, "num_layers": 2, "num_heads": 2, "seed": 0},
    "m3sa": {"hidden_dim": 10, "num_heads": 2, "num_scales": 3, "key_modality": "text"},
}


def padded_attention_batch(fill=None):
    """Three unaligned samples (text 12, audio 16, vision 10 steps) with
    padding to mask: sample 1 keeps text steps 0-6, audio steps 2-10 (a
    holed mask) and vision 0-6; sample 2 has no vision at all. With `fill`
    (a value such as `np.inf`, or a dict modality -> value), padded feature
    steps hold that value, which no output or weight may see."""
    bench = tiny_synthetic(train=8, valid=8, test=8, aligned=False, audio_len=16, vision_len=10, missing_rate=0)
    batch = small_batch(bench["train"], 3)
    masks = {m: np.ones_like(batch[f"{m}_mask"]) for m in ("text", "audio", "vision")}
    masks["text"][1, 7:] = False
    masks["audio"][1, :] = False
    masks["audio"][1, 2:11] = True
    masks["vision"][1, 7:] = False
    masks["vision"][2, :] = False
    for m, mask in masks.items():
        batch[f"{m}_mask"] = mask
        value = fill.get(m) if isinstance(fill, dict) else fill
        if value is not None:
            x = batch[m].copy()
            x[~mask] = value
            batch[m] = x
    return batch
