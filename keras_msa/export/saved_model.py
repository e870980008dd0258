"""SavedModel export for TensorFlow Serving.

The exported `serving_default` signature takes the batch keys of docs/data.md as
named inputs (`text`, `text_mask`, `audio`, ...) with a free batch dimension
and, for sequence features, a free time dimension, and returns every output of
the model (always `sentiment`). A 1-D string input (raw sentences, for models
that tokenize in the graph) becomes a `tf.string [batch]` input.

Every request is checked inside the graph, so TensorFlow Serving gets the same
errors as Python: each input must have the signature's full rank and feature
width (the error names the input and the expected shape), all inputs the same
rows, masks the `[batch, time]` of their features, and real (unmasked) steps
must be finite. NaN or inf in a real step is an error naming the input and
the first `[row, step]`, exactly as the Keras model raises it; NaN / inf under
the mask are padding and change nothing.
"""

import contextlib
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from keras_msa.utils.files import make_temp_dir


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


@contextlib.contextmanager
def without_optimizer(model):
    """Within the block, `model` has no optimizer and reads as uncompiled.

    Keras 3 writes a compiled model's optimizer into `.keras` files (Adam's
    two slots per weight triple the size). Detaching is cheaper than cloning
    (no second copy of the weights) and the finally restores the model
    exactly as it was, training state included.
    """
    optimizer = getattr(model, "optimizer", None)
    compiled = getattr(model, "compiled", False)
    if optimizer is None and not compiled:
        yield model
        return
    model.optimizer = None
    # An uncompiled model writes no compile_config: a file with one would
    # rebuild an optimizer at load and warn that the saved one is missing.
    model.compiled = False
    try:
        yield model
    finally:
        model.optimizer = optimizer
        model.compiled = compiled


def save_keras_model(model, path, keep_optimizer=False):
    """Writes `model` to the `.keras` file `path` atomically (a temporary
    sibling renamed at the end).

    By default the file holds the architecture and the weights only: the
    optimizer and compile settings are left out, so the file is about a third
    of a trained Adam model's, and `keras_msa.utils.loading.load_model` gives
    an uncompiled model (compile it to train on). Resumable training does not
    need them here: its checkpoints (`keras_msa.training.checkpointing`) hold
    the optimizer's variables themselves. `keep_optimizer=True` writes the
    optimizer state and compile config too, so `keras.saving.load_model`
    returns a compiled model whose Adam moments continue where they were.
    """
    from keras_msa.utils.files import atomic_path

    with atomic_path(path, suffix=".keras") as tmp:
        if keep_optimizer:
            model.save(tmp)
        else:
            with without_optimizer(model):
                model.save(tmp)
    return path


class _ServingModule(tf.Module):
    """Tracks what serving reads and nothing more.

    Holding the model itself would track its optimizer too (a sticky
    dependency of a compiled Keras model), so `variables/` would carry Adam's
    slots, about twice the weights again. The model's variables are what the
    graph captures; its layers are kept for the resources they own (e.g. an
    in-graph tokenizer's lookup tables), which are not variables.
    """

    def __init__(self, model):
        super().__init__()
        self.model_variables = list(model.variables)
        self.model_layers = list(model.layers)


# What `tf.saved_model.save` writes: a directory holding these names and
# nothing else is an earlier export, which a new export may replace.
_SAVEDMODEL_NAMES = frozenset(
    {"saved_model.pb", "saved_model.pbtxt", "variables", "assets", "assets.extra", "fingerprint.pb"}
)


class ExportTargetError(FileExistsError):
    """`export_dir` holds something an export must not delete."""


def _is_savedmodel_dir(path):
    try:
        names = set(os.listdir(path))
    except OSError:
        return False
    has_graph = bool(names & {"saved_model.pb", "saved_model.pbtxt"})
    return has_graph and os.path.isdir(os.path.join(path, "variables")) and names <= _SAVEDMODEL_NAMES


def _next_version(export_dir, versions):
    return os.path.join(export_dir, str(max(int(v) for v in versions) + 1))


