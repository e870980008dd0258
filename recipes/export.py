"""Export a trained model as a SavedModel that TensorFlow Serving loads.

    python recipes/export.py --model_path=runs/lfdnn/model.keras --export_dir=saved_models/lfdnn/1

The `serving_default` signature takes the batch keys (`text`, `text_mask`,
`audio`, ...) as named inputs and returns `sentiment`. The export is checked
against the Keras model on a probe batch before the command succeeds.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "A .keras file written by recipes/train.py.", required=True)
flags.DEFINE_string("export_dir", None, "Target, e.g. saved_models/<name>/<version>.", required=True)
flags.DEFINE_float("tolerance", 1e-5, "Largest allowed |SavedModel - Keras| on the probe batch.")


RAW_TEXT_KEYS = ("text_raw", "raw_text")
PROBE_SENTENCES = ("i really loved this movie", "it was boring and far too long", "okay")


def probe_batch(model, batch_size=4, steps=20, seed=0):
    """A random batch with the feature widths the model was built with."""
    import numpy as np

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
    import keras
    import numpy as np

    import keras_msa  # noqa: F401
    from keras_msa.export import export_saved_model
    from keras_msa.export import load_serving_fn
    from keras_msa.export import serve_numpy

    model = keras.saving.load_model(FLAGS.model_path)
    batch = probe_batch(model)
    export_saved_model(model, FLAGS.export_dir, batch)
    served = serve_numpy(load_serving_fn(FLAGS.export_dir), batch)
    expected = model(batch, training=False)
    worst = max(float(np.max(np.abs(served[k] - np.asarray(expected[k])))) for k in served)
    if worst > FLAGS.tolerance:
        raise SystemExit(f"SavedModel differs from the Keras model by {worst:.2e} > {FLAGS.tolerance}.")
    print(f"Exported {FLAGS.model_path} to {FLAGS.export_dir} (outputs {sorted(served)}; "
          f"max |SavedModel - Keras| = {worst:.2e} on a probe batch)")


if __name__ == "__main__":
    app.run(main)
