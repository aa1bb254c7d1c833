"""The model bundle: one directory that is everything needed to label with a trained model.

Layout (MONAI-bundle / keras-hub preset habit: whatever is saved loads from a path alone)::

    model.keras        the Keras 3 model, input scaling included
    labels.json        class names in output order
    preprocess.json    the frozen PreprocessConfig the model was trained with
    training.json      what produced it: backbone, weights source, data fingerprint, history, versions
    trust.json         calibration temperature, OOD method, abstention thresholds (core.trust.confidence; optional)
    ood.npz            the OOD method's fitted arrays (optional)
    model.tflite       the labeling graph (compact pixels -> probabilities, features) for LiteRT: the CPU
                       engine of the labeling job (core.model.engines; optional: bundles without it label with Keras)
    bundle.json        model_id and the SHA-256 of every file above

``model_id`` is derived from the content hashes, so the same weights always carry the same id and labels in
the output dataset can be keyed by it.  Loading re-hashes the files and refuses a bundle that was altered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BundleError
from core.io import storage
from core.model.preprocess import PreprocessConfig

MODEL_FILE = "model.keras"
LABELS_FILE = "labels.json"
PREPROCESS_FILE = "preprocess.json"
TRAINING_FILE = "training.json"
MANIFEST_FILE = "bundle.json"
LITERT_FILE = "model.tflite"
HASHED_FILES = (MODEL_FILE, LABELS_FILE, PREPROCESS_FILE, TRAINING_FILE)
FORMAT_VERSION = 1

log_ = logging.getLogger("scanlabel.bundle")


@dataclass
class Bundle:
    path: str
    model_id: str
    classes: list[str]
    preprocess: PreprocessConfig
    training: dict[str, Any] = field(default_factory=dict)
    _model: Any = None

    @property
    def model(self):
        """The Keras model, loaded lazily with ``safe_mode=True`` (no arbitrary code from the bundle)."""
        if self._model is None:
            import keras

            self._model = keras.saving.load_model(os.path.join(self.path, MODEL_FILE), compile=False, safe_mode=True)
        return self._model

    @property
    def modalities(self) -> tuple[str, ...]:
        """The DICOM modalities the model was trained for (``training.json`` "modalities"); bundles written
        before scope existed were all trained on projection radiographs, hence the default."""
        from core.readers.scope import DEFAULT_MODALITIES, normalize_modalities

        recorded = self.training.get("modalities")
        return normalize_modalities(recorded) if recorded else DEFAULT_MODALITIES

    @property
    def litert_path(self) -> str | None:
        """The bundle's LiteRT export (verified with the rest at load), or None for bundles saved before it."""
        path = os.path.join(self.path, LITERT_FILE)
        return path if os.path.exists(path) else None


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _model_id(backbone: str, hashes: dict[str, str]) -> str:
    digest = hashlib.sha256("".join(f"{k}:{hashes[k]}\n" for k in sorted(hashes)).encode()).hexdigest()
    return f"{backbone}-{digest[:12]}"


def save_bundle(
    out: str,
    model,
    classes: list[str],
    preprocess: PreprocessConfig,
    training: dict[str, Any],
    extra_files: dict[str, str] | None = None,
    hashed_files: dict[str, str] | None = None,
    litert: bool = True,
) -> str:
    """Write a bundle directory (local or object store) and return its model_id.

    The directory is assembled in a temporary folder and moved into place, so a reader never sees half a
    bundle.  ``extra_files`` (name → local path) are copied in unhashed, e.g. ``training_curves.png``;
    ``hashed_files`` are optional parts that labeling depends on (``trust.json``), hashed like the rest.
    ``litert`` adds the LiteRT export of the labeling graph (:func:`core.model.engines.export_litert`, checked against
    Keras before it is written); a model the converter cannot take is saved without it, with a warning, and
    labels with the Keras engine.
    """
    backbone = training.get("backbone", "model")
    hashed_files = dict(hashed_files or {})
    with tempfile.TemporaryDirectory(prefix="scanlabel-bundle-") as tmp:
        model.save(os.path.join(tmp, MODEL_FILE))
        if litert:
            _export_litert(model, preprocess, tmp, hashed_files)
        with open(os.path.join(tmp, LABELS_FILE), "w") as f:
            json.dump(list(classes), f, indent=2)
        with open(os.path.join(tmp, PREPROCESS_FILE), "w") as f:
            f.write(preprocess.to_json())
        with open(os.path.join(tmp, TRAINING_FILE), "w") as f:
            json.dump(training, f, indent=2, sort_keys=True, default=str)
        for name, src in hashed_files.items():
            if os.path.abspath(src) != os.path.join(os.path.abspath(tmp), name):  # the LiteRT export is in place
                shutil.copyfile(src, os.path.join(tmp, name))
        hashes = {name: _sha256(os.path.join(tmp, name)) for name in (*HASHED_FILES, *hashed_files)}
        model_id = _model_id(backbone, hashes)
        with open(os.path.join(tmp, MANIFEST_FILE), "w") as f:
            json.dump(
                {
                    "format_version": FORMAT_VERSION,
                    "model_id": model_id,
                    "backbone": backbone,
                    "sha256": hashes,
                },
                f,
                indent=2,
            )
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, os.path.join(tmp, name))
        _publish_dir(tmp, str(out))
    return model_id


