"""Classification metrics shared by training (from a confusion matrix) and evaluation (from label lists).

Training only ever sees integer class indices and accumulates a confusion matrix per epoch; evaluation sees
string labels, some of them missing because the image could not be read.  Both paths go through
:func:`confusion_matrix` and the same per-class scoring so the macro-F1 logged during training and the one in
an evaluation report cannot disagree on definitions.

Definitions (kept deliberately simple and explicit, so a number in a report can be reproduced by hand):

* Zero division (a class never predicted, or never present) yields ``0.0``, never NaN: NaN is not valid JSON
  and silently poisons averages.
* A missing prediction (``None``, e.g. a row whose image failed to decode) counts as *wrong* for accuracy and
  for the recall of its true class, but it is not a prediction of any class, so it touches no precision and
  does not appear in the confusion matrix.  ``n_unlabeled`` reports how many there were.
* ``macro_f1`` averages per-class F1 over the classes that occur in the evaluated data, i.e. have support > 0
  *or* were predicted at least once.  Classes with neither have an undefined F1; counting them as 0 would
  punish a model for a class the evaluation set simply does not contain (small nightly samples often miss a
  rare body part), while excluding predicted-but-absent classes would hide false positives.  This matches
  scikit-learn's ``f1_score(average="macro")`` with its default ``labels`` (the union of labels seen).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def confusion_matrix(
    y_true_idx: Sequence[int] | np.ndarray, y_pred_idx: Sequence[int] | np.ndarray, n_classes: int
) -> np.ndarray:
    """Count (true, predicted) index pairs; rows are true classes, columns predicted classes.

    Out-of-range indices raise instead of being dropped: a silently shrunk matrix would report a better model
    than the one evaluated.
    """
    if n_classes < 0:
        raise ValueError(f"n_classes must be >= 0, got {n_classes}")
    t = np.asarray(y_true_idx, dtype=np.int64).ravel()
    p = np.asarray(y_pred_idx, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true_idx and y_pred_idx differ in length: {t.size} vs {p.size}")
    for name, arr in (("y_true_idx", t), ("y_pred_idx", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} has values outside [0, {n_classes}): min {arr.min()}, max {arr.max()}")
    counts = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return counts.astype(np.int64).reshape(n_classes, n_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _per_class_scores(cm: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision, recall, F1 and the macro-average mask from a square matrix plus per-class support.

    ``support`` is passed separately because in evaluation it also counts rows with no prediction, which the
    confusion matrix cannot hold.
    """
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2.0 * precision * recall, precision + recall)
    present = (support > 0) | (predicted > 0)
    return precision, recall, f1, present


def _macro_mean(f1: np.ndarray, present: np.ndarray) -> float:
    return float(f1[present].mean()) if present.any() else 0.0


def _check_square(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square 2-D, got shape {cm.shape}")
    return cm


def macro_f1_from_confusion(cm: np.ndarray) -> float:
    """Macro-F1 over the classes present in ``cm`` (see the module docstring for which classes count).

    Used during training where every sample has a prediction, so support is simply the row sum.
    """
    cm = _check_square(cm)
    _, _, f1, present = _per_class_scores(cm, cm.sum(axis=1))
    return _macro_mean(f1, present)


def _is_missing(label: object) -> bool:
    # pandas hands missing strings back as float NaN rather than None; treat both as "no prediction".
    return label is None or (isinstance(label, float) and math.isnan(label))


def compute_metrics(y_true: Sequence[str], y_pred: Sequence[str | None], classes: Sequence[str]) -> dict:
    """Evaluate string predictions against ground truth, returning a JSON-serialisable dict.

    Labels outside ``classes`` raise ``ValueError`` rather than being ignored, because a renamed class
    (``"Chest"`` vs ``"chest"``) would otherwise quietly vanish from every number.  Keys: ``n``,
    ``n_unlabeled``, ``accuracy``, ``macro_f1``, ``per_class`` ({class: precision, recall, f1, support}),
    ``classes`` and ``confusion_matrix`` (rows true, columns predicted, in ``classes`` order).
    """
    classes = [str(c) for c in classes]
    index = {c: i for i, c in enumerate(classes)}
    if len(index) != len(classes):
        dupes = sorted({c for c in classes if classes.count(c) > 1})
        raise ValueError(f"classes contains duplicates: {dupes}")
    y_true = list(y_true)
    y_pred = list(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")

    missing_truth = sum(1 for t in y_true if _is_missing(t))
    if missing_truth:
        raise ValueError(f"y_true has {missing_truth} missing label(s); drop unlabelled rows before evaluating")
    unknown_true = sorted({str(t) for t in y_true if t not in index})
    unknown_pred = sorted({str(p) for p in y_pred if not _is_missing(p) and p not in index})
    if unknown_true or unknown_pred:
        raise ValueError(f"labels not in classes {classes}: true {unknown_true[:10]}, predicted {unknown_pred[:10]}")

    k = len(classes)
    true_idx = np.array([index[t] for t in y_true], dtype=np.int64)
    labeled = np.array([not _is_missing(p) for p in y_pred], dtype=bool)
    pred_idx = np.array([index[p] for p in y_pred if not _is_missing(p)], dtype=np.int64)

    cm = confusion_matrix(true_idx[labeled], pred_idx, k)
    support = np.bincount(true_idx, minlength=k).astype(np.int64)
    precision, recall, f1, present = _per_class_scores(cm, support)

    n = len(y_true)
    correct = int(np.trace(cm))
    per_class = {
        c: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    }
    return {
        "n": n,
        "n_unlabeled": int(n - labeled.sum()),
        "accuracy": correct / n if n else 0.0,
        "macro_f1": _macro_mean(f1, present),
        "per_class": per_class,
        "classes": classes,
        "confusion_matrix": cm.tolist(),
    }
