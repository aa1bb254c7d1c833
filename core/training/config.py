"""What a training run is asked to do: :class:`TrainConfig`, the demo's recipe, the phase schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

REFERENCE_BATCH = 64
# The model's weights as one .npz of ``model.weights`` in order, like the best weights: Keras's .weights.h5 took
# 0.2 s of CPU per checkpoint for mobilenet_v3_small (one h5py dataset per variable), the .npz 15 ms (issue 11).
CHECKPOINT_WEIGHTS = "weights.npz"
CHECKPOINT_WEIGHTS_H5 = "weights.weights.h5"  # checkpoints written before: still resumable
CHECKPOINT_BEST = "best_weights.npz"
CHECKPOINT_OPTIMIZER = "optimizer.npz"
CHECKPOINT_MODEL_STATE = "model_state.npz"
CHECKPOINT_STATE = "state.json"
VALIDATION_REPORT_DIR = "validation_report"


@dataclass
class TrainConfig:
    manifest: str
    out: str
    backbone: str = "efficientnet_b0"
    weights: str | None = "imagenet"
    image_size: int | None = None
    epochs: int = 10
    head_epochs: int = 3
    fine_tune_blocks: int = 2
    batch_size: int = 32
    base_lr: float = 1e-3
    fine_tune_lr_factor: float = 0.1
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    class_weighting: bool = True
    patience: int = 4
    label_map: str | None = None
    mixed_precision: bool = False
    xla: bool = False
    steps_per_epoch: int | None = None
    decode_threads: int = 2
    # Batches per worker over which BatchNorm statistics are recomputed after each from-scratch epoch (0: off);
    # see refresh_batchnorm.
    bn_refresh_batches: int = 4
    classes: list[str] | None = None
    # DICOM modalities the model is for (core/scope.py); recorded in training.json, enforced at labeling.
    modalities: list[str] | None = None
    # In-domain validation abstention the trust thresholds are fitted for (core/trust.py), and the OOD score.
    target_abstention: float = 0.01
    # "auto": p(other) when the classes include ``other`` (measured best, see core/trust.py), else Mahalanobis.
    ood_method: str = "auto"
    # Pause (checkpoint kept, no bundle) once this epoch is done; continue later with --resume.
    stop_after_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @property
    def pretrained(self) -> bool:
        return self.weights not in (None, "none", "None", "")


ReportFn = Callable[[dict[str, Any], str | None], None]


def from_scratch_recipe(
    manifest: str, out: str, backbone: str, image_size: int, epochs: int, seed: int = 0
) -> TrainConfig:
    """The demo's recipe, shared by the demo and the benchmarks that must measure what the demo trains.

    No pretrained weights (none can be fetched offline), batch 32 at base LR 2e-3, and no early stop: with a
    cosine schedule the last epochs are the ones that settle, and the best epoch is kept anyway.
    """
    return TrainConfig(
        manifest=manifest,
        out=out,
        backbone=backbone,
        weights=None,
        image_size=image_size,
        epochs=epochs,
        batch_size=32,
        base_lr=2e-3,
        patience=epochs,
        seed=seed,
    )


def phase_of(cfg: TrainConfig, epoch: int) -> str:
    """The phase of 0-based ``epoch``: ``head`` then ``fine_tune`` with pretrained weights, else ``scratch``."""
    if not cfg.pretrained:
        return "scratch"
    return "head" if epoch < cfg.head_epochs else "fine_tune"


def phase_epochs(cfg: TrainConfig, phase: str) -> int:
    """How many epochs ``phase`` lasts when the run goes the full ``cfg.epochs``."""
    if phase == "head":
        return min(cfg.head_epochs, cfg.epochs)
    if phase == "fine_tune":
        return max(1, cfg.epochs - cfg.head_epochs)
    return cfg.epochs