def check_export_target(export_dir, overwrite=False, source_path=None):
    """Raises `ExportTargetError` unless exporting to `export_dir` can only
    replace an earlier export (or, with `overwrite`, files the user named).

    Always refused, even with `overwrite`: a target that is a file, that holds
    (or is) the source model `source_path`, or that holds version folders
    (`1/`, `2/`, ...) of other exports. Refused without `overwrite`: a
    non-empty directory that is not an earlier SavedModel export. An empty
    directory or an earlier export (`saved_model.pb` + `variables/` and
    nothing else) is fine.

    Returns `"new"`, `"empty"`, `"savedmodel"` or `"overwrite"`: what the
    target holds now.
    """
    export_dir = os.path.abspath(export_dir)
    parent = os.path.dirname(export_dir)
    ancestor = parent
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ExportTargetError(f"--export_dir={export_dir}: {ancestor} is a file, not a directory.")
    if source_path is not None:
        source = os.path.realpath(source_path)
        target = os.path.realpath(export_dir)
        if source == target or source.startswith(target + os.sep):
            raise ExportTargetError(
                f"--export_dir={export_dir} holds the model being exported ({source_path}); an export "
                f"replaces its target directory, so it must not contain the model. Export to a "
                f"directory of its own, e.g. {os.path.join(os.path.dirname(target), 'saved_models', '1')}."
            )
    if not os.path.lexists(export_dir):
        return "new"
    if not os.path.isdir(export_dir) or os.path.islink(export_dir):
        raise ExportTargetError(
            f"--export_dir={export_dir} exists and is not a directory; refusing to replace it. "
            f"Name a directory, e.g. {export_dir}_saved_model/1."
        )
    names = sorted(os.listdir(export_dir))
    if not names:
        return "empty"
    versions = [n for n in names if n.isdigit() and os.path.isdir(os.path.join(export_dir, n))]
    if versions:
        raise ExportTargetError(
            f"--export_dir={export_dir} holds version folders of other exports "
            f"({', '.join(sorted(versions, key=int))}); replacing it would delete them. Export to a new "
            f"version instead, e.g. --export_dir={_next_version(export_dir, versions)}."
        )
    if _is_savedmodel_dir(export_dir):
        return "savedmodel"
    if not overwrite:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ExportTargetError(
            f"--export_dir={export_dir} is not empty and is not an earlier SavedModel export "
            f"(it holds {shown}); an export would delete all of it. Choose another directory, "
            f"or pass --overwrite (overwrite=True) to delete its contents."
        )
    return "overwrite"


def _replace_dir(new, target):
    """Moves the finished export `new` onto `target`: the old target is
    renamed aside first and deleted last, so at every instant `target` is
    either the old complete export or the new one."""
    if not os.path.lexists(target):
        os.replace(new, target)
        return
    aside = tempfile.mkdtemp(prefix=".export-old-", dir=os.path.dirname(target))
    os.rmdir(aside)
    os.replace(target, aside)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _numeric_example(example_batch):
    return {k: v for k, v in example_batch.items() if not is_string_array(v)}


def _check_example_against_model(model, example_batch):
    from keras_msa.data.validation import expected_dims_from_model
    from keras_msa.data.validation import validate_batch
    from keras_msa.models.base import MODALITIES

    if not getattr(model, "built", False) or not (model.get_build_config() or {}):
        raise ValueError(
            f"export: the model {getattr(model, 'name', model)!r} was never built; call it on a batch "
            f"(or train it) before exporting, so that its weights and input widths exist."
        )
    numeric = _numeric_example(example_batch)
    expected = expected_dims_from_model(model)
    validate_batch(
        {k: np.asarray(v) for k, v in numeric.items()},
        expected_dims=expected,
        modalities=[m for m in MODALITIES if m in numeric],
        source="the example batch of export_saved_model (compared with the model's input widths)",
    )


def _check_serving_inputs(batch, signature):
    """In-graph checks of a serving request: full ranks and the signature's
    widths (`tf.ensure_shape`, whose error names the input), one batch size
    and masks that match their features; then the finite check on real steps.
    Returns the batch with the shape-checked tensors."""
    from keras_msa.data.validation import validate_finite

    # EnsureShape checks at run time; a Python-side rank check would be
    # folded away, since the placeholder already claims the signature's rank.
    checked = {k: tf.ensure_shape(v, signature[k].shape, name=k) for k, v in batch.items()}
    asserts = []
    keys = sorted(checked)
    first = keys[0]
    batch_size = tf.shape(checked[first])[0]
    for k in keys[1:]:
        b = tf.shape(checked[k])[0]
        asserts.append(tf.debugging.Assert(
            tf.equal(b, batch_size),
            [tf.strings.format(f"input `{k}` has batch size {{}} but input `{first}` has {{}}: every "
                               f"input must hold the same rows.", (b, batch_size))],
        ))
    for k in keys:
        mask_key = f"{k}_mask"
        if mask_key in checked and checked[k].shape.rank == 3:
            got = tf.shape(checked[mask_key])
            want = tf.shape(checked[k])[:2]
            asserts.append(tf.debugging.Assert(
                tf.reduce_all(tf.equal(got, want)),
                [tf.strings.format(f"input `{mask_key}` has shape {{}} but must be [batch, time] = {{}} "
                                   f"of input `{k}`.", (got, want))],
            ))
    with tf.control_dependencies(asserts):
        checked = {k: tf.identity(v) for k, v in checked.items()}
    with tf.control_dependencies(validate_finite(checked)):
        return {k: tf.identity(v) for k, v in checked.items()}


