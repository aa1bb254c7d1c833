"""The labeling job's inference path gives the labels of the Keras model itself, with either engine.

The job ships compact uint8 images from decode tasks to model actors and widens them inside one fixed-shape
call, run by TensorFlow (``keras`` engine) or by the bundle's LiteRT export (``litert``, the CPU default); the
reference is Keras ``model.predict`` on the float32 RGB arrays of ``preprocess_file`` (what training feeds the
model).  Same top-1 on >= 99.9 % of the images and probabilities within 1e-3.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.io import schema
from core.labeling.batches import OK, PIXELS, BatchClassifier, decode_batch
from core.model.bundle import load_bundle, save_bundle
from core.model.engines import forward_graph
from core.model.preprocess import PreprocessConfig, expand, preprocess_file

ENGINES = ("keras", "litert")


def _compare(bundle_path: str, uris: list[str], batch_size: int = 16, engine: str = "auto") -> tuple[float, float]:
    """(share of images with the same top-1, max |Δp|) of the job's path against Keras ``model.predict``."""
    bundle = load_bundle(bundle_path)
    cfg = bundle.preprocess
    arr = np.asarray(uris, dtype=object)
    decoded = decode_batch({schema.URI: arr, schema.IMAGE_ID: arr}, cfg)
    assert decoded[OK].all()
    assert decoded[PIXELS].dtype == cfg.compact_dtype and decoded[PIXELS].shape[1:] == cfg.compact_shape
    clf = BatchClassifier(bundle, batch_size, engine=engine)
    assert engine == "auto" or clf.engine == engine
    ours = clf.predict(decoded[PIXELS])  # 16 per call: the last one padded
    reference = bundle.model.predict(np.stack([preprocess_file(u, cfg)[0] for u in uris]), verbose=0)
    same = float(np.mean(ours.argmax(1) == reference.argmax(1)))
    return same, float(np.abs(ours - reference).max())


def test_graph_widening_is_bit_identical_to_expand():
    """The actors' in-graph uint8 → float32 RGB step and training's numpy step give the very same floats."""
    import keras

    cfg = PreprocessConfig(image_size=16)
    inputs = keras.Input(cfg.shape)
    identity = keras.Model(inputs, keras.layers.Identity()(inputs))
    run, _ = forward_graph(identity, cfg, features=False)
    levels = np.arange(512, dtype=np.int64).reshape(2, 16, 16, 1) % 256  # every level, twice
    compact = levels.astype(np.uint8)
    widened = run(compact)[0].numpy()
    assert widened.shape == (2, 16, 16, 3)
    assert np.array_equal(widened, expand(compact, cfg))


@pytest.mark.parametrize("engine", ENGINES)
def test_tiny_model_labels_match_keras_on_every_format(tiny_bundle, small_archive, engine):
    """PNG 8/16-bit, JPEG and DICOM MONOCHROME1/2 inputs through decode_batch and the engine's call."""
    _, manifest = small_archive
    uris = pq.read_table(manifest).column(schema.URI).to_pylist()
    same, max_dp = _compare(tiny_bundle[0], uris, engine=engine)
    assert same >= 0.999 and max_dp <= 1e-3, (same, max_dp)


@pytest.mark.parametrize("engine", ENGINES)
def test_trained_model_labels_and_trust_scores_match_across_engines(trained_bundle, small_archive, engine):
    """A trained model (probabilities far from uniform, so top-1 is a real test) with trust scoring: each engine
    against Keras, and the two engines' calibrated probabilities and OOD scores against each other."""
    bundle = load_bundle(trained_bundle[0])
    assert bundle.litert_path is not None  # training writes the LiteRT export into the bundle
    _, manifest = small_archive
    uris = pq.read_table(manifest).column(schema.URI).to_pylist()
    same, max_dp = _compare(trained_bundle[0], uris, engine=engine)
    assert same >= 0.999 and max_dp <= 1e-3, (same, max_dp)
    arr = np.asarray(uris, dtype=object)
    decoded = decode_batch({schema.URI: arr, schema.IMAGE_ID: arr}, bundle.preprocess)
    keras_rows = BatchClassifier(bundle, 16, engine="keras").label_batch(decoded).to_pydict()
    rows = BatchClassifier(bundle, 16, engine=engine).label_batch(decoded).to_pydict()
    assert rows[schema.LABEL] == keras_rows[schema.LABEL]
    assert rows["abstain_reason"] == keras_rows["abstain_reason"]
    assert np.allclose(rows["probabilities"], keras_rows["probabilities"], atol=1e-4)
    assert np.allclose(rows["ood_score"], keras_rows["ood_score"], rtol=1e-3, atol=1e-4)


