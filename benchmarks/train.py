"""Training benchmark: what Ray Train costs a user's run over the same loop in one process, and what 2 workers give.

Three runs of :func:`core.training.run_training` on the same sample archive, model and configuration:

(a) one process, no Ray, default strategy;
(b) Ray Train, 1 worker holding every CPU (``cpus_per_worker`` = cores);
(c) Ray Train, 2 workers sharing the CPUs (MultiWorkerMirroredStrategy over gRPC on one machine).

(a) and (b) pin TensorFlow to the same thread counts (:func:`cluster.runtime.limit_tf_threads`) and run at the
same scheduling priority (Ray's workers default to niceness 15), and (b)/(c) start Ray exactly as the entry points
do (:func:`cluster.runtime.start_local_ray`: its lean settings, no dashboard unless ``SCANLABEL_RAY_DASHBOARD=1``),
so the difference is what Ray costs a user.
``images_per_s`` times the train steps only; the figure per run is the median over epochs 2..N (the first one
traces the step function and fills the decode cache).  At least 8 epochs by default: a cost that grows with
the epochs cannot show in three.

Costs are also measured in CPU seconds, which a busy machine does not distort the way it distorts wall time:
the training process's own CPU per trained image (``train_cpu_s`` of each epoch), and every process Ray started
(raylet, GCS, dashboard and its agents, the Train controller and its helper actors, idle workers), sampled with
psutil during (b)'s epochs 2..N.  The 1-minute load average is printed before and after; above
``QUIET_LOAD_PER_CORE`` per core the figures are the neighbours' as much as Ray's and a warning says so.

Last line: ``ray_overhead = (a) / (b) - 1``, printed after Ray has shut down so that nothing Ray logs in the
background can follow it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import threading
import time

import pyarrow.parquet as pq

BENCH_BATCH = 32
DEFAULT_EPOCHS = 8
# A 2-core machine nobody else uses sits below 0.3; above this the neighbours' load dominates the figures.
QUIET_LOAD_PER_CORE = 0.25
SAMPLE_INTERVAL_S = 1.0


def _ray_history(cfg, workers: int, cores: int, out: str, tag: str) -> list[dict] | None:
    """Train under Ray Train with ``workers`` sharing the cores; the per-epoch history, or None (printed) on failure."""
    from cluster.train import train

    result = train(
        cfg,
        workers=workers,
        cpus_per_worker=max(1, cores // workers),
        storage_path=os.path.join(out, "ray_storage"),
    )
    if result.error:
        print(f"{tag} {workers} worker(s) failed: {result.error}")
        return None
    with open(os.path.join(cfg.out, "training.json")) as f:
        return json.load(f)["history"]


def _steady(history: list[dict]) -> float:
    """Median images/s over epochs 2..N."""
    rates = [h["images_per_s"] for h in history[1:]] or [h["images_per_s"] for h in history]
    return float(statistics.median(rates))


def _archive(out: str, images: int) -> str:
    """A sample archive of ``images`` images, reused when an identical one is already there."""
    from core.synthetic.sample_archive import write_sample_archive

    directory = os.path.join(out, f"archive_{images}")
    manifest = os.path.join(directory, "manifest.parquet")
    if os.path.exists(manifest) and pq.read_metadata(manifest).num_rows == images:
        return manifest
    return str(write_sample_archive(directory, images, seed=0))


def _role(cmdline: list[str], name: str) -> str:
    """Which part of Ray a process is, from its command line (Ray renames workers ``ray::<Actor>.<method>``)."""
    cmd = " ".join(cmdline)
    for key, role in (
        ("raylet", "raylet"),
        ("gcs_server", "gcs"),
        ("dashboard/agent.py", "dashboard agent"),
        ("runtime_env/agent", "runtime-env agent"),
        ("dashboard/dashboard.py", "dashboard"),
        ("ray-dashboard-", "dashboard"),
        ("log_monitor", "log monitor"),
        ("_private/monitor.py", "autoscaler monitor"),
    ):
        if key in cmd:
            return role
    if cmd.startswith("ray::"):
        actor = cmd.split()[0][len("ray::") :].split(".")[0]
        return {
            "RayTrainWorker": "train worker",
            "IDLE": "idle workers",
            "DashboardAgent": "dashboard agent",
            "RuntimeEnvAgent": "runtime-env agent",
            "TrainController": "train controller",
        }.get(actor, f"actor {actor}")
    if "default_worker.py" in cmd or "setup_worker.py" in cmd:
        return "starting workers"
    return name or "other"


class RayCpuSampler:
    """CPU seconds of this process and every process below it (Ray's, once Ray runs here), summed by role.

    A background thread polls psutil every ``SAMPLE_INTERVAL_S``; a process's CPU since the last poll is
    booked to the role it has now (workers change their title when they become actors), and a process that
    exits keeps what it was booked.  The sampler's own CPU is booked apart, not to the driver.
    """

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self._last: dict[int, float] = {}
        self._procs: dict[int, object] = {}
        self.totals: dict[str, float] = {}
        self.timeline: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ray-cpu-sampler", daemon=True)
        self._own_cpu = 0.0

    def _poll(self) -> None:
        procs = [self._me]
        try:
            procs += self._me.children(recursive=True)
        except self._psutil.Error:
            pass
        for p in procs:
            try:
                p = self._procs.setdefault(p.pid, p)
                t = p.cpu_times()
                cpu = t.user + t.system
                role = "driver" if p.pid == self._me.pid else _role(p.cmdline(), p.name())
            except self._psutil.Error:
                continue
            delta = cpu - self._last.get(p.pid, 0.0)
            self._last[p.pid] = cpu
            if delta > 0:
                self.totals[role] = self.totals.get(role, 0.0) + delta
        self.totals["driver"] = self.totals.get("driver", 0.0) - self._own_cpu_delta()
        self.timeline.append((time.time(), dict(self.totals)))

    def _own_cpu_delta(self) -> float:
        now = time.thread_time()
        delta, self._own_cpu = now - self._own_cpu, now
        return delta

    def _loop(self) -> None:
        self._own_cpu = time.thread_time()
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(SAMPLE_INTERVAL_S)

    def start(self) -> RayCpuSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds per role between two wall-clock times (nearest samples)."""

        def at(t: float) -> dict[str, float]:
            return min(self.timeline, key=lambda s: abs(s[0] - t))[1] if self.timeline else {}

        a, b = at(t0), at(t1)
        return {k: v - a.get(k, 0.0) for k, v in b.items() if v - a.get(k, 0.0) > 1e-3}


def _load_line(when: str, cores: int) -> tuple[str, bool]:
    load1 = os.getloadavg()[0]
    quiet = load1 <= QUIET_LOAD_PER_CORE * cores
    return f"[bench] load average (1 min) {when}: {load1:.2f} on {cores} cores", quiet


def _per_epoch(history: list[dict], key: str, fmt: str = "{:.1f}") -> str:
    return ", ".join(fmt.format(h[key]) for h in history if key in h)


def _cpu_ms_per_image(history: list[dict], workers: int, global_batch: int, steps: int) -> float | None:
    """Median over epochs 2..N of the training processes' CPU per trained image (all threads; rank 0's history,
    so ``workers`` times rank 0's CPU stands for the group's)."""
    values = [h["train_cpu_s"] * workers * 1000.0 / (global_batch * steps) for h in history[1:] if "train_cpu_s" in h]
    return float(statistics.median(values)) if values else None


def run_bench(args: argparse.Namespace) -> int:
    """Run (a), (b), (c); print the per-epoch series, Ray's CPU share, and ``ray_overhead`` last."""
    from cluster.runtime import limit_tf_threads
    from core.training import TrainConfig

    if args.epochs < 3:
        raise ValueError("--epochs must be at least 3: epoch 1 (tracing, decode cache) is not measured")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    cores = os.cpu_count() or 1
    lines_after: list[str] = []  # the summary, printed once Ray is down
    load_before, quiet_before = _load_line("before", cores)
    print(load_before, flush=True)
    t0 = time.perf_counter()
    manifest = _archive(out, args.images)
    print(
        f"[bench] archive: {args.images} images ({time.perf_counter() - t0:.0f} s); {cores} cores; {args.epochs} epochs"
    )

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

    def show(name: str, history: list[dict], workers: int) -> float:
        rate = _steady(history)
        steps = round(history[-1]["images_per_s"] * history[-1]["epoch_s"] / (BENCH_BATCH * workers))
        cpu = _cpu_ms_per_image(history, workers, BENCH_BATCH * workers, steps)
        lines_after.append(f"[bench] {name}: {rate:.1f} images/s (median of epochs 2..{len(history)})")
        lines_after.append(f"[bench]   per epoch images/s: {_per_epoch(history, 'images_per_s')}")
        if cpu is not None:
            lines_after.append(
                f"[bench]   training CPU per image: {cpu:.2f} ms (epochs 2..N, all threads of the worker processes)"
            )
        return rate

    # (a) first, before Ray starts, so no Ray process shares the CPU with it.
    import tensorflow as tf

    from core.training import run_training

    limit_tf_threads(cores)
    summary = run_training(config("single"), tf.distribute.get_strategy(), log=lambda line: print(f"  (a) {line}"))
    single_history = summary["history"]
    single = show(f"(a) single process, no Ray, {cores} TF threads", single_history, 1)

    # (b) and (c): a fresh local Ray whatever RAY_ADDRESS says: (a) ran here, so the workers must share this machine.
    # Ray starts worker processes at niceness 15 (RAY_worker_niceness); (a) runs at 0.  On a machine shared with
    # other work that alone made (b) lose a third of its throughput, which is the neighbours' load, not Ray's
    # cost, so the workers here run at the same priority as (a).
    import ray

    from cluster.runtime import start_local_ray

    sampler = RayCpuSampler().start()
    if not ray.is_initialized():
        start_local_ray(env_vars={"RAY_worker_niceness": "0"})
        from cluster.runtime import local_state_api

        lines_after.append(
            f"[bench] Ray for (b) and (c): embedded, dashboard {'on' if local_state_api() else 'off'}, "
            "lean settings of cluster/runtime.py (LEAN_LOCAL_RAY_ENV)"
        )
        from cluster.ray_output import install

        install()  # worker records drawn like local ones, Ray's chatter to the log file (as the entry points do)
    rates: dict[int, float] = {}
    histories: dict[int, list[dict]] = {}
    try:
        for workers in (1, 2):
            cfg = config(f"ray{workers}")
            history = _ray_history(cfg, workers, cores, out, "[bench] Ray Train with")
            if history is None:
                return 1
            histories[workers] = history
            label = "(b)" if workers == 1 else "(c)"
            rates[workers] = show(
                f"{label} Ray Train, {workers} worker(s) x {max(1, cores // workers)} CPU", histories[workers], workers
            )
    finally:
        sampler.stop()
        ray.shutdown()

    b = histories[1]
    lines_after.append(
        f"[bench] (b) last epoch / second epoch: {b[-1]['images_per_s'] / b[1]['images_per_s']:.3f} "
        "(target >= 0.95: no decline over the run)"
    )
    if "ended_at" in b[0]:
        t_start, t_end = b[0]["ended_at"], b[-1]["ended_at"]
        cpu = sampler.between(t_start, t_end)
        wall = max(t_end - t_start, 1e-9)
        ray_roles = {k: v for k, v in cpu.items() if k != "train worker"}
        share = sum(ray_roles.values()) / wall / cores
        parts = ", ".join(
            f"{k} {100 * v / wall / cores:.1f}%" for k, v in sorted(ray_roles.items(), key=lambda kv: -kv[1])
        )
        lines_after.append(
            f"[bench] (b) Ray's own processes during epochs 2..{len(b)}: {100 * share:.1f}% of the node's CPU "
            f"({cores} cores, {wall:.0f} s): {parts}"
        )
        lines_after.append(
            f"[bench] (b) train worker: {100 * cpu.get('train worker', 0.0) / wall / cores:.1f}% of the node's CPU"
        )
        # Growth check: Ray's share over each epoch of (b), epochs 2..N (a daemon whose cost grows shows here).
        per_epoch = []
        for prev, cur in zip(b[:-1], b[1:], strict=True):
            window = sampler.between(prev["ended_at"], cur["ended_at"])
            span = max(cur["ended_at"] - prev["ended_at"], 1e-9)
            per_epoch.append(100 * sum(v for k, v in window.items() if k != "train worker") / span / cores)
        lines_after.append(
            "[bench] (b) Ray's own processes per epoch (2..N), % of the node: "
            + ", ".join(f"{v:.1f}" for v in per_epoch)
        )
    lines_after.append(f"[bench] (a) training CPU s per epoch: {_per_epoch(single_history, 'train_cpu_s', '{:.2f}')}")
    lines_after.append(f"[bench] (b) training CPU s per epoch: {_per_epoch(b, 'train_cpu_s', '{:.2f}')}")
    for label, hist in (("(a)", single_history), ("(b)", b)):
        if "ended_at" in hist[0]:
            outside = [
                cur["ended_at"] - prev["ended_at"] - cur["epoch_s"]
                for prev, cur in zip(hist[:-1], hist[1:], strict=True)
            ]
            lines_after.append(
                f"[bench] {label} seconds per epoch outside the train steps (validation, BatchNorm refresh"
                f"{', checkpoint + report' if label == '(b)' else ''}): {', '.join(f'{v:.2f}' for v in outside)}"
            )
    costs = [(h["prev_checkpoint_s"], h["prev_report_s"]) for h in b[1:] if "prev_checkpoint_s" in h]
    if costs:
        lines_after.append(
            "[bench] (b) per epoch, checkpoint write / ray.train.report (copy to storage, barrier): "
            + ", ".join(f"{c:.2f}/{r:.2f}" for c, r in costs)
            + " s"
        )
    # Cores the training process kept busy during the train steps: what (b) loses to Ray's daemons shows here.
    for label, hist in (("(a)", single_history), ("(b)", b)):
        busy = [h["train_cpu_s"] / h["epoch_s"] for h in hist[1:] if "train_cpu_s" in h]
        if busy:
            lines_after.append(
                f"[bench] {label} training process busy during the train steps: "
                f"{statistics.median(busy):.2f} of {cores} cores (median of epochs 2..N)"
            )
    refresh = [h["bn_refresh_s"] / h["epoch_s"] for h in b[1:] if h.get("bn_refresh_s")]
    if refresh:
        lines_after.append(
            f"[bench] (b) BatchNorm statistics refresh after each epoch: {100 * statistics.median(refresh):.1f}% "
            "of the epoch's train-step time (outside images/s)"
        )
    lines_after.append(f"[bench] 2 workers vs 1, (c)/(b): x{rates[2] / rates[1]:.2f}")
    # The load after always includes the bench's own saturated cores, so only the load before judges quietness.
    load_after, _ = _load_line("after", cores)
    lines_after.append(load_after)
    if not quiet_before:
        lines_after.append(
            "[bench] " + "!" * 78 + f"\n[bench] WARNING: the machine was NOT quiet (1-minute load above "
            f"{QUIET_LOAD_PER_CORE * cores:.2f}): other work shared the CPUs, so these images/s and ray_overhead "
            "measure the neighbours as much as Ray.\n[bench] Re-run on an idle machine before quoting them; "
            "the CPU-time figures above are the robust ones.\n[bench] " + "!" * 78
        )
    sys.stderr.flush()
    print("\n".join(lines_after))
    print(f"ray_overhead={single / rates[1] - 1:.3f}", flush=True)
    return 0


def _uniform_epochs(history: list[dict]) -> list[int]:
    """Epochs after the first whose validation predictions were all one class."""
    return [h["epoch"] for h in history[1:] if h.get("val_predicted_classes", 2) <= 1]


def run_parity(args: argparse.Namespace) -> int:
    """The demo recipe (jobs/demo.py) under Ray Train with 1 worker and with 2: do two workers learn like one?

    Prints each run's per-epoch validation macro-F1 and number of predicted classes, then one summary line:
    the best macro-F1 of each, their difference (target <= 0.01) and the epochs after the first at which the
    2-worker model predicted a single class for every validation image (target: none).  Exit code 0 either way:
    it reports, the test suite asserts (tests/test_train_parity.py).
    """
    import ray

    from cluster.runtime import start_local_ray
    from core.training import from_scratch_recipe

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    cores = os.cpu_count() or 1
    manifest = _archive(out, args.images)
    start_local_ray(env_vars={"RAY_worker_niceness": "0"})
    from cluster.ray_output import install

    install()
    histories: dict[int, list[dict]] = {}
    try:
        for workers in (1, 2):
            recipe = from_scratch_recipe(
                manifest, os.path.join(out, f"bundle_{workers}w"), args.backbone, args.image_size, args.epochs
            )
            cfg = dataclasses.replace(recipe, base_lr=args.lr)
            history = _ray_history(cfg, workers, cores, out, "[parity]")
            if history is None:
                return 1
            histories[workers] = history
    finally:
        ray.shutdown()
    sys.stderr.flush()
    best = {w: max(h["val_macro_f1"] for h in hist) for w, hist in histories.items()}
    for w, hist in histories.items():
        print(f"[parity] {w} worker(s) val macro-F1 per epoch: {_per_epoch(hist, 'val_macro_f1', '{:.3f}')}")
        print(f"[parity] {w} worker(s) predicted classes per epoch: {_per_epoch(hist, 'val_predicted_classes', '{}')}")
    uniform = _uniform_epochs(histories[2])
    diff = best[1] - best[2]
    ok = not uniform and abs(diff) <= 0.01
    print(
        f"parity: best_val_macro_f1 1w={best[1]:.3f} 2w={best[2]:.3f} diff={diff:+.3f} "
        f"uniform_epochs_after_first_2w={uniform} ok={ok}",
        flush=True,
    )
    return 0


def register(sub) -> None:
    """``train`` and ``train-parity`` of ``python -m jobs.bench``: their sub-commands and flags."""
    p = sub.add_parser("train", help="single-process loop vs Ray Train with 1 and 2 workers")
    p.add_argument("--images", type=int, default=1200)
    p.add_argument("--backbone", default="mobilenet_v3_small")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=8, help="at least 3; the median is over epochs 2..N")
    p.add_argument("--out", default="bench_out/train")
    p.set_defaults(bench_run=run_bench)
    q = sub.add_parser(
        "train-parity", help="the demo recipe with 1 and with 2 Ray Train workers: per-epoch val macro-F1 side by side"
    )
    q.add_argument("--images", type=int, default=1400)
    q.add_argument("--backbone", default="mobilenet_v3_small")
    q.add_argument("--image-size", type=int, default=96)
    q.add_argument("--epochs", type=int, default=14)
    q.add_argument("--lr", type=float, default=2e-3, help="base LR for a global batch of 64 (the demo's)")
    q.add_argument("--out", default="bench_out/train_parity")
    q.set_defaults(bench_run=run_parity)
