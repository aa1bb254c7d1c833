"""The model and its training steps under a ``tf.distribute`` strategy: phases, the custom step, validation.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from core.training.checkpoints import (
    assign_all,
    load_arrays,
    load_checkpoint_weights,
    model_state_variables,
    save_arrays,
)
from core.training.config import (
    CHECKPOINT_BEST,
    CHECKPOINT_MODEL_STATE,
    CHECKPOINT_OPTIMIZER,
    CHECKPOINT_STATE,
    CHECKPOINT_WEIGHTS,
    TrainConfig,
    lr_schedule,
    phase_epochs,
)
from core.training.distributed import allreduce_sum
from core.training.faults import WorkerExit
from core.training.setup import Setup, ValShard

# --- the model and its training steps -----------------------------------------------------------------------


class Trainer:
    """The model on this worker and what acts on it: phases, epochs, predictions, checkpoints."""

    def __init__(
        self, cfg: TrainConfig, strategy, rank: int, world: int, setup: Setup, fault: WorkerExit | None = None
    ) -> None:
        import tensorflow as tf

        from core.model import backbones
        from core.model.fused_batchnorm import fuse_batchnorm

        self.cfg, self.strategy, self.rank, self.world, self.setup = cfg, strategy, rank, world, setup
        self.fault = fault
        with strategy.scope():
            self.model, self.base = backbones.build_classifier(cfg.backbone, setup.classes, cfg.weights, setup.size)
        fuse_batchnorm(self.model)  # training-mode BatchNorm on TensorFlow's fused kernel; the bundle stays plain
        self.trained_policy = self.model.dtype_policy.name
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
            self.best_weights = load_arrays(best)
        optimizer = os.path.join(resume_dir, CHECKPOINT_OPTIMIZER)
        if os.path.exists(optimizer):
            self.saved_optimizer = load_arrays(optimizer)
        model_state = os.path.join(resume_dir, CHECKPOINT_MODEL_STATE)
        if os.path.exists(model_state):
            assign_all(model_state_variables(self.model), load_arrays(model_state), "model state")
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
            assign_all(self.optimizer.variables, self.saved_optimizer, "optimizer state")
        self.saved_optimizer = None
        self.phase = phase

    def _make_phase(self, phase: str):
        import keras
        import tensorflow as tf

        from core.model import backbones
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
        schedule = lr_schedule(cfg, phase_lr, phase_epochs(cfg, phase) * setup.steps)
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
            if self.fault is not None:
                self.fault(epoch, step, self.setup.steps, self.rank, self.world, log)
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
        (probs,) = self._batched(lambda xb: (self._predict_batch(xb),), x_all, [self.setup.n_classes])
        return probs

    def _batched(self, fn, x_all: np.ndarray, widths: list[int]) -> list[np.ndarray]:
        """``fn`` over ``x_all`` in batches of the training batch size, the last padded to that size so the traced
        function sees one shape; returns one float64 array per output of ``fn`` (of the given widths)."""
        import tensorflow as tf

        eb = self.cfg.batch_size
        outs = [np.zeros((len(x_all), w), np.float64) for w in widths]
        for start in range(0, len(x_all), eb):
            xb = x_all[start : start + eb]
            n = len(xb)
            if n < eb:
                xb = np.concatenate([xb, np.zeros((eb - n, *xb.shape[1:]), xb.dtype)])
            for out, value in zip(outs, fn(tf.constant(xb)), strict=True):
                out[start : start + n] = value.numpy()[:n]
        return outs

    def validate(self, val: ValShard) -> tuple[float, np.ndarray]:
        """Mean validation loss and confusion matrix over all workers' shards (one all-reduce)."""
        n_classes = self.setup.n_classes
        probs = self.predict(val.x)
        cm = np.zeros((n_classes, n_classes), np.int64)
        n = len(val.y)
        loss_sum = float(-np.log(np.clip(probs[np.arange(n), val.y], 1e-7, 1.0)).sum()) if n else 0.0
        if n:
            np.add.at(cm, (val.y, probs.argmax(1)), 1)
        totals = allreduce_sum(self.strategy, np.concatenate([cm.ravel(), [loss_sum * 1000.0]]).astype(np.float64))
        cm = totals[:-1].reshape(n_classes, n_classes).astype(np.int64)
        n_val = max(cm.sum(), 1)
        return float(totals[-1] / 1000.0 / n_val), cm

    # --- checkpoint ---

    def write_checkpoint(self, state: dict[str, Any]) -> str:
        """Everything a resumed run needs, in a new temporary directory (the caller deletes it)."""
        ckpt_dir = tempfile.mkdtemp(prefix="scanlabel-ckpt-")
        save_arrays(os.path.join(ckpt_dir, CHECKPOINT_WEIGHTS), [w.numpy() for w in self.model.weights])
        if self.best_weights is not None:
            save_arrays(os.path.join(ckpt_dir, CHECKPOINT_BEST), self.best_weights)
        save_arrays(os.path.join(ckpt_dir, CHECKPOINT_OPTIMIZER), [v.numpy() for v in self.optimizer.variables])
        save_arrays(
            os.path.join(ckpt_dir, CHECKPOINT_MODEL_STATE), [v.numpy() for v in model_state_variables(self.model)]
        )
        with open(os.path.join(ckpt_dir, CHECKPOINT_STATE), "w") as f:
            json.dump(state, f)
        return ckpt_dir

    def to_float32(self) -> None:
        """Swap a mixed-precision model for a float32 one with the same weights (the variables of a mixed policy
        are float32 already), so validation, calibration and the bundle compute as labeling will."""
        import keras
        import tensorflow as tf

        from core.model import backbones

        if self.model.dtype_policy.name == "float32":
            return
        keras.mixed_precision.set_global_policy("float32")
        with self.strategy.scope():
            model, base = backbones.build_classifier(self.cfg.backbone, self.setup.classes, None, self.setup.size)
        model.set_weights(self.model.get_weights())
        self.model, self.base = model, base
        self._predict_batch = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def use_best_weights(self) -> None:
        if self.best_weights is not None:
            assign_all(self.model.weights, self.best_weights, "best weights")

    def features_and_probs(self, x_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate-layer features and softmax outputs from one pass, as labeling computes them."""
        import keras
        import tensorflow as tf

        from core.trust.confidence import FEATURE_LAYER

        scored = keras.Model(self.model.inputs, [self.model.get_layer(FEATURE_LAYER).output, self.model.outputs[0]])
        fn = tf.function(lambda x: scored(x, training=False), reduce_retracing=True)
        feats, probs = self._batched(fn, x_all, [int(scored.outputs[0].shape[-1]), self.setup.n_classes])
        return feats, probs
