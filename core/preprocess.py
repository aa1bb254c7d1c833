"""The one preprocessing path shared by training and inference.

:func:`preprocess_file` is called by the training data loader and by the labeling job alike, driven by a
:class:`PreprocessConfig` that is saved inside the model bundle, so the two cannot drift apart.  The output is
backbone-neutral (float32 in [0, 1], ``channels`` copies of the grayscale image); each backbone's own input
scaling lives inside the saved model (see :mod:`core.backbones`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from core import readers

_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything needed to turn a file into a model input; frozen and saved with the model."""

    image_size: int = 224
    channels: int = 3
    low_percentile: float = 0.5
    high_percentile: float = 99.5
    interpolation: str = "area"
    max_pixels: int = readers.DEFAULT_MAX_PIXELS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)} (bundle from a newer version?)")
        return cls(**d)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, self.channels)


def normalize_intensity(
    pixels: np.ndarray, mask: np.ndarray | None = None, low: float = 0.5, high: float = 99.5
) -> np.ndarray:
    """Map to [0, 1] by robust percentiles, so 8-bit, 12-bit and 16-bit sources look alike.

    Percentiles (not min/max) ignore burned-in text, collimator edges and hot pixels; padding pixels (mask
    False) are excluded from the statistics and set to 0.
    """
    img = pixels.astype(np.float32, copy=False)
    sample = img[mask] if mask is not None and mask.any() else img
    if sample.size > 262_144:  # percentiles on a strided subsample: same answer, a fraction of the time
        sample = sample.ravel()[:: sample.size // 262_144]
    lo, hi = np.percentile(sample, [low, high])
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo < 1e-6:
        lo, hi = float(np.nanmin(sample)), float(np.nanmax(sample))
    scale = 1.0 / (hi - lo) if hi - lo > 1e-6 else 0.0
    out = np.clip((img - lo) * scale, 0.0, 1.0)
    if mask is not None:
        out[~mask] = 0.0
    return out


def letterbox(img: np.ndarray, size: int, interpolation: str = "area") -> np.ndarray:
    """Resize keeping the aspect ratio and pad with zeros (black) to a square, centred."""
    h, w = img.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    interp = _INTERPOLATION[interpolation] if s < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(img, (nw, nh), interpolation=interp)
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out


def preprocess_pixels(decoded: readers.Decoded, cfg: PreprocessConfig) -> np.ndarray:
    gray = decoded.pixels
    mask = decoded.mask
    # Downscale very large images before the percentile pass: cheaper and identical in distribution.
    h, w = gray.shape[:2]
    if max(h, w) > 4 * cfg.image_size:
        f = (2 * cfg.image_size) / max(h, w)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        gray = cv2.resize(gray.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        if mask is not None:
            mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    norm = normalize_intensity(gray, mask, cfg.low_percentile, cfg.high_percentile)
    square = letterbox(norm, cfg.image_size, cfg.interpolation)
    if cfg.channels == 1:
        return square[:, :, None]
    return np.repeat(square[:, :, None], cfg.channels, axis=2)


def preprocess_bytes(data: bytes, uri: str, cfg: PreprocessConfig) -> tuple[np.ndarray, dict[str, Any]]:
    decoded = readers.decode_bytes(data, uri, cfg.max_pixels)
    return preprocess_pixels(decoded, cfg), decoded.meta


def preprocess_file(uri: str, cfg: PreprocessConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Read, decode and preprocess one file: THE function both training and inference call.

    Raises :class:`core.errors.ScanError` with a row error code on any failure.
    """
    return preprocess_bytes(readers.read_uri(uri), uri, cfg)
