"""Metrics against small examples worked out by hand, plus a brute-force cross-check."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from core.trust.metrics import compute_metrics, confusion_matrix, macro_f1_from_confusion

ABC = ["a", "b", "c"]


# --- confusion_matrix ---------------------------------------------------------------------------------------
def test_confusion_matrix_counts_pairs_rows_true_cols_pred():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_confusion_matrix_empty_and_numpy_input():
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]
    cm = confusion_matrix(np.array([1, 1], dtype=np.int32), np.array([0, 1], dtype=np.uint8), 2)
    assert cm.tolist() == [[0, 0], [1, 1]]


@pytest.mark.parametrize(("t", "p"), [([0, 3], [0, 0]), ([0, 0], [0, -1]), ([0], [0, 1])])
def test_confusion_matrix_rejects_bad_indices_and_lengths(t, p):
    with pytest.raises(ValueError):
        confusion_matrix(t, p, 3)


# --- macro_f1_from_confusion --------------------------------------------------------------------------------
def test_macro_f1_from_confusion_hand_computed():
    # a: P=1, R=1/2, F1=2/3; b: P=1/2, R=1, F1=2/3; c: F1=1  -> (2/3 + 2/3 + 1) / 3 = 7/9
    cm = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    assert macro_f1_from_confusion(cm) == pytest.approx(7 / 9)


def test_macro_f1_from_confusion_ignores_absent_classes_and_handles_zero():
    # class 2 has neither support nor predictions: excluded rather than counted as F1=0
    cm = np.array([[3, 0, 0], [0, 2, 0], [0, 0, 0]])
    assert macro_f1_from_confusion(cm) == pytest.approx(1.0)
    assert macro_f1_from_confusion(np.zeros((4, 4), dtype=np.int64)) == 0.0
    assert macro_f1_from_confusion(np.zeros((0, 0), dtype=np.int64)) == 0.0


def test_macro_f1_from_confusion_rejects_non_square():
    with pytest.raises(ValueError):
        macro_f1_from_confusion(np.zeros((2, 3)))


# --- compute_metrics ----------------------------------------------------------------------------------------
def test_perfect_predictions():
    m = compute_metrics(["a", "b", "c", "a"], ["a", "b", "c", "a"], ABC)
    assert m["n"] == 4
    assert m["n_unlabeled"] == 0
    assert m["accuracy"] == 1.0
    assert m["macro_f1"] == 1.0
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert m["classes"] == ABC
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}


def test_one_confusion():
    m = compute_metrics(["a", "a", "b", "c"], ["a", "b", "b", "c"], ABC)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    a, b, c = (m["per_class"][k] for k in ABC)
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((1.0, 0.5, 2 / 3, 2))
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == pytest.approx((0.5, 1.0, 2 / 3, 1))
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == pytest.approx((1.0, 1.0, 1.0, 1))
    assert m["macro_f1"] == pytest.approx(7 / 9)
    assert m["macro_f1"] == pytest.approx(macro_f1_from_confusion(np.array(m["confusion_matrix"])))


def test_class_with_zero_predictions_scores_zero_not_nan():
    # a: P=1/3, R=1, F1=0.5; b: never predicted -> P=R=F1=0; c: absent everywhere -> excluded from macro
    m = compute_metrics(["a", "b", "b"], ["a", "a", "a"], ABC)
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["confusion_matrix"] == [[1, 0, 0], [2, 0, 0], [0, 0, 0]]
    assert m["per_class"]["a"]["precision"] == pytest.approx(1 / 3)
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx(0.25)


def test_predicted_but_absent_class_counts_against_macro_f1():
    # b has no support but one false positive: included with F1=0 so false positives are not hidden
    m = compute_metrics(["a", "a"], ["a", "b"], ["a", "b", "c"])
    assert m["per_class"]["a"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx(1 / 3)


def test_none_predictions_are_wrong_but_not_in_matrix():
    m = compute_metrics(["a", "a", "b", "b"], ["a", None, "b", float("nan")], ["a", "b"])
    assert m["n"] == 4
    assert m["n_unlabeled"] == 2
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["confusion_matrix"] == [[1, 0], [0, 1]]
    # precision unaffected (no wrong prediction was made), recall halved by the missing prediction
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["macro_f1"] == pytest.approx(2 / 3)


def test_all_predictions_missing():
    m = compute_metrics(["a", "b"], [None, None], ["a", "b"])
    assert m["n_unlabeled"] == 2
    assert m["accuracy"] == 0.0
    assert m["macro_f1"] == 0.0
    assert m["confusion_matrix"] == [[0, 0], [0, 0]]


def test_empty_input():
    m = compute_metrics([], [], ABC)
    assert (m["n"], m["n_unlabeled"], m["accuracy"], m["macro_f1"]) == (0, 0, 0.0, 0.0)
    assert m["confusion_matrix"] == [[0] * 3] * 3


def test_result_is_plain_json():
    m = compute_metrics(["a", "b", "c"], ["a", None, "b"], ABC)
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    assert type(m["accuracy"]) is float
    assert type(m["per_class"]["a"]["support"]) is int
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "classes"),
    [
        (["a", "x"], ["a", "a"], ABC),  # unknown true label
        (["a", "b"], ["a", "Chest"], ABC),  # unknown predicted label
        (["a"], ["a", "b"], ABC),  # length mismatch
        (["a", None], ["a", "b"], ABC),  # missing ground truth
        (["a"], ["a"], ["a", "a"]),  # duplicate classes
    ],
)
def test_invalid_input_raises(y_true, y_pred, classes):
    with pytest.raises(ValueError):
        compute_metrics(y_true, y_pred, classes)


def _reference(y_true, y_pred, classes):
    """Definition-by-loops, independent of the numpy implementation."""
    out = {}
    for c in classes:
        tp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == c and p == c)
        n_pred = sum(1 for p in y_pred if p == c)
        support = sum(1 for t in y_true if t == c)
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / support if support else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[c] = (prec, rec, f1, support, n_pred)
    scored = [v[2] for v in out.values() if v[3] or v[4]]
    acc = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == p) / len(y_true)
    return out, (sum(scored) / len(scored) if scored else 0.0), acc


def test_matches_brute_force_reference():
    rng = random.Random(1234)
    classes = ["chest", "hand", "knee", "skull", "spine"]
    for _ in range(25):
        n = rng.randint(1, 60)
        y_true = [rng.choice(classes[:4]) for _ in range(n)]  # "spine" sometimes only predicted
        y_pred = [rng.choice([*classes, None]) if rng.random() < 0.4 else t for t in y_true]
        m = compute_metrics(y_true, y_pred, classes)
        ref, ref_macro, ref_acc = _reference(y_true, y_pred, classes)
        assert m["accuracy"] == pytest.approx(ref_acc)
        assert m["macro_f1"] == pytest.approx(ref_macro)
        for c in classes:
            got = m["per_class"][c]
            assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx(ref[c][:4])
        assert int(np.sum(m["confusion_matrix"])) == n - m["n_unlabeled"]
