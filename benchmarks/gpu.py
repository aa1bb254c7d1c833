"""GPU capacity of the labeling model: images/s of a model actor's model call on one GPU, and whether its labels
are the CPU's, to size the deploy configs (decode CPUs per GPU).

Two halves, because the machine with the GPU has neither TensorFlow nor Ray (it has JAX), and the machine with
TensorFlow has no GPU:

- ``prepare`` (here, TF on the CPU): builds each backbone's classifier with seeded, deterministic weights,
  decodes bench phantom PNGs to the job's compact uint8 pixels, and writes the inputs, the Keras/TF CPU
  probabilities, the level table of :func:`core.model.preprocess.expand` and a digest of the weights; for
  efficientnet_b0 it also writes the model as a ``.keras`` file, the bundle's format.
- ``measure`` (on the GPU machine, ``KERAS_BACKEND=jax``, the keras wheel carried): loads that ``.keras`` file
  (inception_v3's, ~90 MB, is over what travels, so it is rebuilt there with the same deterministic weights and
  checked against the weight digest), runs the job's model call (uint8 levels widened by table lookup, channel
  copies, the model) under ``jax.jit`` at batch 32 and 128, host uint8 arrays in and probabilities back on the
  host each call, as an actor would, and compares top-1 and probabilities with the TF CPU reference, at JAX's
  default float32 matmul precision (TF32 on this GPU) and at "highest".

Weights are random but seeded (not ImageNet's: nothing can be downloaded here), with He-normal kernels so the
softmax is far from uniform and top-1 agreement is a real test; images/s does not depend on the values.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time

import numpy as np

MODELS = (("efficientnet_b0", 224), ("inception_v3", 299))


def deterministic_weights(model, seed: int = 0) -> str:
    """Give every float variable seeded values (He-normal kernels, identity BatchNorm/normalisation statistics,
    zero biases) in model order, and return a digest of them, so two backends build the very same model."""
    rng = np.random.default_rng(seed)
    h = hashlib.sha256()
    for v in model.weights:
        shape, name = tuple(v.shape), v.path.rsplit("/", 1)[-1]
        if "float" not in str(v.dtype):
            continue
        if name in ("gamma", "moving_variance", "variance"):
            value = np.ones(shape, np.float32)
        elif name in ("beta", "moving_mean", "mean", "bias"):
            value = np.zeros(shape, np.float32)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            if "depthwise" in name:
                fan_in = int(np.prod(shape[:2]))
            value = rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), shape).astype(np.float32)
        v.assign(value)
        h.update(value.tobytes())
    return h.hexdigest()[:16]


def _build(backbone: str, size: int):
    from core.model.backbones import build_classifier
    from core.synthetic.phantoms import CLASSES

    model, _ = build_classifier(backbone, list(CLASSES), None, size)
    return model, deterministic_weights(model)


def calibrate_batchnorm(model, x: np.ndarray) -> None:
    """Set every BatchNorm layer's moving statistics to those of its input on ``x``, in network order.

    Seeded random weights make EfficientNet's activations shrink about 20-fold per block (squeeze-excite gates,
    linear projections), so its softmax is uniform to 1e-7 and top-1 agreement would test nothing; with the
    statistics of real phantom inputs each block is normalised, as in a trained network.  Only the
    ``.keras`` file travels for this model, so the GPU side needs no such step."""
    import keras

    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    stem = next(layer for layer in model.layers if layer.name == "backbone_input_scaling")
    inputs = np.asarray(stem(x))
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            h = np.asarray(keras.Model(base.inputs, layer.input)(inputs, training=False))
            axes = tuple(range(h.ndim - 1))
            layer.moving_mean.assign(h.mean(axis=axes))
            layer.moving_variance.assign(h.var(axis=axes) + 1e-3)


def prepare(out: str, images: int) -> None:
    """TF CPU half: inputs, reference probabilities, weight digests, the efficientnet .keras file."""
    import keras

    from core.io import schema
    from core.labeling.batches import PIXELS, decode_batch
    from core.model.engines import keras_forward
    from core.model.preprocess import LEVELS, PreprocessConfig, expand
    from core.synthetic.throughput import write_images

    os.makedirs(out, exist_ok=True)
    import pyarrow.parquet as pq

    src = tempfile.mkdtemp(prefix="scanlabel-gpu-src-")  # the PNGs stay here: only the arrays travel
    manifest = write_images(src, images, 512, seed=7)
    uris = np.asarray(pq.read_table(manifest).column(schema.URI).to_pylist(), dtype=object)
    meta = {}
    for backbone, size in MODELS:
        keras.utils.clear_session()
        cfg = PreprocessConfig(image_size=size)
        pixels = decode_batch({schema.URI: uris, schema.IMAGE_ID: uris}, cfg)[PIXELS]
        model, digest = _build(backbone, size)
        if backbone == "efficientnet_b0":
            calibrate_batchnorm(model, expand(pixels[:16], cfg))
            digest = "in the .keras file"
        fn = keras_forward(model, cfg, len(pixels), features=False)
        probs = fn(pixels)[0]
        table = expand(np.arange(LEVELS + 1, dtype=np.uint8)[:, None], PreprocessConfig(image_size=size, channels=1))
        np.savez(os.path.join(out, f"{backbone}.npz"), pixels=pixels, probs=probs, table=table[:, 0])
        if backbone == "efficientnet_b0":
            model.save(os.path.join(out, f"{backbone}.keras"))
        top = probs.max(1)
        meta[backbone] = {"size": size, "digest": digest, "channels": cfg.channels}
        print(
            f"prepare: {backbone} @ {size}: {len(pixels)} inputs, TF CPU top-1 confidence median {np.median(top):.3f}"
        )
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)


def measure(ref: str, out: str, seconds: float) -> dict:
    """GPU half (JAX backend): images/s at batch 32 and 128, top-1 agreement with the TF CPU reference."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import jax.numpy as jnp
    import keras

    assert keras.backend.backend() == "jax", keras.backend.backend()
    meta = json.load(open(os.path.join(ref, "meta.json")))
    device = jax.devices()[0]
    print(f"measure: {device.device_kind} ({device.platform}), jax {jax.__version__}, keras {keras.__version__}")
    results: dict = {"device": device.device_kind, "models": {}}
    for backbone, size in MODELS:
        keras.utils.clear_session()
        data = np.load(os.path.join(ref, f"{backbone}.npz"))
        path = os.path.join(ref, f"{backbone}.keras")
        if os.path.exists(path):
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
            source = ".keras file made by TF"
        else:
            model, digest = _build(backbone, size)
            if digest != meta[backbone]["digest"]:
                raise SystemExit(f"{backbone}: weights differ from the reference's ({digest})")
            source = "rebuilt, same weights"
        table = jnp.asarray(data["table"])
        channels = meta[backbone]["channels"]
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]

        def call(x, tv=tv, ntv=ntv, table=table, model=model, channels=channels):
            x = jnp.repeat(jnp.take(table, x.astype(jnp.int32)), channels, axis=-1)
            out, _ = model.stateless_call(tv, ntv, x, training=False)
            return out

        row: dict = {"size": size, "source": source}
        pixels, want = data["pixels"], data["probs"]
        for precision in ("default", "highest"):
            with jax.default_matmul_precision(precision):
                fnp = jax.jit(call)
                got = np.concatenate([np.asarray(fnp(pixels[i : i + 32])) for i in range(0, len(pixels), 32)])
            row[f"top1_same_{precision}"] = float(np.mean(got.argmax(1) == want.argmax(1)))
            row[f"max_abs_dp_{precision}"] = float(np.abs(got - want).max())
        for batch in (32, 128):
            x = np.resize(pixels, (batch, *pixels.shape[1:]))  # host uint8, as a model actor receives it
            for precision in ("default", "highest"):
                with jax.default_matmul_precision(precision):
                    fnp = jax.jit(call)
                    np.asarray(fnp(x))  # compile
                    n, t0 = 0, time.perf_counter()
                    while time.perf_counter() - t0 < seconds:
                        np.asarray(fnp(x))  # back on the host, as the actor needs it
                        n += 1
                    row[f"img_per_s_b{batch}_{precision}"] = n * batch / (time.perf_counter() - t0)
        results["models"][backbone] = row
        print(
            f"measure: {backbone} @ {size} ({source}): " + json.dumps({k: v for k, v in row.items() if k != "source"})
        )
    with open(os.path.join(out, "gpu_capacity.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    a = sub.add_parser("prepare", help="TF CPU half: reference inputs and outputs")
    a.add_argument("--out", default=".gpu")
    a.add_argument("--images", type=int, default=128)
    b = sub.add_parser("measure", help="GPU half (KERAS_BACKEND=jax)")
    b.add_argument("--ref", default=".gpu")
    b.add_argument("--out", default=os.environ.get("OUT", "."))
    b.add_argument("--seconds", type=float, default=4.0)
    args = p.parse_args(argv)
    if args.step == "prepare":
        prepare(args.out, args.images)
    else:
        measure(args.ref, args.out, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
