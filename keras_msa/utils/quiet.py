"""Quiet start of the recipes: TensorFlow's C++ start-up lines, the CUDA
probe's errors on machines without a GPU driver, and TensorFlow's Python
warnings stay hidden unless `--verbosity` asks for them.

Standard library only, because it must run before TensorFlow is imported
(the C++ log level is read once, at import). `import keras_msa` and
`keras_msa.utils` import neither Keras nor TensorFlow, so the recipes and the
`keras-msa-*` console scripts import this module normally.

Levels of `--verbosity` (absl's own flag, whose default is -1):

- 0 or less: quiet (TensorFlow's C++ logs off, its Python logger at ERROR);
- 1: TensorFlow's C++ and Python warnings and errors once it has loaded
  (its import-time lines stay hidden);
- 2 or more: everything TensorFlow logs, import included; CUDA devices are
  never hidden.
"""

import contextlib
import ctypes.util
import os
import sys


def has_gpu_driver():
    """Whether an NVIDIA driver is installed (kernel module or `libcuda`)."""
    if os.path.exists("/proc/driver/nvidia"):
        return True
    return ctypes.util.find_library("cuda") is not None


@contextlib.contextmanager
def _stderr_silenced():
    # TensorFlow >= 2.19 prints its import lines (oneDNN, cudart_stub, the
    # absl::InitializeLog notice) before it reads TF_CPP_MIN_LOG_LEVEL
    # (tensorflow/tensorflow#100442), straight to file descriptor 2.
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def quiet_start(verbosity=0):
    """Sets TensorFlow's log levels for `verbosity` and imports TensorFlow.

    Call before anything imports TensorFlow. A machine without a GPU driver
    gets `CUDA_VISIBLE_DEVICES=""` (unless already set) below level 2, so
    that TensorFlow does not call `cuInit` only to log that it failed; a
    machine with a driver keeps its GPUs.
    """
    verbosity = int(verbosity)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3" if verbosity <= 0 else ("1" if verbosity == 1 else "0")
    if verbosity < 2 and "CUDA_VISIBLE_DEVICES" not in os.environ and not has_gpu_driver():
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if "tensorflow" not in sys.modules and verbosity < 2:
        with _stderr_silenced():
            import tensorflow  # noqa: F401
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR" if verbosity <= 0 else ("WARNING" if verbosity == 1 else "INFO"))
    # Importing TensorFlow sets absl's verbosity to INFO, and TensorFlow's
    # SavedModel code logs through absl directly (signature renames, saver
    # timings): put the level the user asked for back.
    from absl import logging as absl_logging

    absl_logging.set_verbosity(
        absl_logging.ERROR if verbosity <= 0 else (absl_logging.WARNING if verbosity == 1 else absl_logging.INFO)
    )