def export_saved_model(model, export_dir, example_batch, free_time=True, overwrite=False, source_path=None,
                       warmup=False):
    """Writes `model` as a SavedModel with a named-input `serving_default`.

    The export is written into a temporary sibling; an earlier export at
    `export_dir` is renamed aside, the new one renamed in, and only then is
    the old one deleted, so a failure never leaves a half-written export and
    `export_dir` always holds a complete one.

    What `export_dir` may hold (see `check_export_target`): nothing, or an
    earlier SavedModel export, which is replaced. Anything else is refused
    unless `overwrite=True`; a directory holding the source model or version
    folders (`1/`, `2/`, ...) of other exports is always refused.

    The signature checks each request and fails, naming the input, on a wrong
    rank or feature width (`text` must be `[batch, time, width]`; a rank-2
    `text` is an error, never broadcast), rows that differ between inputs,
    a mask that does not match its features, and NaN / inf in a real
    (unmasked) step (`keras_msa.data.validation.validate_finite`: the same
    error as the Keras model; values under the mask are ignored).

    Args:
        model: a built keras_msa model (called at least once).
        export_dir: target directory, e.g. `saved_models/lfdnn/1`.
        example_batch: a batch dict (numpy or tensors) whose keys, dtypes and
            feature widths define the signature; its widths must be the
            model's.
        free_time: leave the time dimension unspecified (variable-length input).
        overwrite: also delete a non-empty `export_dir` that is not an earlier
            export (default `False`: refuse).
        source_path: the `.keras` file the model came from, if any; an
            `export_dir` that holds it is refused.
        warmup: also write `assets.extra/tf_serving_warmup_requests`, one
            `serving_default` request holding `example_batch`, which
            TensorFlow Serving replays at load so the first real request is
            not slow (`keras_msa.export.warmup`).

    The export holds the model's weights alone: no optimizer slot, even for
    a compiled, trained model.

    Returns:
        `export_dir`.
    """
    export_dir = os.path.abspath(export_dir)
    check_export_target(export_dir, overwrite=overwrite, source_path=source_path)
    _check_example_against_model(model, example_batch)
    signature = serving_signature(example_batch, free_time)
    module = _ServingModule(model)

    @tf.function(input_signature=[signature])
    def serve(batch):
        outputs = model(_check_serving_inputs(batch, signature), training=False)
        return {k: tf.cast(v, tf.float32) for k, v in outputs.items()}

    module.serve = serve
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = make_temp_dir(".export-", parent)  # umask permissions, not mkdtemp's 0700
    try:
        tf.saved_model.save(
            module, tmp, signatures={"serving_default": serve.get_concrete_function()}
        )
        if warmup:
            from keras_msa.export.warmup import write_warmup_file

            write_warmup_file(tmp, example_batch, signature)
        # Checked again: another process may have written there meanwhile.
        check_export_target(export_dir, overwrite=overwrite, source_path=source_path)
        _replace_dir(tmp, export_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export_dir


class ServingFunction:
    """A loaded `serving_default` that checks keyword inputs by name (key,
    dtype, rank, width) before calling the graph, whose own errors would say
    "input #2"; everything else (`structured_input_signature`,
    `structured_outputs`, ...) is the concrete function's."""

    def __init__(self, fn, loaded, export_dir):
        self._fn = fn
        # Keep the loaded object alive as long as the function is used.
        self._keras_msa_loaded = loaded
        self.export_dir = export_dir

    def __getattr__(self, name):
        return getattr(self._fn, name)

    def __call__(self, **inputs):
        specs = self._fn.structured_input_signature[1]
        unknown = sorted(set(inputs) - set(specs))
        if unknown:
            raise KeyError(f"The SavedModel at {self.export_dir} has no input {unknown}; it takes {sorted(specs)}.")
        converted = {}
        for name, spec in specs.items():
            if name not in inputs:
                raise KeyError(
                    f"The SavedModel at {self.export_dir} expects input '{name}' ({spec.dtype.name} "
                    f"{_shape_text(spec)}); the call holds {sorted(inputs)}."
                )
            converted[name] = _to_spec(name, inputs[name], spec)
        return self._fn(**converted)


def _shape_text(spec):
    return "[" + ", ".join("batch" if i == 0 and d is None else ("time" if d is None else str(d))
                           for i, d in enumerate(spec.shape.as_list())) + "]"


def _to_spec(name, value, spec):
    """`value` as a tensor of `spec`, or a `ValueError` naming the input."""
    if spec.dtype == tf.string:
        if tf.is_tensor(value):
            if value.dtype != tf.string:
                raise ValueError(f"Input '{name}' must be strings [batch]; got a {value.dtype.name} tensor.")
            tensor = value
        else:
            array = np.asarray(value)
            if array.dtype.kind not in ("U", "S", "O"):
                raise ValueError(f"Input '{name}' must be strings [batch]; got dtype {array.dtype}.")
            tensor = tf.constant([v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)])
            tensor = tf.reshape(tensor, array.shape)
    else:
        array = value.numpy() if tf.is_tensor(value) else np.asarray(value)
        want = spec.dtype.as_numpy_dtype
        if spec.dtype.is_bool:
            if array.dtype != np.bool_ and not (array.dtype.kind in "iu" and np.isin(array, (0, 1)).all()):
                raise ValueError(f"Input '{name}' must be boolean (True = real step); got dtype {array.dtype}.")
        elif spec.dtype.is_floating:
            if array.dtype.kind not in "fiu":
                raise ValueError(f"Input '{name}' must be {spec.dtype.name} numbers; got dtype {array.dtype}.")
            if array.dtype.kind == "f" and array.dtype.itemsize > np.dtype(want).itemsize:
                with np.errstate(over="ignore", invalid="ignore"):
                    overflow = np.isfinite(array) & ~np.isfinite(array.astype(want))
                if overflow.any():
                    where = tuple(int(i) for i in np.argwhere(overflow)[0])
                    raise ValueError(
                        f"Input '{name}' holds {array[where]!r} at {list(where)}, beyond the range of "
                        f"{spec.dtype.name} that the SavedModel takes."
                    )
        elif array.dtype.kind not in "iu":
            raise ValueError(f"Input '{name}' must be {spec.dtype.name}; got dtype {array.dtype}.")
        tensor = tf.convert_to_tensor(array.astype(want, copy=False))
    if spec.shape.rank is not None:
        shape = tensor.shape.as_list()
        if len(shape) != spec.shape.rank or not spec.shape.is_compatible_with(shape):
            raise ValueError(
                f"Input '{name}' must have shape {_shape_text(spec)} (rank {spec.shape.rank}); "
                f"got {shape}."
            )
    return tensor


