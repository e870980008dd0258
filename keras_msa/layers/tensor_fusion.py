import keras
from keras import ops


def _with_one(h, present):
    """[1; h] per sample; an absent modality (present False) is [1; 0], so it
    adds only its constant term to the fusion."""
    if present is not None:
        h = ops.where(ops.expand_dims(ops.cast(present, "bool"), -1), h, ops.zeros_like(h))
    return ops.concatenate([ops.ones_like(h[:, :1]), h], axis=-1)


@keras.saving.register_keras_serializable(package="keras_msa")
class TensorFusion(keras.layers.Layer):
    """Tensor fusion (TFN; Zadeh et al., EMNLP 2017, Eq. 1).

    For modality embeddings h_1, ..., h_M (each `[B, d_m]`):

        z = [1; h_1] (x) [1; h_2] (x) ... (x) [1; h_M]

    flattened row-major to `[B, prod(d_m + 1)]`: entry
    (i_1, ..., i_M) is prod_m [1; h_m]_{i_m}, so z holds every unimodal,
    bimodal and trimodal product plus the constant 1. The appended 1 keeps
    the lower-order interactions. With (audio, vision, text) in that order
    this is MMSA's layout (`models/singleTask/TFN.py`).

    Masks: `mask` is a list with one `[B]` bool (or None) per input saying
    whether the sample has that modality; a missing one enters as [1; 0].

    Example:

    >>> import numpy as np
    >>> z = TensorFusion()([np.array([[2.0]], "float32"), np.array([[3.0, 5.0]], "float32")])
    >>> z.numpy().tolist()
    [[1.0, 3.0, 5.0, 2.0, 6.0, 10.0]]
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError(f"TensorFusion takes a list of at least two [batch, dim] tensors; got {inputs!r}.")
        masks = list(mask) if isinstance(mask, (list, tuple)) else [None] * len(inputs)
        z = _with_one(inputs[0], masks[0])
        for h, present in zip(inputs[1:], masks[1:]):
            h = _with_one(h, present)
            z = ops.reshape(ops.expand_dims(z, -1) * ops.expand_dims(h, 1), (-1, z.shape[-1] * h.shape[-1]))
        return z

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        size = 1
        for shape in input_shape:
            size *= shape[-1] + 1
        return (input_shape[0][0], size)
