"""A registry of transfer-learning backbones and the one function that builds a classifier from a name.

Each backbone is a small registered constructor (timm's habit) that also declares the input scaling the
Keras application expects, so preprocessing stays backbone-neutral ([0, 1] grayscale) and the scaling is
saved inside the model itself.  ``weights`` is ``"imagenet"``, ``None``/``"none"`` or a path to a weights file
(for air-gapped clusters).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import keras

from core.model.compact_resnet import CompactResNet


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    constructor: Callable[..., keras.Model]
    default_size: int
    min_size: int
    scale: float
    offset: tuple[float, float, float]
    block_key: Callable[[list[str]], list[str]]
    extra_kwargs: dict | None = None


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    _REGISTRY[spec.name] = spec
    return spec


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def get_backbone(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown backbone {name!r}; available: {', '.join(available_backbones())}") from None


def _prefix_blocks(pattern: str) -> Callable[[list[str]], list[str]]:
    """Block id from a layer-name prefix; unnamed layers (activations, adds) belong to the block before them."""
    rx = re.compile(pattern)

    def keys(names: list[str]) -> list[str]:
        out, current = [], "stem"
        for n in names:
            m = rx.match(n)
            if m:
                current = m.group(1)
            out.append(current)
        return out

    return keys


def _marker_blocks(pattern: str) -> Callable[[list[str]], list[str]]:
    """Block id for architectures whose blocks end at a named layer (Inception's ``mixedN`` concatenations)."""
    rx = re.compile(pattern)

    def keys(names: list[str]) -> list[str]:
        out: list[str] = []
        pending: list[int] = []
        for i, n in enumerate(names):
            out.append("")
            pending.append(i)
            if rx.match(n):
                for j in pending:
                    out[j] = n
                pending = []
        for j in pending:
            out[j] = "top"
        return out

    return keys


IMAGENET_CAFFE_MEAN = (-103.939, -116.779, -123.68)

register_backbone(
    BackboneSpec(
        "efficientnet_b0",
        keras.applications.EfficientNetB0,
        224,
        32,
        255.0,
        (0.0, 0.0, 0.0),
        _prefix_blocks(r"^(block\d+[a-z]|top)_"),
    )
)
register_backbone(
    BackboneSpec(
        "mobilenet_v3_small",
        keras.applications.MobileNetV3Small,
        224,
        32,
        255.0,
        (0.0, 0.0, 0.0),
        _prefix_blocks(r"^(expanded_conv_\d*|conv_1)(?:_|$)"),
        {"include_preprocessing": True},
    )
)
register_backbone(
    BackboneSpec(
        "resnet50",
        keras.applications.ResNet50,
        224,
        32,
        255.0,
        IMAGENET_CAFFE_MEAN,
        _prefix_blocks(r"^(conv\d_block\d+)_"),
    )
)
register_backbone(
    BackboneSpec(
        "inception_v3",
        keras.applications.InceptionV3,
        299,
        75,
        2.0,
        (-1.0, -1.0, -1.0),
        _marker_blocks(r"^mixed\d+$"),
    )
)
register_backbone(
    BackboneSpec(
        "compact_resnet",  # no ImageNet weights: for training from scratch (core/model/compact_resnet.py)
        CompactResNet,
        128,
        32,
        1.0,
        (0.0, 0.0, 0.0),
        _prefix_blocks(r"^(stem|stage\d+_block\d+)_"),
    )
)


def resolve_weights(weights: str | None) -> str | None:
    """Normalise the --weights argument; a path must exist, 'imagenet' is passed to Keras as is."""
    if weights is None or str(weights).lower() in ("none", "null", ""):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = os.path.abspath(os.path.expanduser(str(weights)))
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file {weights!r} does not exist")
    return path


def build_base(name: str, image_size: int, weights: str | None, channels: int = 3) -> keras.Model:
    """The backbone without its ImageNet head; fails with a clear message when imagenet weights are offline."""
    spec = get_backbone(name)
    if image_size < spec.min_size:
        raise ValueError(f"{name} needs image_size >= {spec.min_size}, got {image_size}")
    weights = resolve_weights(weights)
    kwargs = dict(include_top=False, weights=weights, input_shape=(image_size, image_size, channels))
    kwargs.update(spec.extra_kwargs or {})
    try:
        return spec.constructor(**kwargs)
    except Exception as e:
        if weights == "imagenet" and not isinstance(e, ValueError):
            raise RuntimeError(
                f"could not obtain ImageNet weights for {name} ({type(e).__name__}: {e}). This host is probably "
                "offline: download the no-top weights file on a connected machine, copy it here and pass "
                "--weights /path/to/file.h5 (or pre-populate ~/.keras/models)."
            ) from e
        raise


def build_classifier(
    name: str,
    classes: list[str] | tuple[str, ...],
    weights: str | None = None,
    image_size: int | None = None,
    dropout: float = 0.2,
) -> tuple[keras.Model, keras.Model]:
    """A new softmax head on a backbone; returns (classifier, base).

    The input scaling each Keras application expects is the first layer.  Note that Keras 3 propagates an
    outer ``training=True`` into nested models, so BatchNorm is kept in inference mode the Keras 3 way: its
    layers are set ``trainable=False`` (see :func:`set_trainable_blocks`), which makes them use their moving
    statistics and never update them.
    """
    spec = get_backbone(name)
    size = image_size or spec.default_size
    base = build_base(name, size, weights)
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(spec.scale, list(spec.offset), name="backbone_input_scaling")(inputs)
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(len(classes), activation="softmax", dtype="float32", name="head")(x)
    model = keras.Model(inputs, outputs, name=f"scanlabel_{name}")
    return model, base


def block_names(name: str, base: keras.Model) -> list[str]:
    """Block ids of the base's layers, in order (stem first, top last)."""
    return get_backbone(name).block_key([layer.name for layer in base.layers])


def set_trainable_blocks(name: str, base: keras.Model, top_blocks: int | None) -> int:
    """Freeze the base except its top ``top_blocks`` blocks (None = everything trainable, 0 = all frozen).

    BatchNorm layers stay frozen in any case.  Returns the number of trainable weight tensors in the base.
    """
    if top_blocks is None:
        # Training from scratch: BatchNorm must learn its statistics.  Keras applications use momentum 0.99-0.999
        # (tuned for ImageNet-length schedules); 0.9 lets the moving averages converge within a short run.
        base.trainable = True
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = min(layer.momentum, 0.9)
        return len(base.trainable_weights)
    keys = block_names(name, base)
    order: list[str] = []
    for k in keys:
        if k not in order:
            order.append(k)
    unfrozen = set(order[len(order) - top_blocks :]) if top_blocks > 0 else set()
    base.trainable = True
    for layer, key in zip(base.layers, keys, strict=True):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = key in unfrozen and not is_bn
    return len(base.trainable_weights)
