"""When a label can be trusted: calibrated confidence, an out-of-distribution score, and abstention thresholds.

Everything here is fitted once, at the end of training, on the run's own validation split, and travels in the
bundle (``trust.json`` + ``ood.npz``); labeling only applies it.

* **Calibration** — temperature scaling (Guo et al. 2017): one scalar ``T`` that minimises the validation NLL
  of ``softmax(log p / T)``.  The model ends in a softmax, so log-probabilities serve as logits (softmax is
  shift-invariant, so they are the logits up to a constant).  ``T`` changes confidence, never the argmax.
* **OOD score** — several signals are computed from the same forward pass (see :data:`OOD_METHODS`); the one a
  bundle uses is recorded as ``ood_method``.  Each was measured alone on held-out phantoms against generated
  non-radiographs from an unseen seed before one was chosen as the default.
* **Thresholds** — ``min_confidence`` and ``max_ood_score`` are quantiles of the in-domain validation rows,
  chosen so that (together with rows the model itself calls ``other``) about ``target_abstention`` of
  in-domain images abstain.

An abstained row keeps status ``ok`` and its class probabilities, gets label ``other`` and an
``abstain_reason``: a wrong body-part label would corrupt the index silently, a missing one is visible.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.io import schema

TRUST_FILE = "trust.json"
OOD_FILE = "ood.npz"
FEATURE_LAYER = "pool"  # the penultimate layer (global average pool) of core.model.backbones.build_classifier
HEAD_LAYER = "head"
DEFAULT_TARGET_ABSTENTION = 0.01
DEFAULT_OOD_METHOD = "auto"
ECE_BINS = 15
_EPS = 1e-12

log_ = logging.getLogger("scanlabel.trust")


# --- calibration ----------------------------------------------------------------------------------------------


def _log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, np.float64), _EPS, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the calibrated distribution (same argmax, softer or sharper)."""
    z = _log_probs(probs) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    y = np.asarray(y, np.int64)
    if len(y) == 0:
        return 0.0
    return float(-_log_probs(probs)[np.arange(len(y)), y].mean())


