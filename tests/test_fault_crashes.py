"""The labeling driver SIGKILLed at chosen points of its commit path, each trial rerun at once (docs/faults.md).

Real ``jobs.label`` processes on the session's real Ray, killed by the kernel at a named point
(``core/killpoints.py``); the schedule and the checks live in ``tests/crash_schedule.py`` so the benchmark and the
tests run the same thing.  The default suite runs a short fixed schedule that covers each phase once; the seeded
long schedule (24 trials) runs under ``pytest -m slow`` and as ``python -m jobs.bench faults``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.crash_schedule import crash_schedule, run_schedule

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _manifest(small_archive, tmp_path, n: int) -> str:
    _, manifest = small_archive
    uris = pq.read_table(manifest).column("uri").to_pylist()
    path = tmp_path / "manifest.parquet"
    pq.write_table(
        pa.table({"uri": [uris[i % len(uris)] for i in range(n)], "image_id": [f"k{i:03d}" for i in range(n)]}), path
    )
    return str(path)


def _run(schedule, ray_session, small_archive, tiny_bundle, tmp_path, n: int = 32):
    bundle, _ = tiny_bundle
    address = ray_session.get_runtime_context().gcs_address
    out = str(tmp_path / "labels")
    result = run_schedule(schedule, _manifest(small_archive, tmp_path, n), bundle, out, address, str(tmp_path), n)
    assert result.rows_lost == 0 and result.duplicates == 0 and result.final_rows == n, result
    assert result.orphan_temporaries == [], result.orphan_temporaries
    assert result.lease_state == "released" and result.run_summaries >= 1
    return result


def test_kills_across_the_commit_path_lose_nothing(ray_session, small_archive, tiny_bundle, tmp_path):
    """One kill per phase: mid-write of a part (a temporary left behind), at that temporary's removal, inside the
    compaction of the superseded rows, and after the run summary with the lease still held."""
    schedule = ["store.tmp_written:2", "store.temporaries:1", "compact.rewrite:1,compact.delete:1", "lease.release:1"]
    result = _run(schedule, ray_session, small_archive, tiny_bundle, tmp_path)
    assert [t.killed for t in result.trials] == [True, True, True, True], result.trials


def test_the_schedule_is_seeded_and_orders_each_kill_after_what_it_needs():
    a, b = crash_schedule(26, 24), crash_schedule(26, 24)
    assert a == b and len(a) == 24 and crash_schedule(27, 24) != a
    for i, spec in enumerate(a[1:], 1):
        if spec == "store.temporaries:1":
            assert a[i - 1].startswith("store.tmp_written")


def test_an_unset_kill_point_costs_nothing_and_a_set_one_really_kills():
    code = (
        "from core import killpoints; killpoints.reached('parts.commit'); killpoints.reached('runs.write'); print('ok')"
    )
    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop("SCANLABEL_KILL_AT", None)
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout == "ok\n"
    env["SCANLABEL_KILL_AT"] = "runs.write:1"
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert killed.returncode == -9 and killed.stdout == ""


@pytest.mark.slow
def test_the_long_seeded_crash_schedule_loses_nothing(ray_session, small_archive, tiny_bundle, tmp_path):
    result = _run(crash_schedule(26, 24), ray_session, small_archive, tiny_bundle, tmp_path)
    assert result.kills >= 20, [(t.spec, t.killed) for t in result.trials]
