"""How long a training will take, measured on this machine before it starts.

Why: a run of several minutes should say so in its first line, per phase, so a user knows whether to wait or to
come back.  A fixed figure in the docs is wrong on every other machine; a few timed training steps of the very
model the run will train (the same backbone, input size, batch and fused BatchNorm) cost seconds and are right
to within the machine's load.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StepRate:
    """Training images per second of wall time, measured over ``steps`` steps after one traced warm-up step."""

    images_per_s: float
    steps: int
    measured_s: float

    def seconds_for(self, images: int) -> float:
        return images / max(self.images_per_s, 1e-9)


def measure_step_rate(
    backbone: str,
    image_size: int,
    n_classes: int,
    batch_size: int = 32,
    steps: int = 4,
    *,
    fused: bool = True,
    xla: bool = False,
    policy: str = "float32",
    before_timing: Callable[[], object] | None = None,
) -> StepRate:
    """Time ``steps`` from-scratch training steps of ``backbone`` on random pixels (weights are not kept).

    The step is the trainer's own shape of work (forward, loss, gradients, AdamW update, BatchNorm updates on the
    fused kernel); data loading and validation are not in it, as the training's input pipeline overlaps them.
    ``policy`` is the Keras dtype policy to time (:func:`core.training.config.resolve_precision` gives the one a
    run will use); ``fused=False`` and ``xla=True`` time the alternatives (the step-time benchmark compares them).
    ``before_timing`` is called after the traced step and before the timed ones: a caller that starts something
    else meanwhile (the demo starts Ray during TensorFlow's import and the trace) waits there for it to finish,
    so the rate is not measured on shared cores.
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        return _time_steps(backbone, image_size, n_classes, batch_size, steps, fused, xla, before_timing)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _time_steps(
    backbone: str,
    image_size: int,
    n_classes: int,
    batch_size: int,
    steps: int,
    fused: bool,
    xla: bool,
    before_timing: Callable[[], object] | None,
) -> StepRate:
    import keras
    import numpy as np
    import tensorflow as tf

    from core.model import backbones
    from core.model.fused_batchnorm import fuse_batchnorm

    model, base = backbones.build_classifier(backbone, [f"c{i}" for i in range(n_classes)], None, image_size)
    backbones.set_trainable_blocks(backbone, base, None)
    if fused:
        fuse_batchnorm(model)
    opt = keras.optimizers.AdamW(1e-3)
    variables = model.trainable_variables
    opt.build(variables)

    @tf.function(jit_compile=xla)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=True)))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, n_classes, batch_size))
    float(step(x, y))  # trace
    if before_timing is not None:
        before_timing()
    t0 = time.perf_counter()
    for _ in range(steps):
        float(step(x, y))
    elapsed = time.perf_counter() - t0
    return StepRate(steps * batch_size / elapsed, steps, elapsed)
