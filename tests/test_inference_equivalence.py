"""The labeling job's inference path gives the labels of the Keras model itself.

The job ships compact uint8 images from decode tasks to model actors and widens them inside one traced,
fixed-shape call; the reference is Keras ``model.predict`` on the float32 RGB arrays of ``preprocess_file``
(what training feeds the model).  Same top-1 on >= 99.9 % of the images and probabilities within 1e-3.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from core import schema
from core.bundle import load_bundle, save_bundle
from core.labeling import OK, PIXELS, BatchClassifier, _forward_function, decode_batch
from core.preprocess import PreprocessConfig, expand, preprocess_file


def _compare(bundle_path: str, uris: list[str], batch_size: int = 16) -> tuple[float, float]:
    """(share of images with the same top-1, max |Δp|) of the job's path against Keras ``model.predict``."""
    bundle = load_bundle(bundle_path)
    cfg = bundle.preprocess
    arr = np.asarray(uris, dtype=object)
    decoded = decode_batch({schema.URI: arr, schema.IMAGE_ID: arr}, cfg)
    assert decoded[OK].all()
    assert decoded[PIXELS].dtype == cfg.compact_dtype and decoded[PIXELS].shape[1:] == cfg.compact_shape
    ours = BatchClassifier(bundle, batch_size).predict(decoded[PIXELS])  # 16 per call: the last one padded
    reference = bundle.model.predict(np.stack([preprocess_file(u, cfg)[0] for u in uris]), verbose=0)
    same = float(np.mean(ours.argmax(1) == reference.argmax(1)))
    return same, float(np.abs(ours - reference).max())


def test_graph_widening_is_bit_identical_to_expand():
    """The actors' in-graph uint8 → float32 RGB step and training's numpy step give the very same floats."""
    import keras

    cfg = PreprocessConfig(image_size=16)
    inputs = keras.Input(cfg.shape)
    identity = keras.Model(inputs, keras.layers.Identity()(inputs))
    fn = _forward_function(identity, cfg, 2, features=False)
    levels = np.arange(512, dtype=np.int64).reshape(2, 16, 16, 1) % 256  # every level, twice
    compact = levels.astype(np.uint8)
    widened = fn(compact)[0].numpy()
    assert widened.shape == (2, 16, 16, 3)
    assert np.array_equal(widened, expand(compact, cfg))


def test_tiny_model_labels_match_keras_on_every_format(tiny_bundle, small_archive):
    """PNG 8/16-bit, JPEG and DICOM MONOCHROME1/2 inputs through decode_batch and the traced call."""
    _, manifest = small_archive
    uris = pq.read_table(manifest).column(schema.URI).to_pylist()
    same, max_dp = _compare(tiny_bundle[0], uris)
    assert same >= 0.999 and max_dp <= 1e-3, (same, max_dp)


def test_bundle_saved_before_quantisation_keeps_float_inputs(tmp_path, small_archive):
    """A bundle whose preprocess.json predates the quantize field gets float32 inputs, equal to Keras's."""
    import json

    import keras

    from core.backbones import build_classifier
    from core.phantoms import CLASSES

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
    """The benchmark's own model and kind of image (phantom PNGs, here 512² to keep the test short)."""
    from cluster.bench_label import make_bundle, write_images

    manifest = write_images(str(tmp_path), 40, 512)
    uris = pq.read_table(manifest).column(schema.URI).to_pylist()
    bundle = make_bundle(str(tmp_path), backbone, size)
    same, max_dp = _compare(bundle, uris, batch_size=32)
    assert same >= 0.999 and max_dp <= 1e-3, (same, max_dp)
