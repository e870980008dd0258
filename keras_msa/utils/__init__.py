"""Small backend-neutral helpers shared by layers and models.

The mask helpers load Keras on first use, so that `keras_msa.utils.quiet`
and `keras_msa.utils.files` can be imported before TensorFlow (PEP 562).
"""

import importlib

_LAZY = {
    name: "keras_msa.utils.masks"
    for name in (
        "attention_mask", "last_valid_step", "masked_mean", "masked_rnn",
        "masked_softmax", "sequence_mask", "zero_masked",
    )
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_msa.utils' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
