"""AVEC 2019 CCC, RMSE, MAE."""

import numpy as np
import pytest

from keras_msa.metrics import avec_metrics
from keras_msa.metrics import ccc
from keras_msa.metrics import rmse


def test_ccc_matches_correlation_form():
    rng = np.random.default_rng(3)
    t = rng.uniform(0, 24, 50)
    p = 0.7 * t + 3 + rng.normal(0, 2, 50)
    r = np.corrcoef(p, t)[0, 1]
    expected = 2 * r * p.std() * t.std() / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)
    assert ccc(p, t) == pytest.approx(expected, abs=1e-12)


def test_ccc_hand_cases():
    t = np.array([0.0, 2.0])
    assert ccc(t, t) == pytest.approx(1.0)
    # A shift keeps Pearson at 1 but CCC = 2 var / (2 var + 1) = 2/3 (var = 1).
    assert ccc(t + 1.0, t) == pytest.approx(2 / 3)
    assert ccc(-t, t) == pytest.approx(-2 / (1 + 1 + 4))
    # Constant against constant is 0/0: defined as 0.0.
    assert ccc([5.0, 5.0], [5.0, 5.0]) == 0.0
    assert ccc([5.0, 5.0], [1.0, 3.0]) == 0.0


def test_avec_metrics_values():
    m = avec_metrics([3.0, 10.0], [4.0, 12.0])
    assert set(m) == {"ccc", "rmse", "mae"}
    assert m["rmse"] == pytest.approx(np.sqrt(2.5))
    assert m["mae"] == pytest.approx(1.5)
    assert rmse([[1.0], [2.0]], [1.0, 4.0]) == pytest.approx(np.sqrt(2.0))
