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
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core import dataset
from core.augment import AugmentConfig
from core.metrics import macro_f1_from_confusion
from core.preprocess import PreprocessConfig

REFERENCE_BATCH = 64
CHECKPOINT_WEIGHTS = "weights.weights.h5"
CHECKPOINT_BEST = "best.weights.h5"
CHECKPOINT_STATE = "state.json"


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
    classes: list[str] | None = None
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


def _allreduce_sum(strategy, value: np.ndarray) -> np.ndarray:
    """Sum a host array across all workers (identity for a single worker)."""
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1:
        return value

    @tf.function
    def reduce(t):
        per_replica = strategy.run(tf.identity, args=(t,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

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


def phase_of(cfg: TrainConfig, epoch: int) -> str:
    if not cfg.pretrained:
        return "scratch"
    return "head" if epoch < cfg.head_epochs else "fine_tune"


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

    Returns the final summary (history, best epoch, model_id on rank 0).
    """
    import keras
    import tensorflow as tf

    from core import backbones
    from core.bundle import save_bundle

    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")

    table = dataset.read_manifest(cfg.manifest)
    label_map = dataset.load_label_map(cfg.label_map)
    rows = dataset.labelled_rows(table, cfg.classes, label_map)
    train_rows, val_rows = dataset.split(rows, cfg.val_fraction, cfg.seed)
    classes = rows.classes
    spec = backbones.get_backbone(cfg.backbone)
    size = cfg.image_size or spec.default_size
    pre = PreprocessConfig(image_size=size)
    global_batch = cfg.batch_size * world
    lr = cfg.base_lr * global_batch / REFERENCE_BATCH
    steps = cfg.steps_per_epoch or max(1, int(np.ceil(len(train_rows) / global_batch)))
    weights_vec = dataset.class_weights(train_rows) if cfg.class_weighting else np.ones(len(classes), np.float32)
    if rank == 0:
        log(
            f"[train] {len(rows)} labelled rows ({len(train_rows)} train / {len(val_rows)} val), "
            f"{len(classes)} classes, unmapped={rows.unmapped or 0}; workers={world} global_batch={global_batch} "
            f"lr={lr:.2e} steps/epoch={steps}"
        )

    my_train = dataset.shard(train_rows, rank, world)
    my_val = dataset.shard(val_rows, rank, world)
    train_ds = dataset.make_train_dataset(
        my_train,
        pre,
        cfg.batch_size,
        cfg.seed * 1000 + rank,
        AugmentConfig() if cfg.augment else None,
        weights_vec,
        parallel=cfg.decode_threads,
    )
    val_x, val_y, val_failures = dataset.decode_all(my_val, pre, cfg.decode_threads)

    with strategy.scope():
        model, base = backbones.build_classifier(cfg.backbone, classes, cfg.weights, size)

    state: dict[str, Any] = {"epoch": 0, "history": [], "best_f1": -1.0, "best_epoch": -1, "stale": 0}
    best_weights: list[np.ndarray] | None = None
    if resume_dir:
        with open(os.path.join(resume_dir, CHECKPOINT_STATE)) as f:
            state = json.load(f)
        model.load_weights(os.path.join(resume_dir, CHECKPOINT_WEIGHTS))
        best_path = os.path.join(resume_dir, CHECKPOINT_BEST)
        if os.path.exists(best_path):
            current = [w.numpy() for w in model.weights]
            model.load_weights(best_path)
            best_weights = [w.numpy() for w in model.weights]
            for var, val in zip(model.weights, current, strict=True):
                var.assign(val)
        if rank == 0:
            log(f"[train] resumed from checkpoint at epoch {state['epoch']}")

    n_classes = len(classes)
    step_fns: dict[str, Any] = {}

    def make_phase(phase: str):
        if phase == "head":
            backbones.set_trainable_blocks(cfg.backbone, base, 0)
            base.trainable = False
            phase_lr = lr
        elif phase == "fine_tune":
            backbones.set_trainable_blocks(cfg.backbone, base, cfg.fine_tune_blocks)
            phase_lr = lr * cfg.fine_tune_lr_factor
        else:
            backbones.set_trainable_blocks(cfg.backbone, base, None)
            phase_lr = lr
        with strategy.scope():
            opt = keras.optimizers.AdamW(learning_rate=phase_lr, weight_decay=cfg.weight_decay)
            if cfg.mixed_precision:
                opt = keras.optimizers.LossScaleOptimizer(opt)
            opt.build(model.trainable_variables)
        variables = model.trainable_variables

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

        return train_step, variables

    @tf.function(reduce_retracing=True)
    def predict_batch(x):
        return model(x, training=False)

    def evaluate() -> tuple[float, np.ndarray]:
        cm = np.zeros((n_classes, n_classes), np.int64)
        loss_sum = 0.0
        eb = cfg.batch_size
        for start in range(0, len(val_x), eb):
            xb = val_x[start : start + eb]
            n = len(xb)
            if n < eb:  # fixed shape: pad so the function never retraces
                xb = np.concatenate([xb, np.zeros((eb - n, *xb.shape[1:]), xb.dtype)])
            probs = predict_batch(tf.constant(xb)).numpy()[:n]
            yb = val_y[start : start + n]
            loss_sum += float(-np.log(np.clip(probs[np.arange(n), yb], 1e-7, 1.0)).sum())
            np.add.at(cm, (yb, probs.argmax(1)), 1)
        totals = _allreduce_sum(strategy, np.concatenate([cm.ravel(), [loss_sum * 1000.0]]).astype(np.float64))
        cm = totals[:-1].reshape(n_classes, n_classes).astype(np.int64)
        n_val = max(cm.sum(), 1)
        return float(totals[-1] / 1000.0 / n_val), cm

    iterator = iter(train_ds)
    current_phase = None
    train_step = None
    start_epoch = int(state["epoch"])
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        phase = phase_of(cfg, epoch)
        if phase != current_phase:
            train_step, _ = make_phase(phase)
            step_fns[phase] = train_step
            current_phase = phase
        t0 = time.perf_counter()
        loss_total = 0.0
        train_cm = np.zeros((n_classes, n_classes), np.int64)
        for _ in range(steps):
            x, y, w = next(iterator)
            loss, cm = train_step(x, y, w)
            loss_total += float(loss)
            train_cm += cm.numpy()
        elapsed = time.perf_counter() - t0
        sync_non_trainable(strategy, model, world)
        val_loss, val_cm = evaluate()
        val_f1 = macro_f1_from_confusion(val_cm)
        record = {
            "epoch": epoch + 1,
            "phase": phase,
            "train_loss": loss_total / steps,
            "train_macro_f1": macro_f1_from_confusion(train_cm),
            "val_loss": val_loss,
            "val_macro_f1": val_f1,
            "val_accuracy": float(np.trace(val_cm) / max(val_cm.sum(), 1)),
            "images_per_s": steps * global_batch / elapsed,
            "epoch_s": elapsed,
        }
        state["history"].append(record)
        state["epoch"] = epoch + 1
        improved = val_f1 > state["best_f1"] + 1e-9
        if improved:
            state["best_f1"], state["best_epoch"], state["stale"] = val_f1, epoch + 1, 0
            best_weights = [w.numpy() for w in model.weights]
        else:
            state["stale"] += 1
        if rank == 0:
            log(
                f"[train] epoch {epoch + 1}/{cfg.epochs} {phase:9s} loss={record['train_loss']:.4f} "
                f"train_f1={record['train_macro_f1']:.3f} val_loss={val_loss:.4f} val_macro_f1={val_f1:.3f} "
                f"{record['images_per_s']:.1f} img/s"
            )
        ckpt_dir = None
        if rank == 0 and report is not None:
            ckpt_dir = tempfile.mkdtemp(prefix="scanlabel-ckpt-")
            model.save_weights(os.path.join(ckpt_dir, CHECKPOINT_WEIGHTS))
            if best_weights is not None:
                current = [w.numpy() for w in model.weights]
                for var, val in zip(model.weights, best_weights, strict=True):
                    var.assign(val)
                model.save_weights(os.path.join(ckpt_dir, CHECKPOINT_BEST))
                for var, val in zip(model.weights, current, strict=True):
                    var.assign(val)
            with open(os.path.join(ckpt_dir, CHECKPOINT_STATE), "w") as f:
                json.dump(state, f)
        if report is not None:
            report(dict(record), ckpt_dir)
        if state["stale"] >= cfg.patience:
            stopped_early = True
            if rank == 0:
                log(f"[train] early stop: no val macro-F1 gain for {cfg.patience} epochs")
            break

    summary: dict[str, Any] = {
        "history": state["history"],
        "best_epoch": state["best_epoch"],
        "best_val_macro_f1": state["best_f1"],
        "stopped_early": stopped_early,
        "classes": classes,
    }
    if best_weights is not None:
        for var, val in zip(model.weights, best_weights, strict=True):
            var.assign(val)
    # Data parallelism is only correct if every replica ends with the same weights: check, record, and refuse
    # to publish a bundle otherwise.
    mine = np.zeros(world, np.float64)
    mine[rank] = weights_digest(model)
    digests = [int(d) for d in _allreduce_sum(strategy, mine)]
    summary["replica_weight_digests"] = digests
    if len(set(digests)) != 1:
        raise RuntimeError(f"replicas diverged: weight digests {digests}")
    if rank == 0:
        training_info = {
            "backbone": cfg.backbone,
            "weights_source": cfg.weights if cfg.pretrained else "none",
            "manifest": cfg.manifest,
            "manifest_sha256": _fingerprint(cfg.manifest),
            "class_counts": {"train": train_rows.class_counts(), "val": val_rows.class_counts()},
            "unmapped_labels": rows.unmapped,
            "val_decode_failures": val_failures,
            "hyperparameters": {**cfg.to_dict(), "global_batch": global_batch, "lr": lr, "workers": world},
            "history": state["history"],
            "best_epoch": state["best_epoch"],
            "best_val_macro_f1": state["best_f1"],
            "versions": package_versions(),
            "replica_weight_digests": digests,
            "split": {"val_fraction": cfg.val_fraction, "seed": cfg.seed, "method": "sha256(seed:image_id)"},
        }
        extra = {}
        with tempfile.TemporaryDirectory() as tmp:
            try:
                from core.curves import plot_training_curves

                curves = os.path.join(tmp, "training_curves.png")
                plot_training_curves(state["history"], curves)
                extra["training_curves.png"] = curves
            except ImportError:
                pass
            if cfg.mixed_precision:
                keras.mixed_precision.set_global_policy("float32")
            summary["model_id"] = save_bundle(cfg.out, model, classes, pre, training_info, extra)
        summary["bundle"] = cfg.out
        log(f"[train] bundle written to {cfg.out} (model_id={summary['model_id']})")
    return summary
