"""Trained presets: a model's config *and* weights in one directory.

As in keras-hub, a preset is what it takes to rebuild a trained model:
`model.save_to_preset("presets/lfdnn_mosi")` writes

- `config.json`: the registered model name and the model serialised as in a
  `.keras` file (`get_config()` and the input widths it was built on),
  enough to rebuild the architecture;
- `model.weights.h5`: every weight (`model.save_weights`);
- `metadata.json`: the keras_msa and Keras versions, the parameter count and
  each weight's path and shape, so a load can say which weight an override
  changed.

`Model.from_preset(directory, **overrides)` reads it back. A paper preset
name (`"mosi"`) is something else: the constructor arguments from the paper's
tables, with freshly initialised weights.
"""

import json
import os
import shutil

import keras

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
_PRESET_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE})


class PresetError(ValueError):
    """A preset directory that cannot give the model asked for."""


def is_preset_dir(path):
    """True when `path` is a directory holding a preset's `config.json`."""
    return isinstance(path, (str, os.PathLike)) and os.path.isfile(os.path.join(path, CONFIG_FILE))


def save_to_preset(model, directory, overwrite=False):
    """Writes `model`'s config, weights and metadata to `directory`.

    The files are written into a temporary sibling that is renamed onto
    `directory` at the end, so a crash never leaves a preset without its
    weights. An existing `directory` is replaced only when it is an earlier
    preset (these three files and nothing else) or with `overwrite=True`.

    Returns `directory`.
    """
    from keras_msa import __version__
    from keras_msa.export.saved_model import _replace_dir
    from keras_msa.utils.files import make_temp_dir

    if not getattr(model, "built", False) or not (model.get_build_config() or {}):
        raise PresetError(
            f"save_to_preset: the model {model.name!r} was never built; call it on a batch (or train "
            f"it) first, so that its weights and input widths exist."
        )
    if not getattr(type(model), "registry_name", None):
        raise PresetError(
            f"save_to_preset: {type(model).__name__} is not a registered keras_msa model "
            f"(@register_model), so from_preset could not find its class again."
        )
    directory = os.path.abspath(os.fspath(directory))
    if os.path.lexists(directory):
        names = set(os.listdir(directory)) if os.path.isdir(directory) else None
        if names is None:
            raise PresetError(f"save_to_preset: {directory} exists and is not a directory.")
        if names and not names <= _PRESET_FILES and not overwrite:
            raise PresetError(
                f"save_to_preset: {directory} holds files that are not a preset's "
                f"({', '.join(sorted(names - _PRESET_FILES)[:5])}); choose another directory or pass "
                f"overwrite=True to delete them."
            )
    config = {
        "model": type(model).registry_name,
        "class_name": type(model).__name__,
        # Keras's own serialisation, as in a `.keras` file: it encodes the
        # build config's shape tuples so that a load can rebuild the weights.
        "keras_object": keras.saving.serialize_keras_object(model),
    }
    metadata = {
        "keras_msa_version": __version__,
        "keras_version": keras.__version__,
        "parameter_count": int(model.count_params()),
        "weights": [[w.path, list(w.shape)] for w in model.weights],
    }
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    tmp = make_temp_dir(".preset-", parent)
    try:
        with open(os.path.join(tmp, CONFIG_FILE), "w") as f:
            json.dump(config, f, indent=2)
        with open(os.path.join(tmp, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2)
        model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _read_json(directory, name):
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise PresetError(
            f"The preset {directory} has no {name}; a preset written by save_to_preset holds "
            f"{', '.join(sorted(_PRESET_FILES))}."
        )
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise PresetError(f"{path} is not readable JSON ({err}); write the preset again with save_to_preset.")


def load_from_preset(cls, directory, **overrides):
    """Rebuilds the model saved in `directory` and loads its weights.

    `cls` is the class `from_preset` was called on: it must be the saved
    model's class (or `MSAModel`, which loads any registered model).
    `overrides` replace constructor arguments that leave every weight's shape
    as saved (e.g. `dropout`); one that changes a shape is refused, naming the
    weight, since the saved weights could not fill it.
    """
    from keras_msa.models.base import get_model_class

    directory = os.fspath(directory)
    saved = _read_json(directory, CONFIG_FILE)
    metadata = _read_json(directory, METADATA_FILE)
    for key in ("model", "keras_object"):
        if key not in saved:
            raise PresetError(f"{os.path.join(directory, CONFIG_FILE)} has no '{key}'; it is not a "
                              f"keras_msa preset (write one with save_to_preset).")
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    if not os.path.isfile(weights_path):
        raise PresetError(
            f"The preset {directory} has no {WEIGHTS_FILE}: a trained preset is config and weights. "
            f"Write it again with model.save_to_preset({directory!r})."
        )
    saved_cls = get_model_class(saved["model"])
    if getattr(cls, "registry_name", None) and not issubclass(saved_cls, cls):
        raise PresetError(
            f"The preset {directory} holds a {saved_cls.__name__} (model '{saved['model']}'), not a "
            f"{cls.__name__}; load it with keras_msa.models.{saved_cls.__name__}.from_preset(...) or "
            f"keras_msa.models.MSAModel.from_preset(...)."
        )
    obj = dict(saved["keras_object"])
    obj["config"] = {**obj.get("config", {}), **overrides}
    model = keras.saving.deserialize_keras_object(obj)
    # Compared in order, not by path: auto-generated layer names (`dense_3`)
    # depend on what else the process has built.
    want = [(path, tuple(shape)) for path, shape in metadata.get("weights", [])]
    got = [(w.path, tuple(w.shape)) for w in model.weights]
    changed = [i for i in range(max(len(want), len(got)))
               if i >= len(want) or i >= len(got) or want[i][1] != got[i][1]]
    if changed:
        i = changed[0]
        name = (got[i] if i < len(got) else want[i])[0]
        shown = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "no overrides"
        raise PresetError(
            f"from_preset({directory!r}, {shown}): the weight '{name}' has shape "
            f"{got[i][1] if i < len(got) else 'none'} where the preset saved "
            f"{want[i][1] if i < len(want) else 'none'} ({len(changed)} weight(s) differ). A trained "
            f"preset's weights fit only its own architecture: override arguments that keep the shapes "
            f"(e.g. dropout), or build a new {saved_cls.__name__}(...) to train from scratch."
        )
    model.load_weights(weights_path)
    return model
