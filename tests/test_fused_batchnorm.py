"""The fused BatchNorm call (core/model/fused_batchnorm.py) computes what Keras' own does, and saves as Keras' own."""

from __future__ import annotations

import numpy as np


def _pair():
    import keras

    from core.model import backbones
    from core.model.fused_batchnorm import fuse_batchnorm

    keras.utils.set_random_seed(0)
    plain, base = backbones.build_classifier("compact_resnet", ["a", "b", "c"], None, 48, dropout=0.0)
    backbones.set_trainable_blocks("compact_resnet", base, None)
    fused = keras.models.clone_model(plain)
    fused.set_weights(plain.get_weights())
    for layer in fused._flatten_layers(include_self=False, recursive=True):
        layer.trainable = True
    n = fuse_batchnorm(fused)
    return plain, fused, n


def test_fused_training_step_matches_keras(tmp_path):
    import keras
    import tensorflow as tf

    plain, fused, n = _pair()
    bn = [la for la in plain._flatten_layers(recursive=True) if isinstance(la, keras.layers.BatchNormalization)]
    assert n == len(bn) > 10
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (8, 48, 48, 3)).astype("float32"))
    y = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    results = []
    for model in (plain, fused):
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probs))
        grads = tape.gradient(loss, model.trainable_variables)
        stats = [w.numpy() for w in model.non_trainable_weights]
        results.append((probs.numpy(), [g.numpy() for g in grads], stats))
    (p0, g0, s0), (p1, g1, s1) = results
    np.testing.assert_allclose(p1, p0, rtol=1e-3, atol=1e-5)
    for a, b in zip(g0, g1, strict=True):
        np.testing.assert_allclose(b, a, rtol=2e-2, atol=1e-4 * max(1.0, float(np.abs(a).max())))
    for a, b in zip(s0, s1, strict=True):  # moving mean and (biased) variance updated alike
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5)
    # Inference is Keras' own path, and a saved model is plain Keras.
    np.testing.assert_allclose(fused(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-5)
    path = tmp_path / "m.keras"
    fused.save(path)
    loaded = keras.models.load_model(path)
    inner = [la for la in loaded._flatten_layers(recursive=True) if isinstance(la, keras.layers.BatchNormalization)]
    assert inner and all("call" not in vars(la) for la in inner)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), fused(x, training=False).numpy(), atol=1e-5)


def test_bfloat16_training_publishes_a_float32_bundle(small_archive, tmp_path):
    """``precision=bfloat16`` trains under mixed_bfloat16 and writes a bundle that computes in float32."""
    import json

    import keras
    import tensorflow as tf

    from core.model.bundle import load_bundle
    from core.training import run_training
    from tests.conftest import train_config

    _, manifest = small_archive
    cfg = train_config(manifest, tmp_path / "bundle", epochs=1, steps_per_epoch=2, precision="bfloat16")
    run_training(cfg, tf.distribute.get_strategy(), log=lambda _: None)
    assert keras.mixed_precision.global_policy().name == "float32"  # the policy does not leak out of a run
    info = json.loads((tmp_path / "bundle" / "training.json").read_text())
    assert info["hyperparameters"]["dtype_policy"] == "mixed_bfloat16"
    bundle = load_bundle(str(tmp_path / "bundle"))
    assert {layer.dtype_policy.name for layer in bundle.model.layers} == {"float32"}
