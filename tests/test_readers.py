"""Readers on real files: what decodes, and the error code of what doesn't."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from core import errors, readers


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return readers.PNG_MAGIC + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest.fixture
def gradient():
    return (np.linspace(0, 1, 64 * 48).reshape(48, 64) ** 0.8).astype(np.float32)


def test_png8_png16_jpeg_decode_grayscale(tmp_path, gradient):
    p8, p16, pj = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.jpg"
    cv2.imwrite(str(p8), (gradient * 255).astype(np.uint8))
    cv2.imwrite(str(p16), (gradient * 65535).astype(np.uint16))
    cv2.imwrite(str(pj), cv2.cvtColor((gradient * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR))
    d8, d16, dj = (readers.read_image(str(p)) for p in (p8, p16, pj))
    assert d8.pixels.dtype == np.uint8 and d8.meta["source_format"] == "png"
    assert d16.pixels.dtype == np.uint16 and d16.meta["bit_depth"] == 16
    assert dj.pixels.ndim == 2 and dj.meta["source_format"] == "jpeg" and dj.meta["channels"] == 3
    assert d16.pixels.shape == (48, 64)


def test_format_is_sniffed_from_content_not_name(tmp_path, gradient):
    p = tmp_path / "really_a_jpeg.png"
    cv2.imwrite(str(tmp_path / "x.jpg"), (gradient * 255).astype(np.uint8))
    p.write_bytes((tmp_path / "x.jpg").read_bytes())
    assert readers.read_image(str(p)).meta["source_format"] == "jpeg"


def test_sample_archive_dicoms_decode_in_display_polarity(small_archive):
    import pyarrow.parquet as pq

    from core.synthetic.sample_archive import render_sample

    _, manifest = small_archive
    rows = pq.read_table(manifest).to_pylist()
    for fmt in ("dicom_mono1", "dicom_mono2"):
        row = next(r for r in rows if r["format"] == fmt)
        decoded = readers.read_image(row["uri"])
        truth, _ = render_sample(3, int(row["image_id"].rsplit("-", 1)[1]), row["label"])
        corr = np.corrcoef(decoded.pixels.ravel(), truth.ravel())[0, 1]
        assert corr > 0.9, (fmt, corr)  # MONOCHROME1 was inverted back to bright bone
        assert decoded.meta["photometric"] == fmt.replace("dicom_mono", "MONOCHROME")


@pytest.mark.parametrize(
    "name, content, code",
    [
        ("empty.png", b"", errors.EMPTY_FILE),
        ("text.png", b"this is not an image\n" * 10, errors.UNSUPPORTED_FORMAT),
        ("truncated.png", None, errors.DECODE_ERROR),
        ("bomb.png", _png_header_only(60000, 60000), errors.TOO_LARGE),
    ],
)
def test_bad_files_get_error_codes(tmp_path, name, content, code, gradient):
    p = tmp_path / name
    if content is None:
        ok, buf = cv2.imencode(".png", (gradient * 255).astype(np.uint8))
        content = buf.tobytes()[:60]
    p.write_bytes(content)
    with pytest.raises(errors.ScanError) as e:
        readers.read_image(str(p))
    assert e.value.code == code


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(errors.ScanError) as e:
        readers.read_image(str(tmp_path / "nope.png"))
    assert e.value.code == errors.NOT_FOUND


def test_dicom_without_pixels_is_no_pixels():
    from pydicom.data import get_testdata_file

    with pytest.raises(errors.ScanError) as e:
        readers.read_image(get_testdata_file("rtplan.dcm"))
    assert e.value.code == errors.NO_PIXELS


def test_jpeg_dimensions_from_header_only(gradient):
    ok, buf = cv2.imencode(".jpg", (gradient * 255).astype(np.uint8))
    assert readers.jpeg_dimensions(buf.tobytes()) == (48, 64)
