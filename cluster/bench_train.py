"""Training benchmark: what Ray Train costs over the same loop run in a single process, and what 2 workers give.

Three runs of :func:`core.training.run_training` on the same sample archive, model and configuration:

(a) one process, no Ray, default strategy;
(b) Ray Train, 1 worker holding every CPU (``cpus_per_worker`` = cores);
(c) Ray Train, 2 workers sharing the CPUs (MultiWorkerMirroredStrategy over gRPC on one machine).

(a) and (b) pin TensorFlow to the same thread counts (:func:`cluster.runtime.limit_tf_threads`) and run at the
same scheduling priority (Ray's workers default to niceness 15), so their difference is Ray's.  Throughput is
steady-state: the median of the per-epoch ``images_per_s`` after the first epoch (the first one traces the
step function and fills the decode cache).  ``images_per_s`` times the train steps only, so checkpointing and
validation — the same in every run — are not in it.

Last line: ``ray_overhead = (a) / (b) - 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import pyarrow.parquet as pq

BENCH_BATCH = 32


def _steady(history: list[dict]) -> float:
    rates = [h["images_per_s"] for h in history[1:]] or [h["images_per_s"] for h in history]
    return float(statistics.median(rates))


def _archive(out: str, images: int) -> str:
    """A sample archive of ``images`` images, reused when an identical one is already there."""
    from core.sample_archive import write_sample_archive

    directory = os.path.join(out, f"archive_{images}")
    manifest = os.path.join(directory, "manifest.parquet")
    if os.path.exists(manifest) and pq.read_metadata(manifest).num_rows == images:
        return manifest
    return str(write_sample_archive(directory, images, seed=0))


def run_bench(args: argparse.Namespace) -> int:
    """Run (a), (b), (c); print images/s for each and ``ray_overhead`` last.  Returns the exit code."""
    from cluster.runtime import QUIET_ENV, limit_tf_threads
    from core.training import TrainConfig

    if args.epochs < 2:
        raise ValueError("--epochs must be at least 2: the first epoch (tracing, decode cache) is not measured")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    cores = os.cpu_count() or 1
    t0 = time.perf_counter()
    manifest = _archive(out, args.images)
    print(f"[bench] archive: {args.images} images ({time.perf_counter() - t0:.0f} s); {cores} cores")

    def config(name: str) -> TrainConfig:
        return TrainConfig(
            manifest=manifest,
            out=os.path.join(out, f"bundle_{name}"),
            backbone=args.backbone,
            weights=None,
            image_size=args.image_size,
            epochs=args.epochs,
            batch_size=BENCH_BATCH,
            patience=args.epochs + 1,
            seed=0,
        )

    def show(name: str, history: list[dict]) -> float:
        rate = _steady(history)
        per_epoch = ", ".join(f"{h['images_per_s']:.1f}" for h in history)
        print(f"[bench] {name}: {rate:.1f} images/s steady-state (per epoch: {per_epoch})")
        return rate

    # (a) first, before Ray starts, so no Ray process shares the CPU with it.
    import tensorflow as tf

    from core.training import run_training

    limit_tf_threads(cores)
    summary = run_training(config("single"), tf.distribute.get_strategy(), log=lambda line: print(f"  (a) {line}"))
    single = show(f"(a) single process, no Ray, {cores} TF threads", summary["history"])

    # (b) and (c): a fresh local Ray whatever RAY_ADDRESS says: (a) ran here, so the workers must share this machine.
    # Ray starts worker processes at niceness 15 (RAY_worker_niceness); (a) runs at 0.  On a machine shared with
    # other work that alone made (b) lose a third of its throughput, which is the neighbours' load, not Ray's
    # cost, so the workers here run at the same priority as (a).
    import ray

    from cluster.train import train

    if not ray.is_initialized():
        ray.init(
            address="local",
            include_dashboard=False,
            log_to_driver=True,
            runtime_env={"env_vars": {**QUIET_ENV, "RAY_worker_niceness": "0"}},
        )
    rates = {}
    for workers in (1, 2):
        cfg = config(f"ray{workers}")
        result = train(
            cfg,
            workers=workers,
            cpus_per_worker=max(1, cores // workers),
            storage_path=os.path.join(out, "ray_storage"),
        )
        if result.error:
            print(f"[bench] Ray Train with {workers} worker(s) failed: {result.error}")
            return 1
        with open(os.path.join(cfg.out, "training.json")) as f:
            history = json.load(f)["history"]
        label = "(b)" if workers == 1 else "(c)"
        rates[workers] = show(f"{label} Ray Train, {workers} worker(s) x {max(1, cores // workers)} CPU", history)

    print(f"[bench] 2 workers vs 1: x{rates[2] / rates[1]:.2f}")
    print(f"ray_overhead={single / rates[1] - 1:.3f}")
    return 0
