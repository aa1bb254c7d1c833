"""``python -m jobs.bench dicomweb``: labeling N instances from a local Orthanc vs the same files from disk.

One run, one machine, the same N JPEG 2000 CR files (:func:`core.synthetic.throughput.write_dicoms`): stored in a
fresh Orthanc (tests/orthanc.py) with STOW-RS, listed with QIDO-RS and with Orthanc's change log, fetched
with WADO-RS at 1, 4 and 8 requests in flight against reads from disk, decoded by the labeling job's own
``decode_batch`` from each source, and labeled end to end by ``run_label`` from each source.  What limits the
server path shows in the split: client CPU per instance, Orthanc's CPU per instance (its process's CPU time),
and the wall time of a fetch against its decode.  The machine is shared: the 1-minute load is printed before and
after, and only ratios within the run are meant to be compared.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.io import dicomweb, schema


def _load() -> float:
    return os.getloadavg()[0]


def _cpu_s(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _fetch_rate(uris: list[str], read, window: int, server_pid: int | None) -> tuple[float, float, float]:
    """(instances/s, client CPU ms per instance, server CPU ms per instance) for ``read`` over ``uris``."""
    server0 = _cpu_s(server_pid) if server_pid else 0.0
    cpu0, t0 = time.process_time(), time.perf_counter()
    total = sum(len(b) for b in dicomweb.in_order(read, uris, window))
    wall = time.perf_counter() - t0
    client = (time.process_time() - cpu0) / len(uris) * 1000
    server = ((_cpu_s(server_pid) - server0) / len(uris) * 1000) if server_pid else 0.0
    assert total > 0
    return len(uris) / wall, client, server


def _decode_s(uris: list[str], cfg, batch_size: int, http: dicomweb.HttpOptions) -> float:
    from core.labeling.batches import decode_batch

    t0 = time.perf_counter()
    for i in range(0, len(uris), batch_size):
        chunk = uris[i : i + batch_size]
        out = decode_batch({schema.URI: chunk, schema.IMAGE_ID: chunk}, cfg, http=http)
        assert out["_ok"].all(), out["error"]
    return (time.perf_counter() - t0) / len(uris)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(out: str, paths: list[str]):
    """A fresh Orthanc holding ``paths`` (STOW-RS), with credentials in this process's environment."""
    import secrets

    from tests.orthanc import Orthanc

    server = Orthanc(Path(out) / "orthanc", _free_port(), _free_port(), "bench", secrets.token_hex(8))
    os.environ[dicomweb.ENV_USER], os.environ[dicomweb.ENV_PASSWORD] = server.user, server.password
    server.start()
    t0 = time.perf_counter()
    server.store([Path(p) for p in paths])
    return server, time.perf_counter() - t0


def _listing(server, n: int) -> pa.Table:
    from core.io.dicomweb_listing import build_dicomweb_manifest, list_instances

    opts = dicomweb.HttpOptions()
    t0 = time.perf_counter()
    built = build_dicomweb_manifest(server.dicomweb, opts)
    walk_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    changes = list_instances(server.dicomweb, opts, previous={"changes_last": 0, "listed_through": "20000101"})
    changes_s = time.perf_counter() - t0
    assert built.table.num_rows == n and len(changes.refs) == n, (built.table.num_rows, len(changes.refs))
    print(
        f"listing {n} instances ({n} studies): QIDO walk {walk_s:.2f} s ({n / walk_s:.0f} instances/s), "
        f"Orthanc change log {changes_s:.2f} s ({n / changes_s:.0f} instances/s)"
    )
    return built.table