def load_serving_fn(export_dir):
    """Loads `serving_default` as a `ServingFunction`: call it with keyword
    tensors or arrays (checked by input name), get a dict of tensors back."""
    # A model that tokenizes raw text holds tensorflow-text ops, which must be
    # registered before the graph loads; importing it is cheap and harmless.
    import tensorflow_text  # noqa: F401

    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        raise FileNotFoundError(
            f"{export_dir} is not a SavedModel directory (no saved_model.pb); export one with "
            f"recipes/export.py or keras_msa.export.export_saved_model."
        )
    loaded = tf.saved_model.load(export_dir)
    if "serving_default" not in loaded.signatures:
        raise ValueError(f"The SavedModel at {export_dir} has no 'serving_default' signature; it has "
                         f"{sorted(loaded.signatures)}.")
    return ServingFunction(loaded.signatures["serving_default"], loaded, export_dir)


def serve_numpy(serving_fn, batch):
    """Calls a loaded signature with a numpy batch dict (extra keys are
    ignored); returns numpy outputs. Inputs are checked by name first."""
    specs = serving_fn.structured_input_signature[1]
    kwargs = {}
    for name, spec in specs.items():
        if name not in batch:
            raise KeyError(
                f"The SavedModel expects input '{name}' ({spec.dtype.name} "
                f"{_shape_text(spec)}); the batch holds {sorted(batch)}."
            )
        kwargs[name] = _to_spec(name, batch[name], spec)
    fn = serving_fn._fn if isinstance(serving_fn, ServingFunction) else serving_fn
    return {k: v.numpy() for k, v in fn(**kwargs).items()}
