"""A decode worker SIGKILLed in the middle of its task: the run finishes (Ray retries) or fails cleanly, and a rerun
finishes with one row per image (docs/faults.md).  The model actor's counterpart is in tests/test_nightly.py.

The victim is found by the process title Ray gives a worker while it runs a task (``ray::MapBatches(_decode)``),
so the kill lands inside a decode task, not on an idle worker, and among the children of this session's own
raylet, so that another Ray on a shared machine is never touched.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq


def _decoding_workers(raylet: psutil.Process) -> list[psutil.Process]:
    """This session's workers busy decoding: children of its own raylet only, never another Ray's on the machine."""
    found = []
    for proc in raylet.children():
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            continue
        if cmd and cmd[0].startswith("ray::") and "MapBatches(_decode)" in cmd[0]:
            found.append(proc)
    return found


def test_a_decode_worker_killed_mid_task_then_rerun(ray_session, small_archive, tiny_bundle, tmp_path):
    from cluster.label import LabelOptions, run_label

    bundle, _ = tiny_bundle
    _, archive_manifest = small_archive
    uris = pq.read_table(archive_manifest).column("uri").to_pylist()
    n = 240
    manifest = str(tmp_path / "manifest.parquet")
    pq.write_table(
        pa.table({"uri": [uris[i % len(uris)] for i in range(n)], "image_id": [f"d{i:04d}" for i in range(n)]}),
        manifest,
    )
    out = str(tmp_path / "labels")
    opts = {"manifest": manifest, "model": bundle, "out": out, "batch_size": 8, "rows_per_file": 16}
    outcome: dict = {}

    def job():
        try:
            outcome["summary"] = run_label(LabelOptions(**opts))
        except Exception as e:  # noqa: BLE001 - failing cleanly is an accepted outcome; the rerun must heal it
            outcome["error"] = e

    # The raylet this test session started (its workers are the raylet's children); a private but stable handle.
    raylet = psutil.Process(ray_session._private.worker._global_node.all_processes["raylet"][0].process.pid)
    thread = threading.Thread(target=job)
    thread.start()
    victim = None
    deadline = time.time() + 300
    while victim is None and thread.is_alive() and time.time() < deadline:
        workers = _decoding_workers(raylet)
        victim = workers[0] if workers else None
        time.sleep(0.02)
    assert victim is not None, "no decode task was seen running"
    os.kill(victim.pid, signal.SIGKILL)
    thread.join(timeout=600)
    assert not thread.is_alive()
    result = f"failed: {outcome['error']!r}" if "error" in outcome else "finished"
    print(f"[faults] decode worker {victim.pid} killed mid-task: the run {result}")
    if "error" in outcome:  # failed cleanly: a Python exception, the lease released
        from core.labeling.lease import DatasetLease

        assert DatasetLease(out).current().state == "released"
    else:
        assert outcome["summary"].done == n  # Ray re-ran the killed task
    run_label(LabelOptions(**opts))
    table = pads.dataset(out, format="parquet").to_table(columns=["image_id", "status"])
    ids = table.column("image_id").to_pylist()
    assert len(ids) == n and len(set(ids)) == n
    assert set(table.column("status").to_pylist()) == {"ok"}
