import os

import keras
import numpy as np
import pytest

from keras_msa.models import EFLSTM
from keras_msa.models import LFDNN
from keras_msa.models import M3SA
from keras_msa.models import MulG
from keras_msa.testing import ATTENTION_MODEL_CONFIGS
from keras_msa.testing import padded_attention_batch
from keras_msa.testing import small_batch


@pytest.fixture(scope="module")
def recipe(load_recipe):
    return load_recipe("plot_attention")


@pytest.fixture(scope="module")
def batch():
    # Sample 1: text steps 0-6, audio steps 2-10, vision 0-6; sample 2: no vision.
    return padded_attention_batch(fill=np.inf)


@pytest.fixture(scope="module")
def maps(attention_models, batch):
    """Every model's maps of `batch`, computed once for the module."""
    return {name: model.attention_maps(batch) for name, model in attention_models.items()}


def _panels(recipe, attention_models, maps, batch, name, sample=1, which=("all",)):
    return recipe.sample_attention(attention_models[name], batch, sample, which, computed=maps[name])


def test_crops_to_real_steps_and_matches_the_model(recipe, attention_models, batch):
    model = attention_models["mulg"]
    full = model.attention_maps(batch)
    panels = recipe.sample_attention(model, batch, sample=1, maps=["text_from_audio"], computed=full)
    panel = panels["text_from_audio"]
    assert panel["kind"] == "heatmap" and panel["values"].shape == (7, 9)
    assert panel["rows"]["steps"] == [str(i) for i in range(7)]
    assert panel["cols"]["steps"] == [str(i) for i in range(2, 11)]
    np.testing.assert_array_equal(panel["values"], np.asarray(full["text_from_audio"])[1, :7, 2:11])
    np.testing.assert_allclose(panel["values"].sum(-1), 1.0, atol=1e-5)
    assert set(recipe.sample_attention(model, batch, 0, ["all"], computed=full)) == {
        "text_from_audio", "text_from_vision", "audio_from_text",
        "audio_from_vision", "vision_from_text", "vision_from_audio",
    }


def test_joint_and_block_axes(recipe, attention_models, maps, batch):
    # GMRA: one softmax over audio then vision, cropped part by part.
    gmra = _panels(recipe, attention_models, maps, batch, "crosssent")["text_from_audio+vision"]
    full = np.asarray(maps["crosssent"]["text_from_audio+vision"])[1].mean(0)
    real = np.r_[2:11, 16 + np.arange(7)]
    np.testing.assert_allclose(gmra["values"], full[:7][:, real], atol=1e-7)
    assert [s[0] for s in gmra["cols"]["segments"]] == ["audio", "vision"]
    assert gmra["cols"]["segments"][1][1:] == (9, 16)
    np.testing.assert_allclose(gmra["values"].sum(-1), 1.0, atol=1e-5)
    # CS-DSA: (modality, time) flattened into 3 blocks of the 7 real text steps.
    csdsa = _panels(recipe, attention_models, maps, batch, "ssgdl")["csdsa_k3"]
    assert csdsa["values"].shape == (21, 21)
    assert [s[0] for s in csdsa["rows"]["segments"]] == ["text", "audio", "vision"]
    np.testing.assert_allclose(csdsa["values"].sum(-1), 1.0, atol=1e-5)
    # TeCaFN: one panel per layer; M3SA: SE weights as bars.
    assert set(_panels(recipe, attention_models, maps, batch, "tecafn")) == {
        "text_from_audio/layer_0", "text_from_audio/layer_1",
        "text_from_vision/layer_0", "text_from_vision/layer_1",
    }
    se = _panels(recipe, attention_models, maps, batch, "m3sa", which=["se_audio"])["se_audio"]
    assert se["kind"] == "bars" and se["values"].shape == (3,)


@pytest.mark.parametrize("name", sorted(ATTENTION_MODEL_CONFIGS))
def test_writes_a_labelled_png_for_every_model(recipe, attention_models, maps, batch, tmp_path, name):
    import matplotlib.image

    panels = _panels(recipe, attention_models, maps, batch, name)
    out = recipe.render_attention(panels, str(tmp_path / "maps" / f"{name}.png"), title=name)
    image = matplotlib.image.imread(out["path"])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 200
    assert image[..., :3].std() > 0  # not a blank canvas
    assert len(out["panels"]) == len(panels)
    assert os.listdir(tmp_path / "maps") == [f"{name}.png"]  # no temporary file left
    modalities = ("text", "audio", "vision")
    for drawn in out["panels"]:
        assert any(m in drawn["xlabel"] for m in modalities) or drawn["xlabel"].startswith("scale")
        assert drawn["xticks"] and drawn["title"]
    if name == "mulg":
        first = out["panels"][0]
        assert first["xlabel"] == "audio time step (key)" and first["ylabel"] == "text time step (query)"
        assert first["xticks"][0] == "2" and first["yticks"][0] == "0"  # real step indices


def test_clear_errors(recipe, attention_models, maps, batch):
    with pytest.raises(ValueError, match="Unknown map"):
        _panels(recipe, attention_models, maps, batch, "mulg", 0, ["text_from_speech"])
    with pytest.raises(ValueError, match="outside the batch of 3"):
        _panels(recipe, attention_models, maps, batch, "mulg", 5)
    for plain in (LFDNN(), EFLSTM(), MulG(hidden_dim=8, num_layers=1, cross_modal_attention=False)):
        with pytest.raises(recipe.NoAttentionError, match=f"{type(plain).__name__} computes no attention"):
            recipe.sample_attention(plain, batch, 0)
    with pytest.raises(ValueError, match="attention_maps"):
        recipe.sample_attention(object(), batch, 0)


@pytest.mark.slow
def test_main_end_to_end(recipe, tmp_path, capsys):
    """The command line: a saved model, the synthetic data, one PNG; a model
    without attention stops with the message, writing nothing."""
    from keras_msa.data.synthetic import make_synthetic_benchmark

    sizes = '{"test": 4}'
    bench = make_synthetic_benchmark(seed=0, splits={"test": 4}, compute_text_only_floor=False)
    keras.utils.set_random_seed(0)
    for name, model in (("m3sa", M3SA(**ATTENTION_MODEL_CONFIGS["m3sa"])), ("lfdnn", LFDNN(hidden_dims={"text": 4, "audio": 4, "vision": 4}))):
        model(small_batch(bench["test"], 2))
        model_path = str(tmp_path / f"{name}.keras")
        model.save(model_path)
        output = str(tmp_path / f"{name}.png")
        recipe.FLAGS(["plot_attention", f"--model_path={model_path}", "--split=test", "--sample=3",
                      f"--synthetic_sizes={sizes}", f"--output={output}"])
        try:
            if name == "lfdnn":
                with pytest.raises(SystemExit, match="LFDNN computes no attention"):
                    recipe.main([])
                assert not os.path.exists(output)
            else:
                recipe.main([])
                assert os.path.getsize(output) > 1000
                assert "text_from_audio" in capsys.readouterr().out
        finally:
            recipe.FLAGS.unparse_flags()

