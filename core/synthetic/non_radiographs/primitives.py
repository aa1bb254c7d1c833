"""Drawing primitives shared by the non-radiograph renderers: random draws, smooth fields, masks, text.

Renderers work on float32 RGB images in [0, 1] (``Image``); OpenCV draws on them directly except text, which
OpenCV renders into 8-bit images only (see :func:`_text`).  Names keep their leading underscore: they are
internal to the :mod:`core.synthetic.non_radiographs` package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

Image = np.ndarray  # float32 H x W x 3 in [0, 1] inside the renderers

_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
)
_BODY_FONTS = _FONTS[:6]
_COLORMAPS = (
    cv2.COLORMAP_JET,
    cv2.COLORMAP_RAINBOW,
    cv2.COLORMAP_HOT,
    cv2.COLORMAP_TURBO,
    cv2.COLORMAP_VIRIDIS,
    cv2.COLORMAP_INFERNO,
    cv2.COLORMAP_PLASMA,
    cv2.COLORMAP_HSV,
    cv2.COLORMAP_PARULA,
    cv2.COLORMAP_COOL,
    cv2.COLORMAP_MAGMA,
)
_LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
_LETTER_P = np.array(
    [
        12.7,
        9.1,
        8.2,
        7.5,
        7.0,
        6.7,
        6.3,
        6.1,
        6.0,
        4.3,
        4.0,
        2.8,
        2.8,
        2.4,
        2.4,
        2.2,
        2.0,
        2.0,
        1.9,
        1.5,
        1.0,
        0.8,
        0.2,
        0.2,
        0.1,
        0.1,
    ]
)
_LETTER_P = _LETTER_P / _LETTER_P.sum()


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _i(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Integer in [lo, hi] inclusive."""
    return int(rng.integers(lo, hi + 1))


def _chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _color(rng: np.random.Generator, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    return rng.uniform(lo, hi, 3).astype(np.float32)


def _hsv_color(rng: np.random.Generator, s: tuple[float, float] = (0.3, 1.0), v: tuple[float, float] = (0.3, 1.0)):
    """A colour drawn in HSV, which gives saturated hues far more often than uniform RGB does."""
    h = _u(rng, 0, 180)
    hsv = np.array([[[h, _u(rng, *s) * 255, _u(rng, *v) * 255]]], np.float32)
    return (cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0] / 255.0).astype(np.float32)


def _c(color: np.ndarray) -> tuple[float, float, float]:
    """A float colour as the tuple OpenCV drawing functions want."""
    return (float(color[0]), float(color[1]), float(color[2]))


def _canvas(h: int, w: int, color: np.ndarray | float = 0.0) -> Image:
    img = np.empty((h, w, 3), np.float32)
    img[:] = color
    return img


def _smooth(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Smooth random field in about [-1, 1]: coarse Gaussian noise upsampled with cubic interpolation."""
    gh = max(2, round(h / max(cells, 1.0)) + 2)
    gw = max(2, round(w / max(cells, 1.0)) + 2)
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _fractal(rng: np.random.Generator, h: int, w: int, base: float, octaves: int = 4, decay: float = 0.55):
    """Sum of smooth fields at halving scales (a cheap fractal noise), normalised to [0, 1]."""
    out = np.zeros((h, w), np.float32)
    amp, cells = 1.0, base
    for _ in range(octaves):
        out += amp * _smooth(rng, h, w, cells)
        amp *= decay
        cells = max(1.0, cells / 2)
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / (hi - lo + 1e-6)


def _gradient(h: int, w: int, angle: float) -> np.ndarray:
    """Linear ramp 0..1 across the image in direction ``angle`` (radians)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx * math.cos(angle) + yy * math.sin(angle)
    return (t - t.min()) / (float(t.max() - t.min()) + 1e-6)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> Image:
    """Per-pixel blend of two colours (or images) by a weight map ``t`` (H x W)."""
    return a * (1.0 - t[..., None]) + b * t[..., None]


def _paste(img: Image, layer: Image, mask: np.ndarray) -> None:
    """Composite ``layer`` over ``img`` where ``mask`` (float H x W in [0, 1]) says, in place."""
    m = mask[..., None]
    img *= 1.0 - m
    img += layer * m


def _ellipse_mask(
    h: int, w: int, centre: tuple[float, float], axes: tuple[float, float], angle: float = 0.0, blur: float = 0.0
) -> np.ndarray:
    """Filled ellipse (a circle when the axes are equal) as a float mask, optionally soft-edged."""
    m = np.zeros((h, w), np.float32)
    cv2.ellipse(m, _pt(*centre), (max(1, round(axes[0])), max(1, round(axes[1]))), angle, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), blur) if blur > 0 else m


def _rect_mask(h: int, w: int, p0: tuple[float, float], p1: tuple[float, float]) -> np.ndarray:
    m = np.zeros((h, w), np.float32)
    cv2.rectangle(m, _pt(*p0), _pt(*p1), 1.0, -1)
    return m


