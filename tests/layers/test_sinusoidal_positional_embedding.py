import keras
import numpy as np
import pytest

from keras_msa.layers import SinusoidalPositionalEmbedding


def reference(steps, dim):
    """PE(p) for p = 1..steps: sines then cosines, frequencies exp(-i log(1e4) / (h - 1))."""
    half = dim // 2
    freqs = np.exp(-np.arange(half) * np.log(10000.0) / (half - 1))
    angles = np.arange(1, steps + 1)[:, None] * freqs[None, :]
    codes = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    if dim % 2:
        codes = np.concatenate([codes, np.zeros((steps, 1))], axis=1)
    return codes


@pytest.mark.parametrize("dim", [8, 9])
def test_matches_numpy_and_padding_gets_zero_codes(dim):
    x = np.random.default_rng(0).normal(size=(2, 5, dim)).astype("float32")
    mask = np.array([[True] * 5, [True, True, True, False, False]])
    codes = np.asarray(SinusoidalPositionalEmbedding()(x, mask=mask))
    want = np.broadcast_to(reference(5, dim), (2, 5, dim)).copy()
    want[1, 3:] = 0
    np.testing.assert_allclose(codes, want, atol=1e-5)
    assert codes.shape == x.shape


def test_first_channel_rule_and_config_roundtrip():
    x = np.ones((1, 4, 8), "float32")
    x[0, 2, 0] = 0.0  # the reference reads this step as padding
    layer = SinusoidalPositionalEmbedding(padding_from_first_channel=True)
    codes = np.asarray(layer(x))
    np.testing.assert_array_equal(codes[0, 2], 0)
    np.testing.assert_allclose(codes[0, 3], reference(4, 8)[3], atol=1e-5)  # positions do not move
    clone = SinusoidalPositionalEmbedding.from_config(layer.get_config())
    np.testing.assert_array_equal(np.asarray(clone(x)), codes)
    # Values, inf and NaN included, under the mask change nothing.
    poisoned = x.copy()
    poisoned[0, 3] = np.nan
    mask = np.array([[True, True, True, False]])
    np.testing.assert_array_equal(np.asarray(SinusoidalPositionalEmbedding()(poisoned, mask=mask)),
                                  np.asarray(SinusoidalPositionalEmbedding()(x, mask=mask)))
    with pytest.raises(ValueError, match=">= 4"):
        SinusoidalPositionalEmbedding()(np.ones((1, 3, 3), "float32"))
    assert not SinusoidalPositionalEmbedding().weights and isinstance(layer, keras.layers.Layer)
