"""Is tonight's run unlike the runs before it?  Body-part mix, error rate and abstention rate vs a reference.

Reference: the pooled counts of the last ``window`` (default 7) earlier runs of the *same model_id*.  A nightly
run labels only what is new, so the nights themselves are the natural unit; pooling a week smooths weekday
effects (fewer outpatient hand films at weekends) and keeps the reference large.  A new model starts a new
history (its labels differ by construction).  Flagged runs stay in the window: a lasting change (a new site
joins the archive) is flagged on the night it appears and then, once it fills the window, becomes the new
normal, so one shift raises one alarm instead of one every night; the flags stay in the run history.

Each check has a statistical test AND an effect size, and both must fire, with minimum counts on both sides:

* **mix** - Jensen-Shannon distance (base 2, 0 = same, 1 = disjoint) between the run's body-part mix (accepted
  labels) and the reference's, flagged when >= 0.10 *and* a chi-square test of homogeneity on the counts gives
  p < 0.001.  The distance alone is noisy on small runs (two samples of 30 from one mix are often 0.15 apart);
  the test alone flags trivial shifts in huge runs.
* **error_rate** - failed / done rows, **abstention_rate** - abstained / ok rows: one-sided Fisher exact test
  (is the run's rate higher than the reference's?) p < 0.001 *and* an increase of at least 2 percentage points.
  Only increases are drift: fewer failures is not an alarm.

A check with fewer than ``min_rows`` (default 30) rows in the run or in the reference is reported as
``insufficient`` and never flags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

DEFAULT_WINDOW = 7
MIN_ROWS = 30
ALPHA = 0.001
MIN_JS_DISTANCE = 0.10
MIN_RATE_INCREASE = 0.02


@dataclass
class DriftCheck:
    name: str
    statistic: str
    value: float | None  # the effect size: JS distance, or the run's rate
    reference: float | None  # the reference's rate (None for the mix)
    p_value: float | None
    threshold: str
    status: str  # "ok" | "drift" | "insufficient"
    run_rows: int
    reference_rows: int

    @property
    def flagged(self) -> bool:
        return self.status == "drift"


@dataclass
class DriftResult:
    reference_runs: list[str]
    reference_kind: str
    checks: dict[str, DriftCheck] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return any(c.flagged for c in self.checks.values())

    @property
    def reasons(self) -> list[str]:
        return [name for name, c in self.checks.items() if c.flagged]

    def to_dict(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "reasons": self.reasons,
            "reference_runs": self.reference_runs,
            "reference_kind": self.reference_kind,
            "checks": {k: asdict(v) for k, v in self.checks.items()},
        }

    def describe(self) -> str:
        """One line for the console."""
        if not self.reference_runs:
            return "drift: no earlier run of this model to compare with (this run becomes the reference)"
        parts = []
        for name, c in self.checks.items():
            if c.status == "insufficient":
                parts.append(f"{name} n/a (<{MIN_ROWS} rows)")
            elif name == "mix":
                parts.append(f"mix JS={c.value:.3f} p={c.p_value:.2g}{' DRIFT' if c.flagged else ''}")
            else:
                parts.append(
                    f"{name} {c.value:.1%} vs {c.reference:.1%} p={c.p_value:.2g}{' DRIFT' if c.flagged else ''}"
                )
        head = "DRIFT" if self.flagged else "no drift"
        return f"drift: {head} vs {len(self.reference_runs)} earlier run(s): " + "; ".join(parts)


def accepted_mix(summary: Mapping[str, Any]) -> dict[str, int]:
    """Body-part counts of the rows the model accepted (abstained rows are labelled 'other' but are not a
    body part the model saw; they are the abstention rate's business)."""
    from core.io.schema import OTHER_LABEL

    mix = {k: int(v) for k, v in (summary.get("per_label") or {}).items()}
    abstained = int(summary.get("abstained") or 0)
    if abstained and OTHER_LABEL in mix:
        mix[OTHER_LABEL] = max(0, mix[OTHER_LABEL] - abstained)
    return {k: v for k, v in mix.items() if v > 0}


def js_distance(p_counts: Mapping[str, int], q_counts: Mapping[str, int]) -> float:
    from scipy.spatial.distance import jensenshannon

    keys = sorted(set(p_counts) | set(q_counts))
    p = np.array([p_counts.get(k, 0) for k in keys], np.float64)
    q = np.array([q_counts.get(k, 0) for k in keys], np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2))


