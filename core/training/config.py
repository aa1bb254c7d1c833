"""What a training run is asked to do: :class:`TrainConfig`, the demo's recipe, the phase schedule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass
from typing import Any

from core.options import option

REFERENCE_BATCH = 64
# The model's weights as one .npz of ``model.weights`` in order, like the best weights: Keras's .weights.h5 took
# 0.2 s of CPU per checkpoint for mobilenet_v3_small (one h5py dataset per variable), the .npz 15 ms.
CHECKPOINT_WEIGHTS = "weights.npz"
CHECKPOINT_WEIGHTS_H5 = "weights.weights.h5"  # checkpoints written before: still resumable
CHECKPOINT_BEST = "best_weights.npz"
CHECKPOINT_OPTIMIZER = "optimizer.npz"
CHECKPOINT_MODEL_STATE = "model_state.npz"
CHECKPOINT_STATE = "state.json"
VALIDATION_REPORT_DIR = "validation_report"


def _weights(text: str) -> str | None:
    return None if str(text).lower() == "none" else text


def _modalities(text: str) -> list[str]:
    from core.readers.scope import normalize_modalities

    return list(normalize_modalities(text) or ())


LR_SCHEDULES = ("cosine", "one_cycle")
PRECISIONS = ("float32", "bfloat16", "auto")
ONE_CYCLE_WARMUP = 0.3  # share of a phase's steps spent warming up under one_cycle


@dataclass
class TrainConfig:
    """What ``scanlabel train`` is asked to do; fields made with :func:`~core.options.option` are its flags."""

    manifest: str = option(MISSING, "--manifest", "Parquet manifest with uri, image_id, label")
    out: str = option(MISSING, "--out", "bundle directory to write (local, s3:// or gs://)")
    backbone: str = option("efficientnet_b0", "--backbone", "a registered backbone (core/model/backbones.py)")
    weights: str | None = option("imagenet", "--weights", "imagenet | none | PATH to a weights file", convert=_weights)
    image_size: int | None = option(None, "--image-size", "input size (default: the backbone's)", type=int)
    epochs: int = option(10, "--epochs", "epochs in all (head, then fine-tuning)", type=int)
    head_epochs: int = option(3, "--head-epochs", "epochs on the frozen base before fine-tuning", type=int)
    fine_tune_blocks: int = option(2, "--fine-tune-blocks", "top blocks of the base to unfreeze", type=int)
    batch_size: int = option(32, "--batch-size", "per worker", type=int)
    base_lr: float = option(1e-3, "--lr", "base LR for a global batch of 64 (scaled linearly)", type=float)
    fine_tune_lr_factor: float = 0.1
    weight_decay: float = 1e-4
    val_fraction: float = option(0.2, "--val-fraction", "share of the images held out for validation", type=float)
    seed: int = option(0, "--seed", "seed of the split, the weights and the augmentation", type=int)
    augment: bool = option(True, "--no-augment", "train without augmentation", action="store_false")
    class_weighting: bool = option(
        True, "--no-class-weights", "no inverse-frequency class weights", action="store_false"
    )
    patience: int = option(4, "--patience", "early stopping on validation macro-F1", type=int)
    label_map: str | None = option(None, "--label-map", "JSON mapping source labels onto model classes")
    mixed_precision: bool = option(False, "--mixed-precision", "mixed_float16 (GPU)", action="store_true")
    xla: bool = option(False, "--xla", "compile the train step with XLA", action="store_true")
    steps_per_epoch: int | None = option(None, "--steps-per-epoch", "optimizer steps per epoch", type=int)
    precision: str = option(
        "float32",
        "--precision",
        "float32; bfloat16 (mixed_bfloat16: bfloat16 arithmetic, float32 weights; pays on CPUs with AMX); auto = "
        "bfloat16 on a CPU with AMX-BF16, float32 elsewhere. The bundle is float32 either way",
        choices=PRECISIONS,
    )
    lr_schedule: str = option(
        "cosine",
        "--lr-schedule",
        "cosine: decay from the base LR over each phase; one_cycle: warm up from LR/25 over the first 30%% of "
        "the phase, then cosine decay (reaches the same accuracy from scratch in fewer epochs: docs/training.md)",
        choices=LR_SCHEDULES,
    )
    decode_threads: int = 2
    # Batches per worker over which BatchNorm statistics are recomputed after each from-scratch epoch (0: off);
    # see core.training.distributed.refresh_batchnorm.
    bn_refresh_batches: int = 4
    classes: list[str] | None = None
    # DICOM modalities the model is for (core/readers/scope.py); recorded in training.json, enforced at labeling.
    modalities: list[str] | None = option(
        None,
        "--modalities",
        "DICOM modalities the model is for, recorded in the bundle; labeling skips other modalities as "
        "out_of_scope (default: CR,DX,RG, projection radiography)",
        type=_modalities,
        metavar="CR,DX,RG",
    )
    target_abstention: float = option(
        0.01,
        "--target-abstention",
        "share of in-domain validation images allowed to abstain when the bundle's min_confidence and "
        "max_ood_score are fitted (default 0.01)",
        type=float,
    )
    ood_method: str = option(
        "auto",
        "--ood-method",
        "the ood_score labeling writes: auto = p_other (the learnt 'other' class) when the manifest has "
        "'other' rows, else mahalanobis (feature distance to the training split)",
        choices=("auto", "p_other", "mahalanobis", "energy", "max_logit", "msp"),
    )
    noisy_labels: bool = option(
        False,
        "--noisy-labels",
        "the labels are header-derived and partly wrong (docs/weak-labels.md): out-of-fold predictions, "
        "confident learning prunes the rows it finds mislabelled, the final model trains on the rest",
        action="store_true",
    )
    folds: int = option(4, "--folds", "with --noisy-labels: folds of the out-of-fold predictions", type=int)
    fold_epochs: int | None = option(
        None, "--fold-epochs", "with --noisy-labels: epochs of each fold's model (default: --epochs)", type=int
    )
    # Set by core/training/noisy.py, not flags: a fold's run writes held-out probabilities instead of a bundle,
    # and the final run records what the weak labels came to in training.json.
    holdout_manifest: str | None = None
    weak_labels: dict[str, Any] | None = None
    stop_after_epoch: int | None = option(
        None,
        "--stop-after-epoch",
        "pause after this epoch (checkpoint kept, no bundle yet); continue later with --resume",
        type=int,
    )

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

    No pretrained weights (none can be fetched offline), batch 32, a one-cycle schedule peaking at base LR 4e-3
    (reached the demo's trust targets in 9 epochs at 88 px where the cosine schedule at 2e-3 needed 18 at 96 px),
    bfloat16 where the CPU has AMX, and no early stop: the last epochs are the ones that settle, and the best epoch
    is kept.
    """
    return TrainConfig(
        manifest=manifest,
        out=out,
        backbone=backbone,
        weights=None,
        image_size=image_size,
        epochs=epochs,
        batch_size=32,
        base_lr=4e-3,
        lr_schedule="one_cycle",
        precision="auto",
        patience=epochs,
        seed=seed,
    )


