"""The synthetic archive is the ground truth for demos and evaluation, so its contract is checked here."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest

from core.io import schema
from core.synthetic.phantoms import CLASSES, render_phantom
from core.synthetic.sample_archive import (
    DICOM_BODY_PART,
    DICOM_FORMATS,
    FORMATS,
    MAX_SIDE,
    MIN_SIDE,
    SAMPLE_MANIFEST_SCHEMA,
    render_sample,
    write_sample_archive,
)

SEED = 11
COUNT = 400


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("archive")
    manifest = write_sample_archive(out, COUNT, seed=SEED)
    return manifest, pq.read_table(manifest).to_pylist()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def _index(row: dict) -> int:
    return int(row[schema.IMAGE_ID].rsplit("-", 1)[1])


# --- phantoms -----------------------------------------------------------------------------------------------


def test_classes_are_fixed() -> None:
    assert CLASSES == ("head", "chest", "abdomen", "pelvis", "arm", "leg", "hand")


@pytest.mark.parametrize("body_part", CLASSES)
def test_render_phantom_shape_dtype_range(body_part: str) -> None:
    for i, (h, w) in enumerate([(384, 384), (256, 448), (448, 256), (97, 131)]):
        img = render_phantom(body_part, np.random.default_rng(i), h, w)
        assert img.shape == (h, w)
        assert img.dtype == np.float32
        assert np.isfinite(img).all()
        assert img.min() >= 0.0 and img.max() <= 1.0
        assert img.std() > 0.02, "phantom should not be blank"


def test_render_phantom_is_driven_by_rng_only() -> None:
    a = render_phantom("pelvis", np.random.default_rng(5), 300, 320)
    b = render_phantom("pelvis", np.random.default_rng(5), 300, 320)
    c = render_phantom("pelvis", np.random.default_rng(6), 300, 320)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_render_phantom_rejects_unknown_class() -> None:
    with pytest.raises(ValueError, match="unknown body part"):
        render_phantom("foot", np.random.default_rng(0), 64, 64)


def test_classes_differ_on_average() -> None:
    # Mean 64x64 renderings per class must be distinct, a cheap guard against two classes drawing the same.
    means = {}
    for c in CLASSES:
        rng = np.random.default_rng(0)
        imgs = [cv2.resize(render_phantom(c, rng, 256, 256), (64, 64), interpolation=cv2.INTER_AREA) for _ in range(8)]
        means[c] = np.mean(imgs, axis=0)
    for i, a in enumerate(CLASSES):
        for b in CLASSES[i + 1 :]:
            assert np.abs(means[a] - means[b]).mean() > 0.01, (a, b)


# --- archive ------------------------------------------------------------------------------------------------


def test_manifest_schema_and_validation(archive: tuple[Path, list[dict]]) -> None:
    manifest, _ = archive
    table = pq.read_table(manifest)
    assert manifest.name == "manifest.parquet"
    assert table.schema.equals(SAMPLE_MANIFEST_SCHEMA)
    assert table.num_rows == COUNT
    schema.validate_manifest(table, require_label=True)


def test_rows_are_consistent(archive: tuple[Path, list[dict]]) -> None:
    _, rows = archive
    ids = [r[schema.IMAGE_ID] for r in rows]
    assert ids == [f"s{SEED}-{i:06d}" for i in range(COUNT)]
    for r in rows:
        uri = Path(r[schema.URI])
        assert uri.is_absolute() and uri.is_file()
        assert r[schema.LABEL] in CLASSES
        if r["format"] in DICOM_FORMATS:
            assert r["header_body_part"] is not None
            truth = r["header_body_part"] in DICOM_BODY_PART[r[schema.LABEL]]
            assert truth != r["header_wrong"]
        else:
            assert r["header_body_part"] is None
            assert r["header_wrong"] is False


def test_all_formats_and_classes_present_and_balanced(archive: tuple[Path, list[dict]]) -> None:
    _, rows = archive
    fmt_counts = {f: sum(r["format"] == f for r in rows) for f in FORMATS}
    cls_counts = {c: sum(r[schema.LABEL] == c for r in rows) for c in CLASSES}
    assert set(fmt_counts) == set(FORMATS)
    assert max(fmt_counts.values()) - min(fmt_counts.values()) <= 1, fmt_counts
    assert max(cls_counts.values()) - min(cls_counts.values()) <= 1, cls_counts
    assert min(cls_counts.values()) > 0


def test_wrong_header_fraction(archive: tuple[Path, list[dict]]) -> None:
    _, rows = archive
    dicoms = [r for r in rows if r["format"] in DICOM_FORMATS]
    frac = sum(r["header_wrong"] for r in dicoms) / len(dicoms)
    assert 0.05 <= frac <= 0.3, frac


def test_raster_files_decode(archive: tuple[Path, list[dict]]) -> None:
    _, rows = archive
    expected = {"png8": np.uint8, "jpeg": np.uint8, "png16": np.uint16}
    seen_12bit = seen_16bit = False
    for r in rows:
        if r["format"] not in expected:
            continue
        arr = cv2.imread(r[schema.URI], cv2.IMREAD_UNCHANGED)
        assert arr is not None, r[schema.URI]
        assert arr.ndim == 2 and arr.dtype == expected[r["format"]], (r["format"], arr.dtype, arr.shape)
        assert MIN_SIDE <= arr.shape[0] <= MAX_SIDE and MIN_SIDE <= arr.shape[1] <= MAX_SIDE
        if r["format"] == "png16":
            seen_12bit |= int(arr.max()) <= 4095
            seen_16bit |= int(arr.max()) > 4095
    assert seen_12bit and seen_16bit, "both 12-bit-range and full-range 16-bit PNGs are expected"


def test_dicom_files_decode_with_sane_headers(archive: tuple[Path, list[dict]]) -> None:
    _, rows = archive
    sop_uids = set()
    intercepts = set()
    for r in rows:
        if r["format"] not in DICOM_FORMATS:
            continue
        ds = pydicom.dcmread(r[schema.URI])
        want = "MONOCHROME1" if r["format"] == "dicom_mono1" else "MONOCHROME2"
        assert ds.PhotometricInterpretation == want
        assert ds.Modality in ("DX", "CR")
        assert ds.BitsAllocated == 16 and ds.BitsStored == 12
        assert ds.BodyPartExamined == r["header_body_part"]
        assert str(ds.PatientName) == "ANON" and ds.PatientID == "PHANTOM"
        assert "PatientBirthDate" not in ds
        assert float(ds.RescaleSlope) == 1.0 and "WindowCenter" in ds and "WindowWidth" in ds
        intercepts.add(float(ds.RescaleIntercept))
        sop_uids.add(ds.SOPInstanceUID)
        px = ds.pixel_array
        assert px.dtype == np.uint16 and px.shape == (ds.Rows, ds.Columns)
        assert int(px.max()) <= 4095
    assert intercepts == {0.0, -1024.0}
    assert len(sop_uids) == sum(r["format"] in DICOM_FORMATS for r in rows), "SOP instance UIDs must be unique"


def test_stored_pixels_match_rendering_and_mono1_is_inverted(archive: tuple[Path, list[dict]]) -> None:
    _, rows = archive
    checked = set()
    for r in rows:
        fmt = r["format"]
        if fmt in checked:
            continue
        checked.add(fmt)
        img, _ = render_sample(SEED, _index(r), r[schema.LABEL])
        if fmt in DICOM_FORMATS:
            stored = pydicom.dcmread(r[schema.URI]).pixel_array
        else:
            stored = cv2.imread(r[schema.URI], cv2.IMREAD_UNCHANGED)
        assert stored.shape == img.shape
        c = _corr(img, stored)
        if fmt == "dicom_mono1":
            assert c < -0.99, c
        else:
            assert c > 0.99, (fmt, c)
    assert checked == set(FORMATS)


def _snapshot(manifest: Path) -> tuple[list[dict], dict[str, bytes]]:
    root = manifest.parent
    rows = pq.read_table(manifest).to_pylist()
    files = {}
    for r in rows:
        rel = Path(r[schema.URI]).relative_to(root).as_posix()
        files[rel] = Path(r[schema.URI]).read_bytes()
        r[schema.URI] = rel
    return rows, files


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    a_rows, a_files = _snapshot(write_sample_archive(tmp_path / "a", 25, seed=3))
    b_rows, b_files = _snapshot(write_sample_archive(tmp_path / "b", 25, seed=3))
    c_rows, c_files = _snapshot(write_sample_archive(tmp_path / "c", 25, seed=4))
    assert a_rows == b_rows
    assert a_files == b_files  # pixel data and DICOM UIDs included
    assert a_rows != c_rows
    assert not set(a_files.values()) & set(c_files.values())


def test_worker_processes_write_the_same_bytes(tmp_path: Path, monkeypatch) -> None:
    """The archive is drawn in worker processes for speed; the files and manifest must not depend on it."""
    from core.synthetic import sample_archive

    monkeypatch.setattr(sample_archive, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr(sample_archive, "_CHUNK", 7)  # several chunks per worker, finishing out of order
    one = _snapshot(write_sample_archive(tmp_path / "one", 30, seed=3, other_count=6, workers=1))
    two = _snapshot(write_sample_archive(tmp_path / "two", 30, seed=3, other_count=6, workers=2))
    assert one == two


def test_side_scale_draws_the_same_sizes_smaller(tmp_path: Path, monkeypatch) -> None:
    """``side_scale`` (cheaper archives, as the trust bench measures them) scales each phantom's drawn size, in
    worker processes as in this one; non-radiographs keep theirs."""
    from core.synthetic import sample_archive

    monkeypatch.setattr(sample_archive, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr(sample_archive, "_CHUNK", 5)
    scale = 0.6875
    full = pq.read_table(write_sample_archive(tmp_path / "full", 12, seed=3, other_count=2, workers=1)).to_pylist()
    manifest = write_sample_archive(tmp_path / "small", 12, seed=3, other_count=2, workers=2, side_scale=scale)
    small = pq.read_table(manifest).to_pylist()
    assert [(r[schema.LABEL], r["format"]) for r in small] == [(r[schema.LABEL], r["format"]) for r in full]
    for a, b in zip(full, small, strict=True):
        if b[schema.LABEL] == schema.OTHER_LABEL:
            assert Path(a[schema.URI]).read_bytes() == Path(b[schema.URI]).read_bytes()
            continue
        if b["format"] in DICOM_FORMATS:
            big, stored = pydicom.dcmread(a[schema.URI]).pixel_array, pydicom.dcmread(b[schema.URI]).pixel_array
        else:
            big, stored = (cv2.imread(r[schema.URI], cv2.IMREAD_UNCHANGED) for r in (a, b))
        assert stored.shape[:2] == tuple(round(side * scale) for side in big.shape[:2]), b[schema.URI]
        assert min(stored.shape[:2]) >= 176  # 0.6875: still twice an 88 px input, as the reduced decode wants
        img, _ = render_sample(3, _index(b), b[schema.LABEL], side_scale=scale)
        assert abs(_corr(img, stored)) > 0.99
    with pytest.raises(ValueError, match="side_scale"):
        write_sample_archive(tmp_path / "bad", 3, side_scale=0.1)


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_sample_archive(tmp_path, 0)
    with pytest.raises(ValueError):
        write_sample_archive(tmp_path, 3, classes=("head", "foot"))


def test_class_subset(tmp_path: Path) -> None:
    rows = pq.read_table(write_sample_archive(tmp_path, 12, seed=1, classes=("hand",))).to_pylist()
    assert {r[schema.LABEL] for r in rows} == {"hand"}
