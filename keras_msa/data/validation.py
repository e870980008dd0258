"""Checks that a batch follows the contract of DATA.md, with errors that say
which key, what was expected and what arrived."""

import numpy as np

from keras_msa.models.base import MODALITIES


class BatchValidationError(ValueError):
    """A batch does not match what the model or the data contract expects."""


def expected_dims_from_model(model):
    """`{modality: feature width}` the built `model` was built with."""
    build = model.get_build_config() or {}
    shapes = build.get("input_shape") or {}
    dims = {}
    for m in MODALITIES:
        shape = shapes.get(m)
        if shape is not None and shape[-1] is not None:
            dims[m] = int(shape[-1])
    return dims


def validate_batch(inputs, expected_dims=None, modalities=MODALITIES, check_finite=True, source=None):
    """Raises `BatchValidationError` unless `inputs` is a well-formed batch.

    Checks: every modality in `modalities` is present as a float array of rank
    3; its mask (if present) is `[B, T]` boolean-like with the same B and T;
    the feature width equals `expected_dims[modality]`; features of real
    (unmasked) steps are finite (padding under the mask may hold anything).

    Args:
        inputs: the batch dict (numpy arrays or eager tensors).
        expected_dims: optional `{modality: width}` (e.g. from
            `expected_dims_from_model`).
        modalities: the modalities the model reads.
        check_finite: also reject NaN / inf feature values in real steps.
        source: a label for messages (file name, split).
    """
    where = f" in {source}" if source else ""
    expected_dims = expected_dims or {}
    for m in modalities:
        if m not in inputs:
            raise BatchValidationError(
                f"Missing modality key '{m}'{where}: expected float features "
                f"[batch, time, {expected_dims.get(m, 'dim')}]; the batch holds "
                f"{sorted(inputs)}. A missing modality is zeros with an all-False "
                f"'{m}_mask', not an absent key."
            )
        x = np.asarray(inputs[m])
        if x.ndim != 3:
            raise BatchValidationError(
                f"'{m}'{where} must be [batch, time, dim]; got shape {x.shape}."
            )
        if not np.issubdtype(x.dtype, np.floating):
            raise BatchValidationError(
                f"'{m}'{where} must be floating point (float32); got dtype {x.dtype}."
            )
        want = expected_dims.get(m)
        if want is not None and x.shape[-1] != want:
            raise BatchValidationError(
                f"Wrong feature width for '{m}'{where}: expected [batch, time, {want}], "
                f"got {list(x.shape)}."
            )
        mask_key = f"{m}_mask"
        if mask_key in inputs:
            mask = np.asarray(inputs[mask_key])
            if mask.shape != x.shape[:2]:
                raise BatchValidationError(
                    f"'{mask_key}'{where} must have shape {list(x.shape[:2])} to match "
                    f"'{m}' {list(x.shape)}; got {list(mask.shape)}."
                )
            if mask.dtype != np.bool_ and not np.isin(mask, (0, 1)).all():
                raise BatchValidationError(
                    f"'{mask_key}'{where} must be boolean (True = real step); got "
                    f"dtype {mask.dtype} with values other than 0/1."
                )
        if check_finite:
            # Values under the mask are padding (MMSA audio holds -inf there):
            # only real steps must be finite.
            real = np.asarray(inputs[mask_key]).astype(bool) if mask_key in inputs else True
            bad_values = ~np.isfinite(x) & np.asarray(real)[..., None]
            if bad_values.any():
                bad = np.argwhere(bad_values)[0]
                raise BatchValidationError(
                    f"NaN or inf in '{m}' features{where} (first at batch index "
                    f"{bad[0]}, step {bad[1]}, channel {bad[2]}, a real step). Clean the data or "
                    f"convert it with recipes/convert.py, which repairs and reports these."
                )


def assert_finite_dataset(ds, modalities=MODALITIES):
    """Maps a check over a `tf.data` dataset of `(inputs, targets)` that fails
    with the modality's name when a feature value of a real (unmasked) step
    is NaN or inf."""
    import tensorflow as tf

    def check(inputs, targets, *rest):
        checked = dict(inputs)
        for m in modalities:
            if m in checked:
                x = checked[m]
                mask = checked.get(f"{m}_mask")
                # Padding under the mask may hold anything (MMSA audio: -inf).
                real = x if mask is None else tf.where(tf.cast(mask, tf.bool)[..., None], x, tf.zeros_like(x))
                ok = tf.debugging.assert_all_finite(real, f"NaN or inf in '{m}' features (a real step)")
                with tf.control_dependencies([ok]):
                    checked[m] = tf.identity(x)
        return (checked, targets) + tuple(rest)

    return ds.map(check)


