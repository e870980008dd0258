"""Predict the sentiment of your own clip with a raw-media model.

    python recipes/predict.py --model_path=runs/media/model.keras --video=clip.mp4 --text="what a film"
    python recipes/predict.py --model_path=runs/media/saved_model --audio=clip.wav --text="..."
    python recipes/predict.py --model_path=runs/media/model.keras --input_csv=clips.csv --output_csv=preds.csv

`--model_path` is a `.keras` file holding a model with its preprocessor inside
(`keras_msa.preprocessing.MediaModel`, written by recipes/train_from_media.py)
or the SavedModel exported from one. The clip is decoded by
`keras_msa.features.media.load_clip` (needs `pip install "keras_msa[media]"`),
its features computed by the model's own layers; the command prints the score,
its reading (negative / neutral / positive) and which modalities were found
(a video without an audio track or without a detectable face still gets a
prediction, from what it has). `--input_csv` takes a `path` (or `video` /
`audio`) column and an optional `text` column and writes one row per clip;
a clip that cannot be read gets an empty score and its error, and the run
goes on.

A model trained on precomputed features (recipes/train.py) is refused with
the feature widths it expects.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "A raw-media .keras file or its SavedModel directory.", required=True)
flags.DEFINE_string("video", None, "A video file (.mp4, .mpg, .avi).")
flags.DEFINE_string("audio", None, "An audio file (.wav), when there is no video.")
flags.DEFINE_string("text", "", "What is said in the clip (its transcript).")
flags.DEFINE_string("input_csv", None, "CSV with a path (or video / audio) column and a text column.")
flags.DEFINE_string("output_csv", None, "With --input_csv: where to write the predictions (default: print them).")
flags.DEFINE_integer("max_frames", None, "Search at most this many video frames per clip for faces.")
flags.DEFINE_integer("batch_size", 8, "Clips scored together with --input_csv.")


def describe(result):
    """One line: the score, its reading, what was found and what was not."""
    from keras_msa.inference.predict import sentiment_word

    found = [m for m, ok in result["modalities"].items() if ok]
    missing = [m for m, ok in result["modalities"].items() if not ok]
    line = f"sentiment {result['sentiment']:+.4f} ({sentiment_word(result['sentiment'])})"
    line += f"  modalities found: {', '.join(found) or 'none'}"
    if missing:
        line += f"; missing: {', '.join(missing)}"
    if result["problems"]:
        line += f"  [{'; '.join(result['problems'])}]"
    return line


def main(argv):
    del argv
    given = [name for name in ("video", "audio", "input_csv") if getattr(FLAGS, name)]
    if len(given) > 1:
        raise app.UsageError(f"Give one of --video, --audio or --input_csv; got {', '.join('--' + g for g in given)}.")
    if not given and not FLAGS.text.strip():
        raise app.UsageError("Give --video, --audio or --input_csv (and --text), or at least --text.")
    if FLAGS.output_csv and not FLAGS.input_csv:
        raise app.UsageError("--output_csv goes with --input_csv.")
    # Before anything imports TensorFlow (`import keras_msa` does not).
    from keras_msa.utils.quiet import quiet_start

    quiet_start(FLAGS.verbosity)
    from keras_msa.features.media import MediaError
    from keras_msa.inference.predict import NotARawMediaModelError
    from keras_msa.inference.predict import Predictor
    from keras_msa.inference.predict import read_input_csv
    from keras_msa.inference.predict import write_predictions_csv
    from keras_msa.utils.loading import ModelFileError

    try:
        predictor = Predictor(FLAGS.model_path, max_frames=FLAGS.max_frames)
    except (NotARawMediaModelError, ModelFileError, FileNotFoundError) as e:
        raise SystemExit(f"predict.py: {e}")
    if FLAGS.input_csv:
        try:
            items = read_input_csv(FLAGS.input_csv)
        except (OSError, ValueError) as e:
            raise SystemExit(f"predict.py: {e}")
        results = predictor.predict(items, batch_size=FLAGS.batch_size)
        for r in results:
            print(f"{r['source']}: {describe(r)}")
        if FLAGS.output_csv:
            write_predictions_csv(results, FLAGS.output_csv, predictor.reads)
            print(f"Wrote {len(results)} predictions to {FLAGS.output_csv}")
        failed = sum(1 for r in results if r["sentiment"] != r["sentiment"])
        if failed:
            print(f"{failed} of {len(results)} clips could not be read (see their problems above).")
        return
    path = FLAGS.video or FLAGS.audio
    try:
        result = predictor.predict([(path, FLAGS.text)], raise_errors=True)[0]
    except MediaError as e:
        raise SystemExit(f"predict.py: {e}")
    print(f"{path or '(text only)'}: {describe(result)}")


if __name__ == "__main__":
    app.run(main)
