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

import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from core.training.config import ReportFn, TrainConfig, phase_of, resolve_precision
from core.training.distributed import bn_refresh_sample, refresh_batchnorm
from core.training.faults import WorkerExit
from core.training.publish import (
    calibrate,
    check_replicas_agree,
    gather_validation,
    publish,
    write_holdout_predictions,
)
from core.training.setup import Setup, ValShard, check_devices, new_state, resume_state, set_up, train_dataset
from core.training.trainer import Trainer
from core.trust.metrics import macro_f1_from_confusion


def run_training(
    cfg: TrainConfig,
    strategy,
    rank: int = 0,
    world: int = 1,
    report: ReportFn | None = None,
    resume_dir: str | None = None,
    log: Callable[[str], None] = print,
    fault: WorkerExit | None = None,
) -> dict[str, Any]:
    """Train on this worker's shard in lock-step with the others; rank 0 writes the bundle.

    ``report(metrics, checkpoint_dir)`` is called by every worker after every epoch (rank 0 passes a
    checkpoint directory, which is deleted once ``report`` returns); ``resume_dir`` is such a directory to
    continue from.  Returns the final summary (history, best epoch, model_id on rank 0; ``paused`` when
    ``stop_after_epoch`` ended the run before ``epochs``).  ``fault``: a worker exit injected on purpose (tests).
    """
    import keras
    import tensorflow as tf

    previous_policy = keras.mixed_precision.global_policy()
    try:
        keras.mixed_precision.set_global_policy(resolve_precision(cfg, bool(tf.config.list_logical_devices("GPU"))))
        return _run(cfg, strategy, rank, world, report, resume_dir, log, fault)
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
    fault: WorkerExit | None = None,
) -> dict[str, Any]:
    """The whole run, in the order it happens; every step is a named piece below.

    The order of the first steps matters for exact resumption: the seed is set before anything draws a random
    number, and the model is built after the input pipeline, as in every run before it.
    """
    import keras

    keras.utils.set_random_seed(cfg.seed)
    check_devices(cfg, rank, world, log)
    setup = set_up(cfg, rank, world, log)
    state = new_state(cfg, setup, world)
    if resume_dir:
        state = resume_state(resume_dir, state, cfg, setup, rank, world, log)
    start_epoch = int(state["epoch"])
    train_ds = train_dataset(cfg, setup, rank, world, start_epoch)
    val = ValShard.decode(cfg, setup, rank, world)
    trainer = Trainer(cfg, strategy, rank, world, setup, fault)
    trainer.bn_sample, trainer.bn_cache = bn_refresh_sample(cfg, setup, rank, world), {}
    if resume_dir:
        trainer.restore(resume_dir, start_epoch, log)

    outcome = train_epochs(trainer, state, train_ds, val, start_epoch, report, log)
    epochs_done_at = time.perf_counter()
    summary = _summary(state, outcome, setup)
    if outcome == "paused":
        return summary

    trainer.use_best_weights()
    trainer.to_float32()  # validation, calibration and the bundle see the arithmetic labeling will use
    summary["replica_weight_digests"] = check_replicas_agree(trainer)
    if cfg.holdout_manifest:  # a fold of --noisy-labels: out-of-fold probabilities, no bundle
        if rank == 0:
            summary["holdout"] = write_holdout_predictions(trainer, log)
        return summary
    val_probs, val_codes, mine = gather_validation(trainer, val, len(setup.val_rows))
    trust = calibrate(trainer, val, val_probs, val_codes, mine, log)
    if rank == 0:
        publish(trainer, state, outcome, val_probs, val_codes, trust, summary, log, epochs_done_at)
    return summary


# --- the epoch loop -------------------------------------------------------------------------------------------


def train_epochs(
    trainer: Trainer,
    state: dict[str, Any],
    train_ds,
    val: ValShard,
    start_epoch: int,
    report: ReportFn | None,
    log: Callable[[str], None],
) -> str:
    """Epochs from ``start_epoch`` on; returns ``"done"``, ``"stopped_early"`` or ``"paused"``.

    The training stream's iterator is let go on a background thread: tearing down a tf.data iterator whose
    augmentation runs in ``numpy_function`` calls blocked the worker for 48-55 s after the last epoch of the
    demo's training (9,660 images; BENCHMARKS.md, "Demo time"), time the validation pass and the bundle need not
    wait for.
    """
    iterators = [iter(train_ds)]
    try:
        return _epochs(trainer, state, iterators[0], val, start_epoch, report, log)
    finally:
        threading.Thread(target=iterators.clear, name="scanlabel-release-train-stream", daemon=True).start()


def _epochs(
    trainer: Trainer,
    state: dict[str, Any],
    iterator,
    val: ValShard,
    start_epoch: int,
    report: ReportFn | None,
    log: Callable[[str], None],
) -> str:
    cfg = trainer.cfg
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
        # for the training benchmark (benchmarks/train.py)
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
    setup: Setup,
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


def _update_state(state: dict[str, Any], trainer: Trainer, record: dict[str, Any]) -> None:
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
    trainer: Trainer, state: dict[str, Any], record: dict[str, Any], outcome: str, report: ReportFn
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


def _summary(state: dict[str, Any], outcome: str, setup: Setup) -> dict[str, Any]:
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
