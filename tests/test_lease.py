"""The labels-dataset lease on real stores (local folder, moto's S3 server) and on real label runs.

Crashes and stalls are real: a holder is a separate process that is SIGKILLed (crash) or SIGSTOPped (a run
that stops heartbeating but later wakes up: a zombie), never a flag flipped inside the test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from core.labeling import lease

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=["local", "s3"])
def dataset(request, tmp_path):
    """A fresh labels-dataset location on each store."""
    if request.param == "local":
        return str(tmp_path / "labels")
    request.getfixturevalue("s3_server")
    import boto3

    bucket = f"lease-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/labels"


def _holder_process(out: str, timeout_s: float, then: str, host: str | None = None) -> subprocess.Popen:
    """Another process takes the lease, prints its run id, then runs ``then``.

    ``host``: the process names itself so, as a holder on another machine would (its pid means nothing here).
    """
    pretend = f"import socket; socket.gethostname = lambda: {host!r}" if host else ""
    code = textwrap.dedent(
        f"""
        import os, sys, time
        {pretend}
        from core.labeling import lease
        held = lease.take({out!r}, timeout_s={timeout_s})
        print(held.run_id, flush=True)
        {then}
        """
    )
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)


def test_exclusive_take_names_the_holder_and_release_frees_it(dataset):
    first = lease.take(dataset, run_id="run-first", timeout_s=30)
    with pytest.raises(lease.LeaseHeld) as refused:
        lease.take(dataset, run_id="run-second", timeout_s=30)
    message = str(refused.value)
    assert "run-first" in message and os.uname().nodename in message and "last heartbeat" in message
    assert refused.value.holder.run_id == "run-first" and refused.value.holder.pid == os.getpid()
    first.release()
    assert lease.DatasetLease(dataset).current().state == "released"
    lines: list[str] = []
    second = lease.take(dataset, run_id="run-second", timeout_s=30, log=lines.append)
    assert second.took_over is None and not [x for x in lines if "took over" in x]
    assert second.current().run_id == "run-second"
    second.release()


def test_renew_moves_the_heartbeat_and_the_heartbeat_thread_keeps_a_short_lease_alive(dataset):
    with lease.take(dataset, run_id="beating", timeout_s=1.2) as held:
        before = held.current()
        held.renew()
        after = held.current()
        assert after.generation == before.generation + 1 and after.heartbeat_at >= before.heartbeat_at
        time.sleep(3.0)  # 2.5 timeouts: without the heartbeat thread the lease would be stale by now
        now = held.current()
        assert now.run_id == "beating" and now.generation >= after.generation + 3
        assert not now.free(time.time())
        with pytest.raises(lease.LeaseHeld):
            lease.take(dataset, run_id="intruder", timeout_s=1.2)
        held.check()  # still ours
    assert lease.DatasetLease(dataset).current().state == "released"


def test_context_manager_releases_on_failure(dataset):
    with pytest.raises(RuntimeError, match="boom"):
        with lease.take(dataset, run_id="failing", timeout_s=30):
            raise RuntimeError("boom")
    nxt = lease.take(dataset, run_id="next", timeout_s=30)
    assert nxt.took_over is None
    nxt.release()


def test_crashed_holder_on_another_host_is_taken_over_after_its_timeout_with_a_log_line(dataset):
    proc = _holder_process(dataset, 1.5, "os.kill(os.getpid(), 9)", host="night-node-2")
    dead_id = proc.stdout.readline().strip()
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and dead_id
    lines: list[str] = []
    t0 = time.monotonic()
    nxt = lease.take(dataset, run_id="rescuer", timeout_s=30, wait_s=30, log=lines.append)
    try:
        assert nxt.took_over is not None and nxt.took_over.run_id == dead_id
        takeover = [x for x in lines if "took over the stale lease" in x]
        assert takeover and dead_id in takeover[0] and "last heartbeat" in takeover[0]
        assert time.monotonic() - t0 < 25
        assert nxt.current().run_id == "rescuer"
    finally:
        nxt.release()


def test_a_dead_holder_on_another_host_is_refused_before_its_timeout(dataset):
    proc = _holder_process(dataset, 20, "os.kill(os.getpid(), 9)", host="night-node-2")
    dead_id = proc.stdout.readline().strip()
    proc.wait(timeout=60)
    with pytest.raises(lease.LeaseHeld, match=dead_id):  # its heartbeat is seconds old: not stale yet
        lease.take(dataset, run_id="impatient", timeout_s=30)


def test_a_holder_killed_on_this_host_is_taken_over_at_once(dataset):
    proc = _holder_process(dataset, 600, "os.kill(os.getpid(), 9)")
    dead_id = proc.stdout.readline().strip()
    proc.wait(timeout=60)
    lines: list[str] = []
    t0 = time.monotonic()
    nxt = lease.take(dataset, run_id="rescuer", timeout_s=30, log=lines.append)  # no waiting allowed
    try:
        assert time.monotonic() - t0 < 10
        assert nxt.took_over is not None and nxt.took_over.run_id == dead_id and nxt.took_over.pid == proc.pid
        takeover = [x for x in lines if "at once" in x]
        assert takeover and dead_id in takeover[0] and f"process {proc.pid} on this host" in takeover[0], lines
    finally:
        nxt.release()


def test_a_live_holder_on_this_host_is_not_taken_over(dataset):
    proc = _holder_process(dataset, 600, "time.sleep(120)")
    try:
        live_id = proc.stdout.readline().strip()
        with pytest.raises(lease.LeaseHeld, match=live_id):
            lease.take(dataset, run_id="impatient", timeout_s=30)
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_pid_reused_by_a_younger_process_does_not_keep_a_dead_holders_lease(tmp_path):
    """The holder died and the kernel gave its pid to a new process: a process started after the lease was taken
    cannot be its holder.  Real records of a real holder, pointed at real processes older and younger than it."""
    out = str(tmp_path / "labels")
    proc = _holder_process(out, 600, "os.kill(os.getpid(), 9)")
    proc.stdout.readline()
    proc.wait(timeout=60)
    record = lease.DatasetLease(out).current()
    assert lease.holder_gone(record) is not None  # its own pid is gone
    younger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        reused = dataclasses.replace(record, pid=younger.pid, started_at=time.time() - 30)
        assert "reused pid" in lease.holder_gone(reused)
        older = dataclasses.replace(record, pid=os.getpid(), started_at=time.time())  # this test's own process
        assert lease.holder_gone(older) is None
        elsewhere = dataclasses.replace(reused, pid_ns="pid:[1]")  # another container: its pids are not ours
        assert lease.holder_gone(elsewhere) is None
        twin = dataclasses.replace(reused, boot_id="another-boot")  # another machine of the same name, or a reboot
        assert lease.holder_gone(twin) is None
        unknown = dataclasses.replace(reused, boot_id="")  # written before records named their boot
        assert lease.holder_gone(unknown) is None
    finally:
        younger.kill()
        younger.wait(timeout=30)


def test_a_holder_that_stalled_past_its_timeout_learns_it_lost_the_lease(dataset):
    proc = _holder_process(
        dataset,
        1.0,
        textwrap.dedent(
            """
            deadline = time.time() + 60
            while time.time() < deadline:
                time.sleep(0.05)
                try:
                    held.check()
                except lease.LeaseLost as e:
                    print("LOST", e, flush=True)
                    sys.exit(7)
            sys.exit(1)
            """
        ).replace("\n", "\n        "),
    )
    try:
        stalled_id = proc.stdout.readline().strip()
        os.kill(proc.pid, signal.SIGSTOP)  # alive but silent, like a run frozen by a long GC or a paused VM
        lines: list[str] = []
        taker = lease.take(dataset, run_id="taker", timeout_s=30, wait_s=30, log=lines.append)
        assert taker.took_over.run_id == stalled_id
        os.kill(proc.pid, signal.SIGCONT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 7 and "LOST" in out, out
        assert taker.current().run_id == "taker"  # the zombie did not overwrite the new holder
        taker.check()
        taker.release()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()


def test_contenders_racing_for_a_free_or_stale_lease_exactly_one_wins(dataset):
    for round_ in range(6):
        out = f"{dataset}-{round_}"
        if round_ % 2:  # odd rounds race for a stale lease left by a dead holder
            proc = _holder_process(out, 0.5, "os.kill(os.getpid(), 9)")
            proc.stdout.readline()
            proc.wait(timeout=60)
            time.sleep(0.8)
        winners: list[lease.DatasetLease] = []
        refused: list[str] = []
        errors: list[BaseException] = []
        gate = threading.Barrier(5)

        def contend(i: int, out=out, winners=winners, refused=refused, errors=errors, gate=gate) -> None:
            contender = lease.DatasetLease(out, run_id=f"c{i}", timeout_s=30, log=lambda _: None)
            gate.wait()
            try:
                winners.append(contender.acquire())
            except lease.LeaseHeld as e:
                refused.append(e.holder.run_id)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=contend, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert len(winners) == 1, (round_, [w.run_id for w in winners])
        assert set(refused) == {winners[0].run_id} and len(refused) == 4
        assert winners[0].current().run_id == winners[0].run_id
        winners[0].release()


def test_gs_datasets_run_without_a_lease():
    lines: list[str] = []
    held = lease.take("gs://some-bucket/labels", log=lines.append)
    assert not held.supported and "no lease" in lines[0]
    held.check()
    held.release()


def test_lease_objects_are_ignored_by_dataset_readers(tmp_path):
    from core.labeling import store as labels_store
    out = str(tmp_path / "labels")
    with lease.take(out, timeout_s=30):
        w = labels_store.PartWriter(out, schema=pa.schema([("image_id", pa.string()), ("x", pa.int64())]))
        w.add(pa.table({"image_id": ["a"], "x": [1]}))
        w.flush()
        assert os.listdir(os.path.join(out, lease.LEASE_DIR))
        assert pads.dataset(out, format="parquet").to_table().num_rows == 1
        assert pq.read_table(out).num_rows == 1


# --- real label runs ----------------------------------------------------------------------------------------


def _manifest(small_archive, tmp_path, n: int) -> str:
    _, manifest = small_archive
    uris = pq.read_table(manifest).column("uri").to_pylist()
    path = tmp_path / "manifest.parquet"
    pq.write_table(
        pa.table({"uri": [uris[i % len(uris)] for i in range(n)], "image_id": [f"i{i:04d}" for i in range(n)]}), path
    )
    return str(path)


def _label(ray_session, manifest: str, bundle: str, out: str, *extra: str, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jobs.label", "--manifest", manifest, "--model", bundle, "--out", out]
    cmd += ["--batch-size", "8", "--rows-per-file", "8", "--address", ray_session.get_runtime_context().gcs_address]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": REPO}
    return subprocess.Popen([*cmd, *extra], env=env, cwd=REPO, text=True, **popen)


def _rows_by_run(out: str) -> dict[str, int]:
    """Rows in the committed part files, per writing run (part-<run id>-<seq>.parquet)."""
    counts: dict[str, int] = {}
    for name in os.listdir(out):
        if name.startswith("part-") and name.endswith(".parquet"):
            run = name.split("-")[1]
            counts[run] = counts.get(run, 0) + pq.ParquetFile(os.path.join(out, name)).metadata.num_rows
    return counts


def _wait_for_first_part(proc: subprocess.Popen, out: str, timeout_s: float = 300) -> None:
    """Until the run has committed its first part file (or ended, or the time is up)."""
    deadline = time.time() + timeout_s
    while not (os.path.isdir(out) and _rows_by_run(out)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)


def _one_row_per_image(out: str, n: int) -> None:
    table = pads.dataset(out, format="parquet").to_table(columns=["image_id", "model_id"])
    pairs = list(zip(table.column("image_id").to_pylist(), table.column("model_id").to_pylist(), strict=True))
    assert len(pairs) == n and len(set(pairs)) == n, (len(pairs), len(set(pairs)), n)


def test_two_runs_started_together_one_labels_the_other_exits_5(ray_session, small_archive, tiny_bundle, tmp_path):
    bundle, _ = tiny_bundle
    n = 32
    manifest = _manifest(small_archive, tmp_path, n)
    out = str(tmp_path / "labels")
    runs = [
        _label(ray_session, manifest, bundle, out, stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        _label(ray_session, manifest, bundle, out, "--relabel", stdout=subprocess.PIPE, stderr=subprocess.PIPE),
    ]
    results = [(p.wait(timeout=600), *p.communicate()) for p in runs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, lease.EXIT_CODE], [(rc, err[-2000:]) for rc, _, err in results]
    holder = lease.DatasetLease(out).current()
    assert holder.state == "released"  # the winner released it at its end
    refused = next(err for rc, _, err in results if rc == lease.EXIT_CODE)
    assert f"run {holder.run_id} on host {holder.host}" in refused and "last heartbeat" in refused, refused
    assert "--wait-for-lease" in refused
    assert _rows_by_run(out) == {holder.run_id: n}  # total model work = one run's
    _one_row_per_image(out, n)


def test_a_waiting_run_plans_against_what_the_first_committed(ray_session, small_archive, tiny_bundle, tmp_path):
    bundle, _ = tiny_bundle
    n = 32
    manifest = _manifest(small_archive, tmp_path, n)
    out = str(tmp_path / "labels")
    runs = [
        _label(
            ray_session,
            manifest,
            bundle,
            out,
            "--wait-for-lease",
            "300",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), p.communicate()[0]) for p in runs]
    assert [rc for rc, _ in results] == [0, 0], [text[-3000:] for _, text in results]
    waited = [text for _, text in results if "waiting up to 300 s for the lease" in text]
    assert len(waited) == 1, [text[-3000:] for _, text in results]
    counts = _rows_by_run(out)
    assert len(counts) == 1 and sum(counts.values()) == n, counts  # the waiter found nothing left to do
    _one_row_per_image(out, n)


def test_a_sigkilled_run_is_taken_over_at_once_by_an_immediate_rerun(
    ray_session, small_archive, tiny_bundle, tmp_path
):
    """`kill -9` of a labeling run, then the operator reruns at once: no two-minute wait, no --wait-for-lease."""
    from cluster.label import LabelOptions, run_label

    bundle, _ = tiny_bundle
    n = 64
    manifest = _manifest(small_archive, tmp_path, n)
    out = str(tmp_path / "labels")
    proc = _label(ray_session, manifest, bundle, out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_first_part(proc, out)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    dead = lease.DatasetLease(out).current()
    assert dead.state == "held" and dead.pid == proc.pid and dead.timeout_s == lease.DEFAULT_TIMEOUT_S
    before = sum(_rows_by_run(out).values())
    assert 0 < before < n
    lines: list[str] = []
    summary = run_label(LabelOptions(manifest=manifest, model=bundle, out=out, batch_size=8), log=lines.append)
    takeover = [x for x in lines if "took over the lease" in x and "at once" in x]
    assert takeover and f"run {dead.run_id} on host {dead.host}" in takeover[0], lines
    assert f"process {proc.pid} on this host is gone" in takeover[0]
    assert summary.todo == n - before
    _one_row_per_image(out, n)
    assert lease.DatasetLease(out).current().state == "released"


def test_a_sigtermed_run_releases_its_lease_and_keeps_what_it_committed(
    ray_session, small_archive, tiny_bundle, tmp_path
):
    """`ray job stop`, a scheduler or `kill` end a run with SIGTERM: the next run must not find it leased."""
    bundle, _ = tiny_bundle
    n = 64
    manifest = _manifest(small_archive, tmp_path, n)
    out = str(tmp_path / "labels")
    summary_json = tmp_path / "summary.json"
    proc = _label(
        ray_session,
        manifest,
        bundle,
        out,
        "--summary-json",
        str(summary_json),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_first_part(proc, out)
        assert proc.poll() is None, "the run finished before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        text = proc.communicate()[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 143, (rc, text[-3000:])
    assert "terminated (SIGTERM)" in text, text[-3000:]
    result = json.loads(summary_json.read_text())
    assert (result["exit_code"], result["outcome"]) == (143, "terminated")
    stopped = lease.DatasetLease(out).current()
    assert stopped.state == "released" and stopped.pid == proc.pid, stopped
    before = sum(_rows_by_run(out).values())
    assert 0 < before < n
    rerun = _label(ray_session, manifest, bundle, out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rc2, text2 = rerun.wait(timeout=600), rerun.communicate()[0]
    assert rc2 == 0, text2[-3000:]
    assert "took over" not in text2  # nothing was stale: the stopped run had released it
    _one_row_per_image(out, n)


def test_sigterm_before_ray_starts_still_releases_the_lease(tmp_path):
    """The lease is taken before compaction and planning, which run before Ray is joined (and before ray.init's
    own SIGTERM handler exists): a SIGTERM there must unwind and release it too, with the documented exit 143."""
    out = tmp_path / "labels"
    script = textwrap.dedent(
        f"""
        import sys, time
        from jobs.common import invoke
        from core.labeling.lease import DatasetLease

        def run(args):
            with DatasetLease({str(out)!r}, timeout_s=600).acquire():
                print("held", flush=True)
                time.sleep(60)  # compaction and planning of a large dataset, say
            return 0

        sys.exit(invoke(run, None, "label"))
        """
    )
    env = {**os.environ, "PYTHONPATH": REPO, "SCANLABEL_LOG_DIR": str(tmp_path / "logs")}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=env, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        lines = iter(proc.stdout.readline, "")  # the console's first line names its log file
        assert any(line.strip() == "held" for line in lines), proc.stderr.read()[-2000:]
        assert lease.DatasetLease(str(out)).current().state == "held"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert rc == 143, (rc, err[-2000:])
    assert "terminated (SIGTERM)" in err, err[-2000:]
    assert lease.DatasetLease(str(out)).current().state == "released"  # a rerun takes it at once
