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
    the feature width equals `expected_dims[modality]`; features are finite.

    Args:
        inputs: the batch dict (numpy arrays or eager tensors).
        expected_dims: optional `{modality: width}` (e.g. from
            `expected_dims_from_model`).
        modalities: the modalities the model reads.
        check_finite: also reject NaN / inf feature values.
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
        if check_finite and not np.isfinite(x).all():
            bad = np.argwhere(~np.isfinite(x))[0]
            raise BatchValidationError(
                f"NaN or inf in '{m}' features{where} (first at batch index "
                f"{bad[0]}, step {bad[1]}, channel {bad[2]}). Clean the data or "
                f"convert it with recipes/convert.py, which repairs and reports these."
            )


def assert_finite_dataset(ds, modalities=MODALITIES):
    """Maps a check over a `tf.data` dataset of `(inputs, targets)` that fails
    with the modality's name when a feature value is NaN or inf."""
    import tensorflow as tf

    def check(inputs, targets, *rest):
        checked = dict(inputs)
        for m in modalities:
            if m in checked:
                checked[m] = tf.debugging.assert_all_finite(
                    checked[m], f"NaN or inf in '{m}' features"
                )
        return (checked, targets) + tuple(rest)

    return ds.map(check)