class NonFiniteInputError(BatchValidationError):
    """NaN or inf in a real (unmasked) step of a model input.

    Raised eagerly by `validate_finite`; inside a `tf.function` (Keras
    `predict`, the exported `serving_default`) the same message comes as a
    `tf.errors.InvalidArgumentError`, since a graph cannot raise Python errors.
    """


def _nonfinite_template(key):
    # One template for the eager and the graph path (`tf.strings.format`
    # and `str.format` both fill `{}`), so every entry point says the same.
    # Backticks, not quotes: a graph assertion prints its message C-escaped.
    return (
        f"NaN or inf in a real (unmasked) step of input `{key}` at [row, step] = [{{}}, {{}}]: "
        f"real steps must be finite (values where `{key}_mask` is False are padding and are ignored)."
    )


def _in_xla_context():
    """True while tracing for XLA (`jit_compile=True`), which compiles neither
    string formatting nor data-dependent assertions."""
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - private path moved
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def validate_finite(inputs, modalities=MODALITIES):
    """Rejects NaN / inf in the real (unmasked) steps of a batch's features.

    This is the one behaviour of every inference entry point (a Keras model's
    `__call__` and `predict`, and the SavedModel `serving_default`): a real
    step that is not finite is an error naming the input key and the first
    `[row, step]` found, never a prediction (on CPU, oneDNN kernels can turn a
    NaN input into a finite output, so letting it through would serve wrong
    numbers silently). Values under the mask are padding and never trigger it.

    Eagerly it raises `NonFiniteInputError`; in a graph it adds a
    `tf.debugging.Assert` (raising `tf.errors.InvalidArgumentError` with the
    same message) and returns the assertion ops. Under XLA compilation it does
    nothing: XLA cannot compile the check, and the training runner validates
    the data when they are loaded (`assert_finite_dataset`).

    Args:
        inputs: the batch dict (numpy arrays or tensors); non-float entries
            (token ids, raw strings) and absent modalities are skipped.
        modalities: the feature keys to check; `<key>_mask` marks real steps.

    Returns:
        The list of assertion ops (empty when eager or under XLA).
    """
    import tensorflow as tf

    if not isinstance(inputs, dict):
        return []
    eager = tf.executing_eagerly()
    if not eager and _in_xla_context():
        return []
    asserts = []
    for m in modalities:
        x = inputs.get(m)
        if x is None or isinstance(x, (str, bytes)):
            continue
        mask = inputs.get(f"{m}_mask")
        if eager and not tf.is_tensor(x):
            x = np.asarray(x)
            if not np.issubdtype(x.dtype, np.floating) or x.ndim != 3:
                continue
            real = np.ones(x.shape[:2], bool) if mask is None else np.asarray(mask).astype(bool)
            if real.shape != x.shape[:2]:
                continue  # a shape error, reported by validate_batch / the model
            bad = ~np.isfinite(x).all(axis=-1) & real
            if bad.any():
                row, step = np.argwhere(bad)[0]
                raise NonFiniteInputError(_nonfinite_template(m).format(int(row), int(step)))
            continue
        if not tf.is_tensor(x) or not x.dtype.is_floating or x.shape.rank not in (None, 3):
            continue
        if mask is not None:
            mask = tf.convert_to_tensor(mask)
            if not x.shape[:2].is_compatible_with(mask.shape):
                continue  # a shape error, which the model reports with its own message
        bad = tf.reduce_any(tf.logical_not(tf.math.is_finite(x)), axis=-1)
        if mask is not None:
            bad = tf.logical_and(bad, tf.cast(mask, tf.bool))
        steps = tf.maximum(tf.shape(bad, out_type=tf.int64)[1], 1)
        first = tf.argmax(tf.cast(tf.reshape(bad, [-1]), tf.int32), output_type=tf.int64)
        if eager:
            # Eager tensors (possibly on a GPU) are checked where they are;
            # only the verdict and the position come back to the host.
            if bool(tf.reduce_any(bad)):
                raise NonFiniteInputError(_nonfinite_template(m).format(int(first // steps), int(first % steps)))
            continue
        message = tf.strings.format(_nonfinite_template(m), (first // steps, first % steps))
        asserts.append(tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [message]))
    return asserts
