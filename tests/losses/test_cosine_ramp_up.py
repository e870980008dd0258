import math

import keras
import numpy as np

from keras_msa.losses import cosine_ramp_up


def test_matches_numpy_and_saturates():
    for ramp in (1, 3, 6):
        for e in range(10):
            expected = 0.5 * (1 - math.cos(math.pi * min((e + 1) / ramp, 1.0)))
            np.testing.assert_allclose(float(cosine_ramp_up(e, ramp)), expected, atol=1e-6)
    values = [float(cosine_ramp_up(e, 5)) for e in range(8)]
    assert all(a < b for a, b in zip(values[:5], values[1:5]))
    assert values[4:] == [1.0] * 4


def test_disabled_ramp_and_variable_epoch():
    assert float(cosine_ramp_up(0, 0)) == 1.0
    epoch = keras.Variable(1.0, trainable=False)
    np.testing.assert_allclose(float(cosine_ramp_up(epoch, 3)), 0.75, atol=1e-6)