def _mix_check(run: Mapping[str, int], ref: Mapping[str, int], min_rows: int) -> DriftCheck:
    from scipy.stats import chi2_contingency

    n_run, n_ref = sum(run.values()), sum(ref.values())
    threshold = f"JS distance >= {MIN_JS_DISTANCE} and chi-square p < {ALPHA}"
    if n_run < min_rows or n_ref < min_rows:
        return DriftCheck("mix", "jensen_shannon_distance", None, None, None, threshold, "insufficient", n_run, n_ref)
    js = js_distance(run, ref)
    keys = sorted(set(run) | set(ref))
    table = np.array([[run.get(k, 0) for k in keys], [ref.get(k, 0) for k in keys]])
    p = 1.0 if len(keys) < 2 else float(chi2_contingency(table)[1])
    status = "drift" if (js >= MIN_JS_DISTANCE and p < ALPHA) else "ok"
    return DriftCheck("mix", "jensen_shannon_distance", js, None, p, threshold, status, n_run, n_ref)


def _rate_check(name: str, k_run: int, n_run: int, k_ref: int, n_ref: int, min_rows: int) -> DriftCheck:
    from scipy.stats import fisher_exact

    threshold = f"one-sided Fisher exact p < {ALPHA} and increase >= {MIN_RATE_INCREASE:.0%} points"
    if n_run < min_rows or n_ref < min_rows:
        rate = k_run / n_run if n_run else None
        return DriftCheck(name, "rate", rate, None, None, threshold, "insufficient", n_run, n_ref)
    rate, ref_rate = k_run / n_run, k_ref / n_ref
    p = float(fisher_exact([[k_run, n_run - k_run], [k_ref, n_ref - k_ref]], alternative="greater")[1])
    status = "drift" if (p < ALPHA and rate - ref_rate >= MIN_RATE_INCREASE) else "ok"
    return DriftCheck(name, "rate", rate, ref_rate, p, threshold, status, n_run, n_ref)


def reference_runs(current: Mapping[str, Any], history: Sequence[Mapping[str, Any]], window: int) -> list[Mapping]:
    """Earlier runs of the same model, oldest first, the last ``window`` of them."""
    mine = [
        r
        for r in history
        if r.get("model_id") == current.get("model_id")
        and r.get("run_id") != current.get("run_id")
        and float(r.get("finished_at") or 0) <= float(current.get("finished_at") or float("inf"))
        and int(r.get("done") or 0) > 0
    ]
    mine.sort(key=lambda r: float(r.get("finished_at") or 0))
    return mine[-window:] if window > 0 else mine


def assess(
    current: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    window: int = DEFAULT_WINDOW,
    min_rows: int = MIN_ROWS,
) -> DriftResult:
    """Compare a run summary (``_runs/<run_id>.json`` fields) with the reference taken from ``history``."""
    refs = reference_runs(current, history, window)
    result = DriftResult([str(r.get("run_id")) for r in refs], f"last {window} earlier runs of the same model_id")
    ref_mix: dict[str, int] = {}
    for r in refs:
        for k, v in accepted_mix(r).items():
            ref_mix[k] = ref_mix.get(k, 0) + v

    def total(key: str) -> int:
        return sum(int(r.get(key) or 0) for r in refs)

    result.checks["mix"] = _mix_check(accepted_mix(current), ref_mix, min_rows)
    result.checks["error_rate"] = _rate_check(
        "error_rate", int(current.get("failed") or 0), int(current.get("done") or 0), total("failed"), total("done"),
        min_rows,
    )
    result.checks["abstention_rate"] = _rate_check(
        "abstention_rate", int(current.get("abstained") or 0), int(current.get("ok") or 0), total("abstained"),
        total("ok"), min_rows,
    )
    return result
