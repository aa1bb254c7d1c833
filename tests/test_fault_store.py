"""Whole label runs against an object store that throttles, fails and goes down (docs/faults.md).

The store is the suite's real moto S3 server behind a fault-injecting proxy (tests/faultproxy.py); the run is the
real ``scanlabel label`` driver on the session's real Ray, pointed at the proxy by ``AWS_ENDPOINT_URL``.  Images
and the bundle are local, so every request that meets a fault is the driver's: manifest, lease, part files,
compaction listings, the run summary.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from tests.faultproxy import FaultPlan, FaultProxy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def proxy(s3_server):
    with FaultProxy(s3_server) as p:
        yield p


@pytest.fixture
def bucket(s3_server, small_archive, tmp_path):
    """A fresh bucket holding a 40-row manifest of the local sample archive; returns (bucket, rows)."""
    import boto3

    name = f"faults-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3")  # straight to moto: setting up is not under test
    s3.create_bucket(Bucket=name)
    _, manifest = small_archive
    uris = pq.read_table(manifest).column("uri").to_pylist()
    n = 40
    table = pa.table({"uri": [uris[i % len(uris)] for i in range(n)], "image_id": [f"img-{i:03d}" for i in range(n)]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3.put_object(Bucket=name, Key="manifest.parquet", Body=sink.getvalue())
    return name, n


def _label(ray_session, proxy: FaultProxy, name: str, bundle: str, summary: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jobs.label", "--manifest", f"s3://{name}/manifest.parquet", "--model", bundle]
    cmd += ["--out", f"s3://{name}/labels", "--batch-size", "8", "--rows-per-file", "8", "--summary-json", summary]
    cmd += ["--address", ray_session.get_runtime_context().gcs_address, *extra]
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url, "RAY_AUTH_MODE": "token", "PYTHONPATH": REPO}
    return subprocess.Popen(cmd, env=env, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    try:
        text = proc.communicate(timeout=timeout)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, text


def _labels(name: str) -> pa.Table:
    """The dataset read straight from moto: every visible part file must be whole Parquet, or this raises."""
    from core.io import storage

    fs, path = storage.resolve(f"s3://{name}/labels")
    return pads.dataset(path, filesystem=fs, format="parquet").to_table(columns=["image_id", "status"])


def _keys(name: str, prefix: str = "labels/") -> list[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _one_row_per_image(name: str, n: int) -> None:
    table = _labels(name)
    ids = table.column("image_id").to_pylist()
    assert len(ids) == n and len(set(ids)) == n, (len(ids), len(set(ids)), n)
    assert set(table.column("status").to_pylist()) == {"ok"}


def test_a_label_run_through_a_throttling_failing_store_completes(ray_session, proxy, bucket, tiny_bundle, tmp_path):
    name, n = bucket
    bundle, _ = tiny_bundle
    proxy.set_plan(FaultPlan(rate=0.08, seed=26, stall_s=2.0))
    summary_path = tmp_path / "summary.json"
    # A 4 s lease heartbeats every second: lease renewals meet faults too, not only the data path.
    rc, text = _finish(_label(ray_session, proxy, name, bundle, str(summary_path), "--lease-timeout", "4"))
    assert rc == 0, text[-4000:]
    stats = proxy.stats
    assert stats.total() >= 5 and {op for op, _ in stats.injected} >= {"GET", "PUT", "LIST", "HEAD"}, stats
    assert {f for _, f in stats.injected} == {"slowdown", "internal", "reset", "stall"}, stats
    result = json.loads(summary_path.read_text())
    assert result["outcome"] == "ok" and result["summary"]["ok"] == n
    retried = result["summary"]["store_retries"]["lease"]
    assert 0 < retried <= stats.lease_errors, (retried, stats.lease_errors)  # release's retries come after it
    _one_row_per_image(name, n)
    print(
        f"[faults] requests {dict(stats.requests)} injected {stats.total()} {dict(stats.injected)} "
        f"lease retries {retried}"
    )
    runs = [k for k in _keys(name, "labels/_runs/")]
    assert len(runs) == 1 and result["summary"]["run_id"] in runs[0]


def test_a_store_that_stays_down_exits_6_and_writes_nothing(ray_session, proxy, bucket, tiny_bundle, tmp_path):
    name, _ = bucket
    bundle, _ = tiny_bundle
    proxy.set_plan(FaultPlan(down=True))
    summary_path = tmp_path / "summary.json"
    t0 = time.monotonic()
    rc, text = _finish(_label(ray_session, proxy, name, bundle, str(summary_path)))
    assert rc == 6, text[-4000:]
    assert "object store kept failing" in text and "Traceback" not in text, text[-4000:]
    result = json.loads(summary_path.read_text())
    assert (result["exit_code"], result["outcome"]) == (6, "store_unavailable")
    assert _keys(name) == []  # nothing under the dataset at all
    assert time.monotonic() - t0 < 180


def test_a_store_that_goes_down_mid_run_exits_6_and_a_rerun_finishes(ray_session, proxy, bucket, tiny_bundle, tmp_path):
    name, n = bucket
    bundle, _ = tiny_bundle
    proc = _label(ray_session, proxy, name, bundle, str(tmp_path / "first.json"))
    deadline = time.time() + 300
    while not [k for k in _keys(name) if k.endswith(".parquet")] and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before the store could go down"
    proxy.set_plan(FaultPlan(down=True))
    rc, text = _finish(proc)
    assert rc == 6, text[-4000:]
    committed = _labels(name).num_rows  # whatever is visible is whole Parquet
    assert 0 < committed < n
    assert not [k for k in _keys(name) if "/.tmp" in k or k.endswith(".tmp")]

    proxy.set_plan(FaultPlan())  # the store is back; the rerun starts at once
    rc2, text2 = _finish(_label(ray_session, proxy, name, bundle, str(tmp_path / "second.json")))
    assert rc2 == 0, text2[-4000:]
    assert "at once" in text2  # the failed run's lease: its holder ran here and is gone
    second = json.loads((tmp_path / "second.json").read_text())["summary"]
    assert second["todo"] == n - committed
    _one_row_per_image(name, n)


@pytest.mark.slow
def test_a_training_run_through_a_throttling_failing_store_completes(proxy, bucket, small_archive, tmp_path):
    """Manifest, images and the bundle in S3 behind 8 % faults: one epoch of a small model, in its own process."""
    import boto3

    from core.model.bundle import load_bundle

    name, _ = bucket
    s3 = boto3.client("s3")  # straight to moto: setting up is not under test
    _, manifest = small_archive
    table = pq.read_table(manifest).select(["uri", "image_id", "label"])
    uris = []
    for uri in table.column("uri").to_pylist():
        key = "train/" + os.path.basename(uri)
        s3.upload_file(uri, name, key)
        uris.append(f"s3://{name}/{key}")
    sink = io.BytesIO()
    pq.write_table(table.set_column(0, "uri", pa.array(uris)), sink)
    s3.put_object(Bucket=name, Key="train.parquet", Body=sink.getvalue())
    proxy.set_plan(FaultPlan(rate=0.08, seed=27, stall_s=2.0))
    code = (
        "import tensorflow as tf\n"
        "from core.training import TrainConfig, run_training\n"
        f"cfg = TrainConfig(manifest='s3://{name}/train.parquet', out='s3://{name}/model', "
        "backbone='mobilenet_v3_small', weights=None, image_size=64, epochs=1, head_epochs=0, batch_size=16)\n"
        "run_training(cfg, tf.distribute.get_strategy(), log=print)\n"
    )
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert proxy.stats.total() >= 5, proxy.stats
    print(f"[faults] training: requests {dict(proxy.stats.requests)} injected {proxy.stats.total()}")
    bundle = load_bundle(f"s3://{name}/model")  # whole, and loadable straight from the store
    assert bundle.model_id
