"""SavedModel export for models that tokenize raw text in the graph.

A model with a `keras_msa.layers.TextBackbone` (e.g. CrossSent in backbone
mode) can take the sentence itself: `export_saved_model` turns a 1-D string
entry of the example batch (`text_raw` by default) into a `tf.string [batch]`
input beside the numeric audio/vision features and masks. The helpers here
only insist that such an input exists. The tokenizer's tensorflow-text ops are
part of the graph, so TensorFlow Serving needs `tensorflow_text` loaded to run
it (`load_serving_fn` imports it).
"""

from keras_msa.export.saved_model import export_saved_model
from keras_msa.export.saved_model import is_string_array
from keras_msa.export.saved_model import load_serving_fn
from keras_msa.export.saved_model import serve_numpy
from keras_msa.export.saved_model import serving_signature


def text_serving_signature(example_batch, free_time=True):
    """`serving_signature` of a batch that must hold a string input."""
    if not any(is_string_array(v) for v in example_batch.values()):
        raise ValueError(
            "export_text_saved_model: the example batch holds no string input; "
            f"keys: {sorted(example_batch)}. Use export_saved_model for numeric batches."
        )
    return serving_signature(example_batch, free_time)


def export_text_saved_model(model, export_dir, example_batch, free_time=True, overwrite=False, source_path=None,
                            warmup=False):
    """Writes `model` as a SavedModel whose `serving_default` takes raw text.

    Args:
        model: a built keras_msa model that tokenizes strings itself (called
            once on `example_batch` first).
        export_dir: target directory, e.g. `saved_models/crosssent/1`.
        example_batch: batch dict with the sentences as a 1-D string array
            (e.g. `text_raw`) and the numeric inputs (`audio`, `audio_mask`,
            `vision`, `vision_mask`) whose dtypes and widths fix the signature.
        free_time: leave the numeric time dimensions unspecified.
        overwrite: also delete a non-empty `export_dir` that is not an
            earlier export (see `export_saved_model`; default: refuse).
        source_path: the `.keras` file the model came from (refused as a target).
        warmup: also write a TensorFlow Serving warm-up request from
            `example_batch` (see `export_saved_model`).

    Returns:
        `export_dir`, written atomically (temporary sibling renamed at the end).

    Example:

        export_text_saved_model(model, "exports/crosssent/1",
                                {"text_raw": np.array(["a great film"]),
                                 "audio": a, "audio_mask": am,
                                 "vision": v, "vision_mask": vm})
        fn = load_text_serving_fn("exports/crosssent/1")
        fn(text_raw=tf.constant(["so boring"]), audio=..., ...)["sentiment"]
    """
    text_serving_signature(example_batch, free_time)
    return export_saved_model(model, export_dir, example_batch, free_time, overwrite, source_path, warmup=warmup)


load_text_serving_fn = load_serving_fn
serve_text_numpy = serve_numpy
