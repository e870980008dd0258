"""Soft orthogonality between two batches of codes: MISA's difference loss
(Hazarika et al., ACM MM 2020, Eq. 5; the DSN loss of Bousmalis et al. 2016)."""

import keras
from keras import ops


def soft_orthogonality(x1, x2, epsilon=1e-6):
    """`mean((H1^T H2)^2)` over the `D1 x D2` entries, where `H` is the batch
    `[B, D]` centred over the batch axis and each row divided by its L2 norm
    (+ `epsilon`).

    MISA's Eq. 5 is the squared Frobenius norm `||H1^T H2||_F^2`; its code
    (and MMSA's `DiffLoss`) takes the mean instead of the sum and treats the
    row norms as constants (no gradient through them), which this follows:
    the result is the Frobenius form divided by `D1 * D2`, with the same
    gradient direction as the code.

    Args:
        x1, x2: `[B, D1]`, `[B, D2]` (further axes are flattened).
        epsilon: added to each row norm (a zero row stays zero).

    Returns:
        A float32 scalar.

    Example:

    >>> import numpy as np
    >>> a = np.array([[1.0, 0.0], [-1.0, 0.0]], "float32")
    >>> b = np.array([[0.0, 1.0], [0.0, -1.0]], "float32")
    >>> round(float(soft_orthogonality(a, b)), 6)  # centred columns orthogonal
    0.0
    """
    x1 = ops.cast(x1, "float32")
    x2 = ops.cast(x2, "float32")
    if x1.shape[0] is not None and x2.shape[0] is not None and x1.shape[0] != x2.shape[0]:
        raise ValueError(
            f"soft_orthogonality: the two batches must have the same size; got shapes "
            f"{tuple(x1.shape)} and {tuple(x2.shape)}."
        )

    def normalised(x):
        x = ops.reshape(x, (ops.shape(x)[0], -1))
        x = x - ops.mean(x, axis=0, keepdims=True)
        norm = ops.stop_gradient(ops.sqrt(ops.sum(ops.square(x), axis=1, keepdims=True)))
        return x / (norm + epsilon)

    product = ops.matmul(ops.transpose(normalised(x1)), normalised(x2))
    return ops.mean(ops.square(product))


@keras.saving.register_keras_serializable(package="keras_msa")
class SoftOrthogonality(keras.losses.Loss):
    """`soft_orthogonality(y_true, y_pred)`: MISA's difference loss between
    two batches of codes (e.g. a private and a shared representation).

    Args:
        epsilon: added to each row norm.
        name: the loss's name.

    Example:

    >>> import numpy as np
    >>> a = np.array([[1.0, 2.0], [3.0, 1.0], [0.0, 1.0]], "float32")
    >>> float(SoftOrthogonality()(a, a)) > 0.0
    True
    """

    def __init__(self, epsilon=1e-6, name="soft_orthogonality", **kwargs):
        super().__init__(name=name, **kwargs)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        return soft_orthogonality(y_true, y_pred, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
