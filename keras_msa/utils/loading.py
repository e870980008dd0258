"""Loading `.keras` model files with errors that say what is wrong.

`keras.saving.load_model` reports a truncated archive as "File not found" and
a damaged `config.json` as a bare JSON error; `load_model` here checks the
archive first and names the path and the fault. Models load with Keras's
`safe_mode=True`: a `.keras` file can carry code (a `Lambda` layer's
bytecode), and safe mode refuses to deserialize it. keras_msa models never
need it; load a file you wrote yourself with `safe_mode=False` only if you
trust its origin.
"""

import json
import os
import zipfile


class ModelFileError(ValueError):
    """A model file is missing, is not a `.keras` archive, or cannot be rebuilt."""


def _check_archive(path, label):
    where = f"{label}={path}" if label else path
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{where} does not exist; expected a .keras file written by recipes/train.py.")
    if os.path.isdir(path):
        hint = (" (it is a SavedModel export: serve it with keras_msa.export.load_serving_fn)"
                if os.path.isfile(os.path.join(path, "saved_model.pb")) else "")
        raise ModelFileError(f"{where} is a directory, not a .keras file{hint}.")
    if not path.endswith(".keras"):
        raise ModelFileError(f"{where}: expected a .keras file (the format model.save writes); "
                             f"got the extension '{os.path.splitext(path)[1] or '(none)'}'.")
    size = os.path.getsize(path)
    if size == 0:
        raise ModelFileError(f"{where} is empty (0 bytes): the file was not written completely.")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ModelFileError(
            f"{where} is not a valid .keras archive ({size} bytes, {e}): it is truncated or damaged, "
            f"or was not written by model.save."
        ) from None
    with archive:
        names = archive.namelist()
        for needed in ("config.json", "model.weights.h5"):
            if needed not in names:
                raise ModelFileError(f"{where} is a zip archive but not a .keras model: it has no "
                                     f"'{needed}' (it holds {sorted(names)[:6]}).")
        try:
            damaged = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            damaged = f"(unreadable: {e})"
        if damaged is not None:
            raise ModelFileError(f"{where} is damaged: the member '{damaged}' fails its checksum "
                                 f"(the file was truncated or corrupted on disk).")
        try:
            config = json.loads(archive.read("config.json").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelFileError(f"{where}: its config.json is not valid JSON ({e}).") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(f"{where}: its config.json is not a Keras model config "
                             f"(expected an object with 'class_name').")
    return config


def load_model(path, label=None, safe_mode=True):
    """Loads a `.keras` model file, or raises an error that names `path`
    (and the flag `label`, e.g. `"--model_path"`) and what is wrong with it:
    missing, a directory, not a zip archive, a damaged member, a bad
    `config.json`, an unknown class, or weights that do not fit.

    Args:
        path: the `.keras` file.
        label: the flag or argument the path came from, for messages.
        safe_mode: Keras's safe mode (default on): refuse to deserialize code
            (`Lambda` layers) stored in the file.

    Returns:
        The loaded `keras.Model`.

    Example:

        from keras_msa.utils.loading import load_model
        model = load_model("runs/lfdnn/model.keras", label="--model_path")
    """
    import keras

    import keras_msa

    # `import keras_msa` is lazy: the classes a file names are registered
    # with Keras once their subpackages are imported.
    keras_msa.register_keras_objects()

    path = os.fspath(path)
    config = _check_archive(path, label)
    where = f"{label}={path}" if label else path
    try:
        return keras.saving.load_model(path, safe_mode=safe_mode)
    except Exception as e:  # Keras raises TypeError/ValueError/KeyError/OSError here
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "safe_mode" in str(e) or "Lambda" in str(e):
            raise ModelFileError(
                f"{where} holds code (e.g. a Lambda layer) that safe mode refuses to run; keras_msa "
                f"models never need it. Load it with safe_mode=False only if you trust its origin. "
                f"({detail})"
            ) from e
        raise ModelFileError(
            f"{where}: the {config.get('class_name')} model in it could not be rebuilt "
            f"({type(e).__name__}: {detail[:500]}). Was it written by another keras_msa version or "
            f"for a model class that is not registered?"
        ) from e
