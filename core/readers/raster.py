"""PNG and JPEG files through OpenCV: dimensions from the header first, then the decode, then gray.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from core import errors
from core.readers import jpeg
from core.readers.base import Decoded, check_pixels

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def png_dimensions(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise errors.ScanError(errors.DECODE_ERROR, "PNG without IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return height, width


# SOF0-3, 5-7, 9-11, 13-15 and JPEG-LS SOF55 (0xF7).
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


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


def decode_raster(data: bytes, fmt: str, max_pixels: int, min_side: int = 0) -> Decoded:
    """PNG or JPEG bytes to grayscale.  ``min_side`` > 0 (the reduced path, docs/decoding.md) lets an 8-bit
    JPEG decode at 1/2, 1/4 or 1/8 of each side in the DCT domain, keeping the longer side >= ``min_side``."""
    height, width = png_dimensions(data) if fmt == "png" else jpeg_dimensions(data)
    check_pixels(height, width, 1, max_pixels)
    scaled = _reduced_jpeg(data, height, width, min_side) if fmt == "jpeg" and min_side > 0 else None
    if scaled is not None:
        gray, reduction = scaled
        meta = _meta(fmt, height, width, gray.dtype, jpeg.frame_header(data)[4])  # type: ignore[index]
        meta["decode_reduction"] = reduction
        return Decoded(pixels=gray, meta=meta)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise errors.ScanError(errors.DECODE_ERROR, f"{fmt} decoder: {type(e).__name__}") from e
    if img is None or img.size == 0:
        raise errors.ScanError(errors.DECODE_ERROR, f"{fmt} decoder returned nothing")
    channels = 1 if img.ndim == 2 else img.shape[2]
    gray = _to_gray(img)
    meta = _meta(fmt, int(gray.shape[0]), int(gray.shape[1]), gray.dtype, int(channels))
    if min_side > 0:
        meta["decode_reduction"] = 1
    return Decoded(pixels=gray, meta=meta)


def _meta(fmt: str, rows: int, columns: int, dtype: np.dtype, channels: int) -> dict:
    return {
        "source_format": fmt,
        "rows": rows,
        "columns": columns,
        "bit_depth": int(np.dtype(dtype).itemsize * 8),
        "channels": channels,
    }


def _reduced_jpeg(data: bytes, height: int, width: int, min_side: int) -> tuple[np.ndarray, int] | None:
    """The DCT-scaled decode of an 8-bit JPEG (grayscale out: libjpeg-turbo keeps only the luma, the same BT.601
    luma the full path computes from RGB), or None for the full decode: 12-bit data, a truncated file, no gain."""
    head = jpeg.frame_header(data)
    if head is None or head[1] != 8 or head[4] not in (1, 3) or not jpeg.complete(data):
        return None
    return jpeg.decode_scaled(data, min_side, height, width)


