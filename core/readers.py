"""Readers by format behind one interface: bytes in, (grayscale pixels, PHI-free metadata) out.

Formats are recognised from their magic bytes, not the file name, because archives are full of ``.png`` files
that are really JPEGs and DICOM files with no extension.  Image dimensions are read from the header before any
pixel is decoded so that a decompression bomb is refused as ``too_large`` instead of exhausting memory.
Every failure is a :class:`~core.errors.ScanError` with a stable code.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from core import errors, storage

DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: larger than any clinical radiograph, far below a bomb.

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

# DICOM attributes safe to carry into outputs (no patient/study identifiers).
SAFE_DICOM_FIELDS = ("Modality", "BodyPartExamined", "PhotometricInterpretation", "StudyDescription")


@dataclass
class Decoded:
    """Grayscale pixels in display polarity (bright = dense) plus metadata safe to write to Parquet."""

    pixels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = None  # True where pixels are real image, False for padding values


def sniff_format(data: bytes, uri: str = "") -> str:
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if uri.lower().endswith((".dcm", ".dicom")):
        return "dicom"  # preamble-less DICOM: let pydicom try with force=True
    raise errors.ScanError(errors.UNSUPPORTED_FORMAT, "not PNG, JPEG or DICOM")


def read_uri(uri: str) -> bytes:
    """Read a whole file, translating OS and object-store failures into row error codes."""
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError as e:
        raise errors.ScanError(errors.NOT_FOUND, type(e).__name__) from e
    except PermissionError as e:
        raise errors.ScanError(errors.PERMISSION_DENIED, type(e).__name__) from e
    except IsADirectoryError as e:
        raise errors.ScanError(errors.UNSUPPORTED_FORMAT, "is a directory") from e
    except OSError as e:
        text = str(e)
        if "Path does not exist" in text or "NoSuchKey" in text or "not found" in text.lower():
            raise errors.ScanError(errors.NOT_FOUND, "missing") from e
        if "Permission denied" in text or "AccessDenied" in text or "ACCESS_DENIED" in text:
            raise errors.ScanError(errors.PERMISSION_DENIED, "access denied") from e
        if "is a directory" in text.lower():
            raise errors.ScanError(errors.UNSUPPORTED_FORMAT, "is a directory") from e
        raise errors.ScanError(errors.IO_ERROR, type(e).__name__) from e
    if not data:
        raise errors.ScanError(errors.EMPTY_FILE)
    return data


# --- header-only dimension probes ----------------------------------------------------------------------------
def png_dimensions(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise errors.ScanError(errors.DECODE_ERROR, "PNG without IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return height, width


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_dimensions(data: bytes) -> tuple[int, int]:
    """Walk the JPEG marker segments to the frame header (SOFn) without decoding any scan data."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return height, width
        if marker == 0xDA:  # start of scan before any frame header
            break
        i += 2 + length
    raise errors.ScanError(errors.DECODE_ERROR, "JPEG without a frame header")


