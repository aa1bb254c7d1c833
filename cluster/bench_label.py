"""Labeling benchmark: decode-only, model-only, end-to-end, the CPU-time limit, and the naive baseline.

All figures come from one run on the same files, because these machines are noisy and only ratios measured
together mean anything.  The limit assumes perfect overlap of decode and model on all cores::

    limit = cores / (decode_s_per_img + model_cpu_s_per_img)

where ``model_cpu_s_per_img = cores / model_img_per_s`` (model measured on all cores).
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core import schema
from core.bundle import load_bundle, save_bundle
from core.phantoms import CLASSES, render_phantom
from core.preprocess import PreprocessConfig, preprocess_file


def write_images(out: str, n: int, size: int, seed: int = 0) -> str:
    """n distinct PNGs of size² (rendered small, upscaled, with noise so PNG compression stays realistic)."""
    img_dir = os.path.join(out, f"images_{size}")
    os.makedirs(img_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    uris, ids, labels = [], [], []
    for i in range(n):
        label = CLASSES[i % len(CLASSES)]
        path = os.path.join(img_dir, f"img_{i:06d}.png")
        if not os.path.exists(path):
            small = render_phantom(label, rng, 256, 256)
            big = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
            big = np.clip(big + rng.normal(0, 0.01, big.shape), 0, 1)
            cv2.imwrite(path, (big * 255).astype(np.uint8))
        uris.append(path)
        ids.append(f"bench-{i:06d}")
        labels.append(label)
    manifest = os.path.join(out, f"manifest_{size}_{n}.parquet")
    pq.write_table(pa.table({schema.URI: uris, schema.IMAGE_ID: ids, schema.LABEL: labels}), manifest)
    return manifest


def make_bundle(out: str, backbone: str, image_size: int) -> str:
    import keras

    from core.backbones import build_classifier

    path = os.path.join(out, f"bundle_{backbone}_{image_size}")
    if not os.path.exists(os.path.join(path, "bundle.json")):
        keras.utils.set_random_seed(0)
        model, _ = build_classifier(backbone, list(CLASSES), None, image_size)
        save_bundle(path, model, list(CLASSES), PreprocessConfig(image_size=image_size), {"backbone": backbone})
    return path


def decode_rate(uris: list[str], cfg: PreprocessConfig) -> float:
    """Seconds per image of read + decode + preprocess on one core."""
    t = time.perf_counter()
    for u in uris:
        preprocess_file(u, cfg)
    return (time.perf_counter() - t) / len(uris)


def model_rate(bundle_path: str, batch_size: int, batches: int, threads: int) -> float:
    """Images per second of the model alone on preprocessed in-memory batches, all cores."""
    from cluster.runtime import limit_tf_threads
    from core.labeling import BatchClassifier

    limit_tf_threads(threads)
    clf = BatchClassifier(load_bundle(bundle_path), batch_size)
    x = np.random.default_rng(0).random((batch_size, *clf.bundle.preprocess.shape), dtype=np.float32)
    clf.predict(x)
    t = time.perf_counter()
    for _ in range(batches):
        clf.predict(x)
    return batches * batch_size / (time.perf_counter() - t)


def naive_rate(bundle_path: str, uris: list[str]) -> float:
    """The seed's way: decode one image, ``model.predict`` it, repeat."""
    bundle = load_bundle(bundle_path)
    model = bundle.model
    model.predict(np.zeros((1, *bundle.preprocess.shape), np.float32), verbose=0)
    t = time.perf_counter()
    for u in uris:
        arr, _ = preprocess_file(u, bundle.preprocess)
        model.predict(arr[None], verbose=0)
    return len(uris) / (time.perf_counter() - t)


