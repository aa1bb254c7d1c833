"""Before the first step: devices, the class list and split, this worker's shard, the validation shard, and the
loop state (new, or read back from a checkpoint).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.io.manifests import read_manifest
from core.model.augment import AugmentConfig
from core.model.preprocess import PreprocessConfig
from core.training import data as dataset
from core.training.config import CHECKPOINT_STATE, REFERENCE_BATCH, TrainConfig

# --- set-up ---------------------------------------------------------------------------------------------------


def check_devices(cfg: TrainConfig, rank: int, world: int, log: Callable[[str], None]) -> None:
    """Refuse (or warn about) device combinations TensorFlow cannot run, before any work starts."""
    import tensorflow as tf

    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    if cfg.xla and world > 1 and not on_gpu:
        # TF 2.21 fails at the first step with "Collectives are not yet implemented for CPU devices when
        # compiling with XLA"; say so before any work starts.
        raise ValueError(
            "xla (jit_compile) with several CPU workers is not supported (TensorFlow has no XLA collectives on "
            "CPU); use GPUs or a single worker"
        )
    if cfg.mixed_precision and not on_gpu and rank == 0:
        log("[train] note: mixed_float16 on CPU is correct but emulated and slower; it pays off on GPUs")


@dataclass
class Setup:
    """What the config and the manifest decide before any model exists: rows, split, sizes, step counts."""

    cfg: TrainConfig
    rows: dataset.LabelledRows
    train_rows: dataset.LabelledRows
    val_rows: dataset.LabelledRows
    classes: list[str]
    size: int
    pre: PreprocessConfig
    global_batch: int
    lr: float
    steps: int
    class_weights: np.ndarray

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def set_up(cfg: TrainConfig, rank: int, world: int, log: Callable[[str], None]) -> Setup:
    """Read the manifest, split it, and derive batch, learning rate (linear scaling) and steps per epoch."""
    from core.model import backbones
    from core.trust.confidence import TRAINABLE_OOD_METHODS

    if cfg.ood_method not in TRAINABLE_OOD_METHODS:
        raise ValueError(f"ood_method must be one of {TRAINABLE_OOD_METHODS}, got {cfg.ood_method!r}")
    if not 0.0 <= cfg.target_abstention < 1.0:
        raise ValueError(f"target_abstention must be in [0, 1), got {cfg.target_abstention}")
    table = read_manifest(cfg.manifest)
    label_map = dataset.load_label_map(cfg.label_map)
    rows = dataset.labelled_rows(table, cfg.classes, label_map)
    train_rows, val_rows = dataset.split(rows, cfg.val_fraction, cfg.seed)
    classes = rows.classes
    size = cfg.image_size or backbones.get_backbone(cfg.backbone).default_size
    global_batch = cfg.batch_size * world
    lr = cfg.base_lr * global_batch / REFERENCE_BATCH
    steps = cfg.steps_per_epoch or max(1, int(np.ceil(len(train_rows) / global_batch)))
    weights_vec = dataset.class_weights(train_rows) if cfg.class_weighting else np.ones(len(classes), np.float32)
    if rank == 0:
        log(
            f"[train] {len(rows)} labelled rows ({len(train_rows)} train / {len(val_rows)} val), "
            f"{len(classes)} classes, unmapped={sum(rows.unmapped.values())}; workers={world} "
            f"global_batch={global_batch} lr={lr:.2e} steps/epoch={steps}"
        )
        if rows.unmapped:
            log(
                f"[train] left out {sum(rows.unmapped.values())} rows whose label maps onto no class "
                f"(label: rows): {dict(sorted(rows.unmapped.items()))}"
            )
    return Setup(
        cfg=cfg,
        rows=rows,
        train_rows=train_rows,
        val_rows=val_rows,
        classes=classes,
        size=size,
        pre=PreprocessConfig(image_size=size),
        global_batch=global_batch,
        lr=lr,
        steps=steps,
        class_weights=weights_vec,
    )


def train_dataset(cfg: TrainConfig, setup: Setup, rank: int, world: int, start_epoch: int):
    """This worker's endless training stream, fast-forwarded past the epochs a resumed run already did."""
    return dataset.make_train_dataset(
        dataset.shard(setup.train_rows, rank, world),
        setup.pre,
        cfg.batch_size,
        cfg.seed * 1000 + rank,
        AugmentConfig() if cfg.augment else None,
        setup.class_weights,
        parallel=cfg.decode_threads,
        skip_examples=start_epoch * setup.steps * cfg.batch_size,
    )


@dataclass
class ValShard:
    """This worker's rows of the validation split, decoded once: ``kept`` indexes the rows that decoded."""

    x: np.ndarray
    y: np.ndarray
    kept: np.ndarray
    codes: list[str | None]

    @classmethod
    def decode(cls, cfg: TrainConfig, setup: Setup, rank: int, world: int) -> ValShard:
        mine = dataset.shard(setup.val_rows, rank, world)
        return cls(*dataset.decode_indexed(mine, setup.pre, cfg.decode_threads))


# --- resume ---------------------------------------------------------------------------------------------------


def new_state(cfg: TrainConfig, setup: Setup, world: int) -> dict[str, Any]:
    """The loop state a checkpoint stores (JSON): epoch counter, history, early-stopping bookkeeping."""
    return {
        "epoch": 0,
        "history": [],
        "best_f1": -1.0,
        "best_epoch": -1,
        "stale": 0,
        "resumes": [],
        "optimizer_phase": None,
        "classes": setup.classes,
        "backbone": cfg.backbone,
        "image_size": setup.size,
        "world": world,
    }


def resume_state(
    resume_dir: str,
    state: dict[str, Any],
    cfg: TrainConfig,
    setup: Setup,
    rank: int,
    world: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The checkpoint's loop state, refused when it belongs to a different model (classes, backbone, size)."""
    with open(os.path.join(resume_dir, CHECKPOINT_STATE)) as f:
        state = {**state, **json.load(f)}
    for key, mine in (("classes", setup.classes), ("backbone", cfg.backbone), ("image_size", setup.size)):
        if state[key] != mine:
            raise ValueError(f"cannot resume: checkpoint has {key}={state[key]!r}, this run {mine!r}")
    if state["world"] != world and rank == 0:
        log(f"[train] note: resuming with {world} workers, checkpoint had {state['world']}: data order differs")
    state["resumes"].append({"epoch": int(state["epoch"]), "workers": world})
    state["world"] = world
    return state
