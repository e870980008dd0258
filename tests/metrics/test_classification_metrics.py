"""Weighted F1, IEMOCAP per-emotion metrics and UR-FUNNY accuracy."""

import numpy as np
import pytest

from keras_msa.metrics import humor_metrics
from keras_msa.metrics import iemocap_metrics
from keras_msa.metrics import weighted_f1


def test_weighted_f1_hand_cases():
    # Class 0: TP 2, FN 1 -> 0.8 (support 3); class 1: TP 1, FP 1 -> 2/3 (support 1).
    assert weighted_f1([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx((3 * 0.8 + 2 / 3) / 4)
    # Three classes: F1 1, 2/3, 2/3 with supports 1, 2, 1 -> 0.75.
    assert weighted_f1([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx(0.75)
    # A predicted class without support weighs nothing but still costs recall.
    assert weighted_f1([0, 2], [0, 0]) == pytest.approx(2 / 3)
    assert weighted_f1([True, False], [True, False]) == 1.0
    assert weighted_f1([1, 1], [0, 0]) == 0.0


def test_iemocap_two_way_logits():
    y = np.array([[1, 0, 0, 0], [0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 1, 0]])
    decisions = np.array([[1, 0, 0, 0], [0, 1, 1, 1], [0, 1, 0, 0], [0, 0, 1, 0]])
    logits = np.stack([-decisions, decisions], axis=-1).astype(np.float32) * 2.0
    m = iemocap_metrics(logits, y)
    assert m["acc_happy"] == pytest.approx(3 / 4)
    assert m["acc_sad"] == 1.0
    assert m["acc_angry"] == pytest.approx(3 / 4)
    assert m["acc_neutral"] == 1.0
    assert m["acc_mean"] == pytest.approx(0.875)
    # Happy: pred [1 0 0 0], true [1 0 1 0]: class 1 TP 1 FN 1 -> 2/3 (support 2),
    # class 0 TP 2 FP 1 -> 0.8 (support 2).
    assert m["f1_happy"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["f1_mean"] == pytest.approx(
        np.mean([m[f"f1_{e}"] for e in ("happy", "sad", "angry", "neutral")])
    )


def test_iemocap_single_scores_probabilities_and_logits():
    y = np.array([[1, 0, 1, 0], [0, 1, 0, 1]])
    probs = np.array([[0.9, 0.2, 0.4, 0.1], [0.3, 0.6, 0.1, 0.7]])
    m = iemocap_metrics(probs, y)
    assert m["acc_angry"] == 0.5 and m["acc_happy"] == 1.0
    logits = np.array([[0.9, -0.2, 0.4, -0.1], [-0.3, 0.6, -0.1, 0.7]])
    assert iemocap_metrics(logits, y, from_logits=True)["acc_mean"] == 1.0
    # Logits that all fall inside [0, 1] need the explicit flag.
    inside = np.array([[0.9, 0.0, 0.4, 0.0], [0.0, 0.6, 0.0, 0.7]])
    assert iemocap_metrics(inside, y, from_logits=True)["acc_mean"] == 1.0
    assert iemocap_metrics(inside, y)["acc_angry"] == 0.5


def test_iemocap_custom_emotions_and_errors():
    y = np.array([[1, 0], [0, 1]])
    m = iemocap_metrics(np.array([[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]]), y)
    assert set(m) == {"acc_emotion_0", "f1_emotion_0", "acc_emotion_1", "f1_emotion_1",
                      "acc_mean", "f1_mean"}
    assert m["acc_mean"] == 1.0
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        iemocap_metrics(np.zeros((2, 3)), y)
    with pytest.raises(ValueError, match="0/1 labels"):
        iemocap_metrics(np.zeros((2, 2)), np.array([[2, 0], [0, 1]]))


def test_humor_accuracy():
    y = np.array([1, 0, 0, 1])
    assert humor_metrics(np.array([[2.0], [-1.0], [0.5], [-0.2]]), y)["acc"] == 0.5
    assert humor_metrics(np.array([0.9, 0.1, 0.4, 0.6]), y.reshape(-1, 1))["acc"] == 1.0
    two_way = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.1], [0.3, 0.4]])
    assert humor_metrics(two_way, y) == {"acc": 1.0}
    with pytest.raises(ValueError, match="3 decisions but .* 4 labels"):
        humor_metrics([0.1, 0.2, 0.3], y)