def test_engine_choice_and_bundles_without_the_export(tmp_path, tiny_bundle):
    """auto = LiteRT when the bundle has its export; a bundle saved without it labels with Keras under auto and
    refuses an explicit --engine litert with a clear message; a GPU actor never gets LiteRT."""
    import keras

    from core.model.backbones import build_classifier
    from core.model.engines import resolve_engine
    from core.synthetic.phantoms import CLASSES

    assert BatchClassifier(load_bundle(tiny_bundle[0]), 8).engine == "litert"
    keras.utils.set_random_seed(2)
    model, _ = build_classifier("mobilenet_v3_small", list(CLASSES), None, 32)
    path = tmp_path / "keras_only"
    save_bundle(str(path), model, list(CLASSES), PreprocessConfig(image_size=32), {"backbone": "t"}, litert=False)
    old = load_bundle(str(path))
    assert old.litert_path is None
    assert BatchClassifier(old, 8).engine == "keras"
    with pytest.raises(ValueError, match="model.tflite"):
        BatchClassifier(old, 8, engine="litert")
    assert resolve_engine("auto", True, gpu=True) == "keras"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_engine("litert", True, gpu=True)
    with pytest.raises(ValueError, match="unknown inference engine"):
        resolve_engine("onnx", True, gpu=False)


def test_altered_litert_export_is_refused(tmp_path, tiny_bundle):
    """The export is hashed with the rest of the bundle: a swapped model.tflite is refused at load."""
    import shutil

    from core.errors import BundleError

    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle[0], copy)
    data = bytearray((copy / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.tflite"):
        load_bundle(str(copy))


def test_bundle_saved_before_quantisation_keeps_float_inputs(tmp_path, small_archive):
    """A bundle whose preprocess.json predates the quantize field gets float32 inputs, equal to Keras's."""
    import json

    import keras

    from core.model.backbones import build_classifier
    from core.synthetic.phantoms import CLASSES

    keras.utils.set_random_seed(1)
    model, _ = build_classifier("mobilenet_v3_small", list(CLASSES), None, 32)
    path = tmp_path / "legacy"
    legacy = {k: v for k, v in PreprocessConfig(image_size=32).to_dict().items() if k != "quantize"}
    assert PreprocessConfig.from_dict(legacy).quantize is False
    save_bundle(str(path), model, list(CLASSES), PreprocessConfig.from_dict(legacy), {"backbone": "t"})
    assert json.loads((path / "preprocess.json").read_text())["quantize"] is False
    _, manifest = small_archive
    uris = pq.read_table(manifest).column(schema.URI).to_pylist()[:20]
    same, max_dp = _compare(str(path), uris)
    assert same >= 0.999 and max_dp <= 1e-3, (same, max_dp)


@pytest.mark.parametrize("backbone,size", [("efficientnet_b0", 224)])
def test_bench_model_labels_match_keras_on_bench_images(tmp_path, backbone, size):
    """The benchmark's own model, engine (auto: LiteRT) and kind of image (phantom PNGs, 512² here)."""
    from core.synthetic.throughput import untrained_bundle, write_images

    manifest = write_images(str(tmp_path), 40, 512)
    uris = pq.read_table(manifest).column(schema.URI).to_pylist()
    bundle = untrained_bundle(str(tmp_path), backbone, size)
    assert load_bundle(bundle).litert_path is not None
    same, max_dp = _compare(bundle, uris, batch_size=32)
    assert same >= 0.999 and max_dp <= 1e-3, (same, max_dp)
