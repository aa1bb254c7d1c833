"""Labeling benchmark: decode-only, model-only, the CPU-time limit, the naive loop, the labeling job end to end
(whole run and steady state), and the Ray Data documentation's batch-inference pattern on the same files.

All figures come from one run on the same files, because these machines are noisy and only ratios measured
together mean anything.  The limit assumes perfect overlap of decode and model on all cores::

    limit = cores / (decode_s_per_img + model_cpu_s_per_img)

where ``decode_s_per_img`` is the labeling job's own decode function (:func:`core.labeling.batches.decode_batch`) on one
core and ``model_cpu_s_per_img = cores / model_img_per_s``, the model actor's work (the traced model call, trust
scoring, the output table) measured on all cores.  The host's speed drifts within a bench, so each ratio
divides by a limit measured right before its own runs.  The whole-run rate times ``run_label`` from the call to
its return (the session's first, cold run); the steady-state rate is the marginal one, ``(N - N/2) / (T_N -
T_N/2)`` from a run on the first half of the images and a repeat of the whole run, so start-up, planning and
the pipeline's fill and drain cancel out (both after the first run, which alone pays for starting the session's
decode workers; the median ratio of a few pairs).
A repeat with the same weights in a bundle without trust data gives trust scoring's cost (target: at most 5 %).

The bench says how quiet the machine was: the 1-minute load average before and after, and the CPU time other
processes took while it ran (from ``/proc/stat`` minus this process tree).  Figures from a busy machine are
printed with a loud warning and are not to be recorded.  ``--format dicom`` swaps the PNGs for ~2k² CR DICOM
files of one transfer syntax (``--syntax``, JPEG 2000 lossless by default), where decode dominates, runs today's
full decode and the reduced one (docs/decoding.md) in the same run, and shows decode tasks scaling apart from the
model actors (1 and 2 decode CPUs).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from core.io import schema
from core.model.bundle import load_bundle
from core.model.preprocess import PreprocessConfig, preprocess_file
from core.synthetic.syntaxes import SYNTAXES
from core.synthetic.throughput import untrained_bundle, write_dicoms, write_images

QUIET_LOAD = 0.5  # 1-minute load average above which the machine was not quiet before the bench
QUIET_OTHERS = 0.05  # share of the machine's CPU time other processes may take during the bench


def _cpu() -> float:
    return time.process_time()


def decode_rate(uris: list[str], cfg: PreprocessConfig, batch_size: int) -> tuple[float, float]:
    """(wall, CPU) seconds per image of the labeling job's decode function (read, decode, compact model input)
    in this one process: the work one decode task does per image."""
    from core.labeling.batches import decode_batch

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # as the job's decode tasks run it (cluster/label.py, one OpenCV thread per CPU granted)
    try:
        t, c = time.perf_counter(), _cpu()
        for i in range(0, len(uris), batch_size):
            chunk = np.asarray(uris[i : i + batch_size], dtype=object)
            out = decode_batch({schema.URI: chunk, schema.IMAGE_ID: chunk}, cfg)
            assert out["_ok"].all(), "bench images must decode"
        return (time.perf_counter() - t) / len(uris), (_cpu() - c) / len(uris)
    finally:
        cv2.setNumThreads(threads)


def model_rate(
    bundle_path: str, batch_size: int, batches: int, threads: int, engine: str = "auto"
) -> tuple[float, float, str]:
    """(images/s, CPU s per image, engine that ran) of a model actor's work alone on decoded in-memory batches,
    all cores: the model call with the job's engine (compact pixels widened inside it), trust scoring when the
    bundle has it, the output table."""
    from threadpoolctl import threadpool_limits

    from cluster.runtime import limit_tf_threads

    limit_tf_threads(threads)
    # A model actor has one BLAS thread (Ray sets OMP_NUM_THREADS to its 1 CPU); this process has one per core,
    # and the OOD score's matrix product on two BLAS threads contends with the engine's: measured here, that made
    # the work with trust scoring 15 % slower than in the actor, and so the limit too low (flattering the ratios).
    with threadpool_limits(limits=1, user_api="blas"):
        return _model_rate(bundle_path, batch_size, batches, threads, engine)


def _model_rate(bundle_path: str, batch_size: int, batches: int, threads: int, engine: str):
    from core.labeling.batches import HEADER_CLASS, OK, PIXELS, BatchClassifier

    bundle = load_bundle(bundle_path)
    clf = BatchClassifier(bundle, batch_size, engine=engine, threads=threads)
    cfg = bundle.preprocess
    rng = np.random.default_rng(0)
    none = np.asarray([None] * batch_size, dtype=object)
    batch = {
        schema.IMAGE_ID: np.asarray([f"m{i}" for i in range(batch_size)], dtype=object),
        schema.URI: np.asarray([f"/m/{i}.png" for i in range(batch_size)], dtype=object),
        PIXELS: rng.integers(0, 256, (batch_size, *cfg.compact_shape)).astype(cfg.compact_dtype),
        OK: np.ones(batch_size, bool),
        "error": none,
        "error_detail": none,
        "source_format": none,
        "header_body_part": none,
        HEADER_CLASS: none,
    }
    clf.label_batch(batch)
    t, c = time.perf_counter(), _cpu()
    for _ in range(batches):
        clf.label_batch(batch)
    return batches * batch_size / (time.perf_counter() - t), (_cpu() - c) / (batches * batch_size), clf.engine


@dataclass
class Limit:
    """The CPU-time limit and the two rates it is made of, as measured at one moment of the bench."""

    cores: int
    decode_wall: float
    decode_cpu: float
    model_ips: float
    model_cpu: float
    engine: str

    @property
    def decode_s(self) -> float:
        return max(self.decode_wall, self.decode_cpu)

    @property
    def model_s(self) -> float:
        """Machine-seconds per image of the model actor's work (all cores for 1 / model_ips s)."""
        return self.cores / self.model_ips

    @property
    def rate(self) -> float:
        return self.cores / (self.decode_s + self.model_s)

    def __str__(self) -> str:
        return (
            f"{self.rate:.1f} img/s = {self.cores} / ({self.decode_s * 1000:.1f} ms + {self.model_s * 1000:.1f} ms) "
            f"(decode-only {1 / self.decode_s:.1f} img/s on 1 core, model-only {self.model_ips:.1f} img/s)"
        )


