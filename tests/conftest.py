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


@pytest.fixture(scope="module")
def load_recipe():
    """Imports `recipes/<name>.py` in-process; returns a loader.

    Recipes define absl flags at import time, and several define the same
    names (`output`, `model`, ...), so the flags a test module's recipes add
    are removed again when the module's tests end.
    """
    import importlib.util

    from absl import flags

    added = []

    def load(name):
        path = os.path.join(os.path.dirname(__file__), "..", "recipes", f"{name}.py")
        before = set(flags.FLAGS)
        spec = importlib.util.spec_from_file_location(f"recipe_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        added.extend(sorted(set(flags.FLAGS) - before))
        return module

    yield load
    for name in added:
        if name in flags.FLAGS:
            delattr(flags.FLAGS, name)


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
