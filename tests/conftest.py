import os

# Tests run on CPU with deterministic kernels and quiet logs.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import pytest  # noqa: E402


@pytest.fixture
def tiny_benchmark():
    """A small synthetic benchmark (text 16-d, 12 steps) with known signal."""
    from keras_msa.testing import tiny_synthetic

    return tiny_synthetic()
