"""MOSI/MOSEI and CH-SIMS regression metrics against hand-computed values."""

import numpy as np
import pytest

from keras_msa.metrics import regression_metrics
from keras_msa.metrics import sims_bins

MOSI_KEYS = {"mae", "corr", "acc7", "acc5", "acc3", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0"}
SIMS_KEYS = {"acc2", "acc3", "acc5", "f1", "mae", "corr"}


@pytest.mark.parametrize("scale", ["mosi", "mosei", "MOSI"])
def test_mosi_keys_and_python_floats(scale):
    m = regression_metrics([0.1, -0.4, 2.0], [0.0, -1.0, 1.5], scale=scale)
    assert set(m) == MOSI_KEYS
    assert all(type(v) is float for v in m.values())


def test_half_way_ties_round_to_even():
    p = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5])
    # Half-to-even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> -0, -1.5 -> -2, -2.5 -> -2.
    even = np.array([0.0, 2.0, 2.0, 0.0, -2.0, -2.0])
    assert regression_metrics(p, even)["acc7"] == 1.0
    # Half-away-from-zero rounding would give these; only 1.5 and -1.5 agree.
    away = np.array([1.0, 2.0, 3.0, -1.0, -2.0, -3.0])
    assert regression_metrics(p, away)["acc7"] == pytest.approx(2 / 6)


def test_acc7_acc5_acc3_clip_before_rounding():
    p = np.array([5.0, -4.0, 2.6, 1.4])
    t = np.array([3.0, -3.0, 2.4, 0.6])
    m = regression_metrics(p, t)
    # acc7: round(clip 3): [3, -3, 3, 1] vs [3, -3, 2, 1].
    assert m["acc7"] == pytest.approx(3 / 4)
    # acc5: clip 2: [2, -2, 2, 1] vs [2, -2, 2, 1].
    assert m["acc5"] == 1.0
    # acc3: clip 1: everything lands on +-1.
    assert m["acc3"] == 1.0
    m = regression_metrics([1.6, -0.4], [0.7, 0.4])
    # acc7: [2, -0] vs [1, 0] -> 1/2; acc3: [1, -0] vs [1, 0] -> 1.
    assert m["acc7"] == 0.5 and m["acc3"] == 1.0


def test_has_zero_and_non_zero_acc2_differ_by_definition():
    p = np.array([0.3, -0.2, 0.0, -1.0, 2.0])
    t = np.array([0.0, 0.0, -1.0, -2.0, 1.0])
    m = regression_metrics(p, t)
    # has-0: p>=0 [T F T F T] vs t>=0 [T T F F T].
    assert m["acc2_has0"] == pytest.approx(3 / 5)
    # Class 1: TP 2, FP 1, FN 1 -> F1 2/3 (support 3); class 0: TP 1, FP 1,
    # FN 1 -> 1/2 (support 2); weighted (3*2/3 + 2*1/2) / 5 = 0.6.
    assert m["f1_has0"] == pytest.approx(0.6)
    # non-0 drops the two zero truths; p=0.0 now counts as negative.
    assert m["acc2_non0"] == 1.0
    assert m["f1_non0"] == 1.0


def test_non_zero_weighted_f1_hand_case():
    p = np.array([0.5, 0.2, -0.3, 0.1, -1.0, 1.0])
    t = np.array([1.0, -1.0, -2.0, 0.0, 2.0, 0.0])
    m = regression_metrics(p, t)
    # Non-zero subset: p>0 [T T F F], t>0 [T F F T].
    assert m["acc2_non0"] == 0.5
    # Class 1: TP 1, FP 1, FN 1 -> 1/2 (support 2); class 0: TP 1, FP 1, FN 1 -> 1/2.
    assert m["f1_non0"] == pytest.approx(0.5)
    # has-0 over all six: p>=0 [T T F T F T] vs t>=0 [T F F T T T] -> 4/6.
    assert m["acc2_has0"] == pytest.approx(4 / 6)


def test_all_zero_truths_give_nan_non0_only():
    m = regression_metrics([0.5, -0.5], [0.0, 0.0])
    assert np.isnan(m["acc2_non0"]) and np.isnan(m["f1_non0"])
    assert m["acc2_has0"] == 0.5


