import os

import keras
import numpy as np
import pytest

from keras_msa.models import MulG
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic



@pytest.fixture(scope="module")
def recipe(load_recipe):
    return load_recipe("plot_attention")


@pytest.fixture(scope="module")
def model_and_batch():
    bench = tiny_synthetic(train=8, valid=8, test=8, aligned=False, audio_len=16, vision_len=10)
    batch = small_batch(bench["train"], 3)
    batch["text_mask"] = batch["text_mask"].copy()
    batch["audio_mask"] = batch["audio_mask"].copy()
    batch["text_mask"][1, 7:] = False
    batch["audio_mask"][1, :] = False
    batch["audio_mask"][1, 2:11] = True  # 9 real audio steps, 2..10
    keras.utils.set_random_seed(0)
    model = MulG(hidden_dim=8, num_layers=1)
    model(batch)
    return model, batch


def test_crops_to_real_steps_and_matches_the_model(recipe, model_and_batch):
    model, batch = model_and_batch
    cropped = recipe.sample_attention(model, batch, sample=1, pairs=["text_from_audio"])
    weights, s_steps, t_steps = cropped["text_from_audio"]
    assert weights.shape == (7, 9)
    np.testing.assert_array_equal(s_steps, np.arange(7))
    np.testing.assert_array_equal(t_steps, np.arange(2, 11))
    full = np.asarray(model.attention_maps(batch)["text_from_audio"])[1]
    np.testing.assert_array_equal(weights, full[:7, 2:11])
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert set(recipe.sample_attention(model, batch, 0, ["all"])) == {
        "text_from_audio", "text_from_vision", "audio_from_text",
        "audio_from_vision", "vision_from_text", "vision_from_audio",
    }


def test_writes_a_labelled_png(recipe, model_and_batch, tmp_path):
    import matplotlib.image

    model, batch = model_and_batch
    cropped = recipe.sample_attention(model, batch, sample=1, pairs=["text_from_audio", "vision_from_text"])
    out = recipe.render_attention(cropped, str(tmp_path / "maps" / "attention.png"), title="sample 1")
    image = matplotlib.image.imread(out["path"])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 200
    assert image[..., :3].std() > 0  # not a blank canvas
    first, second = out["panels"]
    assert first["xlabel"] == "audio time step (target)" and first["ylabel"] == "text time step (source)"
    assert first["xticks"][0] == "2" and first["yticks"][0] == "0"  # real step indices
    assert second["xlabel"] == "text time step (target)" and second["ylabel"] == "vision time step (source)"


def test_clear_errors(recipe, model_and_batch):
    model, batch = model_and_batch
    with pytest.raises(ValueError, match="Unknown pair"):
        recipe.sample_attention(model, batch, 0, ["text_from_speech"])
    with pytest.raises(ValueError, match="outside the batch of 3"):
        recipe.sample_attention(model, batch, 5)
    ablated = MulG(hidden_dim=8, num_layers=1, cross_modal_attention=False)
    with pytest.raises(ValueError, match="no cross-modal attention"):
        recipe.sample_attention(ablated, batch, 0)
    with pytest.raises(ValueError, match="attention_maps"):
        recipe.sample_attention(object(), batch, 0)


@pytest.mark.slow
def test_main_end_to_end(recipe, tmp_path):
    """The command line: a saved model, the synthetic data, one PNG."""
    from keras_msa.data.synthetic import make_synthetic_benchmark

    sizes = '{"test": 4}'
    bench = make_synthetic_benchmark(seed=0, splits={"test": 4}, compute_text_only_floor=False)
    keras.utils.set_random_seed(0)
    model = MulG(hidden_dim=8, num_layers=1)
    model(small_batch(bench["test"], 2))
    model_path = str(tmp_path / "model.keras")
    model.save(model_path)
    output = str(tmp_path / "attention.png")
    recipe.FLAGS(["plot_attention", f"--model_path={model_path}", "--split=test", "--sample=3",
                  f"--synthetic_sizes={sizes}", "--pairs=text_from_audio", f"--output={output}"])
    try:
        recipe.main([])
    finally:
        recipe.FLAGS.unparse_flags()
    assert os.path.getsize(output) > 1000
