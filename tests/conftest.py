import os

# Tests run on CPU with deterministic kernels and quiet logs.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import pytest  # noqa: E402


@pytest.fixture
def tiny_benchmark():
    """A small synthetic benchmark (text 16-d, 6-12 real steps of 12, some
    samples without audio or vision) with known signal."""
    from keras_msa.testing import tiny_synthetic

    return tiny_synthetic()


# The absl flags of the recipe loaded last, on absl's one global FLAGS.
_live_recipe_flags = set()


def _drop_flags(names):
    from absl import flags

    for name in sorted(names):
        if name in flags.FLAGS:
            delattr(flags.FLAGS, name)


def load_recipe_module(name):
    """Imports `recipes/<name>.py` in-process and returns the module.

    Recipes define absl flags at import time on absl's one global FLAGS, and
    several define the same names (`model`, `output`, ...). As when each
    recipe runs as its own `python recipes/<name>.py`, one recipe's flags are
    live at a time: loading a recipe first removes the flags of the one loaded
    before it, so recipes load in any order and any number of times.
    """
    import importlib.util

    # absl.app and absl.logging define their own flags (--verbosity, ...) on
    # first import; imported here, they are never taken for a recipe's.
    from absl import app  # noqa: F401
    from absl import flags
    from absl import logging  # noqa: F401

    _drop_flags(_live_recipe_flags)
    _live_recipe_flags.clear()
    path = os.path.join(os.path.dirname(__file__), "..", "recipes", f"{name}.py")
    before = set(flags.FLAGS)
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        # Recorded on failure too, so a recipe that broke half-way through
        # its definitions leaves none of them behind for the next load.
        _live_recipe_flags.update(set(flags.FLAGS) - before)
    return module


@pytest.fixture(scope="module")
def load_recipe():
    """`load_recipe_module` for a test module; the flags of the recipes it
    loaded are removed again when the module's tests end."""
    loaded = set()

    def load(name):
        module = load_recipe_module(name)
        loaded.update(_live_recipe_flags)
        return module

    yield load
    _drop_flags(loaded & _live_recipe_flags)
    _live_recipe_flags.difference_update(loaded)


@pytest.fixture(scope="session")
def attention_models():
    """One tiny built model per `keras_msa.testing.ATTENTION_MODEL_CONFIGS`
    entry (shared by the attention-map and plotting tests; build them once)."""
    import keras

    from keras_msa.models.base import get_model_class
    from keras_msa.testing import ATTENTION_MODEL_CONFIGS
    from keras_msa.testing import padded_attention_batch

    batch = padded_attention_batch()
    models = {}
    for name, config in ATTENTION_MODEL_CONFIGS.items():
        keras.utils.set_random_seed(0)
        models[name] = get_model_class(name)(**config)
        models[name](batch)
    return models
