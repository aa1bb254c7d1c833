"""The one preprocessing path shared by training and inference.

:func:`preprocess_file` is called by the training data loader and by the labeling job alike, driven by a
:class:`PreprocessConfig` that is saved inside the model bundle, so the two cannot drift apart.  The output is
backbone-neutral (float32 in [0, 1], ``channels`` copies of the grayscale image); each backbone's own input
scaling lives inside the saved model (see :mod:`core.model.backbones`).

The image is built in a *compact* form first (:func:`compact_pixels`: one channel, rounded to 8-bit levels
``k / 255``) and widened to the model input by :func:`expand`.  The labeling job ships the compact form
between its decode tasks and model actors (224² uint8 is 50 KB against 600 KB of float32 RGB) and widens it
inside the model call; training calls :func:`preprocess_file`, which does both steps here.  Either way the
model sees exactly the same numbers.
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
    # Round the windowed [0, 1] image to 8-bit levels (k / 255).  Bundles saved before this field existed
    # load with False (see from_dict), so their inputs stay exactly what they were trained on.
    quantize: bool = True

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
        return cls(**{"quantize": False, **d})  # a config without the key predates quantisation

    @property
    def shape(self) -> tuple[int, int, int]:
        """The model input: ``channels`` copies of the image, float32 in [0, 1]."""
        return (self.image_size, self.image_size, self.channels)

    @property
    def compact_shape(self) -> tuple[int, int, int]:
        """The compact form that decode tasks hand to model actors: one channel."""
        return (self.image_size, self.image_size, 1)

    @property
    def compact_dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.quantize else np.dtype(np.float32)


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


LEVELS = 255  # 8-bit: the levels every backbone's ImageNet input had, and what a display shows


def quantize(img: np.ndarray) -> np.ndarray:
    """[0, 1] float → uint8 level ``round(255 x)`` (clipped: cubic resizing may overshoot [0, 1] a little)."""
    return np.clip(np.rint(img * np.float32(LEVELS)), 0, LEVELS).astype(np.uint8)


def expand(compact: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Compact ``(..., s, s, 1)`` (uint8 levels, or float32 when ``cfg.quantize`` is off) → model input
    ``(..., s, s, channels)`` float32 in [0, 1].  The model actors run the same arithmetic inside their traced
    call (``core.labeling.batches``); tests hold the two to bit-identical output."""
    x = compact.astype(np.float32)
    if compact.dtype == np.uint8:
        x /= np.float32(LEVELS)
    return np.repeat(x, cfg.channels, axis=-1) if cfg.channels != 1 else x


def compact_pixels(decoded: readers.Decoded, cfg: PreprocessConfig) -> np.ndarray:
    """Decoded pixels → the compact model input (window, letterbox, one channel, 8-bit levels)."""
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
    return (quantize(square) if cfg.quantize else square)[:, :, None]


def preprocess_pixels(decoded: readers.Decoded, cfg: PreprocessConfig) -> np.ndarray:
    """Decoded pixels → model input: :func:`compact_pixels` then :func:`expand`."""
    return expand(compact_pixels(decoded, cfg), cfg)


def preprocess_bytes(data: bytes, uri: str, cfg: PreprocessConfig) -> tuple[np.ndarray, dict[str, Any]]:
    decoded = readers.decode_bytes(data, uri, cfg.max_pixels)
    return preprocess_pixels(decoded, cfg), decoded.meta


def preprocess_file(uri: str, cfg: PreprocessConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Read, decode and preprocess one file: THE function both training and inference call.

    Raises :class:`core.errors.ScanError` with a row error code on any failure.
    """
    return preprocess_bytes(readers.read_uri(uri), uri, cfg)
