"""The distributed training loop: a custom step under any ``tf.distribute`` strategy, no Ray inside.

Keras 3's ``model.fit`` breaks under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), so this is the
explicit loop: ``GradientTape`` inside ``strategy.run``, per-example loss averaged over the *global* batch with
``tf.nn.compute_average_loss``, gradients summed across workers by the Keras optimizer, metrics reduced with
``strategy.reduce``.  Ray Train (``cluster/train.py``) only supplies the strategy, the worker rank and a
``report`` callback; the benchmark runs the same loop with the default strategy and no Ray at all.

Transfer learning runs in two phases: the new head on a frozen base, then the top ``fine_tune_blocks`` blocks
unfrozen at a lower learning rate (BatchNorm stays in inference mode).  Without pretrained weights there is
nothing to preserve, so the whole network trains from the start.

Learning-rate rule (linear scaling, Goyal et al. 2017): ``lr = base_lr × global_batch / 64``.

Checkpoints hold everything a run depends on: weights, best weights, optimizer slots (so Adam continues
rather than restarts), the dropout RNG state, and the loop state; the input stream is fast-forwarded to the
same position.  A resumed run therefore takes the same steps an uninterrupted one would have taken.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core import dataset, errors
from core.augment import AugmentConfig
from core.metrics import macro_f1_from_confusion
from core.preprocess import PreprocessConfig

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
    # Test hooks: {"fail_at_epoch": E, "fail_marker": PATH[, "fail_rank": R, "fail_delay_s": S]} makes worker R
    # exit (os._exit) mid-epoch E, once: the marker file stops the restarted worker from doing it again.
    extra: dict[str, Any] = field(default_factory=dict)

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


def _fingerprint(uri: str) -> str:
    from core import storage

    return hashlib.sha256(storage.read_bytes(uri)).hexdigest()


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in (
        "tensorflow",
        "tensorflow-cpu",
        "keras",
        "ray",
        "numpy",
        "pyarrow",
        "pydicom",
        "opencv-python-headless",
    ):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def weights_digest(model) -> int:
    """A 48-bit digest of all weights: exact in float64, so it survives an all-reduce unchanged."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return int.from_bytes(h.digest()[:6], "big")


_REDUCERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _allreduce_sum(strategy, value: np.ndarray) -> np.ndarray:
    """Sum a host array across all workers (identity for a single worker).

    One ``tf.function`` per strategy, shape-relaxed: building a new one per call retraced (and re-keyed the
    collectives) every epoch.
    """
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1:
        return value
    reduce = _REDUCERS.get(strategy)
    if reduce is None:

        @tf.function(reduce_retracing=True)
        def reduce(t):
            per_replica = strategy.run(tf.identity, args=(t,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        _REDUCERS[strategy] = reduce
    return reduce(tf.constant(value)).numpy()


def sync_non_trainable(strategy, model, world: int) -> None:
    """Average BatchNorm moving statistics across workers.

    Gradients keep trainable weights identical, but moving statistics are updated from each worker's own
    batches and would drift apart (the problem DDP solves by broadcasting buffers).  Averaging them once per
    epoch keeps every replica identical, so any worker's copy is the model.
    """
    if world == 1:
        return
    variables = [v for v in model.non_trainable_weights if "float" in str(v.dtype)]
    if not variables:
        return
    flat = np.concatenate([v.numpy().astype(np.float64).ravel() for v in variables])
    mean = _allreduce_sum(strategy, flat) / world
    offset = 0
    for v in variables:
        n = int(np.prod(v.shape))
        v.assign(mean[offset : offset + n].reshape(v.shape).astype(v.dtype))
        offset += n


def bn_refresh_sample(cfg: TrainConfig, setup: Any, rank: int, world: int) -> np.ndarray:
    """The images :func:`refresh_batchnorm` recomputes statistics from: the first rows of this worker's shard.

    Empty when the run starts from pretrained weights, whose BatchNorm layers stay frozen in every phase.
    Decoded once, without augmentation (as validation and labeling see images), never from the training stream,
    whose position a resumed run must reproduce exactly.
    """
    if cfg.pretrained or cfg.bn_refresh_batches <= 0:
        return np.zeros((0, *setup.pre.shape), np.float32)
    mine = dataset.shard(setup.train_rows, rank, world)
    n = min(len(mine), cfg.bn_refresh_batches * cfg.batch_size)
    x, _, _, _ = dataset.decode_indexed(mine.subset(range(n)), setup.pre, cfg.decode_threads)
    return x


def refresh_batchnorm(
    strategy, model, base, images: np.ndarray, batch_size: int, world: int, cache: dict[str, Any] | None = None
) -> None:
    """Recompute BatchNorm moving statistics from the epoch's final weights, identical on every worker.

    Why: from scratch, validation runs BatchNorm on its moving averages, which trail weights that change fast
    early on.  With 2 workers an epoch has half the steps at twice the (linearly scaled) learning rate, and
    after two epochs the trailing statistics still turned every validation prediction into one class (val
    macro-F1 0.036 vs 0.706 for one worker; the same happens in one process with the 2-worker batch and rate, so
    it is not the per-worker averaging).  Averaging the batch statistics of ``images`` under the final weights
    (PreciseBN, Wu & Johnson 2021) gives the model's real population statistics; the per-worker averages are
    then averaged over workers, so every replica holds the same ones.  Trainable BatchNorm layers only: frozen
    ones (pretrained bases) keep theirs.  No random numbers are drawn, so resumed runs stay exact.
    """
    import keras
    import tensorflow as tf

    layers = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if layers and len(images):
        scaling = model.get_layer("backbone_input_scaling")
        momenta = [layer.momentum for layer in layers]
        sums = [[np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)] for layer in layers]
        try:
            for layer in layers:
                layer.momentum = 0.0  # a training-mode call then leaves exactly this batch's statistics
            cache = {} if cache is None else cache
            forward = cache.get("forward")
            if forward is None:  # traced once per run (with momentum 0, which the trace keeps), not every epoch
                forward = cache["forward"] = tf.function(lambda x: base(scaling(x), training=True))
            n_batches = 0
            for start in range(0, len(images) - batch_size + 1, batch_size) or [0]:
                forward(tf.constant(images[start : start + batch_size]))
                n_batches += 1
                for acc, layer in zip(sums, layers, strict=True):
                    acc[0] += layer.moving_mean.numpy()
                    acc[1] += layer.moving_variance.numpy()
        finally:
            for layer, momentum in zip(layers, momenta, strict=True):
                layer.momentum = momentum
        for acc, layer in zip(sums, layers, strict=True):
            layer.moving_mean.assign((acc[0] / n_batches).astype(layer.moving_mean.dtype))
            layer.moving_variance.assign((acc[1] / n_batches).astype(layer.moving_variance.dtype))
    sync_non_trainable(strategy, model, world)


def phase_of(cfg: TrainConfig, epoch: int) -> str:
    """The phase of 0-based ``epoch``: ``head`` then ``fine_tune`` with pretrained weights, else ``scratch``."""
    if not cfg.pretrained:
        return "scratch"
    return "head" if epoch < cfg.head_epochs else "fine_tune"


def _save_arrays(path: str, arrays: list[np.ndarray]) -> None:
    np.savez(path, *arrays)


def _load_arrays(path: str) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def _assign_all(variables, values: list[np.ndarray], what: str) -> None:
    variables = list(variables)
    if len(variables) != len(values):
        raise ValueError(f"checkpoint {what} has {len(values)} arrays, the model expects {len(variables)}")
    for var, val in zip(variables, values, strict=True):
        if tuple(var.shape) != tuple(val.shape):
            raise ValueError(f"checkpoint {what}: {var.path} has shape {tuple(var.shape)}, saved {val.shape}")
        var.assign(val)


def _model_state_variables(model) -> list:
    """Variables outside ``model.weights`` that still shape training: the dropout seed generators."""
    weight_ids = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weight_ids]


