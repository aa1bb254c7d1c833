"""The crash schedule: a labeling driver SIGKILLed at a seeded series of points, each rerun at once (docs/faults.md).

Every trial is a real ``python -m jobs.label`` process on a real Ray, killed by the kernel at a named point of its
commit path (``core/killpoints.py``): reading the manifest, taking or renewing or releasing the lease, removing a
dead run's temporaries, compacting, writing a part file (before it, between its temporary and its rename, after
it), writing the run summary or ``--summary-json``.  The next trial starts the moment the kill lands, on the same
dataset, so each one is also a rerun after a crash; a last clean run finishes the work.  After every trial the
dataset is checked: each visible part file is whole Parquet, and no image that had a row has lost it.  After the
last: exactly one row per image, no temporary left anywhere in the dataset, the lease released, every run summary
whole.

Shared by the test suite (tests/test_fault_crashes.py: a few points, the long schedule under ``pytest -m slow``)
and the benchmark that prints its figures (``python -m jobs.bench faults``, benchmarks/faults.py).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pyarrow.dataset as pads

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Points reached once the run has work (Ray joined, parts being written); each a relabel so there always is work.
WORKING = (
    "parts.commit:1",
    "parts.commit:3",
    "parts.committed:1",
    "parts.committed:2",
    "store.tmp_written:1",
    "store.tmp_written:3",
    "lease.renewed:2",
    "lease.renewed:6",
    "runs.write:1",
    "lease.release:1",
    "summary_json.write:1",
)
STARTING = ("manifest.read:1", "lease.acquired:1")  # reached before any Ray work
SWEEP = "store.temporaries:1"  # needs a temporary a kill left behind: scheduled right after one
COMPACT = "compact.rewrite:1,compact.delete:1"  # needs superseded rows: scheduled right after a killed relabel


def crash_schedule(seed: int, length: int) -> list[str]:
    """``length`` kill specs (``SCANLABEL_KILL_AT`` values) in a seeded order: every point once first (when
    ``length`` allows), then seeded picks.  A kill that leaves a temporary is followed by one at its removal, a
    killed relabel by one inside the compaction that follows it."""
    rng = random.Random(seed)
    first = list(WORKING + STARTING)
    rng.shuffle(first)
    trials: list[str] = []
    while len(trials) < length:
        spec = first.pop() if first else rng.choice(WORKING + STARTING)
        trials.append(spec)
        if spec.startswith("store.tmp_written"):
            trials.append(SWEEP)
        elif spec.startswith(("parts.committed", "lease.renewed", "runs.write")):
            trials.append(COMPACT)
    return trials[:length]


@dataclass
class Trial:
    spec: str
    killed: bool
    seconds: float
    rows_before: int
    rows_after: int
    images_after: int


@dataclass
class ScheduleResult:
    trials: list[Trial] = field(default_factory=list)
    final_rows: int = 0
    images: int = 0
    duplicates: int = 0
    rows_lost: int = 0
    orphan_temporaries: list[str] = field(default_factory=list)
    run_summaries: int = 0
    lease_state: str = ""
    seconds: float = 0.0

    @property
    def kills(self) -> int:
        return sum(t.killed for t in self.trials)


def _driver(manifest: str, bundle: str, out: str, address: str, spec: str | None, tmp: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jobs.label", "--manifest", manifest, "--model", bundle, "--out", out]
    cmd += ["--batch-size", "8", "--rows-per-file", "8", "--address", address, "--lease-timeout", "2"]
    cmd += ["--summary-json", os.path.join(tmp, "summary.json")]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": REPO, "SCANLABEL_LOG_DIR": os.path.join(tmp, "logs")}
    env.pop("SCANLABEL_KILL_AT", None)
    if spec is not None:
        cmd.append("--relabel")  # always work to do, so every point of the commit path is on the way
        env["SCANLABEL_KILL_AT"] = spec
    return subprocess.Popen(cmd, env=env, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _ids(out: str) -> list[str]:
    """Every committed row's image_id; reading the dataset fails if any visible part file is not whole."""
    if not os.path.isdir(out):
        return []
    return pads.dataset(out, format="parquet").to_table(columns=["image_id"]).column("image_id").to_pylist()


def _temporaries(out: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), out) for d, _, files in os.walk(out) for f in files if f.startswith(".tmp")
    )


def run_schedule(
    schedule: list[str], manifest: str, bundle: str, out: str, address: str, tmp: str, n: int, log=print
) -> ScheduleResult:
    """Run every trial of ``schedule`` back to back on ``out``, then one clean run; check as described above."""
    from core.labeling.lease import DatasetLease
    from core.labeling.run_history import load_runs

    result, t_all = ScheduleResult(images=n), time.perf_counter()
    for spec in schedule:
        before = set(_ids(out))
        t0 = time.perf_counter()
        proc = _driver(manifest, bundle, out, address, spec, tmp)
        text = proc.communicate(timeout=600)[0]
        killed = proc.returncode == -signal.SIGKILL
        if not killed and proc.returncode != 0:
            raise AssertionError(f"trial {spec}: exit {proc.returncode}\n{text[-3000:]}")
        after = _ids(out)
        lost = before - set(after)
        if lost:
            raise AssertionError(f"trial {spec}: rows of {len(lost)} image(s) lost, e.g. {sorted(lost)[:5]}")
        result.trials.append(Trial(spec, killed, time.perf_counter() - t0, len(before), len(after), len(set(after))))
        log(f"[faults] {spec:<40} {'killed' if killed else 'not reached'}  {time.perf_counter() - t0:5.1f} s")
    final = _driver(manifest, bundle, out, address, None, tmp)
    text = final.communicate(timeout=600)[0]
    if final.returncode != 0:
        raise AssertionError(f"final run: exit {final.returncode}\n{text[-3000:]}")
    ids = _ids(out)
    result.final_rows, result.duplicates = len(ids), len(ids) - len(set(ids))
    result.rows_lost = n - len(set(ids))
    result.orphan_temporaries = _temporaries(out)
    runs_dir = os.path.join(out, "_runs")
    names = sorted(f for f in os.listdir(runs_dir) if f.endswith(".json")) if os.path.isdir(runs_dir) else []
    runs = load_runs(out)
    if len(runs) != len(names) or any(f"{r['run_id']}.json" not in names for r in runs):
        raise AssertionError(f"run history: {len(names)} summaries, {len(runs)} readable")
    for name in names:
        json.loads(open(os.path.join(runs_dir, name)).read())  # every run summary is whole
    result.run_summaries = len(runs)
    result.lease_state = DatasetLease(out).current().state
    result.seconds = time.perf_counter() - t_all
    return result