def measure_limit(
    uris: list[str],
    cfg: PreprocessConfig,
    bundle_path: str,
    batch_size: int,
    cores: int,
    images: int = 384,
    batches: int = 24,
) -> Limit:
    """Decode-only (the first ``images``) and model-only (``batches`` batches), back to back.  Windows of several
    seconds each: the limit is the ratios' denominator, and short windows on a shared host are noisy."""
    decode_wall, decode_cpu = decode_rate(uris[:images], cfg, batch_size)
    model_ips, model_cpu, engine = model_rate(bundle_path, batch_size, batches, cores)
    return Limit(cores, decode_wall, decode_cpu, model_ips, model_cpu, engine)


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


class Quietness:
    """How much CPU processes outside this bench used while it ran, sampled directly every half second.

    Subtracting this process tree's CPU from the system's busy time (the first version) charged the bench's own
    Ray workers to "others" once they exited: a dead worker's CPU time leaves the tree.  So the sampler walks
    every process, skips this process and its descendants at that moment, and sums the CPU the rest gained
    since the previous sample.  Load average alone lags by a minute and counts our own work.
    """

    def __init__(self, interval: float = 0.5) -> None:
        import psutil

        self.load_before = os.getloadavg()[0]
        self.cores = psutil.cpu_count() or 1
        self._t = time.perf_counter()
        self._interval = interval
        self._seen: dict[int, float] = {}
        self._others = 0.0
        self._stop = threading.Event()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self, first: bool = False) -> None:
        import psutil

        me = psutil.Process()
        try:
            ours = {me.pid, *(c.pid for c in me.children(recursive=True))}
        except psutil.Error:
            ours = {me.pid}
        for p in psutil.process_iter():
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            cpu = t.user + t.system
            before = self._seen.get(p.pid)
            self._seen[p.pid] = cpu
            if first or p.pid in ours:
                continue
            # A process first seen now started during the bench: all its CPU time is the neighbours'.
            self._others += cpu - (before if before is not None else 0.0)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def others_share(self) -> float:
        """Share of the machine's CPU time since construction that went to processes outside this bench."""
        self._stop.set()
        self._thread.join()
        self._sample()
        elapsed = time.perf_counter() - self._t
        return max(0.0, self._others) / max(elapsed * self.cores, 1e-9)


