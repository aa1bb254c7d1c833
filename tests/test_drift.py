"""Drift statistics on run summaries, progress events, and the console of a command run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from core.progress import ProgressEvent, ProgressTracker, format_duration
from core.trust.drift import MIN_ROWS, assess, js_distance

CLASSES = ("head", "chest", "abdomen", "pelvis", "arm", "leg", "hand")


def _run(run_id, t, mix, failed=0, abstained=0, model_id="m1"):
    ok = sum(mix.values())
    return {
        "run_id": run_id,
        "finished_at": t,
        "model_id": model_id,
        "done": ok + failed,
        "ok": ok,
        "failed": failed,
        "abstained": abstained,
        "per_label": dict(mix),
    }


def _sample(rng, n, probs):
    counts = rng.multinomial(n, probs)
    return {c: int(k) for c, k in zip(CLASSES, counts, strict=True) if k}


def test_same_mix_is_not_drift_and_a_shift_is():
    rng = np.random.default_rng(0)
    uniform = np.full(7, 1 / 7)
    history = [_run(f"r{i}", i, _sample(rng, 400, uniform)) for i in range(5)]
    same = assess(_run("now", 10, _sample(rng, 400, uniform)), history)
    assert not same.flagged and same.checks["mix"].status == "ok"
    assert len(same.reference_runs) == 5
    shifted_probs = np.array([0.05, 0.05, 0.05, 0.05, 0.1, 0.35, 0.35])
    shifted = assess(_run("now", 10, _sample(rng, 400, shifted_probs)), history)
    assert shifted.flagged and shifted.reasons == ["mix"]
    assert shifted.checks["mix"].value > 0.1 and shifted.checks["mix"].p_value < 1e-3


def test_small_runs_never_flag_and_random_small_runs_rarely_look_far():
    rng = np.random.default_rng(1)
    uniform = np.full(7, 1 / 7)
    history = [_run("r0", 0, _sample(rng, 300, uniform))]
    tiny = assess(_run("now", 1, {"hand": MIN_ROWS - 1}), history)  # all one class, but too few rows
    assert not tiny.flagged and tiny.checks["mix"].status == "insufficient"
    # 200 same-distribution runs of 40 rows: their JS distances are often above 0.1, the test keeps them quiet.
    flags = sum(assess(_run(f"n{i}", 1, _sample(rng, 40, uniform)), history).flagged for i in range(200))
    assert flags <= 2, flags


def test_error_and_abstention_rates_only_flag_real_increases():
    mix = dict.fromkeys(CLASSES, 20)
    history = [_run("r0", 0, mix, failed=2), _run("r1", 1, mix, failed=1)]
    worse = assess(_run("now", 2, mix, failed=20), history)
    assert worse.reasons == ["error_rate"] and worse.checks["error_rate"].p_value < 1e-3
    better = assess(_run("now", 2, mix, failed=0), history)
    assert not better.flagged
    abst = assess(_run("now", 2, mix, abstained=30), [_run("r0", 0, mix, abstained=1)])
    assert abst.reasons == ["abstention_rate"]
    # the mix is taken on accepted labels: abstained rows (labelled "other") are not a body part
    assert "other" not in assess(_run("x", 3, {**mix, "other": 5}, abstained=5), history).to_dict()["reasons"]


def test_reference_is_the_last_runs_of_the_same_model():
    mix = dict.fromkeys(CLASSES, 10)
    history = [_run(f"r{i}", i, mix) for i in range(10)] + [_run("other-model", 5, mix, model_id="m2")]
    result = assess(_run("now", 20, mix), history, window=3)
    assert result.reference_runs == ["r7", "r8", "r9"]
    first = assess(_run("now", 20, mix, model_id="m3"), history)
    assert first.reference_runs == [] and not first.flagged and "becomes the reference" in first.describe()


def test_js_distance_bounds():
    assert js_distance({"a": 5}, {"a": 9}) == 0.0
    assert abs(js_distance({"a": 5}, {"b": 5}) - 1.0) < 1e-9


def test_progress_tracker_rate_eta_and_text():
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("scanlabel.test_progress")
    logger.setLevel(logging.INFO)
    logger.addHandler(Keep())
    tracker = ProgressTracker(logger, "label", 100, "rows", every_s=0.0, rate_label="images/s")
    tracker.update(10)
    import time

    time.sleep(0.05)
    event = tracker.update(20, failed=1)
    assert event is not None and event.rate > 0 and event.eta_s > 0
    assert "20/100 rows (20%)" in event.text() and "images/s" in event.text() and "failed 1" in event.text()
    final = tracker.update(100)
    assert final.final and "ETA" not in final.text()
    again = ProgressEvent.from_dict(records[-1].progress)
    assert again.done == 100 and again.final
    assert format_duration(3725) == "1h02m" and format_duration(65) == "1m05s"


def test_a_refused_command_prints_its_error_and_log_file_only(tmp_path):
    """A real process: first line names the log file, the error reaches stderr, exit code 2, nothing else."""
    env = {**os.environ, "SCANLABEL_LOG_DIR": str(tmp_path / "logs")}
    r = subprocess.run(
        [sys.executable, "-m", "jobs.runs", "--labels", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scanlabel runs: log file ") and str(tmp_path / "logs") in lines[0]
    assert r.stderr.strip().splitlines() == [f"scanlabel: error: no labels dataset at {tmp_path / 'missing'}"]
    logs = os.listdir(tmp_path / "logs")
    assert len(logs) == 1 and "no labels dataset" in (tmp_path / "logs" / logs[0]).read_text()


def test_help_lists_the_exit_codes():
    cmd = [sys.executable, "-m", "jobs.cli", "label", "--help"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    for code in ("0  ok", "2  usage error", "3  more rows failed", "4  drift", "5  the labels dataset is leased"):
        assert code in r.stdout, code
    assert "--fail-on-drift" in r.stdout and "--summary-json" in r.stdout and "--verbose" in r.stdout
