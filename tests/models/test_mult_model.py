import keras
import numpy as np
import pytest

from keras_msa.models import MulT
from keras_msa.models import get_model_class
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import assert_savedmodel_roundtrip
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.testing import train_briefly

TINY = dict(hidden_dim=8, num_heads=2, num_layers=1, memory_layers=1,
            conv_kernel_sizes={"text": 3, "audio": 1, "vision": 2}, attention_dropout=0.0,
            embed_dropout=0.0, output_dropout=0.0, text_dropout=0.0)


def _model(**overrides):
    keras.utils.set_random_seed(0)
    return MulT(**{**TINY, **overrides})


def test_padding_changes_nothing_where_mmsa_would_read_it():
    rng = np.random.default_rng(0)
    lengths = {"text": 5, "audio": 7, "vision": 4}
    dims = {"text": 16, "audio": 5, "vision": 6}
    alone = {m: rng.normal(size=(1, lengths[m], dims[m])).astype("float32") for m in dims}
    model = _model()
    want = np.asarray(model(alone)["sentiment"])[0]
    padded = {}
    for m in dims:
        x = np.full((2, lengths[m] + 3, dims[m]), 123.0, "float32")
        x[0, :lengths[m]] = alone[m][0]
        x[1] = rng.normal(size=x.shape[1:])
        mask = np.ones(x.shape[:2], bool)
        mask[0, lengths[m]:] = False
        padded[m], padded[f"{m}_mask"] = x, mask
    np.testing.assert_allclose(np.asarray(model(padded)["sentiment"])[0], want, atol=1e-5)
    # Without masks the padding is read as data (as MMSA reads it).
    unmasked = {m: padded[m] for m in dims}
    assert abs(float(np.asarray(model(unmasked)["sentiment"])[0, 0]) - float(want[0])) > 1e-3


def test_a_missing_modality_shorter_than_its_kernel_reads_as_missing():
    # Real MOSI text alone stores audio and vision as 1 masked step, shorter
    # than MMSA's MOSI kernels (5): the 'valid' Conv1D had no output step and
    # failed. Whatever its stored length, a missing modality is the same.
    rng = np.random.default_rng(1)
    model = _model(conv_kernel_sizes={"text": 3, "audio": 5, "vision": 4})
    text = rng.normal(size=(2, 6, 16)).astype("float32")
    outputs = []
    for steps, fill in ((1, np.nan), (2, np.inf), (9, -np.inf)):
        batch = {"text": text, "text_mask": np.ones((2, 6), bool)}
        for m, d in (("audio", 5), ("vision", 6)):
            batch[m] = np.full((2, steps, d), fill, "float32")
            batch[f"{m}_mask"] = np.zeros((2, steps), bool)
        outputs.append(np.asarray(model(batch)["sentiment"]))
    assert np.all(np.isfinite(outputs[0]))
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-6)
    np.testing.assert_allclose(outputs[2], outputs[0], atol=1e-6)


def test_presets_protocol_ablation_and_config():
    assert get_model_class("mult") is MulT
    mosei = MulT.from_preset("mosei")
    assert (mosei.hidden_dim, mosei.num_heads, mosei.num_layers, mosei.memory_layers) == (30, 6, 4, 4)
    assert mosei.conv_kernel_sizes == {"text": 5, "audio": 1, "vision": 3}
    assert MulT.from_preset("sims").memory_layers == 3  # max(nlevels=2, 3), as MMSA
    from keras_msa.training.protocol import resolve_protocol

    assert resolve_protocol(MulT, "mosi")["learning_rate"] == {
        "value": 2e-3, "source": "MMSA", "note": resolve_protocol(MulT, "mosi")["learning_rate"]["note"]}
    assert resolve_protocol(MulT, "mosei")["batch_size"]["value"] == 4
    for preset in MulT.training_presets:
        p = resolve_protocol(MulT, preset)
        assert p["clipvalue"]["value"] == 0.6 and p["gradient_accumulation_steps"]["value"] == 8
    clone = MulT.from_config(mosei.get_config())
    assert clone.get_config() == mosei.get_config()
    # The paper's "[V,A -> L]" ablation keeps the text branch alone.
    text_only = _model(targets=("text",))
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 2)
    assert text_only(batch)["sentiment"].shape == (2, 1)
    assert sorted(text_only.crossmodal) == [("text", "audio"), ("text", "vision")]
    assert text_only.head_in.kernel.shape == (16, 16)
    with pytest.raises(ValueError, match="divisible"):
        MulT(hidden_dim=10, num_heads=4)
    with pytest.raises(ValueError, match="targets"):
        MulT(targets=("speech",))
    with pytest.raises(ValueError, match="conv_kernel_sizes"):
        MulT(conv_kernel_sizes={"text": 3})


@pytest.mark.slow
def test_learns_and_round_trips(tmp_path):
    bench = tiny_synthetic(train=256, valid=32, test=96)
    # text_dim 16 = hidden_dim: text is used without a projection, as MMSA does.
    # The "[V,A -> L]" branch alone keeps the graphs that fit, predict and the
    # export trace a third of the full model's (the full model is covered by
    # the parity, padding and masking tests).
    model = _model(hidden_dim=16, targets=("text",))
    mae, mean_mae = train_briefly(model, bench, epochs=6)
    assert mae < 0.85 * mean_mae, (mae, mean_mae)
    assert not model.projections["text"].built and model.projections["audio"].built
    batch = small_batch(bench["train"], 4)
    assert_keras_roundtrip(model, batch, tmp_path, train_data=bench["valid"].to_tf_dataset(32))
    assert_savedmodel_roundtrip(model, batch, tmp_path)
