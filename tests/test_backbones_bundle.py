"""Backbone registry, weights files, block freezing, and the bundle's save → load round trip."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from core.errors import BundleError
from core.model import backbones
from core.model.bundle import load_bundle, save_bundle
from core.model.preprocess import PreprocessConfig


def test_registry_lists_required_backbones_and_rejects_unknown():
    for name in ("compact_resnet", "efficientnet_b0", "inception_v3", "mobilenet_v3_small", "resnet50"):
        assert name in backbones.available_backbones()
    with pytest.raises(ValueError, match="Unknown backbone 'vgg99'.*efficientnet_b0"):
        backbones.get_backbone("vgg99")


@pytest.mark.parametrize("name", ["compact_resnet", "efficientnet_b0", "inception_v3", "resnet50"])
def test_each_backbone_builds_and_freezes_top_blocks(name):
    size = 75 if name == "inception_v3" else 64
    model, base = backbones.build_classifier(name, ["a", "b", "c"], None, size)
    assert model.output_shape == (None, 3)
    assert backbones.set_trainable_blocks(name, base, 0) == 0
    n_top2 = backbones.set_trainable_blocks(name, base, 2)
    assert 0 < n_top2 < len(base.weights)
    assert not any(layer.trainable for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization))


@pytest.mark.parametrize(
    "name,saved_size,size",
    [("mobilenet_v3_small", 64, 64), ("compact_resnet", 96, 128)],  # compact_resnet: a site's earlier training
)
def test_weights_file_is_loaded_into_the_backbone(tmp_path, name, saved_size, size):
    keras.utils.set_random_seed(1)
    src = backbones.build_base(name, saved_size, None)
    path = str(tmp_path / "backbone.weights.h5")
    src.save_weights(path)
    keras.utils.set_random_seed(2)
    model, base = backbones.build_classifier(name, ["a", "b"], path, size)
    for a, b in zip(src.weights, base.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_compact_resnet_refuses_imagenet_weights_clearly():
    with pytest.raises(ValueError, match="no ImageNet weights.*--weights none"):
        backbones.build_base("compact_resnet", 96, "imagenet")


def test_compact_resnet_starts_as_identity_residuals():
    """Each residual branch ends in a BatchNorm with zero scale, so a new network passes its shortcut through."""
    base = backbones.build_base("compact_resnet", 64, None)
    last_bns = [layer for layer in base.layers if layer.name.endswith("_bn2")]
    assert len(last_bns) == 4
    for layer in last_bns:
        np.testing.assert_array_equal(layer.gamma.numpy(), 0.0)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        backbones.build_classifier("mobilenet_v3_small", ["a"], str(tmp_path / "none.h5"), 64)


def test_bundle_round_trip_and_tamper_detection(tmp_path):
    keras.utils.set_random_seed(0)
    model, _ = backbones.build_classifier("mobilenet_v3_small", ["chest", "head"], None, 64)
    pre = PreprocessConfig(image_size=64)
    out = str(tmp_path / "bundle")
    model_id = save_bundle(out, model, ["chest", "head"], pre, {"backbone": "mobilenet_v3_small"})
    assert model_id.startswith("mobilenet_v3_small-")
    b = load_bundle(out)
    assert b.model_id == model_id and b.classes == ["chest", "head"] and b.preprocess == pre
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    np.testing.assert_allclose(b.model(x, training=False), model(x, training=False), atol=1e-6)

    labels = os.path.join(out, "labels.json")
    with open(labels, "w") as f:
        json.dump(["head", "chest"], f)  # swapping classes silently would mislabel every image
    with pytest.raises(BundleError, match="labels.json does not match"):
        load_bundle(out)


def test_compact_resnet_bundle_round_trip_with_its_litert_export(tmp_path):
    keras.utils.set_random_seed(0)
    model, _ = backbones.build_classifier("compact_resnet", ["chest", "head", "other"], None, 64)
    pre = PreprocessConfig(image_size=64)
    out = str(tmp_path / "bundle")
    save_bundle(out, model, ["chest", "head", "other"], pre, {"backbone": "compact_resnet"})
    b = load_bundle(out)
    assert b.litert_path is not None  # export_litert refuses a file whose outputs differ from the Keras model
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    np.testing.assert_allclose(b.model(x, training=False), model(x, training=False), atol=1e-6)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a scanlabel bundle"):
        load_bundle(str(tmp_path))