@dataclass
class EndToEnd:
    images: int
    ok: int
    whole_s: float
    whole_rate: float
    steady_rate: float
    steady_images: int
    steady_s: float
    first_batch_s: float
    first_commit_s: float | None


def _first_commit_watch(out: str, t0: float, found: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            if any(n.startswith("part-") and n.endswith(".parquet") for n in os.listdir(out)):
                found.append(time.perf_counter() - t0)
                return
        except FileNotFoundError:
            pass
        time.sleep(0.02)


def steady_state(labeled_at_us: list[int], warm_batches: int = 1) -> tuple[float, int, float]:
    """(images/s, images, seconds) between the first and the last batch the model actors returned once the pool
    is warm: every actor has returned ``warm_batches`` batches in all.  Each batch carries one ``labeled_at``
    (stamped by the actor when the model call returns), so the rows of a timestamp are one batch."""
    stamps, counts = np.unique(np.asarray(labeled_at_us, np.int64), return_counts=True)
    if len(stamps) <= warm_batches:
        return 0.0, 0, 0.0
    start = warm_batches - 1
    images = int(counts[start + 1 :].sum())
    seconds = (stamps[-1] - stamps[start]) / 1e6
    return images / max(seconds, 1e-9), images, seconds


def label_run(manifest: str, bundle: str, out: str, batch_size: int, **kw):
    from cluster.label import LabelOptions, run_label

    return run_label(
        LabelOptions(manifest=manifest, model=bundle, out=out, batch_size=batch_size, relabel=True, **kw),
        log=lambda *a, **k: None,
    )


def end_to_end(manifest: str, bundle: str, out: str, batch_size: int, **kw) -> EndToEnd:
    """The real labeling job (``run_label``: planning, actor start-up, decode tasks, model actors, atomic Parquet
    commits), timed from the call to its return; Ray itself is already up."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    found: list[float] = []
    stop = threading.Event()
    t0 = time.perf_counter()
    start_us = time.time() * 1e6
    watcher = threading.Thread(target=_first_commit_watch, args=(out, t0, found, stop), daemon=True)
    watcher.start()
    s = label_run(manifest, bundle, out, batch_size, **kw)
    whole = time.perf_counter() - t0
    stop.set()
    watcher.join()
    stamps = pads.dataset(out).to_table(columns=["labeled_at"]).column("labeled_at").cast(pa.int64()).to_pylist()
    rate, images, seconds = steady_state(stamps, warm_batches=max(1, kw.get("model_actors") or 1))
    return EndToEnd(
        s.done,
        s.ok,
        whole,
        s.done / whole,
        rate,
        images,
        seconds,
        (min(stamps) - start_us) / 1e6,
        found[0] if found else None,
    )


class DocsPredictor:
    """The documentation's predictor class: load the model in ``__init__``, ``model.predict`` in ``__call__``."""

    def __init__(self, bundle_path: str) -> None:
        self.model = load_bundle(bundle_path).model

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probs = self.model.predict(batch["image"], verbose=0)
        return {"image_id": batch["image_id"], "probabilities": list(probs)}


def docs_pattern(manifest: str, bundle_path: str, out: str, batch_size: int) -> tuple[float, str]:
    """The Ray Data documentation's batch-inference pattern, as the docs write it, untuned: read -> map_batches
    with a preprocessing function (default resources) -> map_batches with a predictor class on an
    ``ActorPoolStrategy`` pool -> write Parquet.  Returns images/s
    (from the call to the written output, like the job's whole-run figure) and the output directory."""
    import shutil

    import ray

    cfg = load_bundle(bundle_path).preprocess

    def preprocess(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = [preprocess_file(str(uri), cfg)[0] for uri in batch["uri"]]
        return {"image_id": batch["image_id"], "image": np.stack(images)}

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    ds = ray.data.read_parquet(manifest, columns=["uri", "image_id"])
    ds = ds.map_batches(preprocess)
    # The same number of model actors as the job (one per two CPUs): an actor per CPU, as the docs' CPU example
    # has it, holds every CPU of a 2-core node and leaves the preprocessing tasks none (the run never ends).
    pool = max(1, int(ray.cluster_resources().get("CPU", 1)) // 2)
    ds = ds.map_batches(
        DocsPredictor,
        fn_constructor_args=(bundle_path,),
        compute=ray.data.ActorPoolStrategy(size=pool),
        batch_size=batch_size,
    )
    ds.write_parquet(out)
    n = pads.dataset(out).count_rows()
    return n / (time.perf_counter() - t), out


def equivalence(labels_dir: str, reference_dir: str, bundle_path: str) -> tuple[int, int, float]:
    """(images, same top-1, max |Δp|) of the job's probabilities against Keras ``model.predict`` on the float
    inputs of ``preprocess_file`` (the docs pattern's output), calibrated with the bundle's temperature when
    it has one, since the job writes calibrated probabilities."""
    from core.trust.confidence import load_trust

    ours = pads.dataset(labels_dir).to_table(columns=[schema.IMAGE_ID, "probabilities"]).to_pydict()
    ref = pads.dataset(reference_dir).to_table(columns=["image_id", "probabilities"]).to_pydict()
    ref_by_id = dict(zip(ref["image_id"], ref["probabilities"], strict=True))
    ids = [i for i, p in zip(ours[schema.IMAGE_ID], ours["probabilities"], strict=True) if p is not None]
    a = np.asarray([p for p in ours["probabilities"] if p is not None], np.float64)
    b = np.asarray([ref_by_id[i] for i in ids], np.float64)
    trust = load_trust(load_bundle(bundle_path))
    if trust is not None:
        b = trust.calibrate(b)
    return len(ids), int((a.argmax(1) == b.argmax(1)).sum()), float(np.abs(a - b).max()) if len(ids) else 0.0


def warm_ray_data() -> None:
    """Ray Data starts three detached system actors (stats, autoscaling coordinator, actor-location tracker)
    the first time a cluster runs a dataset; a cluster that has run any job has them.  Start them before either
    pipeline is timed so neither pays for them."""
    import ray

    ray.data.range(4).map_batches(_Identity, compute=ray.data.ActorPoolStrategy(size=1)).take_all()


class _Identity:
    def __call__(self, batch):
        return batch


def memory_check(out: str, batch_size: int) -> None:
    """Peak RSS at 10k vs 50k manifest rows: streaming means it should not grow with the archive."""
    files = write_images(out, 1000, 128, seed=1)
    base = pq.read_table(files)
    bundle = untrained_bundle(out, "mobilenet_v3_small", 96)
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
    from core.labeling.store import PartWriter

    bundle = load_bundle(bundle_path)
    manifest = os.path.join(out, f"manifest_noop_{rows}.parquet")
    labels = os.path.join(out, f"labels_noop_{rows}_{bundle.model_id}")
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


def _figures(values: list[float], fmt: str = ".1f") -> str:
    return " ".join(format(v, fmt) for v in values)


def _quiet_report(q: Quietness) -> bool:
    load_after = os.getloadavg()[0]
    others = q.others_share()
    quiet = q.load_before <= QUIET_LOAD and others <= QUIET_OTHERS
    print(
        f"machine: 1-min load average {q.load_before:.2f} before, {load_after:.2f} after (this bench's own work "
        f"included); other processes took {others:.1%} of the CPU time while it ran"
    )
    if not quiet:
        bar = "!" * 100
        print(
            f"{bar}\n!!! NOT QUIET: load before {q.load_before:.2f} (> {QUIET_LOAD}) or other processes "
            f"{others:.1%} (> {QUIET_OTHERS:.0%}) of the CPU.\n!!! These figures measure the neighbours, not "
            f"scanlabel: do not record them; rerun on a quiet machine.\n{bar}"
        )
    return quiet


def _finish(line: str) -> None:
    """Shut Ray down first so nothing it logs in the background lands after the result line."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    sys.stderr.flush()
    sys.stdout.flush()
    print(line, flush=True)


def run_bench(args: argparse.Namespace) -> int:
    if getattr(args, "format", "png") == "dicom":
        return run_dicom_bench(args)
    from cluster.runtime import ensure_ray

    q = Quietness()
    cores = os.cpu_count() or 1
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    print(f"machine: 1-min load average before: {q.load_before:.2f}", flush=True)
    manifest = write_images(out, args.images, args.source_size)
    uris = pq.read_table(manifest).column(schema.URI).to_pylist()
    bundle = untrained_bundle(out, args.backbone, args.image_size, trust_from=uris[:160])
    plain = untrained_bundle(out, args.backbone, args.image_size)  # same weights, no trust data: scoring's cost
    cfg = load_bundle(bundle).preprocess
    print(
        f"bench label: {args.images} PNGs of {args.source_size}², {args.backbone} @ {args.image_size} with trust "
        f"scoring (calibration + Mahalanobis OOD + abstention), batch {args.batch_size}, {cores} cores"
    )
    keras_ips, _, _ = model_rate(bundle, args.batch_size, 12, cores, engine="keras")
    naive = naive_rate(bundle, uris[:100])
    print(f"naive (decode + model.predict per image): {naive:.1f} img/s")

    ensure_ray()
    warm_ray_data()
    # Memory first: peak RSS sums every Ray worker on the machine, and the docs pattern's Keras actors (or the
    # job's) lingering from the throughput runs would inflate the 10k figure and flatter the ratio.
    if args.memory:
        memory_check(out, args.batch_size)
    if args.noop_rows:
        noop_check(out, args.noop_rows, bundle)
    # The host's speed drifts within a bench (in one run the limit measured after the end-to-end runs was 19 %
    # below the one before, with no other process busy): each ratio divides by a limit measured right before its
    # own runs, in this process while the Ray session idles.
    before = measure_limit(uris, cfg, bundle, args.batch_size, cores)
    plain_ips, _, _ = model_rate(plain, args.batch_size, 24, cores)  # right after: same conditions
    print(
        f"decode-only: {1 / before.decode_s:.1f} img/s on 1 core ({before.decode_wall * 1000:.1f} ms wall, "
        f"{before.decode_cpu * 1000:.1f} ms CPU per image; decode_batch, compact uint8 output)"
    )
    ran = "LiteRT: the bundle's model.tflite, XNNPACK" if before.engine == "litert" else "Keras/TF: no model.tflite"
    print(
        f"model-only: {before.model_ips:.1f} img/s on {cores} cores with the job's CPU engine ({ran}; "
        f"{before.model_s * 1000:.1f} ms of the machine per image; process CPU "
        f"{before.model_cpu * 1000:.1f} ms); the same work with the Keras/TF engine: {keras_ips:.1f} img/s"
    )
    print(f"limit right before the whole run: {before}")
    e = end_to_end(manifest, bundle, os.path.join(out, "labels"), args.batch_size, rows_per_file=250)
    print(
        f"end-to-end whole run (scanlabel label on Ray, from the call to its return: planning, actor start-up, "
        f"decode, model, commits): {e.whole_rate:.1f} img/s ({e.images} images in {e.whole_s:.1f} s, ok={e.ok}); "
        f"first batch returned at {e.first_batch_s:.1f} s, first part file committed at "
        + (f"{e.first_commit_s:.1f} s" if e.first_commit_s is not None else "- (none before the end)")
        + " (250 rows per file)"
    )
    half = pq.read_table(manifest).slice(0, args.images // 2)
    half_manifest = os.path.join(out, f"manifest_{args.source_size}_{args.images}_first_half.parquet")
    pq.write_table(half, half_manifest)
    # The marginal rate subtracts runs that must pay the same start-up.  The first job of a Ray session also
    # starts and warms the decode workers (imports, first decodes: ~2-3 s here), which later runs find ready; so
    # the whole run is repeated on the warm pool for the subtraction, and the first (cold) whole run stays the
    # whole-run figure.  One run's start-up varies by ~1 s (actor placement, engine load), ~6 % of a 1000-image
    # difference: medians over a few interleaved pairs keep one slow start from deciding the figure.
    # Each pair is followed by the same whole run with the bundle without trust data: scoring's cost, same run.
    halves, wholes, plains, limits = [], [], [], []
    for _ in range(max(1, args.steady_repeats)):
        limits.append(measure_limit(uris, cfg, bundle, args.batch_size, cores))
        h = end_to_end(half_manifest, bundle, os.path.join(out, "labels_half"), args.batch_size, rows_per_file=250)
        w = end_to_end(manifest, bundle, os.path.join(out, "labels_warm"), args.batch_size, rows_per_file=250)
        p = end_to_end(manifest, plain, os.path.join(out, "labels_plain"), args.batch_size, rows_per_file=250)
        halves.append(h.whole_s)
        wholes.append(w.whole_s)
        plains.append(p.whole_s)
    t_whole, t_plain = float(np.median(wholes)), float(np.median(plains))
    # Each pair's marginal rate over the limit measured right before it; the median of those ratios.  A half run
    # that took longer than the whole one can only be noise (a busy machine): that pair counts as rate 0.
    rates = [(w.images - h.images) / (tw - th) if tw > th else 0.0 for tw, th in zip(wholes, halves, strict=True)]
    ratios = [r / lim.rate for r, lim in zip(rates, limits, strict=True)]
    steady, steady_ratio = float(np.median(rates)), float(np.median(ratios))
    print(
        f"end-to-end steady state (marginal rate: the {w.images - h.images} extra images of a {w.images}-image "
        f"run over a {h.images}-image run, both after the first run; start-up, planning, pipeline fill and drain "
        f"cancel out), {len(rates)} pairs: {_figures(rates)} img/s (runs: {_figures(wholes)} s "
        f"and {_figures(halves)} s), each over the limit measured right before it "
        f"({_figures([lim.rate for lim in limits])} img/s): ratios {_figures(ratios, '.2f')}, "
        f"median {steady_ratio:.2f} ({steady:.1f} img/s)"
    )
    print(
        f"(for reference, first to last batch returned in the {e.images}-image run: {e.steady_rate:.1f} img/s, "
        "flattered by the images decoded while the model actor was starting)"
    )
    print(
        f"trust scoring's cost (calibration, OOD score, abstention; same weights, the bundle without trust data): "
        f"{args.images}-image runs on the warm pool, medians: {w.images / t_whole:.1f} img/s with it, "
        f"{p.images / t_plain:.1f} without ({t_plain / t_whole - 1:+.1%}; runs without: {_figures(plains)} s); "
        f"model-only {before.model_ips:.1f} vs {plain_ips:.1f} img/s "
        f"({before.model_ips / plain_ips - 1:+.1%})"
    )
    docs_rate, docs_out = docs_pattern(manifest, bundle, os.path.join(out, "docs_pattern"), args.batch_size)
    print(f"docs_pattern (Ray Data docs' batch inference, untuned, same files): {docs_rate:.1f} img/s")
    n, same, dp = equivalence(os.path.join(out, "labels"), docs_out, bundle)
    print(
        f"labels vs Keras model.predict on the float inputs: same top-1 on {same}/{n} images "
        f"({same / max(n, 1):.2%}), max |Δp| {dp:.2e}"
    )
    _quiet_report(q)
    _finish(
        f"ratio_to_limit={e.whole_rate / before.rate:.2f} steady_ratio_to_limit={steady_ratio:.2f} "
        f"speedup_vs_naive={e.whole_rate / naive:.2f} speedup_vs_docs_pattern={e.whole_rate / docs_rate:.2f}"
    )
    return 0


def run_dicom_bench(args: argparse.Namespace) -> int:
    """CR DICOM files of one transfer syntax (JPEG 2000 lossless by default), today's full decode against the
    reduced one (docs/decoding.md) in the same run: decode-only, model-only, and the job end to end beside one
    model actor - full path with 2 decode CPUs, reduced path with 1 and 2 (the decode tasks scaling alone)."""
    from cluster.runtime import ensure_ray

    q = Quietness()
    cores = os.cpu_count() or 1
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    print(f"machine: 1-min load average before: {q.load_before:.2f}", flush=True)
    manifest = write_dicoms(out, args.images, args.dicom_size, syntax=args.syntax)
    uris = pq.read_table(manifest).column(schema.URI).to_pylist()
    bundles = {
        mode: untrained_bundle(out, args.backbone, args.image_size, trust_from=uris[:16], decode=mode)
        for mode in ("full", "reduced")
    }
    size_mb = sum(os.path.getsize(u) for u in uris) / len(uris) / 1e6
    print(
        f"bench label --format dicom --syntax {args.syntax}: {len(uris)} CR DICOM files, {args.dicom_size} rows "
        f"({size_mb:.1f} MB each), {args.backbone} @ {args.image_size}, batch {args.batch_size}, {cores} cores"
    )
    ensure_ray()
    warm_ray_data()
    rates: dict[tuple[str, int], float] = {}
    for mode, decode_cpus in (("full", 2), ("reduced", 2), ("reduced", 1)):
        bundle = bundles[mode]
        limit = measure_limit(
            uris, load_bundle(bundle).preprocess, bundle, args.batch_size, cores, images=32, batches=6
        )
        print(
            f"[{mode}] decode-only: {1 / limit.decode_s:.2f} img/s on 1 core ({limit.decode_cpu * 1000:.0f} ms CPU "
            f"per image); model-only: {limit.model_ips:.1f} img/s on {cores} cores; limit {limit.rate:.2f} img/s"
        )
        # One model actor holding 1 CPU; the rest of the 2-CPU cluster runs decode tasks of 1 / decode_cpus each.
        e = end_to_end(
            manifest,
            bundle,
            os.path.join(out, f"labels_dicom_{args.syntax}_{mode}_{decode_cpus}"),
            args.batch_size,
            model_actors=1,
            decode_cpus=1.0 / decode_cpus,
            rows_per_block=16,  # each full-size image is ~0.5 s of decode: blocks of half a batch spread the work
        )
        rates[(mode, decode_cpus)] = e.whole_rate
        print(
            f"[{mode}] end-to-end with {decode_cpus} decode CPU(s) beside 1 model actor: {e.whole_rate:.2f} img/s "
            f"whole run, {e.steady_rate:.2f} img/s steady ({e.images} images, ok={e.ok})"
        )
    _quiet_report(q)
    full, reduced = rates[("full", 2)], rates[("reduced", 2)]
    _finish(
        f"dicom_{args.syntax}_full={full:.2f} dicom_{args.syntax}_reduced={reduced:.2f} "
        f"reduced_speedup={reduced / max(full, 1e-9):.2f} "
        f"decode_scaling={reduced / max(rates[('reduced', 1)], 1e-9):.2f}"
    )
    return 0


def register(sub) -> None:
    """The ``register`` of ``python -m jobs.bench``: this benchmark's sub-command and flags."""
    p = sub.add_parser("label", help="decode, model, end-to-end labeling throughput and the CPU limit")
    p.add_argument("--images", type=int, default=None, help="default 2000 PNGs, or 120 DICOM files")
    p.add_argument(
        "--format",
        choices=["png", "dicom"],
        default="png",
        help="png: 1024² PNGs, the job against its CPU limit, the naive loop and the Ray Data docs pattern; "
        "dicom: CR files (--syntax) where decode dominates, full vs reduced decode, 1 and 2 decode CPUs",
    )
    p.add_argument("--dicom-size", type=int, default=2048, help="rows of the generated DICOM files")
    p.add_argument(
        "--syntax",
        choices=sorted(SYNTAXES),
        default="j2k_lossless",
        help="transfer syntax of the generated DICOM files (--format dicom)",
    )
    p.add_argument("--backbone", default="efficientnet_b0")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--source-size", type=int, default=1024, help="side of the generated PNGs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default="bench_out/label")
    p.add_argument("--memory", action="store_true", help="also peak RSS at 10k vs 50k images")
    p.add_argument("--noop-rows", type=int, default=0, help="time a no-op rerun over a manifest this big")
    p.add_argument(
        "--steady-repeats", type=int, default=3, help="warm half/whole run pairs for the steady state (median)"
    )
    p.set_defaults(bench_run=run_label)


def run_label(args: argparse.Namespace) -> int:
    """PNG (default 2,000 images) or DICOM (default 120 files) labeling figures."""
    if args.images is None:
        args.images = 120 if args.format == "dicom" else 2000
    return run_bench(args)
