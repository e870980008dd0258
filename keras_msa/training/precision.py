"""Mixed precision and op determinism for training runs.

Under `mixed_float16` / `mixed_bfloat16` the layers compute in half precision
and keep float32 variables; keras_msa's layers keep softmax and normalisation
statistics in float32 and every model's `sentiment` output is float32
(CONTRIBUTING.md), and `MSAModel.compute_loss` casts each loss term to float32.
float16 gradients can underflow, so its optimizer is wrapped in a
`keras.optimizers.LossScaleOptimizer` (dynamic loss scaling); bfloat16 has
float32's exponent range and needs none.
"""

import contextlib

import keras

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def check_policy(name):
    if name not in POLICIES:
        raise ValueError(f"Unknown precision policy '{name}'; expected one of {POLICIES}.")
    return name


@contextlib.contextmanager
def precision_policy(name):
    """Sets the global dtype policy for models built inside the block and
    restores the previous one afterwards (so that a run does not leak its
    policy into later code)."""
    check_policy(name or "float32")
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(name or "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def maybe_loss_scale(optimizer, policy_name):
    """Wraps `optimizer` in a `LossScaleOptimizer` when the policy computes
    in float16 (and it is not wrapped already)."""
    if policy_name == "mixed_float16" and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


@contextlib.contextmanager
def determinism(seed, deterministic=True):
    """`enable_determinism` for the block only: op determinism is a
    process-wide switch, and code that runs after a training run (other
    tests, serving) should find it as it was."""
    try:
        from tensorflow.python.framework import config as tf_config

        was_enabled = tf_config.is_op_determinism_enabled()
    except (ImportError, AttributeError):  # pragma: no cover - private API moved
        tf_config, was_enabled = None, True
    enable_determinism(seed, deterministic)
    try:
        yield
    finally:
        if tf_config is not None and deterministic and not was_enabled:
            tf_config.disable_op_determinism()


def enable_determinism(seed, deterministic=True):
    """Seeds Python, NumPy and TensorFlow (`keras.utils.set_random_seed`) and,
    with `deterministic`, makes TensorFlow ops deterministic
    (`tf.config.experimental.enable_op_determinism`): the same seed then gives
    the same weights and metrics run after run on the same hardware."""
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
