"""Whether labels can be trusted, measured on a labelled archive with ground truth (``scanlabel evaluate``).

Three questions, each with one number a reader can reproduce by hand:

* **Is the confidence honest?**  Expected calibration error over 15 equal-width confidence bins (Guo et al.
  2017): the row-weighted mean |accuracy - mean confidence| of the bins, on ``ok`` rows whose true label is a
  body part, with the argmax of ``probabilities`` as the prediction (so abstained rows count too: calibration
  is a property of the probabilities, abstention is applied on top).  *After* is the probabilities the labels
  carry; *before* undoes the bundle's temperature (``p_cal = softmax(log p_raw / T)``, hence
  ``p_raw ∝ p_cal ** T``).
* **What does abstention cost and buy?**  On rows whose truth is a body part: coverage (accepted / all rows,
  unreadable ones included), abstention rate (abstained / ``ok`` rows, overall and per true class) and the
  accuracy on accepted rows.
* **Does the OOD score separate non-radiographs?**  Where the manifest has ``other`` rows: the AUROC of
  ``ood_score`` for ``other`` against body-part rows (both ``ok``), and the share of ``other`` rows that got no
  body-part label (abstained, or skipped/failed: what matters is that the index got no wrong body part).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.io import schema
from core.trust.confidence import ECE_BINS, Reliability, calibration, reliability  # noqa: F401 - re-exported

_EPS = 1e-12


def undo_temperature(calibrated: np.ndarray, temperature: float) -> np.ndarray:
    """The model's raw probabilities from temperature-scaled ones: ``p_raw ∝ p_cal ** T`` (in log space)."""
    z = np.log(np.clip(np.asarray(calibrated, np.float64), _EPS, 1.0)) * float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --- OOD separation -------------------------------------------------------------------------------------------
def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half): the Mann-Whitney
    U statistic over ``n_pos * n_neg``.  ``None`` when either side is empty."""
    pos = np.asarray(positive, np.float64)
    neg = np.asarray(negative, np.float64)
    if pos.size == 0 or neg.size == 0:
        return None
    from scipy.stats import mannwhitneyu

    u = mannwhitneyu(pos, neg, alternative="two-sided").statistic
    return float(u / (pos.size * neg.size))


# --- selective metrics ----------------------------------------------------------------------------------------
def is_abstained(row: Mapping[str, Any]) -> bool:
    return row.get("status") == schema.STATUS_OK and (
        bool(row.get("abstain_reason")) or row.get("pred") == schema.OTHER_LABEL
    )


def is_accepted(row: Mapping[str, Any]) -> bool:
    return row.get("status") == schema.STATUS_OK and not is_abstained(row) and row.get("pred") is not None


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def trust_metrics(
    rows: Sequence[Mapping[str, Any]],
    classes: Sequence[str] | None,
    temperature: float | None,
    bins: int = ECE_BINS,
) -> tuple[dict[str, Any], dict[str, Reliability]]:
    """The trust figures of evaluated rows and the reliability bins behind the ECEs.

    ``rows`` carry ``true``, ``pred``, ``status``, ``abstain_reason``, ``probabilities`` and ``ood_score``.
    ``classes`` is the order of ``probabilities`` (the bundle's ``labels.json``); without it the order is
    recovered from accepted rows (their label is the argmax), and rows whose class never appears that way are
    left out of the ECE (``ece_rows`` says how many counted).  ``temperature`` None: ``ece_before`` is null.
    """
    in_domain = [r for r in rows if r.get("true") is not None and r["true"] != schema.OTHER_LABEL]
    others = [r for r in rows if r.get("true") == schema.OTHER_LABEL]
    ok = [r for r in in_domain if r.get("status") == schema.STATUS_OK]
    accepted = [r for r in ok if is_accepted(r)]
    abstained = [r for r in ok if is_abstained(r)]
    correct = sum(1 for r in accepted if r["pred"] == r["true"])

    ok_others = [r for r in others if r.get("status") == schema.STATUS_OK]
    per_class: dict[str, float | None] = {}
    for c in sorted({r["true"] for r in in_domain}):
        base = [r for r in ok if r["true"] == c]
        per_class[c] = _rate(sum(1 for r in base if is_abstained(r)), len(base))
    if others:
        per_class[schema.OTHER_LABEL] = _rate(sum(1 for r in ok_others if is_abstained(r)), len(ok_others))

    index = _class_index(ok, classes)
    scored = [r for r in ok if r.get("probabilities") and r["true"] in index]
    reliabilities: dict[str, Reliability] = {}
    ece_after = ece_before = None
    if scored:
        width = len(scored[0]["probabilities"])
        scored = [r for r in scored if len(r["probabilities"]) == width]
        probs = np.asarray([r["probabilities"] for r in scored], np.float64)
        y = np.asarray([index[r["true"]] for r in scored], np.int64)
        reliabilities["after"] = calibration(probs, y, bins)
        ece_after = reliabilities["after"].ece
        if temperature is not None:
            reliabilities["before"] = calibration(undo_temperature(probs, temperature), y, bins)
            ece_before = reliabilities["before"].ece

    pos = [r["ood_score"] for r in ok_others if _finite(r.get("ood_score"))]
    neg = [r["ood_score"] for r in ok if _finite(r.get("ood_score"))]
    given_body_part = [r for r in others if r.get("pred") not in (None, schema.OTHER_LABEL)]
    metrics = {
        "ece_bins": bins,
        "temperature": temperature,
        "ece_before": ece_before,
        "ece_after": ece_after,
        "ece_rows": len(scored),
        "coverage": _rate(len(accepted), len(in_domain)),
        "abstention_rate": _rate(len(abstained), len(ok)),
        "accuracy_accepted": _rate(correct, len(accepted)),
        "abstention_per_class": per_class,
        "n_accepted": len(accepted),
        "n_abstained": len(abstained),
        "abstain_reasons": _count(r.get("abstain_reason") for r in abstained),
        "n_other": len(others),
        "other_abstention_rate": per_class.get(schema.OTHER_LABEL),
        "other_without_body_part": _rate(len(others) - len(given_body_part), len(others)),
        "other_labelled_as_body_part": len(given_body_part),
        "ood_auroc": auroc(pos, neg) if others else None,
        "ood_auroc_rows": {"other": len(pos), "body_part": len(neg)},
    }
    return metrics, reliabilities


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        key = v or schema.OTHER_LABEL  # a row the model itself called "other"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def _class_index(ok_rows: Sequence[Mapping[str, Any]], classes: Sequence[str] | None) -> dict[str, int]:
    """Class name -> position in ``probabilities``: the bundle's order, else read off accepted rows."""
    if classes:
        return {c: i for i, c in enumerate(classes)}
    index: dict[str, int] = {}
    for r in ok_rows:
        probs = r.get("probabilities")
        if probs and is_accepted(r):
            index.setdefault(r["pred"], int(np.argmax(probs)))
    return index