def load_checkpoint_weights(model, ckpt_dir: str) -> None:
    """Load a checkpoint's model weights into ``model`` (built like the run's): the .npz, or an older .weights.h5."""
    weights = os.path.join(ckpt_dir, CHECKPOINT_WEIGHTS)
    if os.path.exists(weights):
        _assign_all(model.weights, _load_arrays(weights), "weights")
    else:
        model.load_weights(os.path.join(ckpt_dir, CHECKPOINT_WEIGHTS_H5))


def keep_checkpoints(directory: str) -> ReportFn:
    """A ``report`` callback for runs without Ray: copies each epoch's checkpoint to ``directory/epoch_NNN``.

    Pass ``resume_dir=latest_checkpoint(directory)`` to :func:`run_training` to continue such a run.
    """
    os.makedirs(directory, exist_ok=True)

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        if ckpt_dir:
            shutil.copytree(ckpt_dir, os.path.join(directory, f"epoch_{int(metrics['epoch']):03d}"))

    return report


def latest_checkpoint(directory: str) -> str | None:
    """The newest checkpoint written by :func:`keep_checkpoints`, or None."""
    if not os.path.isdir(directory):
        return None
    names = sorted(n for n in os.listdir(directory) if n.startswith("epoch_"))
    return os.path.join(directory, names[-1]) if names else None


def _write_validation_report(out: str, metrics: dict[str, Any], rows: list[dict[str, Any]], title: str) -> None:
    """The same report ``scanlabel evaluate`` writes, for the held-out split, under ``BUNDLE/validation_report``.

    Written after the bundle is published (its files are not part of the hashed set), straight to the
    bundle directory or uploaded file by file to an object store.
    """
    from core import storage
    from core.evaluation import thumbnail
    from core.report import write_report

    if not storage.is_remote(out):
        write_report(os.path.join(out, VALIDATION_REPORT_DIR), metrics, rows, thumbnail=thumbnail, title=title)
        return
    with tempfile.TemporaryDirectory(prefix="scanlabel-valreport-") as tmp:
        write_report(tmp, metrics, rows, thumbnail=thumbnail, title=title)
        for name in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, name), "rb") as f:
                storage.write_bytes_atomic(storage.join(out, VALIDATION_REPORT_DIR, name), f.read())


