"""recipes/predict.py on generated clips: a finite prediction and the
modalities found (the same number from the raw-media SavedModel is checked
end to end in test_train_from_media.py), a CSV of many clips with the broken
ones reported, and a feature-trained model refused with the widths it
expects."""

import csv
import math
import re

import keras
import numpy as np
import pytest
from absl import flags

from keras_msa.export.saved_model import save_keras_model
from keras_msa.preprocessing.testing import tiny_bert_preset
from keras_msa.preprocessing.testing import tiny_media_model


# Decoding clips and running a model with a pretrained CNN: tens of seconds.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory, load_recipe):
    from keras_msa.features.testing_media import make_test_media

    root = tmp_path_factory.mktemp("predict")
    label_csv = make_test_media(str(root / "media"), n_clips=1, seed=0)
    with open(label_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    model = tiny_media_model(tiny_bert_preset(root / "bert"))
    model_path = str(root / "model.keras")
    save_keras_model(model, model_path)
    module = load_recipe("predict")

    def run(*argv):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["predict.py", *argv])
        module.main([])

    clips = {r["clip_id"]: (str(root / "media" / "Raw" / r["video_id"] / f"{r['clip_id']}.mp4"), r["text"])
             for r in rows}
    return {"root": root, "model": model_path, "clips": clips, "run": run}


def _score(out):
    return float(re.search(r"sentiment ([-+][0-9.]+)", out).group(1))


def test_video_prediction_prints_the_score_and_the_modalities_found(setup, capsys):
    path, text = setup["clips"]["0001"]
    setup["run"](f"--model_path={setup['model']}", f"--video={path}", f"--text={text}")
    out = capsys.readouterr().out
    assert "modalities found: text, audio, vision" in out and math.isfinite(_score(out))
    import keras_msa

    result = keras_msa.predict(setup["model"], video=path, text=text)
    assert abs(result["sentiment"] - _score(out)) < 1e-4  # printed with 4 decimals
    assert result["modalities"] == {"text": True, "audio": True, "vision": True} and result["problems"] == []


def test_csv_of_clips_reports_what_is_missing_and_what_is_broken(setup, capsys, tmp_path):
    listing = tmp_path / "clips.csv"
    with open(listing, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "text"])
        for clip_id in ("0001", "noface", "noaudio", "corrupt"):
            writer.writerow(setup["clips"][clip_id])
    out_csv = tmp_path / "preds.csv"
    setup["run"](f"--model_path={setup['model']}", f"--input_csv={listing}", f"--output_csv={out_csv}")
    assert "1 of 4 clips could not be read" in capsys.readouterr().out
    with open(out_csv, newline="") as f:
        rows = {r["source"].rsplit("/", 1)[-1]: r for r in csv.DictReader(f)}
    assert np.isfinite([float(rows[c]["sentiment"]) for c in ("0001.mp4", "noface.mp4", "noaudio.mp4")]).all()
    assert (rows["noface.mp4"]["vision_found"], rows["noface.mp4"]["audio_found"]) == ("0", "1")
    assert rows["noaudio.mp4"]["audio_found"] == "0" and "no audio track" in rows["noaudio.mp4"]["problems"]
    assert rows["corrupt.mp4"]["sentiment"] == "" and "corrupt.mp4" in rows["corrupt.mp4"]["problems"]


def test_feature_trained_model_is_refused_with_its_widths(setup, tmp_path):
    from keras_msa.models import LFDNN
    from keras_msa.testing import small_batch
    from keras_msa.testing import tiny_synthetic

    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 2)
    keras.utils.set_random_seed(0)
    model = LFDNN(hidden_dims={"text": 8, "audio": 4, "vision": 4}, fusion_dim=8)
    model(batch)
    path = str(tmp_path / "features.keras")
    model.save(path)
    widths = {m: batch[m].shape[-1] for m in ("text", "audio", "vision")}
    with pytest.raises(SystemExit, match=(
            rf"trained on precomputed features and cannot take raw media: it expects 'audio' float32 "
            rf"\[batch, time, {widths['audio']}\], 'text' float32 \[batch, time, {widths['text']}\], 'vision' "
            rf"float32 \[batch, time, {widths['vision']}\]")):
        setup["run"](f"--model_path={path}", f"--video={setup['clips']['0001'][0]}", "--text=hi")
