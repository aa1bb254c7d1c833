"""What every reader shares: the decoded result, the size limits and the pixel-count check.

Decompression bombs
    Dimensions come from the header before any pixel is decoded: PNG ``IHDR``, JPEG ``SOFn``, DICOM
    ``Rows``/``Columns`` *and* the dimensions inside an encapsulated JPEG / JPEG-LS / JPEG 2000 codestream
    (which a crafted file can make disagree with the header), and a deflated DICOM is inflated into a
    bounded counter first.  More than ``max_pixels`` per decoded frame is ``too_large``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import errors

DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP per frame: larger than any clinical radiograph, far below a bomb.
DEFAULT_MAX_BYTES = 2 << 30  # 2 GiB per file: what one decode worker may hold in memory at once.


@dataclass
class Decoded:
    """Grayscale pixels in display polarity (bright = dense) plus metadata safe to write to Parquet."""

    pixels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = None  # True where pixels are real image, False for padding values


def check_pixels(height: int, width: int, frames: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise errors.ScanError(errors.DECODE_ERROR, f"invalid dimensions {height}x{width}")
    total = int(height) * int(width) * max(int(frames), 1)
    if total > max_pixels:
        raise errors.ScanError(errors.TOO_LARGE, f"{width}x{height}x{frames} exceeds {max_pixels} pixels")

