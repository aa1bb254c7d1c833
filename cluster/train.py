"""Ray Train glue: one TensorflowTrainer running :func:`core.training.run_training` on every worker."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import ray
import ray.train
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.tensorflow import TensorflowTrainer

from cluster.runtime import limit_tf_threads
from core.training import TrainConfig, run_training


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    import tensorflow as tf

    limit_tf_threads(config.pop("_cpus_per_worker", 1))
    cfg = TrainConfig.from_dict(config)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if world > 1 else tf.distribute.get_strategy()

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        checkpoint = Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    resume_dir = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        resume_dir = tempfile.mkdtemp(prefix="scanlabel-resume-")
        checkpoint.to_directory(resume_dir)
    run_training(cfg, strategy, rank, world, report, resume_dir)


def train(
    cfg: TrainConfig,
    workers: int = 1,
    gpus_per_worker: float = 0,
    cpus_per_worker: int | None = None,
    storage_path: str | None = None,
    run_name: str | None = None,
    max_failures: int = 0,
):
    """Run data-parallel training on the connected Ray cluster; returns Ray Train's Result."""
    if cpus_per_worker is None:
        total = int(ray.cluster_resources().get("CPU", 1))
        cpus_per_worker = max(1, total // max(workers, 1))
    config = cfg.to_dict()
    config["_cpus_per_worker"] = cpus_per_worker
    trainer = TensorflowTrainer(
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
            name=run_name or "scanlabel-train",
            storage_path=storage_path or os.path.join(tempfile.gettempdir(), "scanlabel-ray-train"),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    return trainer.fit()