def fit_temperature(probs: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature minimising validation NLL (a 1-D bounded search over log T).

    A validation split the model gets entirely right has its NLL minimum at T → 0 (ever sharper); the bounds
    stop that, and 1.0 is kept whenever it is as good as the optimum, so an already calibrated model is left
    alone.
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, np.int64)
    if len(y) == 0:
        return 1.0
    logp = _log_probs(probs)

    def objective(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        return float((lse - z[np.arange(len(y)), y]).mean())

    res = minimize_scalar(objective, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded")
    best = float(np.exp(res.x))
    return 1.0 if objective(0.0) <= objective(float(res.x)) + 1e-9 else best


# --- reliability bins and ECE -----------------------------------------------------------------------------
@dataclass
class Reliability:
    """Per-bin counts, mean confidence and accuracy over equal-width bins of [0, 1]; ``ece`` summarises them."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray  # mean confidence per bin (NaN where empty)
    accuracy: np.ndarray  # accuracy per bin (NaN where empty)

    @property
    def ece(self) -> float:
        n = int(self.counts.sum())
        if n == 0:
            return 0.0
        filled = self.counts > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float((self.counts[filled] / n * gaps).sum())

    def to_json(self) -> dict[str, Any]:
        def clean(a: np.ndarray) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {
            "edges": [float(e) for e in self.edges],
            "counts": [int(c) for c in self.counts],
            "confidence": clean(self.confidence),
            "accuracy": clean(self.accuracy),
        }


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Bin rows by confidence; bin ``b`` holds (edges[b], edges[b+1]] (the first also holds 0)."""
    conf = np.asarray(confidence, np.float64).ravel()
    hit = np.asarray(correct, np.float64).ravel()
    if conf.shape != hit.shape:
        raise ValueError(f"confidence and correct differ in length: {conf.size} vs {hit.size}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(idx, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=bins) / counts
        accuracy = np.bincount(idx, weights=hit, minlength=bins) / counts
    return Reliability(edges, counts, mean_conf, accuracy)


def calibration(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Reliability of the argmax prediction of ``probs`` against class indices ``y``."""
    probs = np.asarray(probs, np.float64)
    y = np.asarray(y, np.int64)
    if len(y) == 0:
        return reliability(np.zeros(0), np.zeros(0), bins)
    return reliability(probs.max(axis=1), probs.argmax(axis=1) == y, bins)



def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with equal-width confidence bins (Guo et al.): the bin-weighted |accuracy - confidence| gap.

    The one definition: training's validation figures and ``scanlabel evaluate`` both come from
    :func:`calibration`."""
    return calibration(probs, y, bins).ece


# --- OOD scores -----------------------------------------------------------------------------------------------


@dataclass
class FeatureStats:
    """Sufficient statistics of penultimate-layer features per class; they add up across workers."""

    counts: np.ndarray  # (k,)
    sums: np.ndarray  # (k, d)
    outer: np.ndarray  # (d, d): sum of x xᵀ over all rows

    @classmethod
    def of(cls, features: np.ndarray, y: np.ndarray, n_classes: int) -> FeatureStats:
        f = np.asarray(features, np.float64)
        y = np.asarray(y, np.int64)
        d = f.shape[1] if f.ndim == 2 else 0
        sums = np.zeros((n_classes, d))
        np.add.at(sums, y, f)
        return cls(np.bincount(y, minlength=n_classes).astype(np.float64), sums, f.T @ f)

    def flat(self) -> np.ndarray:
        return np.concatenate([self.counts, self.sums.ravel(), self.outer.ravel()])

    @classmethod
    def from_flat(cls, flat: np.ndarray, n_classes: int, dim: int) -> FeatureStats:
        k, d = n_classes, dim
        return cls(flat[:k], flat[k : k + k * d].reshape(k, d), flat[k + k * d :].reshape(d, d))


def mahalanobis_params(stats: FeatureStats, shrinkage: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the precision of the shared (tied) covariance (Lee et al. 2018).

    Pass statistics of body-part rows only: ``other`` images are deliberately diverse and would inflate the
    covariance.  A few hundred rows in hundreds of dimensions give a singular covariance, so it is shrunk
    towards a scaled identity.
    """
    keep = stats.counts > 0
    counts, sums = stats.counts[keep], stats.sums[keep]
    n = counts.sum()
    if keep.sum() < 1 or n < 2:
        raise ValueError("Mahalanobis OOD scoring needs training features of at least two images")
    means = sums / counts[:, None]
    scatter = stats.outer - (means * counts[:, None]).T @ means  # within-class: Σ x xᵀ - Σ_c n_c μ_c μ_cᵀ
    cov = scatter / max(n - len(counts), 1)
    d = cov.shape[0]
    cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / d * np.eye(d)
    return means, np.linalg.inv(cov)


def logits_from_features(features: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The head's pre-softmax outputs, recomputed from the penultimate features (energy / max-logit)."""
    return np.asarray(features, np.float64) @ np.asarray(kernel, np.float64) + np.asarray(bias, np.float64)


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


def ood_scores(
    method: str,
    features: np.ndarray,
    calibrated: np.ndarray,
    classes: list[str],
    arrays: dict[str, np.ndarray],
) -> np.ndarray:
    """Higher = further from the training images.  ``arrays`` holds what ``method`` was fitted with."""
    f = np.asarray(features, np.float64)
    other = classes.index(schema.OTHER_LABEL) if schema.OTHER_LABEL in classes else None
    if method == "mahalanobis":
        # float32: the (n, d) x (d, d) product is the only real cost of scoring, and distances need no more.
        means, precision = arrays["means"].astype(np.float32), arrays["precision"].astype(np.float32)
        f = f.astype(np.float32)
        fp = f @ precision  # (f-μ)ᵀP(f-μ) = fᵀPf - 2 fᵀPμ + μᵀPμ: one (n, d) x (d, d) product per batch
        d2 = (fp * f).sum(1)[:, None] - 2 * fp @ means.T + ((means @ precision) * means).sum(1)[None, :]
        return np.maximum(d2.min(axis=1), 0.0)
    if method == "knn":
        bank = arrays["bank"]
        q = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), _EPS)
        sims = q @ bank.T
        k = min(int(arrays.get("k", np.array(10))), bank.shape[0])
        kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
        return 1.0 - kth
    if method in ("energy", "max_logit"):
        z = logits_from_features(f, arrays["kernel"], arrays["bias"])
        if other is not None:
            z = np.delete(z, other, axis=1)
        return -_logsumexp(z) if method == "energy" else -z.max(axis=1)
    if method == "p_other":
        if other is None:
            raise ValueError("ood_method p_other needs a model with an 'other' class")
        return calibrated[:, other]
    if method == "msp":
        body = calibrated if other is None else np.delete(calibrated, other, axis=1)
        return 1.0 - body.max(axis=1)
    raise ValueError(f"unknown ood_method {method!r}; known: {', '.join(OOD_METHODS)}")


OOD_METHODS = ("mahalanobis", "knn", "energy", "max_logit", "p_other", "msp")
# Those training can fit on any number of workers (k-NN would need every training feature on one machine).
TRAINABLE_OOD_METHODS = ("auto", "mahalanobis", "energy", "max_logit", "p_other", "msp")


def resolve_ood_method(method: str, classes: list[str]) -> str:
    """``auto``: ``p_other`` for a model with an ``other`` class, else ``mahalanobis``.

    Measured alone on demo-size models (mobilenet_v3_small, 96 px, 1400 phantoms + 210 generated
    non-radiographs, 14 / 24 epochs), AUROC of held-out phantoms (seed 1) against generated non-radiographs from
    an unseen seed (7): p_other 0.996 / 0.997, k-NN 0.994 / 0.996, MSP 0.987 / 0.996, energy 0.985 / 0.991,
    max-logit 0.984 / 0.991, Mahalanobis 0.918 / 0.976.  Feature distances fitted on phantoms alone missed many
    far shifts; the learnt ``other`` class did best, and costs nothing at labeling time.
    """
    if method != "auto":
        return method
    return "p_other" if schema.OTHER_LABEL in classes else "mahalanobis"


# --- thresholds -----------------------------------------------------------------------------------------------


def fit_thresholds(
    calibrated: np.ndarray, ood: np.ndarray, classes: list[str], target: float = DEFAULT_TARGET_ABSTENTION
) -> tuple[float, float, dict[str, Any]]:
    """``(min_confidence, max_ood_score, stats)`` for in-domain validation rows.

    Rows the model itself calls ``other`` already abstain; the rest of the ``target`` budget is split evenly
    between the two thresholds (each a quantile of the in-domain rows), so the union stays within ``target``.
    """
    n = len(calibrated)
    if n == 0:
        return 0.0, float("inf"), {"n": 0}
    pred = calibrated.argmax(axis=1)
    other = classes.index(schema.OTHER_LABEL) if schema.OTHER_LABEL in classes else None
    said_other = pred == other if other is not None else np.zeros(n, bool)
    budget = max(0.0, target - float(said_other.mean())) / 2
    rest = ~said_other
    conf = calibrated.max(axis=1)[rest]
    scores = np.asarray(ood, np.float64)[rest]
    k = int(np.floor(budget * n))  # rows each threshold may exclude
    if k == 0 or not len(conf):
        min_conf = float(conf.min()) if len(conf) else 0.0
        max_ood = float(scores.max()) if len(scores) else float("inf")
    else:
        min_conf = float(np.sort(conf)[min(k, len(conf) - 1)])
        max_ood = float(np.sort(scores)[::-1][min(k, len(scores) - 1)])
    reasons = abstain_reasons(calibrated, ood, classes, min_conf, max_ood)
    stats = {
        "n": n,
        "target_abstention": target,
        "abstention": float(np.mean([r is not None for r in reasons])),
        "predicted_other": float(said_other.mean()),
    }
    return min_conf, max_ood, stats


def abstain_reasons(
    calibrated: np.ndarray, ood: np.ndarray, classes: list[str], min_confidence: float, max_ood_score: float
) -> list[str | None]:
    """Per row: ``out_of_distribution`` (the model says ``other`` or the OOD score is too high),
    ``low_confidence`` (the calibrated confidence is under ``min_confidence``), or None (accepted)."""
    other = classes.index(schema.OTHER_LABEL) if schema.OTHER_LABEL in classes else -1
    pred = calibrated.argmax(axis=1)
    conf = calibrated.max(axis=1)
    out: list[str | None] = []
    for i in range(len(calibrated)):
        if pred[i] == other or ood[i] > max_ood_score:
            out.append(schema.ABSTAIN_OOD)
        elif conf[i] < min_confidence:
            out.append(schema.ABSTAIN_LOW_CONFIDENCE)
        else:
            out.append(None)
    return out


# --- the bundle's trust data ----------------------------------------------------------------------------------


@dataclass
class Trust:
    """What labeling needs to calibrate, score and abstain; ``arrays`` are the OOD method's fitted parameters."""

    temperature: float
    min_confidence: float
    max_ood_score: float
    ood_method: str
    classes: list[str]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        return apply_temperature(probs, self.temperature)

    @property
    def needs_features(self) -> bool:
        """Whether the OOD score reads penultimate features (else the probabilities are enough)."""
        return self.ood_method in ("mahalanobis", "knn", "energy", "max_logit")

    def ood(self, features: np.ndarray, calibrated: np.ndarray) -> np.ndarray:
        return ood_scores(self.ood_method, features, calibrated, self.classes, self.arrays)

    def with_overrides(self, min_confidence: float | None = None, max_ood_score: float | None = None) -> Trust:
        """Per-run thresholds (``--min-confidence`` / ``--max-ood-score``) over the bundle's fitted ones."""
        return Trust(
            self.temperature,
            self.min_confidence if min_confidence is None else float(min_confidence),
            self.max_ood_score if max_ood_score is None else float(max_ood_score),
            self.ood_method,
            self.classes,
            self.arrays,
            self.info,
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("arrays")
        d.pop("classes")
        return d

    def write(self, directory: str) -> list[str]:
        """Write ``trust.json`` (and ``ood.npz`` when the method has arrays); returns the file names."""
        with open(os.path.join(directory, TRUST_FILE), "w") as f:
            json.dump(self.to_json(), f, indent=2, sort_keys=True)
        names = [TRUST_FILE]
        if self.arrays:
            np.savez(os.path.join(directory, OOD_FILE), **self.arrays)
            names.append(OOD_FILE)
        return names


_warned_paths: set[str] = set()


def load_trust(bundle) -> Trust | None:
    """The bundle's trust data, or None for bundles trained before it existed (logged once per bundle path):
    such a bundle labels exactly as before, with no calibration and no abstention."""
    path = os.path.join(bundle.path, TRUST_FILE)
    if not os.path.exists(path):
        if bundle.path not in _warned_paths:
            _warned_paths.add(bundle.path)
            log_.warning(
                "bundle %s (model_id=%s) has no %s: labels are not calibrated and nothing abstains; retrain "
                "it to get calibrated confidence and abstention",
                bundle.path,
                bundle.model_id,
                TRUST_FILE,
            )
        return None
    with open(path) as f:
        data = json.load(f)
    arrays: dict[str, np.ndarray] = {}
    ood_path = os.path.join(bundle.path, OOD_FILE)
    if os.path.exists(ood_path):
        with np.load(ood_path) as z:
            arrays = {k: z[k] for k in z.files}
    return Trust(
        temperature=float(data["temperature"]),
        min_confidence=float(data["min_confidence"]),
        max_ood_score=float(data["max_ood_score"]),
        ood_method=str(data["ood_method"]),
        classes=list(bundle.classes),
        arrays=arrays,
        info=data.get("info", {}),
    )
