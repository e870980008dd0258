"""recipes/train_from_media.py end to end: a generated raw dataset, a model
trained with the preprocessor inside, model.keras + saved_model/, and a clip
predicted from both with the same number."""

import os
import re

import pytest
from absl import flags

from keras_msa.preprocessing.testing import tiny_bert_preset


@pytest.mark.slow
def test_raw_media_to_model_to_saved_model_to_prediction(tmp_path, load_recipe, capsys):
    module = load_recipe("train_from_media")
    preset = tiny_bert_preset(tmp_path / "bert")
    out = tmp_path / "run"
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train_from_media.py", f"--output_dir={out}", f"--text_preset={preset}", "--n_clips=3",
                 "--epochs=2", "--sequence_length=8", "--max_frames=4",
                 '--model_config={"hidden_dims": {"text": 8, "audio": 8, "vision": 8}, "fusion_dim": 8}'])
    module.main([])
    printed = capsys.readouterr().out
    assert os.path.isfile(out / "model.keras") and os.path.isfile(out / "saved_model" / "saved_model.pb")
    assert re.search(r"left out broken/corrupt: .*corrupt\.mp4", printed)
    keras_score = float(re.search(r"model\.keras: +([-+][0-9.]+)", printed).group(1))
    saved_score = float(re.search(r"saved_model: +([-+][0-9.]+)", printed).group(1))
    assert abs(keras_score - saved_score) <= 1e-5
    assert "found: text, audio, vision" in printed
