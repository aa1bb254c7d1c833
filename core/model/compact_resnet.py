"""A compact residual network for sites that train from scratch (no pretrained weights reachable).

Keras' applications are ImageNet designs: pretrained, they transfer well; from random weights on a few thousand
radiographs they learn less.  MobileNetV3-Small shrinks a 96-px input to
24x24 within its first two layers; trained from scratch on the demo's 8,400 phantoms it reached 0.987-0.992
accepted accuracy on held-out phantoms and called both real radiographs of pydicom-data wrong (a CR chest
`other`, a CR tibia `arm`).  This network keeps a 48x48 map for its first stage, uses plain 3x3 convolutions with
BatchNorm and ReLU (He et al., 2016: basic blocks, one per stage, widths 32-64-128-256) and starts each residual
branch at zero (the last BatchNorm's scale is zero; Goyal et al., 2017), so an untrained network is a chain of
identities.  At 96 px a training step costs about what MobileNetV3-Small's costs on a CPU; trained the same way it
reached 0.997-1.000 and labelled both real radiographs right (BENCHMARKS.md, "Trust figures of the demo's recipe").

It has no ImageNet weights.  ``weights`` may be a weights file saved from this network (``base.save_weights``),
for example a site's own earlier training; convolution weights do not depend on the input size.
"""

from __future__ import annotations

import keras
from keras import layers

WIDTHS = (32, 64, 128, 256)
STEM_WIDTH = 24


def _basic_block(x, filters: int, stride: int, name: str):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(gamma_initializer="zeros", name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def CompactResNet(
    include_top: bool = False,
    weights: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    **_: object,
) -> keras.Model:
    """The feature extractor (no classifier: scanlabel adds its own head), called like a Keras application."""
    if include_top:
        raise ValueError("compact_resnet has no ImageNet classifier top; scanlabel adds its own head")
    if weights == "imagenet":
        raise ValueError(
            "compact_resnet has no ImageNet weights: train it from scratch (--weights none) or pass a weights file "
            "saved from it; for ImageNet transfer learning choose efficientnet_b0, mobilenet_v3_small, resnet50 or "
            "inception_v3"
        )
    inputs = keras.Input(input_shape or (None, None, 3), name="pixels")
    x = layers.Conv2D(STEM_WIDTH, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for stage, width in enumerate(WIDTHS, start=1):
        x = _basic_block(x, width, 1 if stage == 1 else 2, f"stage{stage}_block1")
    model = keras.Model(inputs, x, name="compact_resnet")
    if weights is not None:
        model.load_weights(weights)
    return model
