"""Connecting to Ray and keeping TensorFlow from oversubscribing the cores inside Ray workers."""

from __future__ import annotations

import os
import signal
import threading

import ray

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore::DeprecationWarning"}


def ensure_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Join the cluster the job was submitted to, or start an embedded local Ray when there is none."""
    if ray.is_initialized():
        return
    on_sigterm = signal.getsignal(signal.SIGTERM)
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        # A submitted job already has its runtime env (working_dir, env_vars): adding one here would conflict.
        ray.init(address=address, log_to_driver=True)
    else:
        start_local_ray(num_cpus, num_gpus)
    # ray.init replaces the driver's SIGTERM handler with its own sys.exit(15); an entry point's handler
    # (jobs.common: unwind, release the lease, exit 143) is put back.
    if callable(on_sigterm) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)
    from cluster.ray_output import install

    install()  # worker output: scanlabel's records to the console, the rest to the log (cluster/ray_output.py)


# Ray's own background work that an embedded one-node Ray pays for and nothing in scanlabel reads: each entry was
# measured during a Ray Train run on the 2-core development machine (docs/training.md, "The embedded Ray"): with
# the dashboard off too, Ray's own processes went from 5.9 % to 4.3 % of the node's CPU on a quiet machine.
# Set with setdefault before Ray starts (its processes read them from the environment they inherit), so a user's
# own setting wins.  Only for the Ray this process starts: a cluster the job is submitted to keeps its operator's
# settings.
LEAN_LOCAL_RAY_ENV = {
    # Prometheus metrics recorded and exported by every core worker, the raylet and the GCS (nothing scrapes them).
    "RAY_enable_metrics_collection": "0",
    # Task state events sent to the GCS every second by every worker: observability only (`ray list tasks`).
    "RAY_task_events_report_interval_ms": "0",
    # Per-handler event-loop statistics in every Ray process (debug dumps).
    "RAY_event_stats": "0",
    # The log monitor re-globs the log directory every 0.1 s below 1,000 files; every 2 s instead (new workers'
    # logs are read from their start, so nothing is lost, only picked up up to 2 s later).
    "RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0",
    "LOG_NAME_UPDATE_INTERVAL_S": "2",
    # The dashboard agent's psutil sweep of every process, every 5 s -> 30 s (the dashboard's node page only).
    "REPORTER_UPDATE_INTERVAL_MS": "30000",
    # Ray Train's own Prometheus metrics (controller and worker callbacks on every report).
    "RAY_TRAIN_METRICS_ENABLED": "0",
    # A watcher actor polling for spot-instance drains: a local embedded node is never preempted.
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}

# (GCS address, serves the state API) of the Ray this process started last; cluster.train reads it.
_local_ray: tuple[str, bool] | None = None


def start_local_ray(
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    env_vars: dict[str, str] | None = None,
    include_dashboard: bool | None = None,
) -> None:
    """A fresh embedded Ray on this machine, as every entry point (and the training benchmark) starts it.

    Lean by default (docs/training.md): :data:`LEAN_LOCAL_RAY_ENV`, and no dashboard unless ``include_dashboard`` or
    ``SCANLABEL_RAY_DASHBOARD=1`` asks for it.  The dashboard head and its module processes took 1.1-1.3 % of a
    2-core node during training, idle or not, and nothing in scanlabel reads it: its one user was Ray Train V2's
    PlacementGroupCleaner, which asks the state API every second whether the Train controller is alive, to free
    the workers' placement group should the controller die while the cluster lives on.  An embedded Ray ends with
    this process, so :func:`cluster.train.train` leaves that cleaner out when the state API is not served
    (:func:`local_state_api`) instead of letting it fail, and warn, once a second.
    """
    global _local_ray
    if include_dashboard is None:
        include_dashboard = os.environ.get("SCANLABEL_RAY_DASHBOARD", "0") == "1"
    for key, value in LEAN_LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)
    ray.init(
        address="local",  # always a fresh embedded Ray: never a stale /tmp/ray/ray_current_cluster
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        runtime_env={"env_vars": {**QUIET_ENV, **(env_vars or {})}},
        include_dashboard=include_dashboard,
        log_to_driver=True,
    )
    _local_ray = (ray.get_runtime_context().gcs_address, include_dashboard)


def local_state_api() -> bool | None:
    """Whether the embedded Ray :func:`start_local_ray` started serves the state API; None when Ray came from
    elsewhere (a cluster, or a caller's own ``ray.init``), which keeps Ray's defaults."""
    if _local_ray is None or not ray.is_initialized() or ray.get_runtime_context().gcs_address != _local_ray[0]:
        return None
    return _local_ray[1]


def limit_tf_threads(num_threads: int) -> None:
    """Pin TF's thread pools to the CPUs Ray granted this worker (call before any TF op runs)."""
    import tensorflow as tf

    n = max(1, int(num_threads))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, n)))
    except RuntimeError:
        pass  # already initialised in this process: settings are fixed, nothing to do


def cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))
