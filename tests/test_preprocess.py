"""The one preprocessing function: shape, range, aspect handling, and identical output in training and inference."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from core.labeling.batches import PIXELS, decode_batch
from core.model.preprocess import (
    PreprocessConfig,
    expand,
    letterbox,
    normalize_intensity,
    preprocess_file,
    quantize,
)
from core.training import data as dataset


def test_output_shape_range_and_letterbox(small_archive):
    _, manifest = small_archive
    cfg = PreprocessConfig(image_size=64)
    for row in pq.read_table(manifest).to_pylist()[:10]:
        arr, meta = preprocess_file(row["uri"], cfg)
        assert arr.shape == (64, 64, 3) and arr.dtype == np.float32
        assert 0.0 <= arr.min() and arr.max() <= 1.0
        assert np.array_equal(arr[..., 0], arr[..., 2])


def test_letterbox_keeps_aspect_and_pads():
    img = np.ones((50, 100), np.float32)
    out = letterbox(img, 64)
    assert out.shape == (64, 64)
    rows_with_content = np.where(out.sum(axis=1) > 0)[0]
    assert len(rows_with_content) == 32  # 50 * 64/100 rounded


def test_normalize_is_robust_to_bit_depth():
    base = np.linspace(0, 1, 10000).reshape(100, 100)
    a = normalize_intensity((base * 255).astype(np.uint8))
    b = normalize_intensity((base * 4095).astype(np.uint16))
    assert np.abs(a - b).max() < 0.02


def test_training_and_inference_produce_the_same_array(small_archive):
    """The tf.data training pipeline (augmentation off) and the labeling job's decode give identical arrays."""
    _, manifest = small_archive
    cfg = PreprocessConfig(image_size=64)
    table = pq.read_table(manifest)
    rows = dataset.labelled_rows(table)
    for fmt in ("png16", "dicom_mono1", "jpeg"):
        i = table.column("format").to_pylist().index(fmt)
        one = rows.subset([i])
        ds = dataset.make_train_dataset(one, cfg, 1, seed=0, augment_cfg=None, sample_weights=np.ones(7, np.float32))
        x, y, _ = next(iter(ds))
        compact = decode_batch({"uri": np.array([one.uris[0]]), "image_id": np.array(["x"])}, cfg)[PIXELS][0]
        assert compact.dtype == np.uint8 and compact.shape == (64, 64, 1)  # what crosses the object store
        inference = expand(compact, cfg)
        validation, _, _ = dataset.decode_all(one, cfg)
        assert np.array_equal(x.numpy()[0], inference), fmt
        assert np.array_equal(validation[0], inference), fmt


def test_training_batches_are_augmented_per_image_by_stream_position(small_archive):
    """The training stream augments each image with its own generator, seeded by its position in the stream, whether
    or not the work is batched: the same run gives the same pixels, and a resumed run (``skip_examples``) sees what
    an uninterrupted one would."""
    from core.model.augment import AugmentConfig, augment

    _, manifest = small_archive
    cfg = PreprocessConfig(image_size=48)
    rows = dataset.labelled_rows(pq.read_table(manifest))
    weights = np.linspace(0.5, 2.0, 7).astype(np.float32)

    def batches(augment_cfg, skip=0, n=3):
        ds = dataset.make_train_dataset(rows, cfg, 8, 5, augment_cfg, weights, skip_examples=skip)
        return [tuple(t.numpy() for t in b) for b, _ in zip(ds, range(n), strict=False)]

    plain, augmented = batches(None), batches(AugmentConfig())
    for b, ((xp, yp, wp), (xa, ya, wa)) in enumerate(zip(plain, augmented, strict=True)):
        assert np.array_equal(yp, ya) and np.array_equal(wa, weights[ya]) and np.array_equal(wp, wa)
        for j in range(8):
            expected = augment(xp[j], np.random.default_rng([5, b * 8 + j]), AugmentConfig())
            assert np.array_equal(xa[j], expected), (b, j)
        assert not np.array_equal(xa, xp)
    resumed = batches(AugmentConfig(), skip=16, n=1)
    assert all(np.array_equal(u, v) for u, v in zip(resumed[0], augmented[2], strict=True))


def test_quantised_levels_and_legacy_configs():
    """New configs round to 8-bit levels; a bundle config saved before the field existed keeps float inputs."""
    cfg = PreprocessConfig(image_size=64)
    img = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    levels = quantize(img)
    assert levels.dtype == np.uint8 and np.abs(levels / 255.0 - img).max() <= 0.5 / 255 + 1e-7
    widened = expand(levels[:, :, None], cfg)
    assert widened.shape == (64, 64, 3) and widened.dtype == np.float32
    assert np.array_equal(widened[..., 2], (levels.astype(np.float32) / np.float32(255)))
    legacy = {k: v for k, v in cfg.to_dict().items() if k != "quantize"}
    assert PreprocessConfig.from_dict(legacy).quantize is False
    assert PreprocessConfig.from_dict(cfg.to_dict()).quantize is True
