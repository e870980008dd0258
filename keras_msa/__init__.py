"""keras_msa: multimodal sentiment analysis for Keras 3 / TensorFlow.

`import keras_msa` is light: it imports neither Keras nor TensorFlow, so a
program (the `keras-msa-*` console scripts, the recipes) can set TensorFlow's
log levels first (`keras_msa.utils.quiet.quiet_start`). The subpackages
(`keras_msa.models`, `keras_msa.layers`, ...) load on first use (PEP 562).

Keras finds the classes of a saved `.keras` file by their registered names
(`keras_msa>CrossSent`), which exist once the module defining them is
imported. When Keras is already imported, `import keras_msa` registers them
at once; otherwise touch any subpackage (`keras_msa.models`) before
`keras.saving.load_model`, or load with `keras_msa.utils.loading.load_model`.
"""

import importlib
import sys

__version__ = "0.1.0"

_SUBPACKAGES = (
    "convert", "data", "export", "features", "inference", "layers", "losses", "metrics", "models",
    "preprocessing", "training", "utils",
)
# The subpackages whose import registers Keras-serializable classes.
_REGISTERING = ("layers", "losses", "models")


def __getattr__(name):
    if name == "predict":
        # `keras_msa.predict(...)`: the function, from keras_msa.inference.
        from keras_msa.inference import predict

        globals()["predict"] = predict
        return predict
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"keras_msa.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_msa' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBPACKAGES) | {"predict"})


def register_keras_objects():
    """Imports the subpackages that register keras_msa's layers, losses and
    models with Keras (what `keras.saving.load_model` looks them up by)."""
    for name in _REGISTERING:
        __getattr__(name)


if "keras" in sys.modules:
    # Keras (and TensorFlow) are loaded already, so there is nothing left to
    # keep quiet or light: register now, and `keras.saving.load_model` of a
    # keras_msa file works right after `import keras_msa`.
    register_keras_objects()