def run_bench(args: argparse.Namespace) -> int:
    from benchmarks.label import end_to_end, warm_ray_data
    from cluster.runtime import ensure_ray
    from core.model.bundle import load_bundle
    from core.readers import read_uri
    from core.synthetic.throughput import untrained_bundle, write_dicoms
    from tests.orthanc import missing

    why = missing()
    if why:
        raise SystemExit(f"bench dicomweb: {why}")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    print(f"machine: shared, {os.cpu_count()} cores, 1-min load before: {_load():.2f}", flush=True)
    manifest = write_dicoms(out, args.images, args.dicom_size)
    paths = pq.read_table(manifest).column(schema.URI).to_pylist()
    mb = sum(os.path.getsize(p) for p in paths) / 1e6
    server, stow_s = _start_server(out, paths)
    try:
        print(
            f"bench dicomweb: {len(paths)} CR instances, {args.dicom_size} rows, JPEG 2000 lossless, "
            f"{mb / len(paths):.2f} MB each; STOW-RS upload {stow_s:.1f} s ({mb / stow_s:.1f} MB/s)"
        )
        web = _listing(server, len(paths))
        uris = web.column(schema.URI).to_pylist()
        by_sop = {dicomweb.parse_uri(u).sop: u for u in uris}
        import pydicom

        ordered = [by_sop[str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)] for p in paths]
        max_bytes = 1 << 28
        disk = _fetch_rate(paths, lambda p: read_uri(p, max_bytes), 1, None)
        print(f"read from disk: {disk[0]:.0f} instances/s, {disk[1]:.1f} ms CPU per instance")
        fetched = {}

        def wado(uri: str) -> bytes:
            return dicomweb.fetch_instance(uri, max_bytes)

        for window in (1, 4, 8):
            rate, client, srv = _fetch_rate(ordered, wado, window, server.proc.pid)
            fetched[window] = rate
            print(
                f"WADO-RS, {window} in flight: {rate:.0f} instances/s ({rate * mb / len(paths):.0f} MB/s), "
                f"client {client:.1f} ms CPU and Orthanc {srv:.1f} ms CPU per instance"
            )
        bundle = untrained_bundle(out, args.backbone, args.image_size)
        cfg = load_bundle(bundle).preprocess
        http = dicomweb.HttpOptions()
        dec_disk = _decode_s(paths, cfg, args.batch_size, http)
        dec_web = _decode_s(ordered, cfg, args.batch_size, http)
        print(
            f"decode_batch (the job's decode, 1 process): disk {dec_disk * 1000:.0f} ms/image, "
            f"server {dec_web * 1000:.0f} ms/image ({dec_web / dec_disk:.2f}x)"
        )
        web_manifest = os.path.join(out, "web.parquet")
        pq.write_table(pa.table({schema.URI: ordered, schema.IMAGE_ID: [str(i) for i in range(len(ordered))]}),
                       web_manifest)
        ensure_ray()
        warm_ray_data()
        rates = {}
        for name, m in (("disk", manifest), ("server", web_manifest), ("disk2", manifest), ("server2", web_manifest)):
            e = end_to_end(m, bundle, os.path.join(out, f"labels_{name}"), args.batch_size, model_actors=1)
            rates[name] = e.whole_rate
            print(f"end-to-end from {name}: {e.whole_rate:.2f} img/s whole run, {e.steady_rate:.2f} steady (ok={e.ok})")
        ratio = (rates["server"] + rates["server2"]) / (rates["disk"] + rates["disk2"])
        print(f"machine: 1-min load after: {_load():.2f}")
        print(
            f"RESULT dicomweb_over_disk_end_to_end={ratio:.2f} wado_1={fetched[1]:.0f}/s wado_4={fetched[4]:.0f}/s "
            f"wado_8={fetched[8]:.0f}/s decode_server_over_disk={dec_web / dec_disk:.2f}"
        )
    finally:
        server.stop()
    return 0


def register(sub) -> None:
    """The ``register`` of ``python -m jobs.bench``: this benchmark's sub-command and flags."""
    p = sub.add_parser("dicomweb", help="labeling from a local Orthanc (DICOMweb) vs the same files from disk")
    p.add_argument("--images", type=int, default=60)
    p.add_argument("--dicom-size", type=int, default=1024, help="rows of the generated CR images")
    p.add_argument("--backbone", default="mobilenet_v3_small")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", default="bench_out/dicomweb")
    p.set_defaults(bench_run=run_bench)
