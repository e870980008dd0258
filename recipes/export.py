"""Export a trained model as a SavedModel that TensorFlow Serving loads.

    python recipes/export.py --model_path=runs/lfdnn/model.keras --export_dir=saved_models/lfdnn/1

The `serving_default` signature takes the batch keys (`text`, `text_mask`,
`audio`, ...) as named inputs and returns `sentiment`; a raw-media model
(`keras_msa.preprocessing.MediaModel`, e.g. from recipes/train_from_media.py)
takes the raw inputs instead: `text` (string), `waveform` + `waveform_length`,
`faces` + `face_count`. The export is checked
against the Keras model on a probe batch before the command succeeds.

`--export_dir` may be new, empty, or an earlier export (replaced atomically:
the old one is renamed aside and deleted only once the new one is in place).
Anything else there is refused unless `--overwrite`; a directory that holds
the model being exported, or version folders of other exports, is always
refused (export to `<dir>/<next version>`). The model loads in Keras's safe
mode (no code from the file runs).
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "A .keras file written by recipes/train.py.", required=True)
flags.DEFINE_string("export_dir", None, "Target, e.g. saved_models/<name>/<version>.", required=True)
flags.DEFINE_float("tolerance", 1e-5, "Largest allowed |SavedModel - Keras| on the probe batch (>= 0).")
flags.DEFINE_bool("overwrite", False, "Delete what --export_dir holds even if it is not an earlier "
                  "SavedModel export (never the source model or other versions' folders).")
flags.DEFINE_bool("warmup", False, "Also write assets.extra/tf_serving_warmup_requests from the probe "
                  "batch, which TensorFlow Serving replays at load so the first request is not slow.")


RAW_TEXT_KEYS = ("text_raw", "raw_text")
PROBE_SENTENCES = ("i really loved this movie", "it was boring and far too long", "okay")


def probe_batch(model, batch_size=4, steps=20, seed=0):
    """A random batch with the feature widths the model was built with; for a
    raw-media model (a preprocessor inside), a raw batch: sentences, noise
    waveforms with their lengths, random face crops with their counts (one
    row without audio, one without faces)."""
    import numpy as np

    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is not None and hasattr(preprocessor, "probe_inputs"):
        return preprocessor.probe_inputs(batch_size=batch_size, seed=seed)

    from keras_msa.data.validation import expected_dims_from_model

    shapes = (model.get_build_config() or {}).get("input_shape") or {}
    if not shapes:
        raise ValueError("The model was never built; train or call it before exporting.")
    rng = np.random.default_rng(seed)
    dims = expected_dims_from_model(model)
    batch = {}
    for key, shape in shapes.items():
        if key in RAW_TEXT_KEYS and len(shape) == 1:
            # Models that tokenize in the graph (CrossSent with a backbone)
            # take the sentences themselves: the signature gets a string input.
            batch[key] = np.array([PROBE_SENTENCES[i % len(PROBE_SENTENCES)] for i in range(batch_size)])
            continue
        if key.endswith("_mask"):
            continue
        t = shape[1] if len(shape) > 2 and shape[1] is not None else steps
        if key in dims:
            batch[key] = rng.standard_normal((batch_size, t, dims[key])).astype("float32")
            lengths = rng.integers(1, t + 1, size=batch_size)
            batch[f"{key}_mask"] = np.arange(t)[None, :] < lengths[:, None]
    for key, shape in shapes.items():
        if key not in batch:
            if str(key).endswith("_mask"):
                continue
            raise ValueError(
                f"Cannot make a probe value for input '{key}' {shape}; export it with "
                f"keras_msa.export.export_saved_model and a real example batch."
            )
    return batch


def main(argv):
    del argv
    # Before anything imports TensorFlow (`import keras_msa` does not).
    from keras_msa.utils.quiet import quiet_start

    quiet_start(FLAGS.verbosity)
    import math

    import numpy as np

    from keras_msa.export import export_saved_model
    from keras_msa.export import load_serving_fn
    from keras_msa.export import serve_numpy
    from keras_msa.export.saved_model import ExportTargetError
    from keras_msa.export.saved_model import check_export_target
    from keras_msa.utils.loading import ModelFileError
    from keras_msa.utils.loading import load_model

    if not (FLAGS.tolerance >= 0 and math.isfinite(FLAGS.tolerance)):
        raise app.UsageError(f"--tolerance must be a finite number >= 0; got {FLAGS.tolerance}.")
    try:
        # Before the (slow) model load: a target that must not be replaced
        # is refused at once.
        check_export_target(FLAGS.export_dir, overwrite=FLAGS.overwrite, source_path=FLAGS.model_path)
        model = load_model(FLAGS.model_path, label="--model_path")
    except (ExportTargetError, ModelFileError, FileNotFoundError) as e:
        raise SystemExit(f"export.py: {e}")
    try:
        batch = probe_batch(model)
    except ValueError as e:
        raise SystemExit(f"export.py: --model_path={FLAGS.model_path}: {e}")
    try:
        export_saved_model(model, FLAGS.export_dir, batch, overwrite=FLAGS.overwrite,
                           source_path=FLAGS.model_path, warmup=FLAGS.warmup)
    except ExportTargetError as e:
        raise SystemExit(f"export.py: {e}")
    served = serve_numpy(load_serving_fn(FLAGS.export_dir), batch)
    expected = model(batch, training=False)
    worst = max(float(np.max(np.abs(served[k] - np.asarray(expected[k])))) for k in served)
    if not worst <= FLAGS.tolerance:
        raise SystemExit(f"SavedModel at {FLAGS.export_dir} differs from the Keras model by {worst:.2e} > "
                         f"--tolerance={FLAGS.tolerance} on a probe batch.")
    print(f"Exported {FLAGS.model_path} to {FLAGS.export_dir} (outputs {sorted(served)}; "
          f"max |SavedModel - Keras| = {worst:.2e} on a probe batch)")


if __name__ == "__main__":
    app.run(main)