def run_training(
    cfg: TrainConfig,
    strategy,
    rank: int = 0,
    world: int = 1,
    report: ReportFn | None = None,
    resume_dir: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train on this worker's shard in lock-step with the others; rank 0 writes the bundle.

    ``report(metrics, checkpoint_dir)`` is called by every worker after every epoch (rank 0 passes a
    checkpoint directory, which is deleted once ``report`` returns); ``resume_dir`` is such a directory to
    continue from.  Returns the final summary (history, best epoch, model_id on rank 0; ``paused`` when
    ``stop_after_epoch`` ended the run before ``epochs``).
    """
    import keras

    previous_policy = keras.mixed_precision.global_policy()
    try:
        if cfg.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        return _run(cfg, strategy, rank, world, report, resume_dir, log)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _run(
    cfg: TrainConfig,
    strategy,
    rank: int,
    world: int,
    report: ReportFn | None,
    resume_dir: str | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The whole run, in the order it happens; every step is a named piece below.

    The order of the first steps matters for exact resumption: the seed is set before anything draws a random
    number, and the model is built after the input pipeline, as in every run before it.
    """
    import keras

    keras.utils.set_random_seed(cfg.seed)
    _check_devices(cfg, rank, world, log)
    setup = _set_up(cfg, rank, world, log)
    state = _new_state(cfg, setup, world)
    if resume_dir:
        state = _resume_state(resume_dir, state, cfg, setup, rank, world, log)
    start_epoch = int(state["epoch"])
    train_ds = _train_dataset(cfg, setup, rank, world, start_epoch)
    val = _ValShard.decode(cfg, setup, rank, world)
    trainer = _Trainer(cfg, strategy, rank, world, setup)
    trainer.bn_sample, trainer.bn_cache = bn_refresh_sample(cfg, setup, rank, world), {}
    if resume_dir:
        trainer.restore(resume_dir, start_epoch, log)

    outcome = _train_epochs(trainer, state, train_ds, val, start_epoch, report, log)
    summary = _summary(state, outcome, setup)
    if outcome == "paused":
        return summary

    trainer.use_best_weights()
    summary["replica_weight_digests"] = _check_replicas_agree(trainer)
    val_probs, val_codes = _gather_validation(trainer, val, len(setup.val_rows))
    trust = _calibrate(trainer, val, val_probs, val_codes, log)
    if rank == 0:
        _publish(trainer, state, outcome, val_probs, val_codes, trust, summary, log)
    return summary


# --- set-up ---------------------------------------------------------------------------------------------------


def _check_devices(cfg: TrainConfig, rank: int, world: int, log: Callable[[str], None]) -> None:
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
class _Setup:
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


def _set_up(cfg: TrainConfig, rank: int, world: int, log: Callable[[str], None]) -> _Setup:
    """Read the manifest, split it, and derive batch, learning rate (linear scaling) and steps per epoch."""
    from core import backbones
    from core.trust import TRAINABLE_OOD_METHODS

    if cfg.ood_method not in TRAINABLE_OOD_METHODS:
        raise ValueError(f"ood_method must be one of {TRAINABLE_OOD_METHODS}, got {cfg.ood_method!r}")
    if not 0.0 <= cfg.target_abstention < 1.0:
        raise ValueError(f"target_abstention must be in [0, 1), got {cfg.target_abstention}")
    table = dataset.read_manifest(cfg.manifest)
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
    return _Setup(
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


def _train_dataset(cfg: TrainConfig, setup: _Setup, rank: int, world: int, start_epoch: int):
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
class _ValShard:
    """This worker's rows of the validation split, decoded once: ``kept`` indexes the rows that decoded."""

    x: np.ndarray
    y: np.ndarray
    kept: np.ndarray
    codes: list[str | None]

    @classmethod
    def decode(cls, cfg: TrainConfig, setup: _Setup, rank: int, world: int) -> _ValShard:
        mine = dataset.shard(setup.val_rows, rank, world)
        return cls(*dataset.decode_indexed(mine, setup.pre, cfg.decode_threads))


# --- resume ---------------------------------------------------------------------------------------------------


def _new_state(cfg: TrainConfig, setup: _Setup, world: int) -> dict[str, Any]:
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


def _resume_state(
    resume_dir: str,
    state: dict[str, Any],
    cfg: TrainConfig,
    setup: _Setup,
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


# --- the model and its training steps -----------------------------------------------------------------------


class _Trainer:
    """The model on this worker and what acts on it: phases, epochs, predictions, checkpoints."""

    def __init__(self, cfg: TrainConfig, strategy, rank: int, world: int, setup: _Setup) -> None:
        import tensorflow as tf

        from core import backbones

        self.cfg, self.strategy, self.rank, self.world, self.setup = cfg, strategy, rank, world, setup
        with strategy.scope():
            self.model, self.base = backbones.build_classifier(cfg.backbone, setup.classes, cfg.weights, setup.size)
        self.best_weights: list[np.ndarray] | None = None
        self.saved_optimizer: list[np.ndarray] | None = None  # restored into the optimizer of its phase
        self.phase: str | None = None
        self.train_step = None
        self.optimizer = None
        self._predict_batch = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def restore(self, resume_dir: str, start_epoch: int, log: Callable[[str], None]) -> None:
        """Weights, best weights, optimizer slots and dropout RNG state from a checkpoint directory."""
        load_checkpoint_weights(self.model, resume_dir)
        best = os.path.join(resume_dir, CHECKPOINT_BEST)
        if os.path.exists(best):
            self.best_weights = _load_arrays(best)
        optimizer = os.path.join(resume_dir, CHECKPOINT_OPTIMIZER)
        if os.path.exists(optimizer):
            self.saved_optimizer = _load_arrays(optimizer)
        model_state = os.path.join(resume_dir, CHECKPOINT_MODEL_STATE)
        if os.path.exists(model_state):
            _assign_all(_model_state_variables(self.model), _load_arrays(model_state), "model state")
        if self.rank == 0:
            log(
                f"[train] resumed from checkpoint at epoch {start_epoch}"
                f" (optimizer state {'restored' if self.saved_optimizer is not None else 'absent'})"
            )

    # --- phase ---

    def enter_phase(self, phase: str, optimizer_phase: str | None) -> None:
        """Freeze/unfreeze for ``phase`` and start its optimizer (the checkpoint's slots if it was saved in it)."""
        if phase == self.phase:
            return
        self.train_step, self.optimizer = self._make_phase(phase)
        if self.saved_optimizer is not None and optimizer_phase == phase:
            _assign_all(self.optimizer.variables, self.saved_optimizer, "optimizer state")
        self.saved_optimizer = None
        self.phase = phase

    def _make_phase(self, phase: str):
        import keras
        import tensorflow as tf

        from core import backbones

        cfg, setup, model, base, strategy = self.cfg, self.setup, self.model, self.base, self.strategy
        if phase == "head":
            backbones.set_trainable_blocks(cfg.backbone, base, 0)
            base.trainable = False
            phase_lr = setup.lr
        elif phase == "fine_tune":
            backbones.set_trainable_blocks(cfg.backbone, base, cfg.fine_tune_blocks)
            phase_lr = setup.lr * cfg.fine_tune_lr_factor
        else:
            backbones.set_trainable_blocks(cfg.backbone, base, None)
            phase_lr = setup.lr
        # Cosine decay over the phase's planned steps: the constant rate left the last epochs noisy (validation
        # macro-F1 jumping by +-3 points between epochs), and the model a bundle ships is the end of that.
        # The schedule follows the optimizer's step counter, which checkpoints restore, so resumes stay exact.
        schedule = keras.optimizers.schedules.CosineDecay(
            phase_lr, decay_steps=max(1, _phase_epochs(cfg, phase) * setup.steps), alpha=0.02
        )
        with strategy.scope():
            opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay)
            if cfg.mixed_precision:
                opt = keras.optimizers.LossScaleOptimizer(opt)
            opt.build(model.trainable_variables)
        variables = model.trainable_variables
        n_classes, global_batch = setup.n_classes, setup.global_batch

        def step_fn(x, y, w):
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                per_example = keras.losses.sparse_categorical_crossentropy(y, probs) * w
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                scaled = opt.scale_loss(loss) if cfg.mixed_precision else loss
            grads = tape.gradient(scaled, variables)
            opt.apply_gradients(zip(grads, variables, strict=True))
            pred = tf.argmax(probs, axis=-1, output_type=tf.int32)
            cm = tf.math.confusion_matrix(y, pred, num_classes=n_classes, dtype=tf.int64)
            return loss, cm

        @tf.function(jit_compile=cfg.xla)
        def train_step(x, y, w):
            loss, cm = strategy.run(step_fn, args=(x, y, w))
            return (
                strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, cm, axis=None),
            )

        return train_step, opt

    # --- epoch ---

    def train_epoch(self, epoch: int, iterator, log: Callable[[str], None]) -> tuple[float, np.ndarray, float]:
        """``steps`` optimizer steps; returns (summed loss, training confusion matrix, seconds)."""
        n = self.setup.n_classes
        t0 = time.perf_counter()
        loss_total = 0.0
        train_cm = np.zeros((n, n), np.int64)
        for step in range(self.setup.steps):
            _test_hook_worker_exit(self.cfg, epoch, step, self.setup.steps, self.rank, self.world, log)
            x, y, w = next(iterator)
            loss, cm = self.train_step(x, y, w)
            loss_total += float(loss)
            train_cm += cm.numpy()
            self._progress(epoch, step, loss_total / (step + 1))
        return loss_total, train_cm, time.perf_counter() - t0

    def _progress(self, epoch: int, step: int, mean_loss: float) -> None:
        """Rank 0 logs step progress (core/progress.py): the entry point draws it as a bar or periodic lines."""
        if self.rank != 0:
            return
        from core.progress import ProgressTracker

        steps, epochs = self.setup.steps, self.cfg.epochs
        if getattr(self, "tracker", None) is None:
            self.tracker = ProgressTracker(
                logging.getLogger("scanlabel.train"),
                "train",
                epochs * steps,
                "steps",
                rate_label="img/s",
                rate_scale=self.setup.global_batch,
            )
        self.tracker.update(
            epoch * steps + step + 1,
            epoch=f"{epoch + 1}/{epochs}",
            step=f"{step + 1}/{steps}",
            loss=round(mean_loss, 4),
            **{"val macro-F1": getattr(self, "last_val_f1", None)},
        )

    # --- validation ---

    def predict(self, x_all: np.ndarray) -> np.ndarray:
        """Softmax outputs for in-memory images, in fixed-shape batches (the last padded) so nothing retraces."""
        import tensorflow as tf

        eb = self.cfg.batch_size
        out = np.zeros((len(x_all), self.setup.n_classes), np.float64)
        for start in range(0, len(x_all), eb):
            xb = x_all[start : start + eb]
            n = len(xb)
            if n < eb:
                xb = np.concatenate([xb, np.zeros((eb - n, *xb.shape[1:]), xb.dtype)])
            out[start : start + n] = self._predict_batch(tf.constant(xb)).numpy()[:n]
        return out

    def validate(self, val: _ValShard) -> tuple[float, np.ndarray]:
        """Mean validation loss and confusion matrix over all workers' shards (one all-reduce)."""
        n_classes = self.setup.n_classes
        probs = self.predict(val.x)
        cm = np.zeros((n_classes, n_classes), np.int64)
        n = len(val.y)
        loss_sum = float(-np.log(np.clip(probs[np.arange(n), val.y], 1e-7, 1.0)).sum()) if n else 0.0
        if n:
            np.add.at(cm, (val.y, probs.argmax(1)), 1)
        totals = _allreduce_sum(self.strategy, np.concatenate([cm.ravel(), [loss_sum * 1000.0]]).astype(np.float64))
        cm = totals[:-1].reshape(n_classes, n_classes).astype(np.int64)
        n_val = max(cm.sum(), 1)
        return float(totals[-1] / 1000.0 / n_val), cm

    # --- checkpoint ---

    def write_checkpoint(self, state: dict[str, Any]) -> str:
        """Everything a resumed run needs, in a new temporary directory (the caller deletes it)."""
        ckpt_dir = tempfile.mkdtemp(prefix="scanlabel-ckpt-")
        _save_arrays(os.path.join(ckpt_dir, CHECKPOINT_WEIGHTS), [w.numpy() for w in self.model.weights])
        if self.best_weights is not None:
            _save_arrays(os.path.join(ckpt_dir, CHECKPOINT_BEST), self.best_weights)
        _save_arrays(os.path.join(ckpt_dir, CHECKPOINT_OPTIMIZER), [v.numpy() for v in self.optimizer.variables])
        _save_arrays(
            os.path.join(ckpt_dir, CHECKPOINT_MODEL_STATE), [v.numpy() for v in _model_state_variables(self.model)]
        )
        with open(os.path.join(ckpt_dir, CHECKPOINT_STATE), "w") as f:
            json.dump(state, f)
        return ckpt_dir

    def use_best_weights(self) -> None:
        if self.best_weights is not None:
            _assign_all(self.model.weights, self.best_weights, "best weights")

    def features_and_probs(self, x_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate-layer features and softmax outputs from one pass, as labeling computes them."""
        import keras
        import tensorflow as tf

        from core.trust import FEATURE_LAYER

        scored = keras.Model(self.model.inputs, [self.model.get_layer(FEATURE_LAYER).output, self.model.outputs[0]])
        fn = tf.function(lambda x: scored(x, training=False), reduce_retracing=True)
        eb = self.cfg.batch_size
        dim = int(scored.outputs[0].shape[-1])
        feats = np.zeros((len(x_all), dim), np.float64)
        probs = np.zeros((len(x_all), self.setup.n_classes), np.float64)
        for start in range(0, len(x_all), eb):
            xb = x_all[start : start + eb]
            n = len(xb)
            if n < eb:
                xb = np.concatenate([xb, np.zeros((eb - n, *xb.shape[1:]), xb.dtype)])
            f, p = fn(tf.constant(xb))
            feats[start : start + n] = f.numpy()[:n]
            probs[start : start + n] = p.numpy()[:n]
        return feats, probs


def _phase_epochs(cfg: TrainConfig, phase: str) -> int:
    """How many epochs ``phase`` lasts when the run goes the full ``cfg.epochs``."""
    if phase == "head":
        return min(cfg.head_epochs, cfg.epochs)
    if phase == "fine_tune":
        return max(1, cfg.epochs - cfg.head_epochs)
    return cfg.epochs


def _test_hook_worker_exit(
    cfg: TrainConfig, epoch: int, step: int, steps: int, rank: int, world: int, log: Callable[[str], None]
) -> None:
    """``cfg.extra`` test hook: worker ``fail_rank`` exits mid-epoch ``fail_at_epoch``, once (see TrainConfig)."""
    fail_at = cfg.extra.get("fail_at_epoch")
    fail_marker = cfg.extra.get("fail_marker")
    fail_rank = int(cfg.extra.get("fail_rank", world - 1))
    if not (fail_at == epoch + 1 and step == min(1, steps - 1) and rank == fail_rank and fail_marker):
        return
    if os.path.exists(fail_marker):  # once: the restarted worker must get through
        return
    with open(fail_marker, "w") as f:
        f.write(f"rank {rank} exited in epoch {epoch + 1}\n")
    log(f"[train] test hook: rank {rank} exits mid-epoch {epoch + 1}")
    # Ray Train V2 collects reports by polling workers (every 2 s by default); a worker that dies sooner takes
    # its unpolled epoch report, and so that checkpoint, with it.  Real epochs are far longer than that, so the
    # hook waits for the poll before it dies.
    time.sleep(float(cfg.extra.get("fail_delay_s", 5.0)))
    os._exit(1)


# --- the epoch loop -------------------------------------------------------------------------------------------


def _train_epochs(
    trainer: _Trainer,
    state: dict[str, Any],
    train_ds,
    val: _ValShard,
    start_epoch: int,
    report: ReportFn | None,
    log: Callable[[str], None],
) -> str:
    """Epochs from ``start_epoch`` on; returns ``"done"``, ``"stopped_early"`` or ``"paused"``."""
    cfg = trainer.cfg
    iterator = iter(train_ds)
    last_report_costs: dict[str, float] = {}  # the previous epoch's checkpoint and report seconds (for the bench)
    for epoch in range(start_epoch, cfg.epochs):
        phase = phase_of(cfg, epoch)
        trainer.enter_phase(phase, state["optimizer_phase"])
        cpu0 = time.process_time()
        loss_total, train_cm, elapsed = trainer.train_epoch(epoch, iterator, log)
        train_cpu_s = time.process_time() - cpu0  # this process's CPU in the steps: load-independent cost
        t_bn = time.perf_counter()
        refresh_batchnorm(
            trainer.strategy,
            trainer.model,
            trainer.base,
            trainer.bn_sample,
            trainer.cfg.batch_size,
            trainer.world,
            trainer.bn_cache,
        )
        bn_refresh_s = time.perf_counter() - t_bn
        val_loss, val_cm = trainer.validate(val)
        record = _epoch_record(epoch, phase, loss_total, train_cm, val_loss, val_cm, elapsed, trainer.setup)
        # for the training benchmark (cluster/bench_train.py)
        record.update(train_cpu_s=train_cpu_s, bn_refresh_s=bn_refresh_s, ended_at=time.time(), **last_report_costs)
        trainer.last_val_f1 = round(record["val_macro_f1"], 3)  # shown next to the step progress
        _update_state(state, trainer, record)
        outcome = _epoch_outcome(cfg, state, epoch)
        if trainer.rank == 0:
            log(
                f"[train] epoch {epoch + 1}/{cfg.epochs} {phase:9s} loss={record['train_loss']:.4f} "
                f"train_f1={record['train_macro_f1']:.3f} val_loss={val_loss:.4f} "
                f"val_macro_f1={record['val_macro_f1']:.3f} {record['images_per_s']:.1f} img/s"
            )
        if report is not None:
            last_report_costs = _report_epoch(trainer, state, record, outcome, report)
        if outcome == "stopped_early":
            if trainer.rank == 0:
                log(f"[train] early stop: no val macro-F1 gain for {cfg.patience} epochs")
            return outcome
        if outcome == "paused":
            if trainer.rank == 0:
                log(
                    f"[train] paused after epoch {epoch + 1}/{cfg.epochs} (stop_after_epoch): the checkpoint is "
                    "kept; continue with --resume"
                )
            return outcome
    return "done"


def _epoch_record(
    epoch: int,
    phase: str,
    loss_total: float,
    train_cm: np.ndarray,
    val_loss: float,
    val_cm: np.ndarray,
    elapsed: float,
    setup: _Setup,
) -> dict[str, Any]:
    """One entry of the training history (what ``report`` receives and ``training.json`` keeps)."""
    return {
        "epoch": epoch + 1,
        "phase": phase,
        "train_loss": loss_total / setup.steps,
        "train_macro_f1": macro_f1_from_confusion(train_cm),
        "val_loss": val_loss,
        "val_macro_f1": macro_f1_from_confusion(val_cm),
        "val_accuracy": float(np.trace(val_cm) / max(val_cm.sum(), 1)),
        # 1 = every validation image got the same class (a collapsed model, or BatchNorm statistics gone stale)
        "val_predicted_classes": int((val_cm.sum(axis=0) > 0).sum()),
        "images_per_s": setup.steps * setup.global_batch / elapsed,
        "epoch_s": elapsed,
    }


def _update_state(state: dict[str, Any], trainer: _Trainer, record: dict[str, Any]) -> None:
    """Append the epoch to the history and keep the best weights (by validation macro-F1)."""
    state["history"].append(record)
    state["epoch"] = record["epoch"]
    state["optimizer_phase"] = record["phase"]
    if record["val_macro_f1"] > state["best_f1"] + 1e-9:
        state["best_f1"], state["best_epoch"], state["stale"] = record["val_macro_f1"], record["epoch"], 0
        trainer.best_weights = [w.numpy() for w in trainer.model.weights]
    else:
        state["stale"] += 1


def _epoch_outcome(cfg: TrainConfig, state: dict[str, Any], epoch: int) -> str:
    """``running``, ``done`` (last epoch), ``stopped_early`` (patience ran out) or ``paused`` (stop_after_epoch)."""
    last = epoch + 1 == cfg.epochs
    if state["stale"] >= cfg.patience and not last:
        return "stopped_early"
    if cfg.stop_after_epoch is not None and epoch + 1 >= cfg.stop_after_epoch and not last:
        return "paused"
    return "done" if last else "running"


def _report_epoch(
    trainer: _Trainer, state: dict[str, Any], record: dict[str, Any], outcome: str, report: ReportFn
) -> dict[str, float]:
    """Every worker reports the epoch; rank 0 attaches a checkpoint, deleted once ``report`` returns.

    Returns the seconds spent writing the checkpoint and in ``report``; the next epoch's record carries them
    (``prev_checkpoint_s``, ``prev_report_s``): this epoch's record is already in the checkpoint, and a resumed
    run's history must equal the checkpoint's.
    """
    t0 = time.perf_counter()
    ckpt_dir = trainer.write_checkpoint(state) if trainer.rank == 0 else None
    t1 = time.perf_counter()
    status = {"paused": "paused", "running": "running"}.get(outcome, "final")
    try:
        report({**record, "status": status}, ckpt_dir)
    finally:
        if ckpt_dir:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
    return {"prev_checkpoint_s": t1 - t0, "prev_report_s": time.perf_counter() - t1}


def _summary(state: dict[str, Any], outcome: str, setup: _Setup) -> dict[str, Any]:
    return {
        "history": state["history"],
        "best_epoch": state["best_epoch"],
        "best_val_macro_f1": state["best_f1"],
        "stopped_early": outcome == "stopped_early",
        "paused": outcome == "paused",
        "resumes": state["resumes"],
        "classes": setup.classes,
        "unmapped_labels": setup.rows.unmapped,
    }


# --- after training: replica check, validation predictions -------------------------------------------------


def _check_replicas_agree(trainer: _Trainer) -> list[int]:
    """Data parallelism is only correct if every replica ends with the same weights: check, record, and refuse
    to publish a bundle otherwise."""
    mine = np.zeros(trainer.world, np.float64)
    mine[trainer.rank] = weights_digest(trainer.model)
    digests = [int(d) for d in _allreduce_sum(trainer.strategy, mine)]
    if len(set(digests)) != 1:
        raise RuntimeError(f"replicas diverged: weight digests {digests}")
    return digests


def _gather_validation(trainer: _Trainer, val: _ValShard, n_val: int) -> tuple[np.ndarray, list[str | None]]:
    """Held-out predictions of the published (best) weights for the whole split, on every worker.

    Each worker fills the rows of its shard and one sum gathers them; error codes travel as 1-based indices.
    Returns ``(probabilities, codes)`` in split order; a row that failed to decode has zero probabilities.
    """
    n_classes, rank, world = trainer.setup.n_classes, trainer.rank, trainer.world
    gathered = np.zeros((n_val, n_classes + 1), np.float64)
    my_index = np.arange(rank, n_val, world)
    if len(val.kept):
        gathered[my_index[val.kept], :n_classes] = trainer.predict(val.x)
    for i, code in enumerate(val.codes):
        if code:
            gathered[my_index[i], n_classes] = errors.ALL_CODES.index(code) + 1
    gathered = _allreduce_sum(trainer.strategy, gathered.ravel()).reshape(n_val, n_classes + 1)
    code_idx = [int(round(c)) for c in gathered[:, n_classes]]
    return gathered[:, :n_classes], [errors.ALL_CODES[c - 1] if c else None for c in code_idx]


# --- calibration: temperature, OOD score, abstention thresholds (core/trust.py) -------------------------------


def _calibrate(
    trainer: _Trainer, val: _ValShard, val_probs: np.ndarray, val_codes: list[str | None], log: Callable[[str], None]
):
    """Fit the bundle's trust data on this run's own validation split; every worker takes part and ends with
    the same result (feature statistics and per-row scores are summed across workers).

    The temperature comes first (the OOD score and the confidence threshold use calibrated probabilities);
    the OOD parameters are fitted on the *training* split, so the validation rows the thresholds are chosen
    on are as new to them as the images labeling will meet.
    """
    from core import schema
    from core import trust as tr

    cfg, setup, rank, world = trainer.cfg, trainer.setup, trainer.rank, trainer.world
    classes = setup.classes
    y = np.asarray(setup.val_rows.labels, np.int64)
    decoded = np.array([c is None for c in val_codes], bool)
    temperature = tr.fit_temperature(val_probs[decoded], y[decoded])
    calibrated = tr.apply_temperature(val_probs, temperature)
    method = tr.resolve_ood_method(cfg.ood_method, classes)
    arrays = _fit_ood_arrays(trainer, method)

    # Each worker scores the validation rows of its shard; one sum gathers them.
    n_val = len(setup.val_rows)
    scores = np.zeros(n_val, np.float64)
    if len(val.kept):
        feats, probs = trainer.features_and_probs(val.x)
        mine = tr.ood_scores(method, feats, tr.apply_temperature(probs, temperature), classes, arrays)
        scores[np.arange(rank, n_val, world)[val.kept]] = mine
    scores = _allreduce_sum(trainer.strategy, scores)

    other = classes.index(schema.OTHER_LABEL) if schema.OTHER_LABEL in classes else -1
    in_domain = decoded & (y != other)
    min_conf, max_ood, fit = tr.fit_thresholds(calibrated[in_domain], scores[in_domain], classes, cfg.target_abstention)
    info = {
        "fitted_on": "validation split",
        "n_val": int(decoded.sum()),
        "n_val_in_domain": int(in_domain.sum()),
        "val_nll_before": tr.nll(val_probs[decoded], y[decoded]),
        "val_nll_after": tr.nll(calibrated[decoded], y[decoded]),
        "val_ece_before": tr.expected_calibration_error(val_probs[decoded], y[decoded]),
        "val_ece_after": tr.expected_calibration_error(calibrated[decoded], y[decoded]),
        "thresholds": fit,
    }
    if other >= 0 and (decoded & (y == other)).any():
        info["val_other_abstained"] = float(
            np.mean(
                [
                    r is not None
                    for r in tr.abstain_reasons(
                        calibrated[decoded & (y == other)], scores[decoded & (y == other)], classes, min_conf, max_ood
                    )
                ]
            )
        )
    if rank == 0:
        log(
            f"[train] calibration on the validation split: temperature {temperature:.3f}, ECE "
            f"{info['val_ece_before']:.4f} -> {info['val_ece_after']:.4f}; abstain below confidence {min_conf:.3f} "
            f"or above {method} score {max_ood:.4g} (in-domain validation abstention "
            f"{fit.get('abstention', 0.0):.1%}, target {cfg.target_abstention:.1%})"
        )
    return tr.Trust(temperature, min_conf, max_ood, method, classes, arrays, info)


def _fit_ood_arrays(trainer: _Trainer, method: str) -> dict[str, np.ndarray]:
    """The parameters ``method`` scores with: head weights (energy, max-logit), or statistics of the
    training split's features (Mahalanobis: class means and a shared covariance of the body-part classes)."""
    from core import schema
    from core import trust as tr

    if method in ("p_other", "msp"):
        return {}
    if method in ("energy", "max_logit"):
        kernel, bias = (w.numpy() for w in trainer.model.get_layer(tr.HEAD_LAYER).weights)
        return {"kernel": kernel, "bias": bias}
    if method != "mahalanobis":
        raise ValueError(f"ood_method {method!r} cannot be fitted during training; use one of {tr.OOD_METHODS}")
    cfg, setup = trainer.cfg, trainer.setup
    # Training images without augmentation, as labeling will see them.
    x, y, _, _ = dataset.decode_indexed(
        dataset.shard(setup.train_rows, trainer.rank, trainer.world), setup.pre, cfg.decode_threads
    )
    dim = int(trainer.model.get_layer(tr.FEATURE_LAYER).output.shape[-1])
    body = y != (setup.classes.index(schema.OTHER_LABEL) if schema.OTHER_LABEL in setup.classes else -1)
    if body.any():
        feats, _ = trainer.features_and_probs(x[body])
        stats = tr.FeatureStats.of(feats, y[body], setup.n_classes)
    else:
        stats = tr.FeatureStats.of(np.zeros((0, dim)), np.zeros(0, np.int64), setup.n_classes)
    total = tr.FeatureStats.from_flat(_allreduce_sum(trainer.strategy, stats.flat()), setup.n_classes, dim)
    means, precision = tr.mahalanobis_params(total)
    return {"means": means, "precision": precision}


# --- bundle ---------------------------------------------------------------------------------------------------


def _validation_rows(setup: _Setup, probs: np.ndarray, codes: list[str | None]) -> list[dict[str, Any]]:
    """The validation split as report rows (the shape ``scanlabel evaluate`` reports)."""
    classes, val_rows = setup.classes, setup.val_rows
    rows = []
    for i in range(len(val_rows)):
        code = codes[i]
        rows.append(
            {
                "image_id": val_rows.image_ids[i],
                "uri": val_rows.uris[i],
                "true": classes[val_rows.labels[i]],
                "pred": None if code else classes[int(probs[i].argmax())],
                "confidence": None if code else float(probs[i].max()),
                "status": "error" if code else "ok",
                "error": code,
            }
        )
    return rows


def _training_info(
    trainer: _Trainer, state: dict[str, Any], outcome: str, val_metrics: dict[str, Any], failed: list[str], digests
) -> dict[str, Any]:
    """``training.json``: what produced the bundle (data fingerprint, split, hyperparameters, history, versions)."""
    from core.scope import DEFAULT_MODALITIES

    cfg, setup = trainer.cfg, trainer.setup
    return {
        "backbone": cfg.backbone,
        "weights_source": cfg.weights if cfg.pretrained else "none",
        "manifest": cfg.manifest,
        "manifest_sha256": _fingerprint(cfg.manifest),
        "label_map": cfg.label_map,
        "modalities": [str(m).strip().upper() for m in (cfg.modalities or DEFAULT_MODALITIES)],
        "class_counts": {"train": setup.train_rows.class_counts(), "val": setup.val_rows.class_counts()},
        "unmapped_labels": setup.rows.unmapped,
        "val_decode_failures": {c: failed.count(c) for c in sorted(set(failed))},
        "validation": {k: val_metrics[k] for k in ("n", "n_unlabeled", "accuracy", "macro_f1")},
        "hyperparameters": {
            **cfg.to_dict(),
            "image_size": setup.size,
            "global_batch": setup.global_batch,
            "lr": setup.lr,
            "workers": trainer.world,
            "steps_per_epoch": setup.steps,
        },
        "history": state["history"],
        "best_epoch": state["best_epoch"],
        "best_val_macro_f1": state["best_f1"],
        "stopped_early": outcome == "stopped_early",
        "resumes": state["resumes"],
        "versions": package_versions(),
        "replica_weight_digests": digests,
        "split": {"val_fraction": cfg.val_fraction, "seed": cfg.seed, "method": "sha256(seed:image_id)"},
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _publish(
    trainer: _Trainer,
    state: dict[str, Any],
    outcome: str,
    val_probs: np.ndarray,
    val_codes: list[str | None],
    trust,
    summary: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    """Rank 0: write the bundle (model, classes, preprocessing, training.json, trust data, curves), then its
    validation report (with calibrated confidences, as labeling will give them)."""
    import keras

    from core.bundle import save_bundle
    from core.metrics import compute_metrics

    cfg, setup = trainer.cfg, trainer.setup
    report_rows = _validation_rows(setup, trust.calibrate(val_probs), val_codes)
    failed = [r["error"] for r in report_rows if r["error"]]
    val_metrics = compute_metrics([r["true"] for r in report_rows], [r["pred"] for r in report_rows], setup.classes)
    training_info = _training_info(trainer, state, outcome, val_metrics, failed, summary["replica_weight_digests"])
    training_info["calibration"] = {"temperature": trust.temperature, **trust.info}
    extra = {}
    with tempfile.TemporaryDirectory() as tmp:
        trust_files = {name: os.path.join(tmp, name) for name in trust.write(tmp)}
        try:
            from core.curves import plot_training_curves

            curves = os.path.join(tmp, "training_curves.png")
            plot_training_curves(state["history"], curves)
            extra["training_curves.png"] = curves
        except ImportError:
            pass
        # The saved model must not carry the mixed-precision policy into float32 inference.
        keras.mixed_precision.set_global_policy("float32")
        summary["model_id"] = save_bundle(
            cfg.out, trainer.model, setup.classes, setup.pre, training_info, extra, hashed_files=trust_files
        )
    val_metrics.update(
        {"model_id": summary["model_id"], "split": "validation", "manifest": cfg.manifest, "bundle": cfg.out}
    )
    _write_validation_report(cfg.out, val_metrics, report_rows, f"scanlabel validation split — {summary['model_id']}")
    summary["bundle"] = cfg.out
    summary["validation"] = training_info["validation"]
    log(
        f"[train] bundle written to {cfg.out} (model_id={summary['model_id']}; validation accuracy "
        f"{val_metrics['accuracy']:.3f}, macro-F1 {val_metrics['macro_f1']:.3f})"
    )
