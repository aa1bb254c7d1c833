"""Connecting to Ray and keeping TensorFlow from oversubscribing the cores inside Ray workers."""

from __future__ import annotations

import os

import ray

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore::DeprecationWarning"}


def ensure_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Join the cluster the job was submitted to, or start an embedded local Ray when there is none."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        # A submitted job already has its runtime env (working_dir, env_vars): adding one here would conflict.
        ray.init(address=address, log_to_driver=True)
    else:
        start_local_ray(num_cpus, num_gpus)
    from cluster.ray_output import install

    install()  # worker output: scanlabel's records to the console, the rest to the log (cluster/ray_output.py)


def start_local_ray(
    num_cpus: int | None = None, num_gpus: int | None = None, env_vars: dict[str, str] | None = None
) -> None:
    """A fresh embedded Ray on this machine, as every entry point (and the training benchmark) starts it.

    The dashboard stays on: Ray Train V2's PlacementGroupCleaner asks the state API (served by the dashboard)
    every second whether the controller is alive, to free the workers' placement group if the driver dies.
    Without the dashboard each of those calls fails and logs a warning, once a second, for the whole run, and a
    crashed driver's placement group is never freed.  What it costs was measured (BENCHMARKS.md, issue 11):
    about 2 % of one core during a training run, no growth over epochs.
    """
    ray.init(
        address="local",  # always a fresh embedded Ray: never a stale /tmp/ray/ray_current_cluster
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        runtime_env={"env_vars": {**QUIET_ENV, **(env_vars or {})}},
        include_dashboard=True,
        log_to_driver=True,
    )


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
