"""Nightly semantics on a real local Ray: only new work, and exactly one row per image after any kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from cluster.label import LabelOptions, run_label


def _manifest(small_archive, tmp_path, n: int, name: str) -> str:
    """n rows over the sample archive's files (repeated with distinct image_ids for a longer run)."""
    _, manifest = small_archive
    base = pq.read_table(manifest)
    uris = base.column("uri").to_pylist()
    table = pa.table({"uri": [uris[i % len(uris)] for i in range(n)], "image_id": [f"img-{i:05d}" for i in range(n)]})
    path = tmp_path / name
    pq.write_table(table, path)
    return str(path)


def _committed(out: str) -> int:
    if not os.path.isdir(out):
        return 0
    files = [f for f in os.listdir(out) if f.endswith(".parquet") and not f.startswith(".")]
    return sum(pq.ParquetFile(os.path.join(out, f)).metadata.num_rows for f in files)


def _assert_exactly_one_row_per_image(out: str, n: int) -> None:
    table = pads.dataset(out).to_table()  # every visible file is a complete Parquet file, or this raises
    ids = table.column("image_id").to_pylist()
    assert len(ids) == n and len(set(ids)) == n, (len(ids), len(set(ids)), n)
    assert set(table.column("status").to_pylist()) == {"ok"}


def test_incremental_nights(ray_session, small_archive, tiny_bundle, tmp_path):
    bundle, _ = tiny_bundle
    out = str(tmp_path / "labels")
    night1 = _manifest(small_archive, tmp_path, 40, "night1.parquet")
    s1 = run_label(LabelOptions(manifest=night1, model=bundle, out=out, batch_size=8))
    assert s1.todo == 40 and s1.ok == 40
    night2 = _manifest(small_archive, tmp_path, 70, "night2.parquet")  # 30 new rows since last night
    s2 = run_label(LabelOptions(manifest=night2, model=bundle, out=out, batch_size=8))
    assert s2.todo == 30 and s2.already_ok == 40 and s2.ok == 30
    lines: list[str] = []
    t = time.perf_counter()
    s3 = run_label(LabelOptions(manifest=night2, model=bundle, out=out, batch_size=8), log=lines.append)
    assert s3.todo == 0 and "0 to do" in lines[-1]
    assert time.perf_counter() - t < 10
    _assert_exactly_one_row_per_image(out, 70)
    s4 = run_label(LabelOptions(manifest=night2, model=bundle, out=out, batch_size=8, relabel=True))
    assert s4.todo == 70
    _assert_exactly_one_row_per_image(out, 70)  # relabelled rows replaced the old ones


def test_driver_sigkill_then_rerun(ray_session, small_archive, tiny_bundle, tmp_path):
    bundle, _ = tiny_bundle
    n = 400
    manifest = _manifest(small_archive, tmp_path, n, "manifest.parquet")
    out = str(tmp_path / "labels")
    address = ray_session.get_runtime_context().gcs_address
    cmd = [
        sys.executable,
        "-m",
        "jobs.label",
        "--manifest",
        manifest,
        "--model",
        bundle,
        "--out",
        out,
        "--batch-size",
        "8",
        "--rows-per-file",
        "16",
        "--address",
        address,
        "--lease-timeout",  # it dies holding the labels dataset's lease: let the rerun take it over soon
        "3",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while _committed(out) == 0 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the job finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _committed(out)
    assert 0 < before < n, before
    summary = run_label(LabelOptions(manifest=manifest, model=bundle, out=out, batch_size=8, wait_for_lease_s=60))
    assert summary.todo == n - before
    _assert_exactly_one_row_per_image(out, n)
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


def test_model_actor_killed_then_rerun(ray_session, small_archive, tiny_bundle, tmp_path):
    from ray.util.state import list_actors

    bundle, _ = tiny_bundle
    n = 400
    manifest = _manifest(small_archive, tmp_path, n, "manifest.parquet")
    out = str(tmp_path / "labels")
    outcome: dict = {}

    def job():
        try:
            outcome["summary"] = run_label(
                LabelOptions(manifest=manifest, model=bundle, out=out, batch_size=8, rows_per_file=16)
            )
        except Exception as e:  # noqa: BLE001 - a failed run is an acceptable outcome; the rerun must heal it
            outcome["error"] = e

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.time() + 240
    while _committed(out) == 0 and thread.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    assert thread.is_alive(), "the job finished before the actor could be killed"
    # This session's Ray by its address: another Ray on the machine must not make the lookup ambiguous.
    address = ray_session.get_runtime_context().gcs_address
    alive = list_actors(address=address, filters=[("state", "=", "ALIVE")], detail=True)
    actors = [a for a in alive if "ModelActor" in a.class_name]
    assert actors, "no live model actor found"
    os.kill(actors[0].pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert _committed(out) <= n
    run_label(LabelOptions(manifest=manifest, model=bundle, out=out, batch_size=8))
    _assert_exactly_one_row_per_image(out, n)


@pytest.mark.parametrize("relabel", [False])
def test_s3_manifest_model_and_output(ray_session, s3_server, small_archive, tiny_bundle, tmp_path, relabel):
    import boto3

    from core.io import storage
    from core.model.bundle import load_bundle

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="archive")
    s3.create_bucket(Bucket="models")
    root, manifest = small_archive
    table = pq.read_table(manifest)
    uris = []
    for uri in table.column("uri").to_pylist()[:24]:
        key = "images/" + os.path.basename(uri)
        s3.upload_file(uri, "archive", key)
        uris.append(f"s3://archive/{key}")
    uris.append("s3://archive/images/missing.png")
    man = pa.table({"uri": uris, "image_id": [f"s3-{i}" for i in range(len(uris))]})
    storage.write_bytes_atomic("s3://archive/manifest.parquet", _parquet_bytes(man))
    bundle, model_id = tiny_bundle
    for name in os.listdir(bundle):
        s3.upload_file(os.path.join(bundle, name), "models", f"bodypart/{name}")
    assert load_bundle("s3://models/bodypart").model_id == model_id

    out = "s3://archive/labels"
    summary = run_label(
        LabelOptions(
            manifest="s3://archive/manifest.parquet",
            model="s3://models/bodypart",
            out=out,
            batch_size=8,
            relabel=relabel,
        )
    )
    assert summary.ok == 24 and summary.failed == 1
    fs, path = storage.resolve(out)
    result = pads.dataset(path, filesystem=fs, format="parquet").to_table()
    rows = {r["image_id"]: r for r in result.to_pylist()}
    assert len(rows) == 25 and rows["s3-24"]["error"] == "not_found"
    again = run_label(LabelOptions(manifest="s3://archive/manifest.parquet", model="s3://models/bodypart", out=out))
    assert again.todo == 0


def _parquet_bytes(table: pa.Table) -> bytes:
    import io

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
