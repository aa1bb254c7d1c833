"""Archives of large synthetic images, and untrained bundles, for measuring speed rather than accuracy.

Throughput does not depend on the weights or on what the image shows, only on its size, format and encoding, so
the benchmarks and the equivalence tests share these: phantoms rendered small and upscaled with noise (so
compression stays realistic), written as PNG or as CR DICOM the way archives hold them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.io import schema
from core.model.bundle import load_bundle, save_bundle
from core.model.preprocess import PreprocessConfig, preprocess_file
from core.synthetic.phantoms import CLASSES, render_phantom


def _write_archive(
    directory: str, manifest: str, n: int, seed: int, name: str, id_prefix: str, write_one: Callable
) -> str:
    """The loop every archive shares: image i is class i mod 7, written once (reruns reuse it), then the manifest."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    uris, ids, labels = [], [], []
    for i in range(n):
        label = CLASSES[i % len(CLASSES)]
        path = os.path.join(directory, name.format(i=i))
        if not os.path.exists(path):
            write_one(path, render_phantom(label, rng, 256, 256), rng, i)
        uris.append(path)
        ids.append(f"{id_prefix}-{i:06d}")
        labels.append(label)
    pq.write_table(pa.table({schema.URI: uris, schema.IMAGE_ID: ids, schema.LABEL: labels}), manifest)
    return manifest


def write_images(out: str, n: int, size: int, seed: int = 0) -> str:
    """n distinct 8-bit PNGs of size²; returns the manifest's path."""

    def write_one(path: str, small: np.ndarray, rng: np.random.Generator, i: int) -> None:
        big = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
        big = np.clip(big + rng.normal(0, 0.01, big.shape), 0, 1)
        cv2.imwrite(path, (big * 255).astype(np.uint8))

    directory = os.path.join(out, f"images_{size}")
    return _write_archive(
        directory, os.path.join(out, f"manifest_{size}_{n}.parquet"), n, seed, "img_{i:06d}.png", "bench", write_one
    )


def write_dicoms(out: str, n: int, size: int, seed: int = 0, syntax: str = "j2k_lossless") -> str:
    """n CR DICOM files of ~size², 12-bit (8-bit for baseline JPEG), in ``syntax`` (a key of
    :data:`core.synthetic.syntaxes.SYNTAXES`; JPEG 2000 lossless by default, the way CR archives hold them:
    decoding one costs far more than classifying it).  Returns the manifest's path."""
    from core.synthetic.syntaxes import encode_dicom

    def write_one(path: str, small: np.ndarray, rng: np.random.Generator, i: int) -> None:
        h, w = size, int(size * 0.82)  # a 35 x 43 cm cassette's aspect
        big = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        noisy = np.clip(big + rng.normal(0, 0.004, big.shape), 0, 1)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(encode_dicom(noisy, syntax, instance=f"{seed}.{i}"))
        os.replace(tmp, path)

    name = "j2k" if syntax == "j2k_lossless" else syntax  # the directory earlier benches wrote
    directory = os.path.join(out, f"dicom_{name}_{size}")
    manifest = os.path.join(out, f"manifest_dicom_{name}_{size}_{n}.parquet")
    return _write_archive(directory, manifest, n, seed, "cr_{i:06d}.dcm", "cr", write_one)


def untrained_bundle(
    out: str, backbone: str, image_size: int, trust_from: list[str] | None = None, decode: str = "reduced"
) -> str:
    """A bundle of the given backbone (untrained: speed does not depend on the weights).

    With ``trust_from`` (image paths) it also carries trust data fitted on those images' features, so the
    labeling job calibrates, scores out-of-distribution and abstains exactly as with a trained bundle: the
    throughput figures then hold with that work switched on.
    """
    import keras

    from core.model.backbones import build_classifier

    suffix = ("_trust" if trust_from else "") + ("_full" if decode == "full" else "")
    path = os.path.join(out, f"bundle_{backbone}_{image_size}{suffix}")
    existing = load_bundle(path) if os.path.exists(os.path.join(path, "bundle.json")) else None
    if existing is None or existing.litert_path is None or existing.preprocess.decode != decode:
        keras.utils.set_random_seed(0)
        model, _ = build_classifier(backbone, list(CLASSES), None, image_size)
        cfg = PreprocessConfig(image_size=image_size, decode=decode)
        hashed: dict[str, str] = {}
        if trust_from:
            hashed = _fit_trust_files(model, cfg, trust_from, os.path.join(out, f"trust_{backbone}_{image_size}"))
        save_bundle(path, model, list(CLASSES), cfg, {"backbone": backbone}, hashed_files=hashed)
    return path


def _fit_trust_files(model, cfg: PreprocessConfig, uris: list[str], directory: str) -> dict[str, str]:
    """Trust data (temperature, Mahalanobis OOD, thresholds) fitted the way training fits it, on bench images."""
    import keras

    from core.trust import confidence as trust

    x = np.stack([preprocess_file(u, cfg)[0] for u in uris])
    y = np.arange(len(uris)) % len(CLASSES)
    scored = keras.Model(model.inputs, [model.outputs[0], model.get_layer(trust.FEATURE_LAYER).output])
    probs, feats = (np.asarray(a) for a in scored.predict(x, batch_size=32, verbose=0))
    temperature = trust.fit_temperature(probs, y)
    calibrated = trust.apply_temperature(probs, temperature)
    means, precision = trust.mahalanobis_params(trust.FeatureStats.of(feats, y, len(CLASSES)))
    arrays = {"means": means, "precision": precision}
    ood = trust.ood_scores("mahalanobis", feats, calibrated, list(CLASSES), arrays)
    min_conf, max_ood, _ = trust.fit_thresholds(calibrated, ood, list(CLASSES))
    fitted = trust.Trust(temperature, min_conf, max_ood, "mahalanobis", list(CLASSES), arrays)
    os.makedirs(directory, exist_ok=True)
    return {name: os.path.join(directory, name) for name in fitted.write(directory)}