class PeakRSS:
    """Samples the summed RSS of this process and every Ray process on the machine (driver + workers)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = psutil.Process().memory_info().rss
        for p in psutil.process_iter(["name", "cmdline"]):
            try:
                cmd = " ".join(p.info["cmdline"] or [])
                if p.pid != os.getpid() and ("ray::" in cmd or "default_worker.py" in cmd):
                    total += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def label_run(manifest: str, bundle: str, out: str, batch_size: int, **kw):
    from cluster.label import LabelOptions, run_label

    return run_label(
        LabelOptions(manifest=manifest, model=bundle, out=out, batch_size=batch_size, relabel=True, **kw),
        log=lambda s: None,
    )


def memory_check(out: str, batch_size: int) -> None:
    """Peak RSS at 10k vs 50k manifest rows: streaming means it should not grow with the archive."""
    files = write_images(out, 1000, 128, seed=1)
    base = pq.read_table(files)
    bundle = make_bundle(out, "mobilenet_v3_small", 96)
    peaks = {}
    for n in (10_000, 50_000):
        reps = -(-n // base.num_rows)
        uris = (base.column(schema.URI).to_pylist() * reps)[:n]
        manifest = os.path.join(out, f"manifest_mem_{n}.parquet")
        pq.write_table(pa.table({schema.URI: uris, schema.IMAGE_ID: [f"m{i:07d}" for i in range(n)]}), manifest)
        with PeakRSS() as rss:
            s = label_run(manifest, bundle, os.path.join(out, f"labels_mem_{n}"), batch_size)
        peaks[n] = rss.peak
        print(f"memory: {n} images labelled at {s.images_per_s:.1f} img/s, peak RSS {rss.peak / 2**30:.2f} GiB")
    print(f"memory: peak_rss_50k/peak_rss_10k={peaks[50_000] / peaks[10_000]:.3f}")


def noop_check(out: str, rows: int, bundle_path: str) -> None:
    """A nightly rerun over a manifest whose labels all exist must exit fast with '0 to do'."""
    import datetime as dt

    from cluster.label import LabelOptions, run_label
    from core.labels_store import PartWriter

    bundle = load_bundle(bundle_path)
    manifest = os.path.join(out, f"manifest_noop_{rows}.parquet")
    labels = os.path.join(out, f"labels_noop_{rows}")
    ids = pa.array([f"n{i:08d}" for i in range(rows)])
    uris = pa.array([f"/archive/{i:08d}.dcm" for i in range(rows)])
    if not os.path.exists(manifest):
        pq.write_table(pa.table({schema.URI: uris, schema.IMAGE_ID: ids}), manifest)
    if not os.path.exists(labels):
        writer = PartWriter(labels, "noop", rows_per_file=rows // 10 + 1)
        now = dt.datetime.now(dt.timezone.utc)
        chunk = 100_000
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            writer.add(
                schema.labels_table(
                    {
                        schema.IMAGE_ID: ids[start : start + n],
                        schema.URI: uris[start : start + n],
                        schema.LABEL: ["chest"] * n,
                        "status": ["ok"] * n,
                        "model_id": [bundle.model_id] * n,
                        "labeled_at": [now] * n,
                    }
                )
            )
        writer.flush()
    t = time.perf_counter()
    lines: list[str] = []
    s = run_label(LabelOptions(manifest=manifest, model=bundle_path, out=labels), log=lines.append)
    elapsed = time.perf_counter() - t
    print(f"noop: rerun over {rows} rows with all labels present: {elapsed:.1f} s, to_do={s.todo} ({lines[-1]})")


def run_bench(args: argparse.Namespace) -> int:
    from cluster.runtime import ensure_ray

    cores = os.cpu_count() or 1
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    manifest = write_images(out, args.images, args.source_size)
    bundle = make_bundle(out, args.backbone, args.image_size)
    cfg = load_bundle(bundle).preprocess
    uris = pq.read_table(manifest).column(schema.URI).to_pylist()
    print(
        f"bench label: {args.images} PNGs of {args.source_size}², {args.backbone} @ {args.image_size}, "
        f"batch {args.batch_size}, {cores} cores"
    )

    decode_s = decode_rate(uris[:200], cfg)
    print(f"decode-only: {1 / decode_s:.1f} img/s on 1 core ({decode_s * 1000:.1f} ms/img)")
    model_ips = model_rate(bundle, args.batch_size, 15, cores)
    model_cpu_s = cores / model_ips
    print(f"model-only: {model_ips:.1f} img/s on {cores} cores ({model_cpu_s * 1000:.1f} ms CPU/img)")
    limit = cores / (decode_s + model_cpu_s)
    print(f"limit: {limit:.1f} img/s = {cores} / ({decode_s * 1000:.1f} ms + {model_cpu_s * 1000:.1f} ms)")
    naive = naive_rate(bundle, uris[:100])
    print(f"naive (decode + model.predict per image): {naive:.1f} img/s")

    ensure_ray()
    s = label_run(manifest, bundle, os.path.join(out, "labels"), args.batch_size)
    print(
        f"end-to-end (scanlabel label on Ray): {s.images_per_s:.1f} img/s ({s.done} images, {s.seconds:.1f} s "
        f"incl. planning, ok={s.ok})"
    )
    if args.memory:
        memory_check(out, args.batch_size)
    if args.noop_rows:
        noop_check(out, args.noop_rows, bundle)
    print(f"ratio_to_limit={s.images_per_s / limit:.2f} speedup_vs_naive={s.images_per_s / naive:.2f}")
    return 0
