"""JPEG family frames: DCT-domain scaling for 8-bit lossy JPEG, faster full decoders for the rest.

libjpeg-turbo can run the inverse DCT at 1/2, 1/4 or 1/8 of each side, skipping most of the work for a baseline
or extended JPEG (docs/decoding.md, "Levels"); OpenCV exposes it as ``IMREAD_REDUCED_GRAYSCALE_{2,4,8}`` for
8-bit data.  12-bit extended, lossless (process 14) and JPEG-LS have no such shortcut, but imagecodecs'
libjpeg-turbo and CharLS decode them several times faster than the decoders pydicom reaches through pylibjpeg.

A codestream that does not end in its EOI marker is handed back (``None``) to the full decode: every decoder here
fills a truncated scan with grey and says nothing, and the full path must stay the one that decides what such a
file gives.
"""

from __future__ import annotations

import math
import struct

import cv2
import numpy as np

_REDUCED_FLAGS = {
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


def complete(codestream: bytes) -> bool:
    """Whether the codestream ends in its end marker (JPEG EOI and JPEG 2000 EOC are both FFD9), allowing the
    one byte of padding DICOM adds to make a fragment even (a zero by the standard; some writers use FF)."""
    return codestream.endswith(b"\xff\xd9") or codestream[-3:-1] == b"\xff\xd9"


def frame_header(codestream: bytes) -> tuple[int, int, int, int, int] | None:
    """(SOF marker, precision, height, width, components) of the first frame header, or None."""
    i, n = 2, len(codestream)
    while i + 4 <= n:
        if codestream[i] != 0xFF:
            return None
        marker = codestream[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        (length,) = struct.unpack(">H", codestream[i + 2 : i + 4])
        if marker in _SOF:
            if i + 10 > n:
                return None
            precision = codestream[i + 4]
            height, width = struct.unpack(">HH", codestream[i + 5 : i + 9])
            return marker, precision, height, width, codestream[i + 9]
        if marker == 0xDA:
            return None
        i += 2 + length
    return None


def choose_scale(height: int, width: int, min_side: int) -> int:
    """The largest DCT scale divisor (1, 2, 4 or 8) leaving the longer side at least ``min_side`` pixels."""
    longest = max(height, width)
    scale = 1
    while scale < 8 and math.ceil(longest / (scale * 2)) >= min_side:
        scale *= 2
    return scale


def decode_scaled(codestream: bytes, min_side: int, height: int, width: int) -> tuple[np.ndarray, int] | None:
    """An 8-bit grayscale decode at 1/scale of each side (OpenCV's libjpeg-turbo), or None when the scale is 1
    or the decoder failed or returned an unexpected size."""
    scale = choose_scale(height, width, min_side)
    if scale == 1:
        return None
    flags = _REDUCED_FLAGS[scale] | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        img = cv2.imdecode(np.frombuffer(codestream, np.uint8), flags)
    except cv2.error:
        return None
    if img is None or img.shape != (math.ceil(height / scale), math.ceil(width / scale)):
        return None
    return img, scale
