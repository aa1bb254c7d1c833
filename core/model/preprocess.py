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
DECODE_MODES = ("full", "reduced")


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
    # "reduced": decode at the smallest resolution level that keeps >= 2x image_size pixels on the longer side,
    # and compact in the source dtype (docs/decoding.md).  "full": decode every pixel, the path bundles saved
    # before this field existed were trained on; they load with it (see from_dict), so their inputs stay the same.
    decode: str = "reduced"

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {DECODE_MODES}, got {self.decode!r}")

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
        # A config without a key predates that feature: quantisation, then reduced decoding.
        return cls(**{"quantize": False, "decode": "full", **d})

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

    @property
    def min_side(self) -> int:
        """What the readers are asked to keep on the longer side: ``2 * image_size`` on the reduced path (enough
        for a clean area downsample to the input), 0 (full size) on the full path."""
        return 2 * self.image_size if self.decode == "reduced" else 0


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


def letterbox(
    img: np.ndarray,
    size: int,
    interpolation: str = "area",
    source: tuple[int, int] | None = None,
) -> np.ndarray:
    """Resize keeping the aspect ratio and pad with zeros (black) to a square, centred.

    ``source``: the (rows, columns) the image was decoded from, when it was decoded or reduced to a smaller
    size; the placed size then follows the source's aspect, so every decode level gives the same geometry."""
    h, w = img.shape[:2]
    s = size / max(h, w)
    nh, nw = placed_size(source, size) if source else (max(1, round(h * s)), max(1, round(w * s)))
    interp = _INTERPOLATION[interpolation] if s < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(img, (nw, nh), interpolation=interp)
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out


def placed_size(source: tuple[int, int], size: int) -> tuple[int, int]:
    """(rows, columns) the full path places an image of ``source`` size at, its two roundings included (the
    pre-shrink of :func:`compact_pixels`, then the letterbox), so the reduced path lands on the same pixels."""
    h, w = source
    if max(h, w) > 4 * size:
        f = (2 * size) / max(h, w)
        h, w = max(1, round(h * f)), max(1, round(w * f))
    s = size / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


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
    if cfg.decode == "reduced":
        return _compact_reduced(decoded, cfg)
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


def _compact_reduced(decoded: readers.Decoded, cfg: PreprocessConfig) -> np.ndarray:
    """The reduced path's compaction: the full path's window and letterbox, computed in the source dtype.

    The image is shrunk to the size the full path windows (:func:`_shrink`), then for 8/16-bit integer pixels
    the percentiles come from a histogram and the window is a lookup table, instead of a float copy, a sort and
    a float pass over every pixel (docs/decoding.md, "Compaction")."""
    rows, columns = decoded.meta.get("rows"), decoded.meta.get("columns")
    source = (int(rows), int(columns)) if rows and columns else None
    gray, mask = _shrink(decoded.pixels, decoded.mask, source or decoded.pixels.shape[:2], cfg.image_size)
    if gray.dtype in (np.uint8, np.uint16):
        # The window before the resize, as on the full path: resizing first would blend clipped and unclipped
        # pixels differently along every edge that crosses the window's limits (collimators, markers).
        lut = _window_lut(gray, mask, cfg.low_percentile, cfg.high_percentile)
        norm = cv2.LUT(gray, lut) if gray.dtype == np.uint8 else lut[gray]
        if mask is not None:
            norm[~mask] = 0.0
    else:
        norm = normalize_intensity(gray, mask, cfg.low_percentile, cfg.high_percentile)
    square = letterbox(norm, cfg.image_size, cfg.interpolation, source)
    return (quantize(square) if cfg.quantize else square)[:, :, None]