def test_mae_and_corr_match_numpy():
    rng = np.random.default_rng(0)
    t = rng.uniform(-3, 3, 200)
    p = 0.6 * t + rng.normal(0, 0.8, 200)
    m = regression_metrics(p.astype(np.float32), t.astype(np.float32))
    p32, t32 = p.astype(np.float32).astype(np.float64), t.astype(np.float32).astype(np.float64)
    assert m["mae"] == pytest.approx(np.mean(np.abs(p32 - t32)), abs=1e-12)
    assert m["corr"] == pytest.approx(np.corrcoef(p32, t32)[0, 1], abs=1e-12)
    # Shapes do not matter: [N, 1] against [N].
    m2 = regression_metrics(p.reshape(-1, 1), t)
    assert m2["mae"] == pytest.approx(np.mean(np.abs(p - t)), abs=1e-12)


def test_constant_predictions_give_zero_corr_not_nan():
    t = np.array([-2.0, 0.5, 1.0, 3.0])
    m = regression_metrics(np.zeros(4), t)
    assert m["corr"] == 0.0
    assert regression_metrics(np.full(4, 0.3), t, scale="sims")["corr"] == 0.0


def test_perfect_and_reversed_predictions():
    t = np.array([-3.0, -2.2, -1.0, -0.4, 0.6, 1.3, 2.0, 2.9])
    perfect = regression_metrics(t, t)
    assert perfect["mae"] == 0.0
    assert perfect["corr"] == pytest.approx(1.0)
    for k in ("acc7", "acc5", "acc3", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0"):
        assert perfect[k] == 1.0, k
    rev = regression_metrics(-t, t)
    assert rev["corr"] == pytest.approx(-1.0)
    assert rev["acc2_has0"] == 0.0 and rev["acc2_non0"] == 0.0
    assert rev["f1_has0"] == 0.0 and rev["f1_non0"] == 0.0
    assert rev["mae"] == pytest.approx(2 * np.mean(np.abs(t)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sims_bin_edges_are_right_closed(dtype):
    x = np.array([-1.0, -0.7, -0.1, 0.0, 0.1, 0.7, 1.0], dtype)
    np.testing.assert_array_equal(sims_bins(x, 5), [0, 0, 1, 2, 2, 3, 4])
    np.testing.assert_array_equal(sims_bins(x, 3), [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(sims_bins(x, 2), [0, 0, 0, 0, 1, 1, 1])
    above = np.nextafter(x, np.array(np.inf, dtype))
    np.testing.assert_array_equal(sims_bins(above, 5), [0, 1, 2, 2, 3, 4, 4])
    # Integers are values, not edges cast to integers; out-of-range values clip.
    np.testing.assert_array_equal(sims_bins(np.array([-2, 0, 1, 5]), 5), [0, 2, 4, 4])


def test_sims_metrics_hand_case_with_edges_and_clipping():
    p = np.array([-0.7, -0.69, 0.1, 0.11, 1.5])
    t = np.array([-0.75, -0.7, 0.0, 0.7, 0.71])
    m = regression_metrics(p, t, scale="sims")
    assert set(m) == SIMS_KEYS
    # 5 classes: p [0 1 2 3 4], t [0 0 2 3 4].
    assert m["acc5"] == pytest.approx(4 / 5)
    # 3 classes: p [0 0 1 2 2], t [0 0 1 2 2].
    assert m["acc3"] == 1.0
    # 2 classes: p [0 0 1 1 1], t [0 0 0 1 1].
    assert m["acc2"] == pytest.approx(4 / 5)
    # Class 0: TP 2, FN 1 -> 0.8 (support 3); class 1: TP 2, FP 1 -> 0.8.
    assert m["f1"] == pytest.approx(0.8)
    # MAE on clipped values (1.5 -> 1.0): (0.05 + 0.01 + 0.1 + 0.59 + 0.29) / 5.
    assert m["mae"] == pytest.approx(0.208)
    pc = np.clip(p, -1, 1)
    assert m["corr"] == pytest.approx(np.corrcoef(pc, t)[0, 1])


def test_sims_float32_predictions_on_edges_match_float64_truths():
    edges = [-0.7, -0.1, 0.1, 0.7]
    m = regression_metrics(np.array(edges, np.float32), np.array(edges, np.float64), scale="sims")
    assert m["acc5"] == 1.0 and m["acc3"] == 1.0 and m["acc2"] == 1.0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="3 elements.*2"):
        regression_metrics([0.0, 1.0, 2.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="Unknown scale 'iemocap'"):
        regression_metrics([0.0], [0.0], scale="iemocap")
    with pytest.raises(ValueError, match="y_pred.*non-finite"):
        regression_metrics([np.nan, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="y_pred.*empty"):
        regression_metrics([], [])
    with pytest.raises(ValueError, match="y_true.*non-finite"):
        regression_metrics([0.0], [np.inf])