def lr_schedule(cfg: TrainConfig, phase_lr: float, phase_steps: int) -> Any:
    """The phase's learning rate as a Keras schedule, following the optimizer's step counter (which checkpoints
    restore, so resumed runs stay exact).

    ``cosine``: from ``phase_lr`` down to 2 % of it; a constant rate left the last epochs noisy (validation
    macro-F1 jumping by +-3 points between epochs), and the model a bundle ships is the end of that.
    ``one_cycle`` (Smith & Topin, 2019): a linear warm-up from ``phase_lr``/25 over the first 30 % of the steps,
    then the same cosine decay; the high middle rate lets a from-scratch run converge in fewer epochs.
    """
    import keras

    steps = max(1, phase_steps)
    if cfg.lr_schedule == "one_cycle":
        warmup = max(1, round(ONE_CYCLE_WARMUP * steps))
        return keras.optimizers.schedules.CosineDecay(
            phase_lr / 25.0, decay_steps=max(1, steps - warmup), alpha=0.02, warmup_target=phase_lr, warmup_steps=warmup
        )
    return keras.optimizers.schedules.CosineDecay(phase_lr, decay_steps=steps, alpha=0.02)


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU has AMX-BF16 tiles (Sapphire Rapids and later), where oneDNN runs bfloat16 convolutions
    several times faster than float32 ones; elsewhere bfloat16 is emulated and gains little."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


def resolve_precision(cfg: TrainConfig, on_gpu: bool) -> str:
    """``float32``, ``mixed_float16`` or ``mixed_bfloat16``: the Keras dtype policy this worker trains under."""
    if cfg.mixed_precision:
        return "mixed_float16"
    if cfg.precision == "bfloat16" or (cfg.precision == "auto" and not on_gpu and cpu_has_amx_bf16()):
        return "mixed_bfloat16"
    return "float32"


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