def _shrink(
    gray: np.ndarray, mask: np.ndarray | None, source: tuple[int, int], size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """To the size the full path windows (its pre-shrink of a source over 4x the input side to 2x), with the
    same area resampling but in the source dtype.  8-bit pixels are widened to 16 bits (x 256) on the way, so
    area means keep 1/256 of a level: a narrow window would otherwise magnify their rounding.  Where the sides
    divide by the integer factor that keeps >= 2x, exact block means go first (OpenCV's fast path) and the
    fractional rest runs on the small image; elsewhere one area resize, since cropping to a multiple of the
    factor would shift the geometry by up to half an input pixel."""
    h0, w0 = source
    if max(h0, w0) <= 4 * size:
        return gray, mask
    f = (2 * size) / max(h0, w0)
    target = (max(1, round(w0 * f)), max(1, round(h0 * f)))  # (width, height), as OpenCV takes it
    if gray.shape[1::-1] == target:
        return gray, mask
    if gray.dtype == np.uint8:
        gray = np.left_shift(gray, 8, dtype=np.uint16)
    k = max(gray.shape[:2]) // (2 * size)
    if k >= 2 and gray.shape[0] % k == 0 and gray.shape[1] % k == 0:  # exact block means: OpenCV's fast path
        gray = cv2.resize(gray, (gray.shape[1] // k, gray.shape[0] // k), interpolation=cv2.INTER_AREA)
    gray = cv2.resize(gray, target, interpolation=cv2.INTER_AREA)
    if mask is not None:
        mask = cv2.resize(mask.astype(np.uint8), target, interpolation=cv2.INTER_NEAREST).astype(bool)
    return gray, mask


def histogram_percentiles(sample: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.percentile(sample, qs)`` (linear interpolation) of unsigned 8/16-bit integers from their histogram:
    exact, without sorting."""
    cum = np.cumsum(np.bincount(sample.ravel(), minlength=256 if sample.dtype == np.uint8 else 65536))
    n = int(cum[-1])
    out = []
    for q in qs:
        pos = q / 100.0 * (n - 1)
        i = int(np.floor(pos))
        a = int(np.searchsorted(cum, i, side="right"))
        b = int(np.searchsorted(cum, min(i + 1, n - 1), side="right"))
        out.append(a + (pos - i) * (b - a))
    return out


def _window_lut(gray: np.ndarray, mask: np.ndarray | None, low: float, high: float) -> np.ndarray:
    """:func:`normalize_intensity`'s window for unsigned 8/16-bit pixels as a lookup table (value -> [0, 1]),
    its percentiles from a histogram of at most ~131k pixels."""
    sample = gray[mask] if mask is not None and mask.any() else gray
    if sample.size > 131_072:
        sample = sample.ravel()[:: sample.size // 131_072]
    lo, hi = histogram_percentiles(sample, (low, high))
    if hi - lo < 1e-6:
        lo, hi = float(sample.min()), float(sample.max())
    scale = 1.0 / (hi - lo) if hi - lo > 1e-6 else 0.0
    levels = np.arange(256 if gray.dtype == np.uint8 else 65536, dtype=np.float32)
    return np.clip((levels - np.float32(lo)) * np.float32(scale), 0.0, 1.0)


def decode(data: bytes, uri: str, cfg: PreprocessConfig, **kw: Any) -> readers.Decoded:
    """The reader call of the preprocessing: :func:`core.readers.decode_bytes` at the config's resolution
    (``kw``: the labeling job's limits, scope and header map)."""
    return readers.decode_bytes(data, uri, kw.pop("max_pixels", cfg.max_pixels), min_side=cfg.min_side, **kw)


def preprocess_pixels(decoded: readers.Decoded, cfg: PreprocessConfig) -> np.ndarray:
    """Decoded pixels → model input: :func:`compact_pixels` then :func:`expand`."""
    return expand(compact_pixels(decoded, cfg), cfg)


def preprocess_bytes(data: bytes, uri: str, cfg: PreprocessConfig) -> tuple[np.ndarray, dict[str, Any]]:
    decoded = decode(data, uri, cfg)
    return preprocess_pixels(decoded, cfg), decoded.meta


def preprocess_file(uri: str, cfg: PreprocessConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Read, decode and preprocess one file: THE function both training and inference call.

    Raises :class:`core.errors.ScanError` with a row error code on any failure.
    """
    return preprocess_bytes(readers.read_uri(uri), uri, cfg)
