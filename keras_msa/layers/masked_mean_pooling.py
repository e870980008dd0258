import keras

from keras_msa.utils.masks import masked_mean


@keras.saving.register_keras_serializable(package="keras_msa")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean over time of the real steps only.

    `[B, T, D]` -> `[B, D]`. The mask comes from the `mask` argument or from
    Keras mask propagation; a row with no real step pools to zeros (a missing
    modality contributes nothing, and never NaN).

    Example:

    >>> import numpy as np
    >>> x = np.arange(6, dtype="float32").reshape(1, 3, 2)
    >>> MaskedMeanPooling()(x, mask=np.array([[True, True, False]])).numpy().tolist()
    [[1.0, 2.0]]
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        return masked_mean(inputs, mask, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[2:])
