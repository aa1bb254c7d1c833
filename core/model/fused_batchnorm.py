"""BatchNorm's training-mode call on TensorFlow's fused kernel, for the layers a from-scratch training updates.

Why: Keras 3's ``BatchNormalization`` computes its batch moments with ``tf.nn.moments`` and normalises with
separate element-wise ops; TensorFlow's ``FusedBatchNormV3`` does both (and its gradient) in one oneDNN kernel.
On the 2-core development machine a from-scratch ``compact_resnet`` step at 96 px ran 1.37× faster with it
(``python -m jobs.bench train-step``; BENCHMARKS.md, "Demo time").

What changes: only the call of trainable BatchNorm layers in training mode, on this process's model object.  The
layer class, its weights and its config stay Keras' own, so a saved bundle is plain Keras and loads anywhere; in
inference mode (validation, labeling) nothing differs.  The moving statistics are updated as Keras does, with the
biased batch variance (the fused op returns the unbiased one, corrected here).
"""

from __future__ import annotations

import types
from typing import Any


def _fused_call(self: Any, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
    import tensorflow as tf

    fusable = len(inputs.shape) == 4 and self.axis in (-1, 3) and self.scale and self.center and not self.renorm
    if not (training and self.trainable and fusable) or mask is not None:
        return type(self).call(self, inputs, training=training, mask=mask)
    y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
        x=inputs,
        scale=tf.cast(self.gamma, tf.float32),
        offset=tf.cast(self.beta, tf.float32),
        mean=tf.zeros([0], tf.float32),
        variance=tf.zeros([0], tf.float32),
        epsilon=self.epsilon,
        data_format="NHWC",
        is_training=True,
    )
    n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
    variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
    momentum = self.momentum  # read when traced, as Keras' own call does
    self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
    self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
    return tf.cast(y, self.compute_dtype)


def fuse_batchnorm(model: Any) -> int:
    """Route every BatchNorm layer of ``model`` (nested models included) through the fused kernel in training.

    Returns how many layers were routed.  Only this object changes: a model loaded from a saved bundle has Keras'
    own call.  Works on the TensorFlow backend only (the one training runs on); elsewhere it does nothing.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return 0
    n = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and not getattr(layer, "synchronized", False):
            layer.call = types.MethodType(_fused_call, layer)
            n += 1
    return n
