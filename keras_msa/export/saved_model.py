"""SavedModel export for TensorFlow Serving.

The exported `serving_default` signature takes the batch keys of DATA.md as
named inputs (`text`, `text_mask`, `audio`, ...) with a free batch dimension
and, for sequence features, a free time dimension, and returns every output of
the model (always `sentiment`). A 1-D string input (raw sentences, for models
that tokenize in the graph) becomes a `tf.string [batch]` input.
"""

import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf


def is_string_array(value):
    """True for a string tensor or a numpy array of str / bytes / objects."""
    if tf.is_tensor(value):
        return value.dtype == tf.string
    return np.asarray(value).dtype.kind in ("U", "S", "O")


def _spec_for(name, value, free_time=True):
    if is_string_array(value):
        if len(np.shape(value)) != 1:
            raise ValueError(f"String input '{name}' must be a 1-D array of sentences [batch]; "
                             f"got shape {np.shape(value)}.")
        return tf.TensorSpec(shape=[None], dtype=tf.string, name=name)
    value = np.asarray(value) if not tf.is_tensor(value) else value
    dtype = tf.as_dtype(value.dtype)
    shape = [None] + list(value.shape[1:])
    if free_time and len(shape) >= 2:
        shape[1] = None
    return tf.TensorSpec(shape=shape, dtype=dtype, name=name)


def serving_signature(example_batch, free_time=True):
    """`{key: tf.TensorSpec}` for a batch dict, with free batch/time dims."""
    return {k: _spec_for(k, v, free_time) for k, v in sorted(example_batch.items())}


class _ServingModule(tf.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model


def export_saved_model(model, export_dir, example_batch, free_time=True, overwrite=True):
    """Writes `model` as a SavedModel with a named-input `serving_default`.

    The directory is written into a temporary sibling and renamed at the end,
    so a failure never leaves a half-written export behind.

    Args:
        model: a built keras_msa model (called at least once).
        export_dir: target directory, e.g. `saved_models/lfdnn/1`.
        example_batch: a batch dict (numpy or tensors) whose keys, dtypes and
            feature widths define the signature.
        free_time: leave the time dimension unspecified (variable-length input).
        overwrite: replace an existing export at `export_dir`.

    Returns:
        `export_dir`.
    """
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and not overwrite:
        raise FileExistsError(f"{export_dir} exists; pass overwrite=True to replace it.")
    signature = serving_signature(example_batch, free_time)
    module = _ServingModule(model)

    @tf.function(input_signature=[signature])
    def serve(batch):
        outputs = model(batch, training=False)
        return {k: tf.cast(v, tf.float32) for k, v in outputs.items()}

    module.serve = serve
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        tf.saved_model.save(
            module, tmp, signatures={"serving_default": serve.get_concrete_function()}
        )
        if os.path.exists(export_dir):
            shutil.rmtree(export_dir)
        os.replace(tmp, export_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export_dir


def load_serving_fn(export_dir):
    """Loads `serving_default`; call it with keyword tensors, get a dict back."""
    # A model that tokenizes raw text holds tensorflow-text ops, which must be
    # registered before the graph loads; importing it is cheap and harmless.
    import tensorflow_text  # noqa: F401

    loaded = tf.saved_model.load(export_dir)
    fn = loaded.signatures["serving_default"]
    # Keep the loaded object alive as long as the function is used.
    fn._keras_msa_loaded = loaded
    return fn


def serve_numpy(serving_fn, batch):
    """Calls a loaded signature with a numpy batch dict; returns numpy outputs."""
    kwargs = {}
    for name, spec in serving_fn.structured_input_signature[1].items():
        if name not in batch:
            raise KeyError(
                f"The SavedModel expects input '{name}' ({spec.dtype.name} "
                f"{spec.shape}); the batch holds {sorted(batch)}."
            )
        value = batch[name]
        if spec.dtype == tf.string:
            value = [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(value)]
        kwargs[name] = tf.convert_to_tensor(value, dtype=spec.dtype)
    return {k: v.numpy() for k, v in serving_fn(**kwargs).items()}