def check_pixels(height: int, width: int, frames: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise errors.ScanError(errors.DECODE_ERROR, f"invalid dimensions {height}x{width}")
    total = int(height) * int(width) * max(int(frames), 1)
    if total > max_pixels:
        raise errors.ScanError(errors.TOO_LARGE, f"{width}x{height}x{frames} exceeds {max_pixels} pixels")


# --- raster (PNG / JPEG) -------------------------------------------------------------------------------------
def _to_gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    raise errors.ScanError(errors.UNSUPPORTED_FORMAT, f"unexpected raster shape {img.shape}")


def decode_raster(data: bytes, fmt: str, max_pixels: int) -> Decoded:
    height, width = png_dimensions(data) if fmt == "png" else jpeg_dimensions(data)
    check_pixels(height, width, 1, max_pixels)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise errors.ScanError(errors.DECODE_ERROR, f"{fmt} decoder returned nothing")
    channels = 1 if img.ndim == 2 else img.shape[2]
    gray = _to_gray(img)
    return Decoded(
        pixels=gray,
        meta={
            "source_format": fmt,
            "rows": int(gray.shape[0]),
            "columns": int(gray.shape[1]),
            "bit_depth": int(gray.dtype.itemsize * 8),
            "channels": int(channels),
        },
    )


# --- DICOM ---------------------------------------------------------------------------------------------------
def _dicom_header(data: bytes):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except InvalidDicomError as e:
        raise errors.ScanError(errors.DECODE_ERROR, "invalid DICOM") from e
    except Exception as e:  # noqa: BLE001 - pydicom raises many types on garbage input
        raise errors.ScanError(errors.DECODE_ERROR, f"DICOM header: {type(e).__name__}") from e


def _safe_str(ds, name: str) -> str | None:
    value = ds.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def decode_dicom(data: bytes, max_pixels: int) -> Decoded:
    """Decode to display-ready grayscale: modality LUT, VOI LUT/window, MONOCHROME1 inverted, padding masked."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = _dicom_header(data)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise errors.ScanError(errors.NO_PIXELS, str(ds.get("Modality", "")) or "no PixelData")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    check_pixels(rows, cols, frames, max_pixels)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # Preamble/meta-less file: pydicom needs to be told how the dataset was encoded.
        ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2" if ds.is_implicit_VR else "1.2.840.10008.1.2.1"
    try:
        arr = ds.pixel_array
    except NotImplementedError as e:
        raise errors.ScanError(errors.UNSUPPORTED_FORMAT, f"transfer syntax: {e}"[:200]) from e
    except Exception as e:  # noqa: BLE001 - truncated/corrupt pixel data raises assorted errors
        raise errors.ScanError(errors.DECODE_ERROR, f"pixel data: {type(e).__name__}") from e
    if frames > 1 and arr.ndim >= 3 and arr.shape[0] == frames:
        arr = arr[frames // 2]  # multi-frame policy: the middle frame represents the series
    mask = None
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        padding = ds.get("PixelPaddingValue")
        if padding is not None and arr.ndim == 2:
            mask = arr != padding
        out = apply_modality_lut(arr, ds)
        has_voi = "WindowCenter" in ds or "VOILUTSequence" in ds
        if has_voi:
            try:
                out = apply_voi_lut(out, ds, index=0, prefer_lut=True)
            except Exception:  # noqa: BLE001 - malformed VOI: fall back to robust normalisation later
                has_voi = False
        out = out.astype(np.float32)
        if photometric == "MONOCHROME1":
            valid = out[mask] if mask is not None and mask.any() else out
            out = float(valid.max()) + float(valid.min()) - out
    else:
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
        if arr.ndim == 3 and arr.shape[-1] == 3:
            # pydicom returns RGB (YBR converted); weights of ITU-R BT.601 luma
            out = (arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114).astype(np.float32)
        else:
            out = arr.astype(np.float32)
        has_voi = False
    if out.ndim != 2:
        raise errors.ScanError(errors.UNSUPPORTED_FORMAT, f"unexpected pixel array shape {out.shape}")
    meta = {
        "source_format": "dicom",
        "rows": rows,
        "columns": cols,
        "frames": frames,
        "photometric": photometric,
        "voi_applied": bool(has_voi),
        "header_body_part": _safe_str(ds, "BodyPartExamined"),
        "study_description": _safe_str(ds, "StudyDescription"),
        "modality": _safe_str(ds, "Modality"),
    }
    return Decoded(pixels=out, meta=meta, mask=mask)


def decode_bytes(data: bytes, uri: str = "", max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    if not data:
        raise errors.ScanError(errors.EMPTY_FILE)
    fmt = sniff_format(data, uri)
    if fmt == "dicom":
        return decode_dicom(data, max_pixels)
    return decode_raster(data, fmt, max_pixels)


def read_image(uri: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    return decode_bytes(read_uri(uri), uri, max_pixels)
