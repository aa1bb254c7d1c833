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
CHECKPOINT_WEIGHTS = "weights.weights.h5"
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
    classes: list[str] | None = None
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
    import keras
    import tensorflow as tf

    from core import backbones
    from core.bundle import save_bundle

    keras.utils.set_random_seed(cfg.seed)
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
            f"{len(classes)} classes, unmapped={sum(rows.unmapped.values())}; workers={world} "
            f"global_batch={global_batch} lr={lr:.2e} steps/epoch={steps}"
        )
        if rows.unmapped:
            log(
                f"[train] left out {sum(rows.unmapped.values())} rows whose label maps onto no class "
                f"(label: rows): {dict(sorted(rows.unmapped.items()))}"
            )

    state: dict[str, Any] = {
        "epoch": 0,
        "history": [],
        "best_f1": -1.0,
        "best_epoch": -1,
        "stale": 0,
        "resumes": [],
        "optimizer_phase": None,
        "classes": classes,
        "backbone": cfg.backbone,
        "image_size": size,
        "world": world,
    }
    if resume_dir:
        with open(os.path.join(resume_dir, CHECKPOINT_STATE)) as f:
            state = {**state, **json.load(f)}
        for key, mine in (("classes", classes), ("backbone", cfg.backbone), ("image_size", size)):
            if state[key] != mine:
                raise ValueError(f"cannot resume: checkpoint has {key}={state[key]!r}, this run {mine!r}")
        if state["world"] != world and rank == 0:
            log(f"[train] note: resuming with {world} workers, checkpoint had {state['world']}: data order differs")
        state["resumes"].append({"epoch": int(state["epoch"]), "workers": world})
        state["world"] = world
    start_epoch = int(state["epoch"])

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
        skip_examples=start_epoch * steps * cfg.batch_size,
    )
    val_x, val_y, val_kept, val_codes = dataset.decode_indexed(my_val, pre, cfg.decode_threads)

    with strategy.scope():
        model, base = backbones.build_classifier(cfg.backbone, classes, cfg.weights, size)

    best_weights: list[np.ndarray] | None = None
    saved_optimizer: list[np.ndarray] | None = None
    if resume_dir:
        model.load_weights(os.path.join(resume_dir, CHECKPOINT_WEIGHTS))
        for name, target in ((CHECKPOINT_BEST, "best"), (CHECKPOINT_OPTIMIZER, "opt"), (CHECKPOINT_MODEL_STATE, "rng")):
            path = os.path.join(resume_dir, name)
            if not os.path.exists(path):
                continue
            arrays = _load_arrays(path)
            if target == "best":
                best_weights = arrays
            elif target == "opt":
                saved_optimizer = arrays
            else:
                _assign_all(_model_state_variables(model), arrays, "model state")
        if rank == 0:
            log(
                f"[train] resumed from checkpoint at epoch {start_epoch}"
                f" (optimizer state {'restored' if saved_optimizer is not None else 'absent'})"
            )

    n_classes = len(classes)

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

        return train_step, opt

    @tf.function(reduce_retracing=True)
    def predict_batch(x):
        return model(x, training=False)

    def predict_all(x_all: np.ndarray) -> np.ndarray:
        eb = cfg.batch_size
        out = np.zeros((len(x_all), n_classes), np.float64)
        for start in range(0, len(x_all), eb):
            xb = x_all[start : start + eb]
            n = len(xb)
            if n < eb:  # fixed shape: pad so the function never retraces
                xb = np.concatenate([xb, np.zeros((eb - n, *xb.shape[1:]), xb.dtype)])
            out[start : start + n] = predict_batch(tf.constant(xb)).numpy()[:n]
        return out

    def evaluate() -> tuple[float, np.ndarray]:
        probs = predict_all(val_x)
        cm = np.zeros((n_classes, n_classes), np.int64)
        n = len(val_y)
        loss_sum = float(-np.log(np.clip(probs[np.arange(n), val_y], 1e-7, 1.0)).sum()) if n else 0.0
        if n:
            np.add.at(cm, (val_y, probs.argmax(1)), 1)
        totals = _allreduce_sum(strategy, np.concatenate([cm.ravel(), [loss_sum * 1000.0]]).astype(np.float64))
        cm = totals[:-1].reshape(n_classes, n_classes).astype(np.int64)
        n_val = max(cm.sum(), 1)
        return float(totals[-1] / 1000.0 / n_val), cm

    fail_at = cfg.extra.get("fail_at_epoch")
    fail_marker = cfg.extra.get("fail_marker")
    fail_rank = int(cfg.extra.get("fail_rank", world - 1))

    iterator = iter(train_ds)
    current_phase = None
    train_step = opt = None
    stopped_early = paused = False
    for epoch in range(start_epoch, cfg.epochs):
        phase = phase_of(cfg, epoch)
        if phase != current_phase:
            train_step, opt = make_phase(phase)
            if saved_optimizer is not None and state["optimizer_phase"] == phase:
                _assign_all(opt.variables, saved_optimizer, "optimizer state")
            saved_optimizer = None
            current_phase = phase
        t0 = time.perf_counter()
        loss_total = 0.0
        train_cm = np.zeros((n_classes, n_classes), np.int64)
        for step in range(steps):
            if fail_at == epoch + 1 and step == min(1, steps - 1) and rank == fail_rank and fail_marker:
                if not os.path.exists(fail_marker):  # once: the restarted worker must get through
                    with open(fail_marker, "w") as f:
                        f.write(f"rank {rank} exited in epoch {epoch + 1}\n")
                    log(f"[train] test hook: rank {rank} exits mid-epoch {epoch + 1}")
                    # Ray Train V2 collects reports by polling workers (every 2 s by default); a worker that dies
                    # sooner takes its unpolled epoch report, and so that checkpoint, with it.  Real epochs are
                    # far longer than that, so the hook waits for the poll before it dies.
                    time.sleep(float(cfg.extra.get("fail_delay_s", 5.0)))
                    os._exit(1)
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
        state["optimizer_phase"] = phase
        if val_f1 > state["best_f1"] + 1e-9:
            state["best_f1"], state["best_epoch"], state["stale"] = val_f1, epoch + 1, 0
            best_weights = [w.numpy() for w in model.weights]
        else:
            state["stale"] += 1
        stopped_early = state["stale"] >= cfg.patience and epoch + 1 < cfg.epochs
        paused = (
            not stopped_early
            and cfg.stop_after_epoch is not None
            and epoch + 1 >= cfg.stop_after_epoch
            and epoch + 1 < cfg.epochs
        )
        if rank == 0:
            log(
                f"[train] epoch {epoch + 1}/{cfg.epochs} {phase:9s} loss={record['train_loss']:.4f} "
                f"train_f1={record['train_macro_f1']:.3f} val_loss={val_loss:.4f} val_macro_f1={val_f1:.3f} "
                f"{record['images_per_s']:.1f} img/s"
            )
        if report is not None:
            ckpt_dir = None
            if rank == 0:
                ckpt_dir = tempfile.mkdtemp(prefix="scanlabel-ckpt-")
                model.save_weights(os.path.join(ckpt_dir, CHECKPOINT_WEIGHTS))
                if best_weights is not None:
                    _save_arrays(os.path.join(ckpt_dir, CHECKPOINT_BEST), best_weights)
                _save_arrays(os.path.join(ckpt_dir, CHECKPOINT_OPTIMIZER), [v.numpy() for v in opt.variables])
                _save_arrays(
                    os.path.join(ckpt_dir, CHECKPOINT_MODEL_STATE), [v.numpy() for v in _model_state_variables(model)]
                )
                with open(os.path.join(ckpt_dir, CHECKPOINT_STATE), "w") as f:
                    json.dump(state, f)
            done = stopped_early or paused or epoch + 1 == cfg.epochs
            status = "paused" if paused else ("final" if done else "running")
            try:
                report({**record, "status": status}, ckpt_dir)
            finally:
                if ckpt_dir:
                    shutil.rmtree(ckpt_dir, ignore_errors=True)
        if stopped_early:
            if rank == 0:
                log(f"[train] early stop: no val macro-F1 gain for {cfg.patience} epochs")
            break
        if paused:
            if rank == 0:
                log(
                    f"[train] paused after epoch {epoch + 1}/{cfg.epochs} (stop_after_epoch): the checkpoint is "
                    "kept; continue with --resume"
                )
            break

    summary: dict[str, Any] = {
        "history": state["history"],
        "best_epoch": state["best_epoch"],
        "best_val_macro_f1": state["best_f1"],
        "stopped_early": stopped_early,
        "paused": paused,
        "resumes": state["resumes"],
        "classes": classes,
        "unmapped_labels": rows.unmapped,
    }
    if paused:
        return summary
    if best_weights is not None:
        _assign_all(model.weights, best_weights, "best weights")
    # Data parallelism is only correct if every replica ends with the same weights: check, record, and refuse
    # to publish a bundle otherwise.
    mine = np.zeros(world, np.float64)
    mine[rank] = weights_digest(model)
    digests = [int(d) for d in _allreduce_sum(strategy, mine)]
    summary["replica_weight_digests"] = digests
    if len(set(digests)) != 1:
        raise RuntimeError(f"replicas diverged: weight digests {digests}")

    # Held-out predictions of the published (best) weights: each worker fills the rows of its shard, one sum
    # gathers them on every worker, rank 0 writes the report.  Error codes travel as 1-based indices.
    n_val = len(val_rows)
    gathered = np.zeros((n_val, n_classes + 1), np.float64)
    my_index = np.arange(rank, n_val, world)
    if len(val_kept):
        gathered[my_index[val_kept], :n_classes] = predict_all(val_x)
    for i, code in enumerate(val_codes):
        if code:
            gathered[my_index[i], n_classes] = errors.ALL_CODES.index(code) + 1
    gathered = _allreduce_sum(strategy, gathered.ravel()).reshape(n_val, n_classes + 1)

    if rank == 0:
        from core.metrics import compute_metrics

        report_rows = []
        for i in range(n_val):
            code_idx = int(round(gathered[i, n_classes]))
            probs = gathered[i, :n_classes]
            pred = None if code_idx else classes[int(probs.argmax())]
            report_rows.append(
                {
                    "image_id": val_rows.image_ids[i],
                    "uri": val_rows.uris[i],
                    "true": classes[val_rows.labels[i]],
                    "pred": pred,
                    "confidence": None if code_idx else float(probs.max()),
                    "status": "error" if code_idx else "ok",
                    "error": errors.ALL_CODES[code_idx - 1] if code_idx else None,
                }
            )
        failed = [r["error"] for r in report_rows if r["error"]]
        val_metrics = compute_metrics([r["true"] for r in report_rows], [r["pred"] for r in report_rows], classes)
        training_info = {
            "backbone": cfg.backbone,
            "weights_source": cfg.weights if cfg.pretrained else "none",
            "manifest": cfg.manifest,
            "manifest_sha256": _fingerprint(cfg.manifest),
            "label_map": cfg.label_map,
            "class_counts": {"train": train_rows.class_counts(), "val": val_rows.class_counts()},
            "unmapped_labels": rows.unmapped,
            "val_decode_failures": {c: failed.count(c) for c in sorted(set(failed))},
            "validation": {k: val_metrics[k] for k in ("n", "n_unlabeled", "accuracy", "macro_f1")},
            "hyperparameters": {
                **cfg.to_dict(),
                "image_size": size,
                "global_batch": global_batch,
                "lr": lr,
                "workers": world,
                "steps_per_epoch": steps,
            },
            "history": state["history"],
            "best_epoch": state["best_epoch"],
            "best_val_macro_f1": state["best_f1"],
            "stopped_early": stopped_early,
            "resumes": state["resumes"],
            "versions": package_versions(),
            "replica_weight_digests": digests,
            "split": {"val_fraction": cfg.val_fraction, "seed": cfg.seed, "method": "sha256(seed:image_id)"},
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
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
            # The saved model must not carry the mixed-precision policy into float32 inference.
            keras.mixed_precision.set_global_policy("float32")
            summary["model_id"] = save_bundle(cfg.out, model, classes, pre, training_info, extra)
        val_metrics.update(
            {"model_id": summary["model_id"], "split": "validation", "manifest": cfg.manifest, "bundle": cfg.out}
        )
        _write_validation_report(
            cfg.out, val_metrics, report_rows, f"scanlabel validation split — {summary['model_id']}"
        )
        summary["bundle"] = cfg.out
        summary["validation"] = training_info["validation"]
        log(
            f"[train] bundle written to {cfg.out} (model_id={summary['model_id']}; validation accuracy "
            f"{val_metrics['accuracy']:.3f}, macro-F1 {val_metrics['macro_f1']:.3f})"
        )
    return summary
