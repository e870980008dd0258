import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_msa")
class MutualInformationLowerBound(keras.layers.Layer):
    """MMIM's modality mutual-information lower bound (MMILB; Han et al.,
    EMNLP 2021, Sec. 3.3, Eqs. 5-8), as MMSA implements it.

    A Gaussian q(y | x) = N(mu(x), exp(logvar(x))) estimates the conditional
    of one modality's representation y given another's x:

        mu(x)     = W_mu2 act(W_mu1 x + b_mu1) + b_mu2
        logvar(x) = W_lv2 act(W_lv1 x + b_lv1) + b_lv2
        lld       = mean_i sum_d -(mu(x_i)_d - y_id)^2 / (2 exp(logvar(x_i)_d))

    (MMSA's form: the log-variance normaliser -logvar/2 and the constants of
    log q are left out, and its configured "last activation" is never
    applied to logvar.) The entropy term of the bound (Eq. 8) is estimated on
    a projection z = tanh(W_e y + b_e) of width `y_dim // 4`
    (`entropy_projection`; see `keras_msa.losses.gaussian_entropy`). MMSA's
    two optimisers never step that projection (its gradient comes only from
    the main stage, whose optimiser does not hold it), so it keeps its
    initial weights: here it is non-trainable.

    `call(x, y, stop_weights=...)` returns `lld`. MMIM optimises two sides of
    the bound: the estimator maximises it over its own weights (with x, y
    held fixed), and the encoders maximise it through x and y (with the
    estimator held fixed). `stop_weights=True` computes the same value with
    the estimator's weights behind a stop-gradient: the encoders' side.

    Args:
        activation: the hidden activation of the two MLPs (MMSA: ReLU).
        entropy_dim: width of the entropy projection (None: y_dim // 4).

    Example:

    >>> import numpy as np
    >>> bound = MutualInformationLowerBound()
    >>> x, y = np.ones((3, 6), "float32"), np.ones((3, 8), "float32")
    >>> tuple(bound(x, y).shape), tuple(bound.entropy_projection(y).shape)
    ((), (3, 2))
    """

    def __init__(self, activation="relu", entropy_dim=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(activation, str):
            raise TypeError(f"MutualInformationLowerBound: activation must be a Keras activation name; got "
                            f"{activation!r}.")
        self.activation = activation
        self._act = keras.activations.get(activation)
        self.entropy_dim = None if entropy_dim is None else int(entropy_dim)

    def build(self, x_shape, y_shape):
        dx, dy = int(x_shape[-1]), int(y_shape[-1])
        e = self.entropy_dim or dy // 4
        if e < 1:
            raise ValueError(f"MutualInformationLowerBound: the entropy projection needs y of width >= 4 "
                             f"(width // 4 >= 1); got y width {dy}.")
        init = keras.initializers.GlorotNormal()

        def weight(name, shape, trainable=True):
            return self.add_weight(name=name, shape=shape, trainable=trainable,
                                   initializer=init if len(shape) == 2 else "zeros")

        self.mu_kernel_1, self.mu_bias_1 = weight("mu_kernel_1", (dx, dy)), weight("mu_bias_1", (dy,))
        self.mu_kernel_2, self.mu_bias_2 = weight("mu_kernel_2", (dy, dy)), weight("mu_bias_2", (dy,))
        self.logvar_kernel_1, self.logvar_bias_1 = weight("logvar_kernel_1", (dx, dy)), weight("logvar_bias_1", (dy,))
        self.logvar_kernel_2, self.logvar_bias_2 = weight("logvar_kernel_2", (dy, dy)), weight("logvar_bias_2", (dy,))
        self.entropy_kernel = weight("entropy_kernel", (dy, e), trainable=False)
        self.entropy_bias = weight("entropy_bias", (e,), trainable=False)
        self.built = True

    def _mlp(self, x, k1, b1, k2, b2, stop):
        if stop:
            k1, b1, k2, b2 = (ops.stop_gradient(w) for w in (k1, b1, k2, b2))
        return ops.matmul(self._act(ops.matmul(x, k1) + b1), k2) + b2

    def gaussian(self, x, stop_weights=False):
        """`(mu, logvar)` of q(y | x), each `[B, y_dim]`."""
        mu = self._mlp(x, self.mu_kernel_1, self.mu_bias_1, self.mu_kernel_2, self.mu_bias_2, stop_weights)
        logvar = self._mlp(x, self.logvar_kernel_1, self.logvar_bias_1, self.logvar_kernel_2,
                           self.logvar_bias_2, stop_weights)
        return mu, logvar

    def call(self, x, y, stop_weights=False):
        mu, logvar = self.gaussian(x, stop_weights)
        positive = -ops.square(mu - y) * 0.5 * ops.exp(-logvar)
        return ops.mean(ops.sum(positive, axis=-1))

    def entropy_projection(self, y):
        """z = tanh(W_e y + b_e) `[B, entropy_dim]`, the space of the
        entropy estimate."""
        return ops.tanh(ops.matmul(y, self.entropy_kernel) + self.entropy_bias)

    def compute_output_shape(self, x_shape, y_shape):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update({"activation": self.activation, "entropy_dim": self.entropy_dim})
        return config
