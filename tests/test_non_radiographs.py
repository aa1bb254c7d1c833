"""The non-radiograph generators teach the model its `other` class, so their contract is checked here.

Images are small (64-200 px) to keep the suite fast; the generators scale with the size asked.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest

from core import readers
from core.io import schema
from core.model import preprocess
from core.synthetic.non_radiographs import (
    OTHER_KINDS,
    kind_for_index,
    kind_of_image_id,
    other_rng,
    other_size,
    render_other,
    render_other_sample,
)
from core.synthetic.phantoms import CLASSES
from core.synthetic.sample_archive import (
    DICOM_BODY_PART,
    OTHER_FORMATS,
    SAMPLE_MANIFEST_SCHEMA,
    other_format_for_index,
    write_sample_archive,
)


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_every_kind_renders_valid_varied_images(kind: str) -> None:
    images = []
    for i, (h, w) in enumerate([(96, 128), (160, 96), (64, 64)]):
        img = render_other(kind, np.random.default_rng([7, i]), h, w)
        assert img.dtype == np.uint8
        assert img.shape[:2] == (h, w)
        assert img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)
        images.append(cv2.resize(img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (32, 32)))
    # A generator that ignored its rng would draw the same picture every time.
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])
    # Not blank: some images of every kind have structure (a flat noise frame may be uniform, so any of 8).
    stds = [render_other(kind, np.random.default_rng([8, i]), 96, 96).std() for i in range(8)]
    assert max(stds) > 10, stds


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_render_is_deterministic_per_rng_state(kind: str) -> None:
    a = render_other(kind, np.random.default_rng(123), 120, 90)
    b = render_other(kind, np.random.default_rng(123), 120, 90)
    np.testing.assert_array_equal(a, b)


def test_colour_and_gray_outputs_both_occur() -> None:
    ndims = {render_other("photo_scene", np.random.default_rng(i), 48, 48).ndim for i in range(30)}
    assert ndims == {2, 3}


def test_rejects_unknown_kind_and_tiny_sizes() -> None:
    with pytest.raises(ValueError, match="unknown non-radiograph kind"):
        render_other("cat", np.random.default_rng(0), 64, 64)
    with pytest.raises(ValueError, match="at least 16x16"):
        render_other("noise", np.random.default_rng(0), 8, 64)
    with pytest.raises(ValueError, match="unknown non-radiograph kind"):
        kind_for_index(0, 0, ("photo_scene", "cat"))


def test_kind_per_index_is_balanced_and_count_independent() -> None:
    n = len(OTHER_KINDS)
    kinds = [kind_for_index(5, i) for i in range(3 * n)]
    assert all(kinds.count(k) == 3 for k in OTHER_KINDS)
    assert kinds[: 2 * n] == [kind_for_index(5, i) for i in range(2 * n)]
    assert kinds != [kind_for_index(6, i) for i in range(3 * n)], "another seed orders kinds differently"
    fmts = [other_format_for_index(5, i) for i in range(2 * len(OTHER_FORMATS))]
    assert all(fmts.count(f) == 2 for f in OTHER_FORMATS)


def test_streams_differ_by_seed_and_index() -> None:
    a = render_other_sample(1, 0)[0]
    assert np.array_equal(a, render_other_sample(1, 0)[0])
    assert not np.array_equal(other_rng(1, 0).random(8), other_rng(2, 0).random(8))
    assert not np.array_equal(other_rng(1, 0).random(8), other_rng(1, 1).random(8))
    # Distinct from the phantom archive's per-image streams for the same seed and index.
    assert not np.array_equal(other_rng(1, 0).random(8), np.random.default_rng([1, 0]).random(8))


def test_sizes_cover_portrait_landscape_and_square() -> None:
    rng = np.random.default_rng(0)
    sizes = [other_size(rng) for _ in range(200)]
    assert any(h > w for h, w in sizes) and any(w > h for h, w in sizes) and any(h == w for h, w in sizes)
    assert all(min(h, w) >= 96 and max(h, w) <= 640 for h, w in sizes)


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_encoded_images_decode_through_the_product_path(kind: str, tmp_path: Path) -> None:
    img = render_other(kind, np.random.default_rng(3), 80, 112)
    bgr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    for ext in (".png", ".jpg"):
        ok, buf = cv2.imencode(ext, bgr)
        assert ok
        decoded = readers.decode_bytes(buf.tobytes(), f"x{ext}")
        assert decoded.pixels.shape == (80, 112)
        x = preprocess.preprocess_pixels(decoded, preprocess.PreprocessConfig(image_size=64))
        assert x.shape == (64, 64, 3) and x.dtype == np.float32
        assert np.isfinite(x).all() and 0.0 <= x.min() and x.max() <= 1.0


# --- the archive's other rows -------------------------------------------------------------------------------

SEED = 4
BODY, OTHER = 7, 16


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    manifest = write_sample_archive(tmp_path_factory.mktemp("other_archive"), BODY, seed=SEED, other_count=OTHER)
    return manifest, pq.read_table(manifest).to_pylist()


def test_archive_manifest_is_valid_with_right_counts(archive: tuple[Path, list[dict]]) -> None:
    manifest, rows = archive
    table = pq.read_table(manifest)
    assert table.schema.equals(SAMPLE_MANIFEST_SCHEMA)
    schema.validate_manifest(table, require_label=True)
    labels = [r[schema.LABEL] for r in rows]
    assert labels.count(schema.OTHER_LABEL) == OTHER
    assert sum(label in CLASSES for label in labels) == BODY
    assert all(kind_of_image_id(r[schema.IMAGE_ID]) is None for r in rows if r[schema.LABEL] in CLASSES)
    others = [r for r in rows if r[schema.LABEL] == schema.OTHER_LABEL]
    assert {r["format"] for r in others} == set(OTHER_FORMATS)
    for j, r in enumerate(others):
        assert r[schema.IMAGE_ID] == f"s{SEED}-other-{kind_for_index(SEED, j)}-{j:06d}"
        assert kind_of_image_id(r[schema.IMAGE_ID]) == kind_for_index(SEED, j)
        assert Path(r[schema.URI]).is_file()
        assert r["header_wrong"] == (r["header_body_part"] is not None)
        if r["header_body_part"] is not None:
            assert r["format"] == "dicom_cr"
            assert any(r["header_body_part"] in terms for terms in DICOM_BODY_PART.values())


def test_archive_other_rows_decode_and_dicom_headers_say_what_they_are(archive: tuple[Path, list[dict]]) -> None:
    _, rows = archive
    cfg = preprocess.PreprocessConfig(image_size=64)
    seen_channels = set()
    for r in rows:
        if r[schema.LABEL] != schema.OTHER_LABEL:
            continue
        x, meta = preprocess.preprocess_file(r[schema.URI], cfg)
        assert x.shape == (64, 64, 3) and np.isfinite(x).all()
        if r["format"].startswith("dicom"):
            ds = pydicom.dcmread(r[schema.URI])
            assert str(ds.PatientName) == "ANON" and "PatientBirthDate" not in ds
            if r["format"] == "dicom_cr":
                assert ds.Modality == "CR" and meta["modality"] == "CR"
                assert ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
                assert ds.get("BodyPartExamined") == r["header_body_part"]
            else:
                assert ds.Modality in ("OT", "US", "CT") and ds.Modality != "CR"
                assert ds.SOPClassUID.name in ("Secondary Capture Image Storage", "Ultrasound Image Storage")
                assert (ds.Modality == "US") == ("-ultrasound-" in r[schema.IMAGE_ID])
        else:
            seen_channels.add(meta["channels"])
            assert meta["channels"] == (3 if r["format"].endswith("_rgb") else 1)
    assert seen_channels == {1, 3}


def _snapshot(manifest: Path) -> tuple[list[dict], dict[str, bytes]]:
    rows = pq.read_table(manifest).to_pylist()
    files = {}
    for r in rows:
        files[Path(r[schema.URI]).name] = Path(r[schema.URI]).read_bytes()
        r[schema.URI] = Path(r[schema.URI]).name
    return rows, files


def test_other_rows_leave_body_rows_alone_and_do_not_depend_on_count(tmp_path: Path) -> None:
    plain_rows, plain_files = _snapshot(write_sample_archive(tmp_path / "a", 5, seed=2))
    rows, files = _snapshot(write_sample_archive(tmp_path / "b", 5, seed=2, other_count=6))
    assert rows[:5] == plain_rows and all(files[k] == v for k, v in plain_files.items())
    # Only other rows (count 0), fewer of them: row j is the same file.
    few_rows, few_files = _snapshot(write_sample_archive(tmp_path / "c", 0, seed=2, other_count=3))
    assert few_rows == rows[5:8]
    assert all(files[k] == v for k, v in few_files.items())
    again_rows, again_files = _snapshot(write_sample_archive(tmp_path / "d", 0, seed=2, other_count=3))
    assert (again_rows, again_files) == (few_rows, few_files)
    other_seed_rows, other_seed_files = _snapshot(write_sample_archive(tmp_path / "e", 0, seed=3, other_count=3))
    assert not set(other_seed_files.values()) & set(few_files.values())


def test_other_fraction_and_argument_checks(tmp_path: Path) -> None:
    rows = pq.read_table(write_sample_archive(tmp_path / "f", 6, seed=1, other_fraction=0.25)).to_pylist()
    assert sum(r[schema.LABEL] == schema.OTHER_LABEL for r in rows) == 2  # 2 of 8 = 25%
    with pytest.raises(ValueError, match="not both"):
        write_sample_archive(tmp_path / "g", 3, other_count=1, other_fraction=0.5)
    with pytest.raises(ValueError, match="other_fraction"):
        write_sample_archive(tmp_path / "g", 3, other_fraction=1.0)
    with pytest.raises(ValueError, match="other_count"):
        write_sample_archive(tmp_path / "g", 3, other_count=-1)
    with pytest.raises(ValueError, match="count must be at least 1"):
        write_sample_archive(tmp_path / "g", 0, other_count=0)


def test_sample_command_writes_other_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.sample import main

    assert main(["--out", str(tmp_path), "--count", "2", "--other-count", "3", "--seed", "9"]) == 0
    assert "2 body-part images, 3 other images" in capsys.readouterr().out
    labels = pq.read_table(tmp_path / "manifest.parquet").column(schema.LABEL).to_pylist()
    assert labels.count(schema.OTHER_LABEL) == 3 and len(labels) == 5
    with pytest.raises(SystemExit) as e:  # argparse refuses the pair before any work
        main(["--out", str(tmp_path / "x"), "--count", "2", "--other-count", "1", "--other-fraction", "0.5"])
    assert e.value.code == 2 and not (tmp_path / "x").exists()
    assert main(["--out", str(tmp_path / "y"), "--count", "0"]) == 2  # nothing to write: a usage error
