"""Ray Train glue: one Ray Train V2 trainer running :func:`core.training.run_training` on every worker.

Fault tolerance and resumption are Ray Train V2's: every epoch rank 0 reports a checkpoint to
``RunConfig(storage_path, name)``; after a worker dies the controller restarts the group (up to
``FailureConfig(max_failures)``) and ``ray.train.get_checkpoint()`` hands the new workers the latest one.  A
*new* ``fit()`` with the same name and storage path finds the run's checkpoint-manager snapshot and does the
same, which is what ``--resume`` uses (V2 refuses ``resume_from_checkpoint``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from typing import Any

import ray
import ray.train
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

from cluster.runtime import ensure_ray, limit_tf_threads, local_state_api
from core.io import storage
from core.training import TrainConfig, run_training
from core.training.faults import WorkerExit

DEFAULT_STORAGE = os.path.join(tempfile.gettempdir(), "scanlabel-ray-train")
# Written by Ray Train V2 into STORAGE/NAME once a run has reported; its presence is what makes a run resumable.
SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"


def _worker_logger() -> logging.Logger:
    """scanlabel's records (epoch lines, step progress) travel to the driver as marked lines (cluster/ray_output.py).

    The driver's entry point then draws them once (a progress bar, or plain lines), while Ray Train's own output
    (checkpoint reports, metric dicts) goes to the log file.  TensorFlow's Python logger has its own handler and
    also propagates to the root Ray Train configures, which doubled its lines: only its warnings are kept, once.
    """
    from cluster.ray_output import forward_worker_logs

    tf_logger = logging.getLogger("tensorflow")
    tf_logger.setLevel(logging.WARNING)
    tf_logger.propagate = False
    forward_worker_logs("scanlabel")
    return logging.getLogger("scanlabel.train")


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    import tensorflow as tf

    limit_tf_threads(config.pop("_cpus_per_worker", 1))
    fault = config.pop("_fault", None)
    cfg = TrainConfig.from_dict(config)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if world > 1 else tf.distribute.get_strategy()
    logger = _worker_logger()

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        checkpoint = Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    resume_dir = None
    checkpoint = ray.train.get_checkpoint()
    try:
        if checkpoint is not None:
            resume_dir = tempfile.mkdtemp(prefix="scanlabel-resume-")
            checkpoint.to_directory(resume_dir)
        run_training(cfg, strategy, rank, world, report, resume_dir, log=logger.info, fault=fault)
    finally:
        if resume_dir:
            shutil.rmtree(resume_dir, ignore_errors=True)


def _trainer_class(workers: int) -> type:
    """Ray Train's TensorflowTrainer for several workers; its base DataParallelTrainer for one.

    TensorflowTrainer's only addition is the backend that writes ``TF_CONFIG`` for MultiWorkerMirroredStrategy,
    which one worker does not use (it trains on the default strategy).  Its module imports TensorFlow, and so
    does the Train controller that unpickles its backend config: ~20 s of a one-worker run's start on 2 cores
    (BENCHMARKS.md, "Demo time"), spent in a process that never runs a TensorFlow op.

    Both drop the PlacementGroupCleaner on an embedded Ray without a state API: Train V2 starts a detached
    PlacementGroupCleaner actor that asks the state API (served by the dashboard) every second whether the
    controller is alive, to free the workers' placement group should the controller die while the cluster lives
    on.  :func:`cluster.runtime.start_local_ray` starts no dashboard by default (it cost 1.1-1.3 % of a 2-core
    node), so there the cleaner could only fail and warn once a second; and an embedded Ray ends with this process
    anyway.  Everywhere else (a cluster, a caller's own ``ray.init``) Ray's callbacks stay as they are.  The hook
    is Ray's private ``_create_default_callbacks``: if a Ray version renames it, nothing breaks, the cleaner simply
    stays.
    """
    if workers > 1:
        from ray.train.tensorflow import TensorflowTrainer as base
    else:
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer as base

    class _Trainer(base):
        def _create_default_callbacks(self):
            callbacks = super()._create_default_callbacks()
            if local_state_api() is not False:
                return callbacks
            try:
                from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
            except ImportError:
                return callbacks
            return [cb for cb in callbacks if not isinstance(cb, PlacementGroupCleanerCallback)]

    return _Trainer


def new_run_name() -> str:
    """A unique run name: reusing a name under the same storage would silently resume that run."""
    return f"scanlabel-train-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def run_exists(storage_path: str | None, run_name: str) -> bool:
    """Whether ``storage_path/run_name`` holds a Ray Train run that reported a checkpoint (so fit() resumes it)."""
    return storage.exists(storage.join(storage_path or DEFAULT_STORAGE, run_name, SNAPSHOT_FILE))


def train(
    cfg: TrainConfig,
    workers: int = 1,
    gpus_per_worker: float = 0,
    cpus_per_worker: int | None = None,
    storage_path: str | None = None,
    run_name: str | None = None,
    max_failures: int = 0,
    fault: WorkerExit | None = None,
):
    """Run data-parallel training on the connected Ray cluster; returns Ray Train's Result.

    An existing run of the same ``run_name`` under ``storage_path`` is continued from its latest checkpoint
    (Ray Train V2 semantics); without ``run_name`` a fresh unique one is used.  On a multi-node cluster
    ``storage_path`` must be shared storage (``s3://``, ``gs://`` or NFS).  Raises
    ``ray.train.TrainingFailedError`` when workers fail more than ``max_failures`` times.
    """
    if cpus_per_worker is None:
        total = int(ray.cluster_resources().get("CPU", 1))
        cpus_per_worker = max(1, total // max(workers, 1))
    config = cfg.to_dict()
    config["_cpus_per_worker"] = cpus_per_worker
    config["_fault"] = fault  # a worker exit injected on purpose (tests); never part of the TrainConfig
    trainer = _trainer_class(workers)(
        _train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=gpus_per_worker > 0,
            resources_per_worker={
                "CPU": cpus_per_worker,
                **({"GPU": gpus_per_worker} if gpus_per_worker else {}),
            },
        ),
        run_config=RunConfig(
            name=run_name or new_run_name(),
            storage_path=storage_path or DEFAULT_STORAGE,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    return trainer.fit()


def train_on_ray(cfg: TrainConfig, *, address: str | None = None, **kwargs: Any) -> tuple[Any, str | None]:
    """Join (or start) Ray and run :func:`train`; ``(result, error)`` so the entry point needs no Ray import.

    ``result`` is None when Ray Train gave up (``TrainingFailedError``: the run can be resumed from its last
    checkpoint); otherwise a failed run's error is the result's own."""
    ensure_ray(address)
    try:
        result = train(cfg, **kwargs)
    except ray.train.TrainingFailedError as e:
        return None, str(e)
    return result, (str(result.error) if result.error else None)


class FoldFailed(RuntimeError):
    """A training run of ``--noisy-labels`` failed (a fold, or the final model)."""


def train_noisy_on_ray(
    cfg: TrainConfig,
    *,
    address: str | None = None,
    storage_path: str | None = None,
    run_name: str,
    log=print,
    **kwargs: Any,
) -> tuple[Any, str | None]:
    """``--noisy-labels`` (:mod:`core.training.noisy`) with every run on Ray Train: the folds as runs
    ``RUN_NAME-fold-K``, the final model as ``RUN_NAME``; their files under ``STORAGE/RUN_NAME-weak-labels``.

    The manifest is checked before Ray starts; ``(result, error)`` as :func:`train_on_ray`."""
    from core.training.noisy import plan_weak_training, train_noisy

    plan_weak_training(cfg)  # refuses a manifest that cannot be trained before Ray starts
    storage_path = storage_path or DEFAULT_STORAGE
    work_dir = storage.join(storage_path, f"{run_name}-weak-labels")

    def train_fn(run_cfg: TrainConfig, name: str):
        ensure_ray(address)
        result = train(
            run_cfg, storage_path=storage_path, run_name=run_name if name == "final" else f"{run_name}-{name}", **kwargs
        )
        if result.error:
            raise FoldFailed(f"{name}: {result.error}")
        return result

    try:
        result, _ = train_noisy(cfg, train_fn, work_dir, log)
    except (ray.train.TrainingFailedError, FoldFailed) as e:
        return None, str(e)
    return result, None