def _export_litert(model, preprocess: PreprocessConfig, tmp: str, hashed_files: dict[str, str]) -> None:
    from core.model.engines import export_litert

    try:
        export_litert(model, preprocess, os.path.join(tmp, LITERT_FILE))
    except Exception as e:  # noqa: BLE001 - an unconvertible model still makes a complete (Keras-only) bundle
        log_.warning(
            "no LiteRT export in this bundle (%s: %s); labeling will use the Keras engine", type(e).__name__, e
        )
        return
    hashed_files[LITERT_FILE] = os.path.join(tmp, LITERT_FILE)


def _publish_dir(src: str, out: str) -> None:
    if storage.is_remote(out):
        for name in sorted(os.listdir(src)):
            with open(os.path.join(src, name), "rb") as f:
                storage.write_bytes_atomic(storage.join(out, name), f.read())
        return
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".bundle-", dir=os.path.dirname(out))
    for name in os.listdir(src):
        shutil.copyfile(os.path.join(src, name), os.path.join(staging, name))
    if os.path.isdir(out):
        old = f"{out}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def _localise(path: str) -> str:
    """Bundles on object stores are copied to a local cache directory once, keyed by their bundle.json."""
    if not storage.is_remote(path):
        return os.path.abspath(path)
    meta = json.loads(storage.read_bytes(storage.join(path, MANIFEST_FILE)))
    cache = Path(os.environ.get("SCANLABEL_CACHE", Path.home() / ".cache" / "scanlabel")) / meta["model_id"]
    if not (cache / MANIFEST_FILE).exists():
        tmp = Path(tempfile.mkdtemp(prefix=".dl-", dir=cache.parent if cache.parent.exists() else None))
        for name in (*meta["sha256"], MANIFEST_FILE):  # the optional hashed parts (trust.json) too
            (tmp / name).write_bytes(storage.read_bytes(storage.join(path, name)))
        cache.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, cache)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return str(cache)


def load_bundle(path: str, verify: bool = True) -> Bundle:
    """Open a bundle by path, refusing one whose files do not match the hashes recorded at save time."""
    local = _localise(str(path))
    manifest_path = os.path.join(local, MANIFEST_FILE)
    if not os.path.exists(manifest_path):
        raise BundleError(f"{path} is not a scanlabel bundle: {MANIFEST_FILE} is missing")
    with open(manifest_path) as f:
        manifest = json.load(f)
    for name in (*HASHED_FILES, *manifest["sha256"]):
        if not os.path.exists(os.path.join(local, name)):
            raise BundleError(f"bundle {path} is incomplete: {name} is missing")
    if verify:
        for name, expected in manifest["sha256"].items():
            actual = _sha256(os.path.join(local, name))
            if actual != expected:
                raise BundleError(
                    f"bundle {path}: {name} does not match its recorded SHA-256 (altered or corrupt); refusing it"
                )
        if _model_id(manifest.get("backbone", "model"), manifest["sha256"]) != manifest["model_id"]:
            raise BundleError(f"bundle {path}: model_id does not match the recorded hashes; refusing it")
    with open(os.path.join(local, LABELS_FILE)) as f:
        classes = json.load(f)
    with open(os.path.join(local, PREPROCESS_FILE)) as f:
        preprocess = PreprocessConfig.from_dict(json.load(f))
    with open(os.path.join(local, TRAINING_FILE)) as f:
        training = json.load(f)
    return Bundle(local, manifest["model_id"], classes, preprocess, training)