def _blit(img: np.ndarray, tile: np.ndarray, x: float, y: float) -> None:
    """Copy ``tile`` into ``img`` with its top-left corner at (x, y), clipped to the image on every side."""
    x, y = round(x), round(y)
    th, tw = tile.shape[:2]
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + tw, w), min(y + th, h)
    if x1 > x0 and y1 > y0:
        img[y0:y1, x0:x1] = tile[y0 - y : y1 - y, x0 - x : x1 - x]


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), max(sigma, 0.1)) if sigma > 0.3 else img


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x), round(y)


def _word(rng: np.random.Generator, lo: int = 1, hi: int = 10) -> str:
    n = _i(rng, lo, hi)
    return "".join(rng.choice(list(_LETTERS), size=n, p=_LETTER_P))


def _sentence(rng: np.random.Generator, words: int) -> str:
    out = []
    for k in range(words):
        w = _word(rng)
        r = rng.random()
        if k == 0 or r < 0.06:
            w = w.capitalize()
        elif r < 0.09:
            w = str(_i(rng, 0, 9999))
        elif r < 0.11:
            w = w.upper()
        if rng.random() < 0.08:
            w += _pick(rng, [",", ".", ";", ":", "?", ")"])
        out.append(w)
    return " ".join(out)


def _text(
    img: np.ndarray,
    s: str,
    org: tuple[float, float],
    px: float,
    color,
    font: int = cv2.FONT_HERSHEY_SIMPLEX,
    thickness: int | None = None,
) -> int:
    """Draw text whose capital height is about ``px`` pixels; returns the drawn width in pixels."""
    scale = max(px, 3.0) / 22.0
    th = thickness if thickness is not None else max(1, round(px / 14))
    (tw, tth), base = cv2.getTextSize(s, font, scale, th)
    # OpenCV renders text into 8-bit images only: draw a coverage mask of the text's box, then blend.
    x, y = _pt(*org)
    pad = th + 2
    bx0, by0 = x - pad, y - tth - pad
    bx1, by1 = x + tw + pad, y + base + pad
    h, w = img.shape[:2]
    cx0, cy0, cx1, cy1 = max(bx0, 0), max(by0, 0), min(bx1, w), min(by1, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return int(tw)
    mask = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
    cv2.putText(mask, s, (x - bx0, y - by0), font, scale, 255, th, cv2.LINE_AA)
    m = mask[cy0 - by0 : cy1 - by0, cx0 - bx0 : cx1 - bx0].astype(np.float32) / 255.0
    region = img[cy0:cy1, cx0:cx1]
    col = np.asarray(color, np.float32).ravel()
    if region.ndim == 3:
        m = m[..., None]
        col = col[: region.shape[2]] if col.size >= region.shape[2] else np.full(region.shape[2], col[0], np.float32)
    else:
        col = col[:1]
    region *= 1.0 - m
    region += m * col
    return int(tw)


def _text_width(s: str, px: float, font: int, thickness: int | None = None) -> int:
    scale = max(px, 3.0) / 22.0
    th = thickness if thickness is not None else max(1, round(px / 14))
    return int(cv2.getTextSize(s, font, scale, th)[0][0])


def _fill_text_line(
    img: np.ndarray, rng: np.random.Generator, x0: float, x1: float, y: float, px: float, color, font: int
) -> None:
    """Words left to right until the line is full, as in a paragraph."""
    x = x0
    space = px * 0.6
    while True:
        w = _word(rng)
        if rng.random() < 0.08:
            w = w.capitalize()
        if rng.random() < 0.06:
            w += ","
        tw = _text_width(w, px, font)
        if x + tw > x1:
            break
        _text(img, w, (x, y), px, color, font)
        x += tw + space


def _shaded_disc(
    h: int, w: int, cx: float, cy: float, r: float, light: tuple[float, float], ry: float | None = None
) -> np.ndarray:
    """Lambert-like shading of a sphere (an ellipsoid when ``ry`` is given) lit from direction ``light``
    (unit x, y), 0 outside the outline."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = (xx - cx) / r, (yy - cy) / (ry or r)
    d2 = dx * dx + dy * dy
    inside = d2 <= 1.0
    dz = np.sqrt(np.clip(1.0 - d2, 0, 1))
    lx, ly = light
    lz = math.sqrt(max(0.0, 1.0 - lx * lx - ly * ly))
    shade = np.clip(dx * lx + dy * ly + dz * lz, 0, 1)
    return np.where(inside, 0.25 + 0.75 * shade, 0.0).astype(np.float32)


def _cylinder_shade(w: int, x0: float, x1: float, light: float) -> np.ndarray:
    """Horizontal shading profile of a vertical cylinder between x0 and x1 (1 x W)."""
    xx = np.arange(w, dtype=np.float32)
    t = np.clip((xx - x0) / max(x1 - x0, 1.0), 0, 1) * 2 - 1  # -1..1 across
    n = np.sqrt(np.clip(1 - t * t, 0, 1))
    return (0.3 + 0.7 * np.clip(n * 0.8 + t * light, 0, 1))[None, :].astype(np.float32)
