"""Synthetic images that are *not* body-part radiographs, for the model's explicit ``other`` class.

A classifier trained only on radiographs has no way to say "none of these": every decodable image lands in
some body-part class, often with high confidence (a coffee cup became a pelvis at 0.99).  Teaching an
``other`` class needs negatives, and this project ships no third-party images and downloads nothing, so the
negatives are drawn here from numpy and OpenCV primitives, reproducibly from a seed.

The aim is not realism of any one picture but *breadth*: the model must learn "not a radiograph" rather than
"not one of these thirteen cartoons", so that real photographs and documents it never saw are abstained too.
Each kind therefore randomises everything it can (layout, scale, aspect, colours, fonts, blur, noise, JPEG
quality, polarity, grayscale), and a shared finishing pass adds the nuisances of real files.  The model sees
luma only (:mod:`core.readers` converts RGB to gray), so colour matters through brightness and contrast.

Kinds (``OTHER_KINDS``): outdoor/indoor photograph-like scenes, close-up object photographs (cups, bottles,
fruit on a table, blurred backgrounds), material textures, document and text pages (paragraphs, columns,
tables, handwriting, photographed pages), screenshots and UI graphics, charts and plots, logos and flat
graphics, ultrasound sector/linear images with annotations, smooth dose-like fields (colour-mapped or
isodose lines), noise of several structures, micrograph-like textures (stained tissue, cells, fluorescence,
blood smears), astronomy-like images (stars, galaxies, nebulae, planets), CT/MR-like cross-sections and
aerial/map-like images.

Images are uint8, RGB channel order (H x W x 3) or grayscale (H x W); callers writing with OpenCV must
convert RGB to BGR.  Every random choice comes from the ``rng`` passed in, so one generator state gives one
image, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

OTHER_KINDS = (
    "photo_scene",
    "photo_object",
    "texture",
    "document",
    "screenshot",
    "chart",
    "logo",
    "ultrasound",
    "dose_field",
    "noise",
    "micrograph",
    "astronomy",
    "cross_section",
    "aerial",
    "dead_leaves",
)

# Kinds that imitate medical images other than projection radiographs.  They are the nearest to the body-part
# classes, so a model that must keep real radiographs in scope may want them reported (or weighted) apart.
MEDICAL_KINDS = ("ultrasound", "dose_field", "micrograph", "cross_section")

_UID_TAG = 0x07E4  # stream tag for ``other`` images, distinct from the phantom archive's streams

Image = np.ndarray  # float32 H x W x 3 in [0, 1] inside this module

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


# --- small helpers ------------------------------------------------------------------------------------------


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


# --- photographs -------------------------------------------------------------------------------------------


def _sky(rng: np.random.Generator, h: int, w: int) -> Image:
    style = _i(rng, 0, 3)
    t = _gradient(h, w, math.pi / 2 + _u(rng, -0.2, 0.2))
    if style == 0:  # clear blue
        top, bottom = np.array([0.15, 0.35, 0.75]), np.array([0.65, 0.8, 0.95])
    elif style == 1:  # sunset
        top, bottom = np.array([0.25, 0.2, 0.45]), np.array([1.0, 0.6, 0.25])
    elif style == 2:  # overcast
        g = _u(rng, 0.55, 0.85)
        top, bottom = np.array([g, g, g + 0.03]), np.array([g + 0.1, g + 0.1, g + 0.1])
    else:  # night / dusk
        top, bottom = np.array([0.02, 0.03, 0.1]), np.array([0.15, 0.2, 0.35])
    top = np.clip(top + rng.normal(0, 0.05, 3), 0, 1)
    bottom = np.clip(bottom + rng.normal(0, 0.05, 3), 0, 1)
    sky = _mix(top.astype(np.float32), bottom.astype(np.float32), t)
    if style != 3 and _chance(rng, 0.7):
        clouds = _fractal(rng, h, w, _u(rng, 40, 160), 5)
        cover = np.clip((clouds - _u(rng, 0.45, 0.7)) * 4, 0, 1)
        _paste(sky, _canvas(h, w, _u(rng, 0.8, 1.0)), cover * _u(rng, 0.5, 1.0))
    if _chance(rng, 0.3):
        cx, cy, r = _u(rng, 0, w), _u(rng, 0, h * 0.5), _u(rng, 0.02, 0.08) * min(h, w)
        glow = _ellipse_mask(h, w, (cx, cy), (r, r), blur=r * 0.6)
        _paste(sky, _canvas(h, w, np.array([1.0, 0.97, 0.85], np.float32)), np.clip(glow * 1.5, 0, 1))
    return sky


def _ground_texture(rng: np.random.Generator, h: int, w: int) -> Image:
    base = _pick(
        rng,
        [
            np.array([0.25, 0.45, 0.15]),  # grass
            np.array([0.55, 0.45, 0.3]),  # soil
            np.array([0.8, 0.72, 0.5]),  # sand
            np.array([0.45, 0.45, 0.47]),  # asphalt
            np.array([0.1, 0.3, 0.45]),  # water
            np.array([0.9, 0.92, 0.95]),  # snow
        ],
    ).astype(np.float32)
    base = np.clip(base + rng.normal(0, 0.06, 3), 0, 1).astype(np.float32)
    tex = _fractal(rng, h, w, _u(rng, 8, 60), 4)
    fine = rng.standard_normal((h, w)).astype(np.float32) * _u(rng, 0.0, 0.08)
    return np.clip(base[None, None, :] * (0.7 + 0.6 * tex[..., None]) + fine[..., None], 0, 1)


def _tree(img: Image, rng: np.random.Generator, x: float, y: float, size: float) -> None:
    h, w = img.shape[:2]
    trunk = np.array([0.3, 0.2, 0.1], np.float32) * _u(rng, 0.6, 1.2)
    cv2.rectangle(img, _pt(x - size * 0.06, y - size * 0.5), _pt(x + size * 0.06, y), _c(trunk), -1)
    leaf = np.clip(np.array([0.15, 0.4, 0.12]) + rng.normal(0, 0.07, 3), 0, 1).astype(np.float32)
    if _chance(rng, 0.5):  # conifer
        pts = np.array(
            [_pt(x, y - size * 1.4), _pt(x - size * 0.4, y - size * 0.3), _pt(x + size * 0.4, y - size * 0.3)]
        )
        cv2.fillPoly(img, [pts], _c(leaf * 0.8))
    else:
        for _ in range(_i(rng, 3, 7)):
            cx = x + _u(rng, -0.35, 0.35) * size
            cy = y - size * _u(rng, 0.55, 1.1)
            cv2.circle(img, _pt(cx, cy), max(1, round(size * _u(rng, 0.2, 0.4))), _c(leaf * _u(rng, 0.7, 1.2)), -1)


def _house(img: Image, rng: np.random.Generator, x: float, y: float, size: float) -> None:
    wall = _hsv_color(rng, (0.0, 0.5), (0.5, 1.0))
    roof = _hsv_color(rng, (0.3, 0.9), (0.2, 0.6))
    bw, bh = size * _u(rng, 0.8, 1.6), size * _u(rng, 0.6, 1.0)
    cv2.rectangle(img, _pt(x - bw / 2, y - bh), _pt(x + bw / 2, y), _c(wall), -1)
    pts = np.array([_pt(x - bw * 0.6, y - bh), _pt(x + bw * 0.6, y - bh), _pt(x, y - bh - size * _u(rng, 0.3, 0.7))])
    cv2.fillPoly(img, [pts], _c(roof))
    win = _color(rng, 0.1, 0.9)
    for k in range(_i(rng, 1, 4)):
        wx = x - bw / 2 + bw * (k + 0.5) / 4 + _u(rng, -2, 2)
        cv2.rectangle(img, _pt(wx - size * 0.08, y - bh * 0.7), _pt(wx + size * 0.08, y - bh * 0.4), _c(win), -1)
    cv2.rectangle(img, _pt(x - size * 0.1, y - bh * 0.45), _pt(x + size * 0.1, y), _c(roof * 0.7), -1)


def _person(img: Image, rng: np.random.Generator, x: float, y: float, size: float) -> None:
    skin = np.array([0.85, 0.65, 0.5], np.float32) * _u(rng, 0.45, 1.1)
    cloth = _hsv_color(rng)
    cv2.ellipse(
        img, _pt(x, y - size * 0.45), (max(1, round(size * 0.16)), max(1, round(size * 0.4))), 0, 0, 360, _c(cloth), -1
    )
    cv2.line(
        img, _pt(x - size * 0.06, y - size * 0.1), _pt(x - size * 0.08, y), _c(cloth * 0.5), max(1, round(size * 0.07))
    )
    cv2.line(
        img, _pt(x + size * 0.06, y - size * 0.1), _pt(x + size * 0.08, y), _c(cloth * 0.5), max(1, round(size * 0.07))
    )
    cv2.circle(img, _pt(x, y - size * 0.95), max(1, round(size * 0.12)), _c(np.clip(skin, 0, 1)), -1)


def _car(img: Image, rng: np.random.Generator, x: float, y: float, size: float) -> None:
    body = _hsv_color(rng)
    cv2.rectangle(img, _pt(x - size, y - size * 0.45), _pt(x + size, y - size * 0.12), _c(body), -1)
    cv2.rectangle(img, _pt(x - size * 0.55, y - size * 0.8), _pt(x + size * 0.45, y - size * 0.45), _c(body * 0.85), -1)
    cv2.rectangle(
        img, _pt(x - size * 0.48, y - size * 0.74), _pt(x + size * 0.38, y - size * 0.5), (0.2, 0.25, 0.3), -1
    )
    for wx in (x - size * 0.6, x + size * 0.6):
        cv2.circle(img, _pt(wx, y - size * 0.12), max(1, round(size * 0.2)), (0.05, 0.05, 0.05), -1)
        cv2.circle(img, _pt(wx, y - size * 0.12), max(1, round(size * 0.09)), (0.6, 0.6, 0.6), -1)


def _outdoor(rng: np.random.Generator, h: int, w: int) -> Image:
    img = _sky(rng, h, w)
    horizon = _u(rng, 0.3, 0.75) * h
    # Far mountains / hills, hazier the farther.
    for layer in range(_i(rng, 0, 3)):
        n = _i(rng, 3, 9)
        xs = np.linspace(-0.1 * w, 1.1 * w, n)
        ys = horizon - rng.uniform(0.05, 0.35, n) * h / (layer + 1)
        pts = np.array([_pt(xx, yy) for xx, yy in zip(xs, ys, strict=True)] + [_pt(1.1 * w, h), _pt(-0.1 * w, h)])
        haze = 0.6 - 0.2 * layer
        col = _mix(
            _hsv_color(rng, (0.2, 0.6), (0.2, 0.6))[None, None, :],
            img[int(max(0, horizon - 1)), w // 2][None, None, :],
            np.full((1, 1), haze, np.float32),
        )[0, 0]
        cv2.fillPoly(img, [pts], _c(col))
    ground = _ground_texture(rng, h, w)
    edge = horizon + _smooth(rng, 1, w, _u(rng, 20, 120))[0] * _u(rng, 0, 0.05) * h
    yy = np.arange(h, dtype=np.float32)[:, None]
    gmask = np.clip((yy - edge[None, :]) / 2.0, 0, 1)
    # Perspective: ground darker/blurrier far away.
    _paste(img, ground, gmask)
    if _chance(rng, 0.4):  # a road or path toward the vanishing point
        vx = _u(rng, 0.2, 0.8) * w
        col = _color(rng, 0.3, 0.6)
        pts = np.array(
            [
                _pt(vx - 2, horizon),
                _pt(vx + 2, horizon),
                _pt(vx + _u(rng, 0.2, 0.6) * w, h),
                _pt(vx - _u(rng, 0.2, 0.6) * w, h),
            ]
        )
        cv2.fillPoly(img, [pts], _c(col))
    background = _blur(img, _u(rng, 0, 3.0)) if _chance(rng, 0.5) else img
    img = np.ascontiguousarray(background)
    # Objects, larger nearer the bottom.
    drawers = [_tree, _tree, _house, _person, _car]
    for _ in range(_i(rng, 0, 12)):
        y = _u(rng, horizon, h * 1.05)
        depth = (y - horizon) / max(h - horizon, 1.0)
        size = (0.05 + 0.45 * depth) * min(h, w) * _u(rng, 0.6, 1.4)
        _pick(rng, drawers)(img, rng, _u(rng, -0.05, 1.05) * w, y, size)
    return img


def _indoor(rng: np.random.Generator, h: int, w: int) -> Image:
    wall = _hsv_color(rng, (0.0, 0.4), (0.4, 0.95))
    floor_y = _u(rng, 0.55, 0.85) * h
    img = _canvas(h, w, wall)
    light = _gradient(h, w, _u(rng, 0, 2 * math.pi))
    img *= (0.6 + 0.5 * light)[..., None]
    floor = _ground_texture(rng, h, w) if _chance(rng, 0.5) else _wood(rng, h, w)
    yy = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    _paste(img, floor, (yy > floor_y).astype(np.float32))
    if _chance(rng, 0.6):  # a window: the brightest thing in the room
        x0, y0 = _u(rng, 0, 0.6) * w, _u(rng, 0.05, 0.3) * h
        x1, y1 = x0 + _u(rng, 0.15, 0.4) * w, y0 + _u(rng, 0.2, 0.4) * h
        win = _sky(rng, h, w)
        m = np.zeros((h, w), np.float32)
        cv2.rectangle(m, _pt(x0, y0), _pt(x1, y1), 1.0, -1)
        _paste(img, np.clip(win * 1.3, 0, 1), m)
        frame = _color(rng, 0.7, 1.0)
        cv2.rectangle(img, _pt(x0, y0), _pt(x1, y1), _c(frame), max(2, round(w / 80)))
        cv2.line(img, _pt((x0 + x1) / 2, y0), _pt((x0 + x1) / 2, y1), _c(frame), max(2, round(w / 100)))
    for _ in range(_i(rng, 1, 5)):  # furniture boxes
        x0 = _u(rng, -0.1, 0.9) * w
        bw, bh = _u(rng, 0.1, 0.5) * w, _u(rng, 0.1, 0.5) * h
        y1 = floor_y + _u(rng, 0, 0.1) * h
        col = _hsv_color(rng, (0.0, 0.7), (0.15, 0.8))
        cv2.rectangle(img, _pt(x0, y1 - bh), _pt(x0 + bw, y1), _c(col), -1)
        cv2.rectangle(img, _pt(x0, y1 - bh), _pt(x0 + bw, y1 - bh + bh * 0.15), _c(np.clip(col * 1.25, 0, 1)), -1)
    if _chance(rng, 0.5):
        _person(img, rng, _u(rng, 0.2, 0.8) * w, floor_y + _u(rng, 0, 0.1) * h, _u(rng, 0.3, 0.7) * h)
    return img


def _portrait(rng: np.random.Generator, h: int, w: int) -> Image:
    """Head-and-shoulders photograph: the commonest subject of real photos, and face-shaped unlike a skull film."""
    img = _pick(rng, [_bokeh, _indoor, _outdoor])(rng, h, w)
    img = np.ascontiguousarray(_blur(img, _u(rng, 0, 5)))
    s = min(h, w) * _u(rng, 0.25, 0.5)
    cx, cy = w * _u(rng, 0.3, 0.7), h * _u(rng, 0.3, 0.55)
    light = (_u(rng, -0.6, 0.6), _u(rng, -0.6, 0.1))
    skin = np.clip(np.array([0.9, 0.7, 0.58]) * _u(rng, 0.35, 1.1) + rng.normal(0, 0.03, 3), 0, 1).astype(np.float32)
    hairs = [(0.1, 0.07, 0.05), (0.45, 0.3, 0.15), (0.8, 0.7, 0.4), (0.6, 0.6, 0.6)]
    hair = np.clip(np.array(_pick(rng, hairs), np.float32) * _u(rng, 0.7, 1.2), 0, 1)
    cloth = _hsv_color(rng, (0, 1), (0.1, 0.9))
    # Shoulders and neck, then hair behind the face, then the face.
    body = _shaded_disc(h, w, cx, cy + s * 1.9, s * 1.3, light, ry=s * 0.9)
    _paste(img, cloth[None, None, :] * body[..., None], (body > 0).astype(np.float32))
    cv2.rectangle(img, _pt(cx - s * 0.22, cy + s * 0.4), _pt(cx + s * 0.22, cy + s * 1.1), _c(skin * 0.8), -1)
    if _chance(rng, 0.85):
        axes = (max(1, round(s * 0.58)), max(1, round(s * _u(rng, 0.6, 0.9))))
        cv2.ellipse(img, _pt(cx, cy - s * 0.12), axes, 0, 0, 360, _c(hair), -1)
    face = _shaded_disc(h, w, cx, cy, s * 0.45, light, ry=s * 0.6)
    _paste(img, skin[None, None, :] * face[..., None], (face > 0).astype(np.float32))
    for side in (-1, 1):
        ex, ey = cx + side * s * 0.18, cy - s * 0.05
        eye = (max(1, round(s * 0.08)), max(1, round(s * 0.04)))
        cv2.ellipse(img, _pt(ex, ey), eye, 0, 0, 360, (0.95, 0.95, 0.95), -1)
        cv2.circle(img, _pt(ex, ey), max(1, round(s * 0.035)), _c(_color(rng, 0.05, 0.4)), -1)
        brow = max(1, round(s * 0.025))
        cv2.line(img, _pt(ex - s * 0.09, ey - s * 0.09), _pt(ex + s * 0.09, ey - s * 0.1), _c(hair), brow)
    cv2.line(img, _pt(cx, cy), _pt(cx + light[0] * s * 0.05, cy + s * 0.17), _c(skin * 0.7), max(1, round(s * 0.02)))
    mouth = (max(1, round(s * 0.14)), max(1, round(s * _u(rng, 0.02, 0.07))))
    cv2.ellipse(img, _pt(cx, cy + s * 0.32), mouth, 0, 0, 180 if _chance(rng, 0.6) else 360, (0.6, 0.25, 0.25), -1)
    return img


def _photo_scene(rng: np.random.Generator, h: int, w: int) -> Image:
    r = rng.random()
    img = _outdoor(rng, h, w) if r < 0.5 else _indoor(rng, h, w) if r < 0.75 else _portrait(rng, h, w)
    # Surface detail: real scenes are never flat-shaded.
    detail = _fractal(rng, h, w, _u(rng, 2, 12), 3)
    return np.clip(img * (1 + _u(rng, 0.05, 0.35) * (detail[..., None] - 0.5)), 0, 1)


def _bokeh(rng: np.random.Generator, h: int, w: int) -> Image:
    img = _mix(
        _hsv_color(rng, (0, 0.8), (0.05, 0.9)), _hsv_color(rng, (0, 0.8), (0.05, 0.9)), _gradient(h, w, _u(rng, 0, 6.3))
    )
    for _ in range(_i(rng, 0, 40)):
        col = _hsv_color(rng, (0, 0.8), (0.4, 1.0))
        r = _u(rng, 0.02, 0.12) * min(h, w)
        cv2.circle(img, _pt(_u(rng, 0, w), _u(rng, 0, h)), max(1, round(r)), _c(col * _u(rng, 0.4, 1.0)), -1)
    return _blur(img, _u(rng, 4, 14))


def _wood(rng: np.random.Generator, h: int, w: int) -> Image:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    warp = _fractal(rng, h, w, _u(rng, 30, 120), 3) * _u(rng, 5, 25)
    freq = _u(rng, 0.05, 0.3)
    a = _u(rng, 0, math.pi)
    t = (xx * math.cos(a) + yy * math.sin(a)) * freq + warp
    grain = 0.5 + 0.5 * np.sin(t)
    base = np.clip(np.array([0.55, 0.35, 0.18]) * _u(rng, 0.5, 1.4) + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32)
    return np.clip(base * (0.65 + 0.45 * grain[..., None]), 0, 1)


def _photo_object(rng: np.random.Generator, h: int, w: int) -> Image:
    img = _bokeh(rng, h, w) if _chance(rng, 0.6) else _indoor(rng, h, w)
    img = _blur(img, _u(rng, 1, 6))
    table_y = _u(rng, 0.5, 0.9) * h
    if _chance(rng, 0.75):
        top = _wood(rng, h, w) if _chance(rng, 0.5) else _canvas(h, w, _hsv_color(rng, (0, 0.5), (0.2, 1.0)))
        yy = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
        _paste(img, top * (0.7 + 0.3 * _gradient(h, w, math.pi / 2)[..., None]), (yy > table_y).astype(np.float32))
    img = np.ascontiguousarray(img)
    lx, ly = _u(rng, -0.7, 0.7), _u(rng, -0.7, 0.1)
    n = _i(rng, 1, 4)
    for k in range(n):
        size = min(h, w) * _u(rng, 0.15, 0.55) / math.sqrt(n)
        cx = w * (k + 0.5) / n + _u(rng, -0.1, 0.1) * w
        base_y = table_y + _u(rng, -0.02, 0.08) * h
        col = _hsv_color(rng, (0, 1), (0.3, 1))
        # Contact shadow.
        sh = _ellipse_mask(h, w, (cx - lx * size * 0.4, base_y), (size * 0.7, size * 0.15), blur=size * 0.12)
        img *= (1 - 0.5 * sh)[..., None]
        kind = _i(rng, 0, 4)
        if kind == 0:  # cup / mug
            cw, ch = size * 0.5, size * _u(rng, 0.6, 1.0)
            x0, x1 = cx - cw, cx + cw
            m = _rect_mask(h, w, (x0, base_y - ch), (x1, base_y))
            cv2.ellipse(m, _pt(cx, base_y), (max(1, round(cw)), max(1, round(cw * 0.25))), 0, 0, 180, 1.0, -1)
            _paste(img, col[None, None, :] * _cylinder_shade(w, x0, x1, lx)[..., None], m)
            cv2.ellipse(
                img,
                _pt(cx + cw * 1.05, base_y - ch * 0.5),
                (max(1, round(cw * 0.35)), max(1, round(ch * 0.3))),
                0,
                -90,
                90,
                _c(col * 0.7),
                max(2, round(cw * 0.14)),
            )
            cv2.ellipse(
                img, _pt(cx, base_y - ch), (max(1, round(cw)), max(1, round(cw * 0.25))), 0, 0, 360, _c(col * 0.9), -1
            )
            cv2.ellipse(
                img,
                _pt(cx, base_y - ch),
                (max(1, round(cw * 0.88)), max(1, round(cw * 0.2))),
                0,
                0,
                360,
                _c(_pick(rng, [np.array([0.25, 0.13, 0.05]), col * 0.4, np.array([0.9, 0.85, 0.7])])),
                -1,
            )
        elif kind == 1:  # bottle
            bw, bh = size * 0.3, size * _u(rng, 1.2, 2.0)
            x0, x1 = cx - bw, cx + bw
            m = _rect_mask(h, w, (x0, base_y - bh * 0.65), (x1, base_y))
            pts = np.array(
                [
                    _pt(x0, base_y - bh * 0.65),
                    _pt(x1, base_y - bh * 0.65),
                    _pt(cx + bw * 0.35, base_y - bh * 0.85),
                    _pt(cx + bw * 0.35, base_y - bh),
                    _pt(cx - bw * 0.35, base_y - bh),
                    _pt(cx - bw * 0.35, base_y - bh * 0.85),
                ]
            )
            cv2.fillPoly(m, [pts], 1.0)
            _paste(img, col[None, None, :] * _cylinder_shade(w, x0, x1, lx)[..., None], m * _u(rng, 0.6, 1.0))
            if _chance(rng, 0.7):  # label
                lab = _color(rng, 0.6, 1.0)
                cv2.rectangle(img, _pt(x0, base_y - bh * 0.5), _pt(x1, base_y - bh * 0.2), _c(lab), -1)
                _text(img, _word(rng, 3, 6).upper(), (x0 + 2, base_y - bh * 0.3), bh * 0.08, _c(col * 0.5))
        elif kind == 2:  # fruit / ball
            r = size * 0.45
            shade = _shaded_disc(h, w, cx, base_y - r, r, (lx, ly))
            _paste(img, col[None, None, :] * shade[..., None] + 0.0, (shade > 0).astype(np.float32))
            hl = _ellipse_mask(h, w, (cx + lx * r * 0.5, base_y - r + ly * r * 0.5), (r * 0.15, r * 0.15), blur=r * 0.1)
            _paste(img, _canvas(h, w, 1.0), hl * 0.7 * (shade > 0))
        elif kind == 3:  # bowl / plate
            r = size * 0.7
            cv2.ellipse(
                img,
                _pt(cx, base_y - r * 0.1),
                (max(1, round(r)), max(1, round(r * 0.3))),
                0,
                0,
                360,
                _c(col * 0.85),
                -1,
            )
            cv2.ellipse(
                img,
                _pt(cx, base_y - r * 0.15),
                (max(1, round(r * 0.85)), max(1, round(r * 0.22))),
                0,
                0,
                360,
                _c(np.clip(col * 1.15, 0, 1)),
                -1,
            )
        else:  # book / box
            bw, bh = size * _u(rng, 0.6, 1.2), size * _u(rng, 0.15, 0.9)
            cv2.rectangle(img, _pt(cx - bw / 2, base_y - bh), _pt(cx + bw / 2, base_y), _c(col), -1)
            d = bw * 0.2
            top = np.array(
                [
                    _pt(cx - bw / 2, base_y - bh),
                    _pt(cx - bw / 2 + d, base_y - bh - d * 0.6),
                    _pt(cx + bw / 2 + d, base_y - bh - d * 0.6),
                    _pt(cx + bw / 2, base_y - bh),
                ]
            )
            cv2.fillPoly(img, [top], _c(np.clip(col * 1.25, 0, 1)))
            if _chance(rng, 0.6):
                _text(img, _word(rng, 3, 8).upper(), (cx - bw * 0.4, base_y - bh * 0.4), bh * 0.2, _c(1 - col))
    detail = _fractal(rng, h, w, _u(rng, 2, 12), 3)
    return np.clip(img * (1 + _u(rng, 0.05, 0.3) * (detail[..., None] - 0.5)), 0, 1)


# --- textures ----------------------------------------------------------------------------------------------


def _texture(rng: np.random.Generator, h: int, w: int) -> Image:
    kind = _i(rng, 0, 7)
    c1, c2 = _hsv_color(rng, (0, 0.9), (0.1, 0.9)), _hsv_color(rng, (0, 0.9), (0.1, 1.0))
    if kind == 0:
        return _wood(rng, h, w)
    if kind == 1:  # marble: turbulent veins
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        turb = _fractal(rng, h, w, _u(rng, 20, 100), 5) * _u(rng, 5, 20)
        v = np.abs(np.sin(xx * _u(rng, 0.01, 0.06) + yy * _u(rng, 0.0, 0.04) + turb)) ** _u(rng, 0.2, 2)
        return _mix(c1, c2, v.astype(np.float32))
    if kind == 2:  # bricks / tiles
        img = _canvas(h, w, c2 * 0.6)
        bh = _i(rng, 8, max(9, h // 6))
        bw = bh * _u(rng, 1.0, 3.0)
        mortar = max(1, round(bh * _u(rng, 0.05, 0.2)))
        for r, y in enumerate(range(0, h + bh, bh)):
            off = (bw / 2) * (r % 2) if _chance(rng, 0.8) else 0
            x = -off
            while x < w:
                col = np.clip(c1 * _u(rng, 0.75, 1.2), 0, 1)
                cv2.rectangle(img, _pt(x + mortar, y + mortar), _pt(x + bw - mortar, y + bh - mortar), _c(col), -1)
                x += bw
        return np.clip(img * (0.8 + 0.3 * _fractal(rng, h, w, 8, 3)[..., None]), 0, 1)
    if kind == 3:  # woven fabric
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        p = _u(rng, 3, 16)
        a = np.sin(xx * 2 * math.pi / p) * np.sin(yy * 2 * math.pi / p)
        return _mix(c1, c2, (0.5 + 0.5 * a).astype(np.float32))
    if kind == 4:  # grass / hair / fibres: many short strokes
        img = _canvas(h, w, c1 * 0.5)
        n = int(h * w / _u(rng, 20, 120))
        ang0 = _u(rng, 0, math.pi)
        for _ in range(min(n, 6000)):
            x, y = _u(rng, 0, w), _u(rng, 0, h)
            ln = _u(rng, 3, 0.08 * min(h, w) + 4)
            a = ang0 + _u(rng, -0.5, 0.5)
            cv2.line(
                img,
                _pt(x, y),
                _pt(x + ln * math.cos(a), y + ln * math.sin(a)),
                _c(_mix(c1, c2, np.full((1, 1), _u(rng, 0, 1), np.float32))[0, 0]),
                1,
                cv2.LINE_AA,
            )
        return img
    if kind == 5:  # gravel / pebbles
        img = _canvas(h, w, c2 * 0.4)
        for _ in range(_i(rng, 40, 600)):
            r = _u(rng, 0.01, 0.06) * min(h, w)
            col = np.clip(c1 * _u(rng, 0.5, 1.3), 0, 1)
            cv2.ellipse(
                img,
                _pt(_u(rng, 0, w), _u(rng, 0, h)),
                (max(1, round(r)), max(1, round(r * _u(rng, 0.5, 1)))),
                _u(rng, 0, 180),
                0,
                360,
                _c(col),
                -1,
            )
        return _blur(img, _u(rng, 0, 1.5))
    if kind == 6:  # leather / stucco: thresholded fractal cells
        f = _fractal(rng, h, w, _u(rng, 3, 20), 3)
        return _mix(c1, c2, np.clip((f - 0.5) * _u(rng, 2, 8) + 0.5, 0, 1).astype(np.float32))
    # metal: brushed streaks
    streak = cv2.resize(rng.standard_normal((1, w)).astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
    streak = _blur(streak, 1.0) * _u(rng, 0.1, 0.3)
    g = _gradient(h, w, _u(rng, 0, 6.3))
    gray = np.clip(0.5 + 0.3 * g + streak, 0, 1)
    if _chance(rng, 0.5):
        gray = gray.T if h == w else cv2.resize(gray.T, (w, h))
    return np.repeat(gray[..., None], 3, axis=2) * np.clip(c1 + 0.5, 0, 1)


# --- documents, screenshots, charts, logos ---------------------------------------------------------------------


def _table(img: Image, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float, ink, font: int) -> None:
    rows, cols = _i(rng, 2, 12), _i(rng, 2, 7)
    rh, cw = (y1 - y0) / rows, (x1 - x0) / cols
    th = max(1, round(rh / 25))
    if _chance(rng, 0.4):  # shaded header row
        cv2.rectangle(img, _pt(x0, y0), _pt(x1, y0 + rh), _c(np.clip(_hsv_color(rng, (0, 0.4), (0.6, 0.95)), 0, 1)), -1)
    for r in range(rows + 1):
        if r in (0, 1, rows) or _chance(rng, 0.7):
            cv2.line(img, _pt(x0, y0 + r * rh), _pt(x1, y0 + r * rh), ink, th)
    if _chance(rng, 0.6):
        for c in range(cols + 1):
            cv2.line(img, _pt(x0 + c * cw, y0), _pt(x0 + c * cw, y1), ink, th)
    px = min(rh * 0.45, cw / 5)
    for r in range(rows):
        for c in range(cols):
            s = _word(rng, 2, 7) if r == 0 or c == 0 else f"{_u(rng, 0, 999):.{_i(rng, 0, 2)}f}"
            s = s[: max(1, int(cw / max(px * 0.8, 1)))]
            _text(img, s, (x0 + c * cw + px * 0.3, y0 + (r + 0.7) * rh), px, ink, font)


def _handwriting(img: Image, rng: np.random.Generator, x0: float, y: float, x1: float, px: float, ink) -> None:
    x = x0
    th = max(1, round(px / 8))
    while x < x1 - px:
        n = _i(rng, 3, 12)
        pts = []
        for k in range(n * 3):
            pts.append(_pt(x + k * px * 0.3, y - _u(rng, 0, px) + px * 0.2 * math.sin(k)))
        cv2.polylines(img, [np.array(pts)], False, ink, th, cv2.LINE_AA)
        x += n * px * 0.9 + px * 0.6


def _page(rng: np.random.Generator, h: int, w: int) -> Image:
    paper = np.clip(np.array([_u(rng, 0.85, 1.0)] * 3) + rng.normal(0, 0.02, 3), 0, 1).astype(np.float32)
    if _chance(rng, 0.15):
        paper = _hsv_color(rng, (0.05, 0.3), (0.8, 1.0))
    img = _canvas(h, w, paper)
    ink_v = _u(rng, 0.0, 0.3)
    ink = _c(np.array([ink_v, ink_v, ink_v + (0.35 if _chance(rng, 0.15) else 0.0)]))
    font = _pick(rng, _BODY_FONTS)
    margin = _u(rng, 0.04, 0.12) * w
    px = _u(rng, 0.012, 0.04) * h  # capital height
    lead = px * _u(rng, 1.6, 2.4)
    y = margin + px * 2
    if _chance(rng, 0.7):  # title
        tp = px * _u(rng, 1.5, 3.0)
        title = _sentence(rng, _i(rng, 1, 6))
        if _chance(rng, 0.4):
            title = title.upper()
        tx = margin if _chance(rng, 0.6) else max(margin, (w - _text_width(title, tp, font)) / 2)
        _text(img, title, (tx, y + tp * 0.5), tp, ink, font, max(1, round(tp / 9)))
        y += tp * 2.2
    ncols = _pick(rng, [1, 1, 1, 2, 2, 3])
    gutter = w * 0.04
    colw = (w - 2 * margin - (ncols - 1) * gutter) / ncols
    start_y = y
    for c in range(ncols):
        x0 = margin + c * (colw + gutter)
        y = start_y
        while y < h - margin:
            r = rng.random()
            if r < 0.06 and y + 0.25 * h < h - margin:  # table
                t_h = _u(rng, 0.1, 0.3) * h
                _table(img, rng, x0, y, x0 + colw, y + t_h, ink, font)
                y += t_h + lead
            elif r < 0.1 and y + 0.2 * h < h - margin:  # figure box
                f_h = _u(rng, 0.08, 0.25) * h
                fig = _hsv_color(rng, (0, 0.6), (0.3, 0.9))
                cv2.rectangle(
                    img, _pt(x0, y), _pt(x0 + colw * _u(rng, 0.5, 1), y + f_h), _c(fig), -1 if _chance(rng, 0.5) else 2
                )
                y += f_h + lead
            elif r < 0.16:  # heading
                _text(img, _sentence(rng, _i(rng, 1, 4)), (x0, y), px * 1.3, ink, font, max(1, round(px / 7)))
                y += lead * 1.4
            elif r < 0.2:  # bullet list item
                cv2.circle(img, _pt(x0 + px * 0.5, y - px * 0.4), max(1, round(px * 0.25)), ink, -1)
                _fill_text_line(img, rng, x0 + px * 1.5, x0 + colw * _u(rng, 0.5, 1.0), y, px, ink, font)
                y += lead
            elif r < 0.23:  # handwritten note
                _handwriting(
                    img, rng, x0, y, x0 + colw * _u(rng, 0.4, 1.0), px * 1.3, _c(_hsv_color(rng, (0.5, 1), (0.2, 0.6)))
                )
                y += lead * 1.3
            else:  # paragraph
                for _ in range(_i(rng, 2, 10)):
                    if y >= h - margin:
                        break
                    end = x0 + colw * (_u(rng, 0.3, 0.9) if _chance(rng, 0.15) else 1.0)
                    _fill_text_line(img, rng, x0 + (px * 2 if _chance(rng, 0.1) else 0), end, y, px, ink, font)
                    y += lead
                y += lead * _u(rng, 0.3, 1.0)
    if _chance(rng, 0.5):
        _text(img, str(_i(rng, 1, 300)), (w / 2, h - margin / 2), px * 0.8, ink, font)
    if _chance(rng, 0.1):  # stamp
        col = _c(_hsv_color(rng, (0.6, 1), (0.5, 0.9)))
        cx, cy, r = _u(rng, 0.5, 0.9) * w, _u(rng, 0.5, 0.9) * h, _u(rng, 0.05, 0.12) * min(h, w)
        cv2.circle(img, _pt(cx, cy), max(2, round(r)), col, max(1, round(r / 10)))
        _text(img, _word(rng, 4, 7).upper(), (cx - r * 0.8, cy + r * 0.15), r * 0.3, col)
    return img


def _slide(rng: np.random.Generator, h: int, w: int) -> Image:
    """A presentation slide: title, bullets, perhaps a picture or a chart."""
    bg = _hsv_color(rng, (0, 0.7), (0.05, 1.0))
    img = _mix(bg, np.clip(bg * _u(rng, 0.6, 1.4), 0, 1), _gradient(h, w, _u(rng, 0, 6.3)))
    fg = _c(np.zeros(3) + (0.05 if float(bg.mean()) > 0.5 else 0.95))
    font = _pick(rng, _BODY_FONTS)
    px = h * _u(rng, 0.04, 0.07)
    if _chance(rng, 0.5):  # title band
        cv2.rectangle(img, _pt(0, 0), _pt(w, px * 2.6), _c(_hsv_color(rng)), -1)
    _text(img, _sentence(rng, _i(rng, 2, 5)), (w * 0.05, px * 1.8), px, fg, font, max(1, round(px / 8)))
    split = w * (_u(rng, 0.5, 0.65) if _chance(rng, 0.6) else 0.95)
    y = px * 4.5
    bp = px * _u(rng, 0.5, 0.8)
    while y < h * 0.92:
        cv2.circle(img, _pt(w * 0.07, y - bp * 0.4), max(1, round(bp * 0.25)), fg, -1)
        _fill_text_line(img, rng, w * 0.1, split * _u(rng, 0.6, 1.0), y, bp, fg, font)
        y += bp * _u(rng, 2.0, 3.5)
    if split < w * 0.9:
        if _chance(rng, 0.5):
            pic = _photo_scene(rng, max(16, int(h * 0.5)), max(16, int(w - split - w * 0.05)))
            _blit(img, pic, split, h * 0.3)
        else:
            _chart_into(img, rng, split, h * 0.25, w * 0.97, h * 0.9, fg, font)
    return img


def _receipt(rng: np.random.Generator, h: int, w: int) -> Image:
    """Till receipt or form: a narrow strip of monospaced lines, items left and amounts right."""
    img = _texture(rng, h, w) if _chance(rng, 0.5) else _canvas(h, w, _color(rng, 0.0, 0.5))
    pw = w * _u(rng, 0.35, 0.7)
    x0 = (w - pw) / 2
    paper = _c(np.full(3, _u(rng, 0.85, 1.0)))
    cv2.rectangle(img, _pt(x0, -5), _pt(x0 + pw, h + 5), paper, -1)
    font = cv2.FONT_HERSHEY_PLAIN if _chance(rng, 0.6) else cv2.FONT_HERSHEY_SIMPLEX
    ink = _c(np.full(3, _u(rng, 0.0, 0.35)))
    px = pw * _u(rng, 0.025, 0.05)
    y = px * 3
    _text(img, _word(rng, 4, 10).upper(), (x0 + pw * 0.2, y), px * 1.5, ink, font)
    y += px * 3
    while y < h - px * 2:
        if _chance(rng, 0.1):
            cv2.line(img, _pt(x0 + px, y - px / 2), _pt(x0 + pw - px, y - px / 2), ink, 1)
        else:
            _text(img, f"{_word(rng, 3, 9)} {_word(rng, 0, 6)}".upper(), (x0 + px, y), px, ink, font)
            amount = f"{_u(rng, 0.5, 300):.2f}"
            _text(img, amount, (x0 + pw - px - _text_width(amount, px, font), y), px, ink, font)
        y += px * _u(rng, 1.6, 2.2)
    return img


def _code_listing(rng: np.random.Generator, h: int, w: int) -> Image:
    """Source code or a terminal: monospaced, indented, syntax-coloured lines, often on a dark background."""
    dark = _chance(rng, 0.6)
    img = _canvas(h, w, _color(rng, 0.0, 0.18) if dark else _color(rng, 0.92, 1.0))
    palette = [_hsv_color(rng, (0.3, 0.9), (0.6, 1.0) if dark else (0.3, 0.6)) for _ in range(4)]
    base = np.full(3, 0.85 if dark else 0.1, np.float32)
    px = h * _u(rng, 0.012, 0.03)
    font = cv2.FONT_HERSHEY_PLAIN
    y, indent = px * 2, 0
    gutter = px * 4 if _chance(rng, 0.6) else px
    n = 1
    while y < h - px:
        if gutter > px:
            _text(img, str(n), (px * 0.5, y), px, _c(base * 0.5 + 0.2), font)
        indent = max(0, min(6, indent + _i(rng, -1, 1)))
        x = gutter + indent * px * 2
        for _ in range(_i(rng, 0, 6)):
            tok = _word(rng, 1, 9) + _pick(rng, ["", "(", ")", ":", " =", ".", ","])
            x += _text(img, tok, (x, y), px, _c(_pick(rng, [base, *palette])), font) + px * 0.7
            if x > w:
                break
        y += px * 1.7
        n += 1
    return img


def _document(rng: np.random.Generator, h: int, w: int) -> Image:
    mode = rng.random()
    if mode < 0.1:
        return _slide(rng, h, w)
    if mode < 0.17:
        return _receipt(rng, h, w)
    if mode < 0.25:
        return _code_listing(rng, h, w)
    if mode < 0.65:  # clean render or scan
        page = _page(rng, h, w)
        if _chance(rng, 0.4):  # scanned: slight skew, uneven illumination, speckle
            m = cv2.getRotationMatrix2D((w / 2, h / 2), _u(rng, -3, 3), 1.0)
            page = cv2.warpAffine(page, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
            page *= (0.85 + 0.15 * _fractal(rng, h, w, 100, 2))[..., None]
        return page
    # Photographed page on a surface: perspective, shading.
    ph, pw = int(h * _u(rng, 1.0, 1.5)), int(w * _u(rng, 0.8, 1.2))
    page = _page(rng, ph, pw)
    bg = _wood(rng, h, w) if _chance(rng, 0.5) else _texture(rng, h, w)
    src = np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]])
    cx, cy = w / 2, h / 2
    s = _u(rng, 0.35, 0.5)
    dst = np.float32(
        [
            [cx + dx * w * s + _u(rng, -0.08, 0.08) * w, cy + dy * h * s + _u(rng, -0.08, 0.08) * h]
            for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
    )
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(page, m, (w, h))
    mask = cv2.warpPerspective(np.ones((ph, pw), np.float32), m, (w, h))
    out = bg.copy()
    _paste(out, warped, mask)
    out *= (0.6 + 0.5 * _gradient(h, w, _u(rng, 0, 6.3)))[..., None]
    return out


def _icon(img: Image, rng: np.random.Generator, x: float, y: float, s: float) -> None:
    col = _c(_hsv_color(rng, (0.4, 1), (0.4, 1)))
    k = _i(rng, 0, 4)
    if k == 0:
        cv2.circle(img, _pt(x + s / 2, y + s / 2), max(1, round(s / 2)), col, -1)
    elif k == 1:
        cv2.rectangle(img, _pt(x, y), _pt(x + s, y + s), col, -1)
    elif k == 2:
        pts = np.array([_pt(x + s / 2, y), _pt(x + s, y + s), _pt(x, y + s)])
        cv2.fillPoly(img, [pts], col)
    elif k == 3:
        cv2.rectangle(img, _pt(x, y), _pt(x + s, y + s), col, max(1, round(s / 8)))
        cv2.line(img, _pt(x + s * 0.2, y + s * 0.5), _pt(x + s * 0.8, y + s * 0.5), col, max(1, round(s / 8)))
    else:
        cv2.circle(img, _pt(x + s / 2, y + s / 2), max(1, round(s / 2)), col, max(1, round(s / 8)))
        cv2.circle(img, _pt(x + s / 2, y + s / 2), max(1, round(s / 6)), col, -1)


def _chart_into(
    img: Image, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float, fg, font: int
) -> None:
    """A plot (line, bar, scatter, pie, heat map, area) inside a box, with axes and tick labels."""
    w, h = x1 - x0, y1 - y0
    if w < 20 or h < 20:
        return
    px = max(4.0, min(h, w) * _u(rng, 0.03, 0.06))
    kind = _i(rng, 0, 5)
    if kind == 3:  # pie / donut
        cx, cy, r = x0 + w / 2, y0 + h / 2, 0.42 * min(w, h)
        parts = rng.dirichlet(np.ones(_i(rng, 2, 8))) * 360
        a = _u(rng, 0, 360)
        for p in parts:
            cv2.ellipse(
                img,
                _pt(cx, cy),
                (max(1, round(r)), max(1, round(r))),
                0,
                a,
                a + p,
                _c(_hsv_color(rng, (0.3, 1), (0.4, 1))),
                -1,
            )
            a += p
        if _chance(rng, 0.4):
            cv2.circle(img, _pt(cx, cy), max(1, round(r * 0.5)), _c(img[int(y0 + 1), int(x0 + 1)]), -1)
        return
    ax0, ay0, ax1, ay1 = x0 + px * 4, y0 + px, x1 - px, y1 - px * 2.5
    if kind == 4:  # heat map
        gh, gw = _i(rng, 3, 30), _i(rng, 3, 30)
        field = (_fractal(rng, gh, gw, max(gh, gw) / 3, 2) * 255).astype(np.uint8)
        cm = cv2.applyColorMap(field, _pick(rng, _COLORMAPS))[..., ::-1].astype(np.float32) / 255
        ww, hh = max(1, int(ax1 - ax0)), max(1, int(ay1 - ay0))
        _blit(img, cv2.resize(cm, (ww, hh), interpolation=cv2.INTER_NEAREST), ax0, ay0)
    else:
        if _chance(rng, 0.6):  # grid
            for t in np.linspace(0, 1, _i(rng, 3, 10)):
                gy = ay1 - t * (ay1 - ay0)
                cv2.line(img, _pt(ax0, gy), _pt(ax1, gy), _c(np.array(fg) * 0.3 + 0.6), 1)
        for s in range(_i(rng, 1, 4)):
            col = _c(_hsv_color(rng, (0.5, 1), (0.3, 0.9)))
            n = _i(rng, 4, 60) if kind != 1 else _i(rng, 3, 15)
            vals = np.cumsum(rng.normal(0, 1, n)) if _chance(rng, 0.6) else rng.uniform(0, 1, n)
            vals = (vals - vals.min()) / (np.ptp(vals) + 1e-6)
            xs = np.linspace(ax0, ax1, n)
            ys = ay1 - (0.05 + 0.9 * vals) * (ay1 - ay0)
            if kind == 0:
                cv2.polylines(
                    img,
                    [np.array([_pt(a, b) for a, b in zip(xs, ys, strict=True)])],
                    False,
                    col,
                    max(1, round(px / 6)),
                    cv2.LINE_AA,
                )
            elif kind == 1:
                bw = (ax1 - ax0) / n / (s + 2)
                for k in range(n):
                    cv2.rectangle(img, _pt(xs[k] - bw + s * bw, ys[k]), _pt(xs[k] + s * bw, ay1), col, -1)
            elif kind == 2:
                for a, b in zip(xs + rng.normal(0, 5, n), ys + rng.normal(0, 5, n), strict=True):
                    cv2.circle(img, _pt(a, b), max(1, round(px / 4)), col, -1)
            else:  # area
                pts = [_pt(a, b) for a, b in zip(xs, ys, strict=True)] + [_pt(ax1, ay1), _pt(ax0, ay1)]
                cv2.fillPoly(img, [np.array(pts)], col)
    cv2.line(img, _pt(ax0, ay1), _pt(ax1, ay1), fg, max(1, round(px / 8)))
    cv2.line(img, _pt(ax0, ay0), _pt(ax0, ay1), fg, max(1, round(px / 8)))
    for t in np.linspace(0, 1, _i(rng, 3, 8)):
        _text(img, f"{t * _u(rng, 1, 1000):.0f}", (x0, ay1 - t * (ay1 - ay0) + px * 0.4), px * 0.7, fg, font)
        _text(img, f"{t * _u(rng, 1, 100):.0f}", (ax0 + t * (ax1 - ax0) - px, ay1 + px * 1.7), px * 0.7, fg, font)


def _screenshot(rng: np.random.Generator, h: int, w: int) -> Image:
    dark = _chance(rng, 0.3)
    desk = _bokeh(rng, h, w) if _chance(rng, 0.4) else _canvas(h, w, _hsv_color(rng, (0, 0.8), (0.2, 0.9)))
    img = np.ascontiguousarray(desk)
    font = _pick(rng, _BODY_FONTS[:3])
    for _ in range(_i(rng, 1, 3)):
        x0, y0 = _u(rng, -0.05, 0.4) * w, _u(rng, -0.05, 0.3) * h
        x1, y1 = min(w, x0 + _u(rng, 0.5, 1.1) * w), min(h, y0 + _u(rng, 0.5, 1.1) * h)
        bg = _color(rng, 0.08, 0.2) if dark else _color(rng, 0.9, 1.0)
        fg = _c(np.array([0.85] * 3)) if dark else _c(np.array([_u(rng, 0, 0.3)] * 3))
        accent = _hsv_color(rng, (0.5, 1), (0.5, 1))
        cv2.rectangle(img, _pt(x0, y0), _pt(x1, y1), _c(bg), -1)
        bar = max(8.0, _u(rng, 0.03, 0.07) * h)
        cv2.rectangle(img, _pt(x0, y0), _pt(x1, y0 + bar), _c(accent if _chance(rng, 0.4) else bg * 0.85), -1)
        for k in range(3):
            cv2.circle(
                img,
                _pt(x1 - bar * (0.6 + k * 0.9), y0 + bar / 2),
                max(1, round(bar * 0.25)),
                _c(
                    _pick(
                        rng, [np.array([0.9, 0.3, 0.3]), np.array([0.9, 0.8, 0.2]), np.array([0.3, 0.8, 0.3]), bg * 0.5]
                    )
                ),
                -1,
            )
        px = bar * _u(rng, 0.35, 0.5)
        _text(img, _sentence(rng, _i(rng, 1, 4)), (x0 + bar * 0.4, y0 + bar * 0.7), px, fg, font)
        cy = y0 + bar
        side = 0.0
        if _chance(rng, 0.6):  # sidebar with a list
            side = _u(rng, 0.15, 0.3) * (x1 - x0)
            cv2.rectangle(img, _pt(x0, cy), _pt(x0 + side, y1), _c(bg * 0.92 if not dark else bg * 1.5), -1)
            y = cy + px * 2.5
            while y < y1 - px:
                if _chance(rng, 0.7):
                    _icon(img, rng, x0 + px * 0.5, y - px, px)
                _text(img, _word(rng, 3, 10).capitalize(), (x0 + px * 2, y), px * 0.9, fg, font)
                y += px * _u(rng, 2.0, 3.0)
        cx0 = x0 + side + px
        y = cy + px * 2.5
        while y < y1 - px * 2:
            r = rng.random()
            if r < 0.2:  # button row
                x = cx0
                for _ in range(_i(rng, 1, 4)):
                    label = _word(rng, 2, 8).capitalize()
                    bw = _text_width(label, px, font) + px * 2
                    col = accent if _chance(rng, 0.5) else bg * 0.8
                    cv2.rectangle(img, _pt(x, y - px * 1.5), _pt(x + bw, y + px * 0.7), _c(col), -1)
                    _text(img, label, (x + px, y), px, _c(1 - col) if _chance(rng, 0.5) else fg, font)
                    x += bw + px
                y += px * 3.5
            elif r < 0.3:  # input field
                cv2.rectangle(
                    img, _pt(cx0, y - px * 1.5), _pt(cx0 + (x1 - cx0) * _u(rng, 0.3, 0.9), y + px * 0.7), fg, 1
                )
                _text(img, _word(rng), (cx0 + px * 0.5, y), px, fg, font)
                y += px * 3.5
            elif r < 0.42 and y + 0.3 * h < y1:  # chart panel
                ch = _u(rng, 0.15, 0.4) * h
                _chart_into(img, rng, cx0, y, x1 - px, y + ch, fg, font)
                y += ch + px * 2
            elif r < 0.52:  # icon grid
                s = px * _u(rng, 2, 5)
                for k in range(_i(rng, 2, 8)):
                    _icon(img, rng, cx0 + k * s * 1.4, y - s * 0.6, s)
                y += s * 1.6
            elif r < 0.6:  # image thumbnail
                th = _u(rng, 0.1, 0.3) * h
                tw = th * _u(rng, 1.0, 1.8)
                thumb = _photo_scene(rng, max(2, int(th)), max(2, int(tw)))
                _blit(img, thumb, cx0, y)
                y += th + px * 2
            else:  # text line
                _fill_text_line(img, rng, cx0, x1 - px, y, px, fg, font)
                y += px * 2.2
    if _chance(rng, 0.5):  # task bar
        tb = max(6.0, _u(rng, 0.03, 0.06) * h)
        cv2.rectangle(img, _pt(0, h - tb), _pt(w, h), _c(_color(rng, 0.05, 0.3)), -1)
        for k in range(_i(rng, 2, 10)):
            _icon(img, rng, tb * (0.5 + 1.4 * k), h - tb * 0.85, tb * 0.7)
    if _chance(rng, 0.4):  # mouse pointer
        x, y = _u(rng, 0, w), _u(rng, 0, h)
        s = max(6.0, h * 0.03)
        pts = np.array([_pt(x, y), _pt(x, y + s), _pt(x + s * 0.3, y + s * 0.75), _pt(x + s * 0.7, y + s * 0.7)])
        cv2.fillPoly(img, [pts], (1.0, 1.0, 1.0))
        cv2.polylines(img, [pts], True, (0.0, 0.0, 0.0), 1)
    return img


def _chart(rng: np.random.Generator, h: int, w: int) -> Image:
    dark = _chance(rng, 0.2)
    bg = _color(rng, 0.05, 0.2) if dark else _color(rng, 0.88, 1.0)
    fg = _c(np.array([0.9] * 3)) if dark else _c(np.array([_u(rng, 0, 0.3)] * 3))
    img = _canvas(h, w, bg)
    font = _pick(rng, _BODY_FONTS)
    panels = _pick(rng, [(1, 1), (1, 1), (1, 2), (2, 1), (2, 2)])
    top = 0.0
    if _chance(rng, 0.6):
        tp = _u(rng, 0.03, 0.06) * h
        _text(img, _sentence(rng, _i(rng, 2, 6)), (w * 0.08, tp * 1.6), tp, fg, font)
        top = tp * 2.2
    ph, pw = (h - top) / panels[0], w / panels[1]
    for r in range(panels[0]):
        for c in range(panels[1]):
            _chart_into(
                img,
                rng,
                c * pw + pw * 0.03,
                top + r * ph + ph * 0.03,
                (c + 1) * pw - pw * 0.03,
                top + (r + 1) * ph - ph * 0.03,
                fg,
                font,
            )
    if _chance(rng, 0.5):  # legend
        lx, ly = _u(rng, 0.55, 0.8) * w, top + _u(rng, 0.05, 0.2) * h
        for k in range(_i(rng, 1, 4)):
            cv2.rectangle(
                img,
                _pt(lx, ly + k * h * 0.05),
                _pt(lx + w * 0.03, ly + k * h * 0.05 + h * 0.025),
                _c(_hsv_color(rng)),
                -1,
            )
            _text(img, _word(rng, 3, 8), (lx + w * 0.045, ly + k * h * 0.05 + h * 0.022), h * 0.022, fg, font)
    return img


def _star_points(cx: float, cy: float, r_out: float, r_in: float, n: int, rot: float) -> np.ndarray:
    pts = []
    for k in range(2 * n):
        r = r_out if k % 2 == 0 else r_in
        a = rot + k * math.pi / n
        pts.append(_pt(cx + r * math.cos(a), cy + r * math.sin(a)))
    return np.array(pts)


def _logo(rng: np.random.Generator, h: int, w: int) -> Image:
    bg = _pick(rng, [np.ones(3, np.float32), _hsv_color(rng, (0, 1), (0, 1)), _color(rng, 0.9, 1.0)])
    img = _canvas(h, w, bg)
    if _chance(rng, 0.2):
        img = _mix(bg, _hsv_color(rng), _gradient(h, w, _u(rng, 0, 6.3)))
    cols = [_hsv_color(rng, (0.5, 1), (0.2, 1)) for _ in range(3)]
    s = min(h, w)
    cx, cy = w / 2 + _u(rng, -0.15, 0.15) * w, h / 2 + _u(rng, -0.15, 0.1) * h
    text_below = _chance(rng, 0.6)
    if text_below:
        cy -= 0.12 * h
    r = s * _u(rng, 0.12, 0.35)
    for k in range(_i(rng, 1, 4)):
        col = _c(cols[k % 3])
        shape = _i(rng, 0, 6)
        off = (_u(rng, -0.4, 0.4) * r, _u(rng, -0.4, 0.4) * r) if k else (0.0, 0.0)
        x, y = cx + off[0], cy + off[1]
        rr = r * _u(rng, 0.4, 1.0) if k else r
        th = -1 if _chance(rng, 0.6) else max(2, round(rr * _u(rng, 0.08, 0.3)))
        if shape == 0:
            cv2.circle(img, _pt(x, y), max(1, round(rr)), col, th, cv2.LINE_AA)
        elif shape == 1:
            cv2.rectangle(img, _pt(x - rr, y - rr), _pt(x + rr, y + rr), col, th)
        elif shape == 2:
            cv2.fillPoly(
                img, [_star_points(x, y, rr, rr * _u(rng, 0.35, 0.6), _i(rng, 4, 8), _u(rng, 0, 6.3))], col, cv2.LINE_AA
            )
        elif shape == 3:  # polygon
            n = _i(rng, 3, 8)
            a0 = _u(rng, 0, 6.3)
            pts = np.array(
                [
                    _pt(x + rr * math.cos(a0 + 2 * math.pi * j / n), y + rr * math.sin(a0 + 2 * math.pi * j / n))
                    for j in range(n)
                ]
            )
            cv2.fillPoly(img, [pts], col, cv2.LINE_AA) if th < 0 else cv2.polylines(
                img, [pts], True, col, th, cv2.LINE_AA
            )
        elif shape == 4:  # swoosh arc
            a = _u(rng, 0, 360)
            cv2.ellipse(
                img,
                _pt(x, y),
                (max(1, round(rr)), max(1, round(rr * _u(rng, 0.3, 1)))),
                _u(rng, 0, 180),
                a,
                a + _u(rng, 90, 300),
                col,
                max(2, round(rr * _u(rng, 0.1, 0.3))),
                cv2.LINE_AA,
            )
        elif shape == 5:  # letter monogram
            ch = _pick(rng, list("ABCDEFGHKMNPRSTWXZ"))
            font = _pick(rng, _FONTS)
            _text(img, ch, (x - rr * 0.6, y + rr * 0.6), rr * 1.2, col, font, max(2, round(rr / 6)))
        else:  # stripes
            for j in range(_i(rng, 2, 6)):
                yy = y - rr + j * rr * 0.5
                cv2.rectangle(img, _pt(x - rr, yy), _pt(x + rr, yy + rr * 0.25), col, -1)
    if text_below or _chance(rng, 0.3):
        name = _word(rng, 3, 10)
        name = name.upper() if _chance(rng, 0.5) else name.capitalize()
        font = _pick(rng, _FONTS)
        px = min(h * _u(rng, 0.06, 0.14), w * 0.8 / max(len(name), 1) * 1.3)
        tw = _text_width(name, px, font, max(1, round(px / 6)))
        ty = cy + r + px * 1.8 if text_below else _u(rng, 0.2, 0.9) * h
        _text(img, name, ((w - tw) / 2, ty), px, _c(cols[_i(rng, 0, 2)]), font, max(1, round(px / 6)))
    if _chance(rng, 0.15):  # tiled, like a pattern or a sticker sheet
        small = cv2.resize(img, (max(2, w // 3), max(2, h // 3)), interpolation=cv2.INTER_AREA)
        img = np.tile(small, (4, 4, 1))[:h, :w].copy()
        img = cv2.resize(img, (w, h)) if img.shape[:2] != (h, w) else img
    return img


# --- medical non-radiographs --------------------------------------------------------------------------------


def _ultrasound(rng: np.random.Generator, h: int, w: int) -> Image:
    """B-mode image: speckle in a fan (curved/phased probe) or rectangle (linear probe) on black."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    probe = _pick(rng, ["sector", "sector", "convex", "linear"])
    top = _u(rng, 0.03, 0.15) * h
    depth = h - top - _u(rng, 0.02, 0.1) * h
    if probe == "linear":
        x0, x1 = _u(rng, 0.1, 0.3) * w, _u(rng, 0.7, 0.9) * w
        inside = (xx >= x0) & (xx <= x1) & (yy >= top) & (yy <= top + depth)
        r_norm = np.clip((yy - top) / depth, 0, 1)
        theta = (xx - x0) / max(x1 - x0, 1)
    else:
        half = math.radians(_u(rng, 25, 50))
        r0 = 0.0 if probe == "sector" else _u(rng, 0.1, 0.4) * depth
        ax, ay = w / 2 + _u(rng, -0.05, 0.05) * w, top - r0
        dx, dy = xx - ax, yy - ay
        rad = np.sqrt(dx * dx + dy * dy)
        ang = np.arctan2(dx, dy)
        inside = (np.abs(ang) <= half) & (rad >= r0) & (rad <= r0 + depth)
        r_norm = np.clip((rad - r0) / depth, 0, 1)
        theta = (ang + half) / (2 * half)
    # Echogenicity map: layered tissue, a few anechoic structures, a few bright reflectors.
    ech = 0.35 + 0.4 * _fractal(rng, h, w, _u(rng, 20, 80), 3)
    for _ in range(_i(rng, 0, 4)):  # bright horizontal-ish layers (fascia, capsule)
        level = _u(rng, 0.05, 0.9)
        band = np.exp(-((r_norm - level - 0.05 * np.sin(theta * _u(rng, 2, 8))) ** 2) / (2 * _u(rng, 0.003, 0.02) ** 2))
        ech += band * _u(rng, 0.4, 1.2)
    for _ in range(_i(rng, 0, 3)):  # cysts, vessels, bladder: dark with posterior enhancement
        cx, cy = _u(rng, 0.2, 0.8) * w, top + _u(rng, 0.2, 0.8) * depth
        ax_, ay_ = _u(rng, 0.03, 0.2) * w, _u(rng, 0.03, 0.15) * h
        m = _ellipse_mask(h, w, (cx, cy), (ax_, ay_), _u(rng, -30, 30), blur=2.0)
        ech = ech * (1 - 0.95 * m)
        shadow = (np.abs(xx - cx) < ax_ * 0.8) & (yy > cy + ay_)
        ech = np.where(shadow, ech * 1.3, ech)
    speckle = rng.rayleigh(1.0, (h, w)).astype(np.float32)
    speckle = cv2.GaussianBlur(speckle, (0, 0), sigmaX=_u(rng, 0.6, 2.5), sigmaY=_u(rng, 0.4, 1.2))
    gain = 1.0 - _u(rng, 0.0, 0.6) * r_norm  # depth attenuation
    img = np.clip(ech * speckle * gain * _u(rng, 0.45, 0.8), 0, 1)
    img = np.where(inside, img, 0.0).astype(np.float32)
    out = np.repeat(img[..., None], 3, axis=2)
    if _chance(rng, 0.15):  # sepia / tinted display
        out *= np.array([1.0, 0.9, 0.75], np.float32)
    if _chance(rng, 0.25):  # colour Doppler box
        bx, by = _u(rng, 0.3, 0.6) * w, top + _u(rng, 0.2, 0.5) * depth
        bw_, bh_ = _u(rng, 0.1, 0.3) * w, _u(rng, 0.1, 0.3) * h
        flow = _smooth(rng, h, w, _u(rng, 8, 25))
        box = (xx > bx) & (xx < bx + bw_) & (yy > by) & (yy < by + bh_) & inside & (np.abs(flow) > 0.6)
        red = np.stack([np.clip(flow, 0, 1), np.zeros_like(flow), np.clip(-flow, 0, 1)], -1) * 1.5
        out = np.where(box[..., None], np.clip(red, 0, 1), out)
        cv2.rectangle(out, _pt(bx, by), _pt(bx + bw_, by + bh_), (0.8, 0.8, 0.8), 1)
    # Annotations: text in the corners, depth ticks, a gray bar, a focus marker.
    font = _pick(rng, _BODY_FONTS[:3])
    px = _u(rng, 0.015, 0.03) * h
    tc = _c(np.array([_u(rng, 0.6, 1.0)] * 3))
    y = px * 1.6
    for _ in range(_i(rng, 1, 5)):
        _text(
            out,
            _sentence(rng, _i(rng, 1, 3)).upper()
            if _chance(rng, 0.5)
            else f"{_word(rng, 2, 4).upper()} {_u(rng, 0, 99):.1f}",
            (px * 0.5, y),
            px,
            tc,
            font,
        )
        y += px * 1.8
    y = px * 1.6
    for _ in range(_i(rng, 0, 4)):
        s = f"{_word(rng, 1, 3).upper()} {_i(rng, 0, 100)}{_pick(rng, ['%', 'dB', 'Hz', 'cm', ''])}"
        _text(out, s, (w - _text_width(s, px, font) - px * 0.5, y), px, tc, font)
        y += px * 1.8
    tick_x = w - _u(rng, 0.03, 0.08) * w
    for k in range(_i(rng, 4, 16)):
        ty = top + depth * k / 15
        cv2.circle(out, _pt(tick_x, ty), max(1, round(px / 5)), tc, -1)
    if _chance(rng, 0.6):
        gx, gy = _u(rng, 0.01, 0.05) * w, _u(rng, 0.3, 0.5) * h
        ramp = np.linspace(1, 0, max(2, int(0.3 * h)), dtype=np.float32)[:, None, None]
        bar = np.repeat(np.repeat(ramp, max(2, int(0.02 * w)), 1), 3, 2)
        _blit(out, bar, gx, gy)
    if _chance(rng, 0.3):  # a measurement caliper
        a, b = (
            (_u(rng, 0.3, 0.7) * w, top + _u(rng, 0.2, 0.8) * depth),
            (_u(rng, 0.3, 0.7) * w, top + _u(rng, 0.2, 0.8) * depth),
        )
        for p in (a, b):
            cv2.drawMarker(out, _pt(*p), (0.9, 0.9, 0.2), cv2.MARKER_CROSS, max(3, round(px)), 1)
        cv2.line(out, _pt(*a), _pt(*b), (0.9, 0.9, 0.2), 1, cv2.LINE_AA)
    return out


def _dose_field(rng: np.random.Generator, h: int, w: int) -> Image:
    """Radiotherapy-dose-like smooth fields: colour washes or isodose lines, over anatomy or on their own."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w), np.float32)
    for _ in range(_i(rng, 1, 5)):
        cx, cy = _u(rng, 0.2, 0.8) * w, _u(rng, 0.2, 0.8) * h
        sx, sy = _u(rng, 0.05, 0.35) * w, _u(rng, 0.05, 0.35) * h
        a = _u(rng, 0, math.pi)
        dx, dy = xx - cx, yy - cy
        u_ = (dx * math.cos(a) + dy * math.sin(a)) / sx
        v_ = (-dx * math.sin(a) + dy * math.cos(a)) / sy
        p = _u(rng, 1.0, 4.0)  # flat-topped for p > 1, like a conformal plan
        field += _u(rng, 0.3, 1.0) * np.exp(-((u_ * u_ + v_ * v_) ** (p / 2)))
    if _chance(rng, 0.4):  # beams: straight channels through the target
        for _ in range(_i(rng, 2, 7)):
            a = _u(rng, 0, math.pi)
            d = np.abs((xx - w / 2) * math.sin(a) - (yy - h / 2) * math.cos(a))
            field += 0.3 * np.exp(-((d / (_u(rng, 0.05, 0.2) * min(h, w))) ** 2))
    field = field / (field.max() + 1e-6)
    mode = _i(rng, 0, 3)
    anatomy = None
    if _chance(rng, 0.5):
        anatomy = _cross_section_gray(rng, h, w)
    if mode == 0:  # plain colour map
        out = (
            cv2.applyColorMap((field * 255).astype(np.uint8), _pick(rng, _COLORMAPS))[..., ::-1].astype(np.float32)
            / 255
        )
    elif mode == 1:  # gray dose
        out = np.repeat(field[..., None], 3, axis=2)
    else:  # isodose lines / wash over gray anatomy or black
        base = anatomy if anatomy is not None else np.zeros((h, w), np.float32)
        out = np.repeat(base[..., None], 3, axis=2).copy()
        if mode == 3:
            wash = (
                cv2.applyColorMap((field * 255).astype(np.uint8), _pick(rng, _COLORMAPS))[..., ::-1].astype(np.float32)
                / 255
            )
            alpha = np.clip(field * 1.5 - 0.1, 0, 0.6)
            out = _mix(out, wash, alpha)
        for lvl in sorted(rng.uniform(0.1, 0.95, _i(rng, 2, 8))):
            cs, _ = cv2.findContours((field >= lvl).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
            col = cv2.applyColorMap(np.array([[int(lvl * 255)]], np.uint8), cv2.COLORMAP_JET)[0, 0, ::-1] / 255.0
            cv2.drawContours(out, cs, -1, _c(col), max(1, round(min(h, w) / 200)), cv2.LINE_AA)
    out = np.ascontiguousarray(out, dtype=np.float32)
    if _chance(rng, 0.5):  # colour bar with labels
        bx = w - _u(rng, 0.05, 0.1) * w
        n = max(2, int(h * 0.7))
        ramp = (np.linspace(1, 0, n)[:, None] * 255).astype(np.uint8)
        bar = cv2.applyColorMap(np.repeat(ramp, max(2, int(w * 0.03)), 1), _pick(rng, _COLORMAPS))[..., ::-1] / 255.0
        y0 = int(h * 0.15)
        _blit(out, bar.astype(np.float32), bx, y0)
        hh = min(n, h - y0)
        for k in range(_i(rng, 3, 6)):
            _text(out, f"{_u(rng, 0, 80):.1f}", (bx - w * 0.12, y0 + k * hh / 5 + 4), h * 0.02, (1.0, 1.0, 1.0))
    return out


def _cross_section_gray(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """CT/MR-like axial slice: body outline, fat rim, organs, a vertebra; gray [0, 1] on black."""
    img = np.zeros((h, w), np.float32)
    cx, cy = w / 2 + _u(rng, -0.05, 0.05) * w, h / 2 + _u(rng, -0.05, 0.05) * h
    region = _i(rng, 0, 2)
    ax_, ay_ = _u(rng, 0.3, 0.47) * w, _u(rng, 0.25, 0.42) * h
    if region == 0:  # brain
        ax_ = ay_ = min(ax_ * 0.9, ay_ * 1.1)
        cv2.ellipse(img, _pt(cx, cy), (max(1, round(ax_)), max(1, round(ay_ * 1.15))), 0, 0, 360, _u(rng, 0.3, 0.6), -1)
        cv2.ellipse(
            img,
            _pt(cx, cy),
            (max(1, round(ax_)), max(1, round(ay_ * 1.15))),
            0,
            0,
            360,
            _u(rng, 0.7, 1.0),
            max(2, round(ax_ * 0.06)),
        )
        sulci = _fractal(rng, h, w, _u(rng, 4, 12), 2)
        inner = _ellipse_mask(h, w, (cx, cy), (ax_ * 0.9, ay_ * 1.05))
        img += inner * (sulci - 0.5) * 0.2
        for s in (-1, 1):  # ventricles
            cv2.ellipse(
                img,
                _pt(cx + s * ax_ * 0.12, cy),
                (max(1, round(ax_ * 0.08)), max(1, round(ay_ * 0.3))),
                s * 15,
                0,
                360,
                0.1,
                -1,
            )
    else:
        cv2.ellipse(img, _pt(cx, cy), (max(1, round(ax_)), max(1, round(ay_))), 0, 0, 360, _u(rng, 0.2, 0.35), -1)
        cv2.ellipse(
            img, _pt(cx, cy), (max(1, round(ax_ * 0.93)), max(1, round(ay_ * 0.9))), 0, 0, 360, _u(rng, 0.4, 0.55), -1
        )
        if region == 1:  # thorax: dark lungs
            for s in (-1, 1):
                cv2.ellipse(
                    img,
                    _pt(cx + s * ax_ * 0.45, cy - ay_ * 0.05),
                    (max(1, round(ax_ * 0.35)), max(1, round(ay_ * 0.65))),
                    0,
                    0,
                    360,
                    0.04,
                    -1,
                )
            cv2.ellipse(
                img,
                _pt(cx + ax_ * 0.1, cy + ay_ * 0.1),
                (max(1, round(ax_ * 0.22)), max(1, round(ay_ * 0.3))),
                30,
                0,
                360,
                0.55,
                -1,
            )
        else:  # abdomen: organs, bowel gas
            for _ in range(_i(rng, 3, 8)):
                cv2.ellipse(
                    img,
                    _pt(cx + _u(rng, -0.6, 0.6) * ax_, cy + _u(rng, -0.5, 0.4) * ay_),
                    (max(1, round(_u(rng, 0.08, 0.3) * ax_)), max(1, round(_u(rng, 0.08, 0.3) * ay_))),
                    _u(rng, 0, 180),
                    0,
                    360,
                    _u(rng, 0.0, 0.7),
                    -1,
                )
        # vertebral body and canal
        vy = cy + ay_ * 0.6
        cv2.circle(img, _pt(cx, vy), max(1, round(ay_ * 0.18)), _u(rng, 0.8, 1.0), -1)
        cv2.circle(img, _pt(cx, vy + ay_ * 0.25), max(1, round(ay_ * 0.07)), 0.3, -1)
    img += rng.normal(0, _u(rng, 0.0, 0.04), (h, w)).astype(np.float32)
    return np.clip(_blur(img, _u(rng, 0.5, 2.0)), 0, 1)


def _cross_section(rng: np.random.Generator, h: int, w: int) -> Image:
    g = _cross_section_gray(rng, h, w)
    if _chance(rng, 0.3):  # MR-like contrast: nonlinear remap and a bias field
        g = np.clip(g ** _u(rng, 0.4, 2.0) * (0.7 + 0.6 * _fractal(rng, h, w, 150, 1)), 0, 1)
        g = np.clip(g + np.abs(rng.normal(0, 0.03, g.shape)).astype(np.float32) * (g > 0.02), 0, 1)
    out = np.repeat(g[..., None], 3, axis=2)
    if _chance(rng, 0.5):  # scanner overlay text
        px = h * _u(rng, 0.015, 0.03)
        for k in range(_i(rng, 2, 6)):
            _text(out, f"{_word(rng, 2, 5).upper()} {_i(rng, 0, 999)}", (px, px * 1.6 * (k + 1)), px, (0.9, 0.9, 0.9))
            _text(out, f"{_u(rng, 0, 500):.1f}", (w - px * 6, h - px * 1.6 * (k + 1)), px, (0.9, 0.9, 0.9))
    if _chance(rng, 0.3):  # film sheet montage of several slices
        tiles = _i(rng, 2, 4)
        small = cv2.resize(out, (max(2, w // tiles), max(2, h // tiles)), interpolation=cv2.INTER_AREA)
        out = cv2.resize(np.tile(small, (tiles, tiles, 1)), (w, h), interpolation=cv2.INTER_NEAREST)
    return out


# --- microscopy, astronomy, aerial, noise ---------------------------------------------------------------------


def _micrograph(rng: np.random.Generator, h: int, w: int) -> Image:
    style = _i(rng, 0, 3)
    s = min(h, w)
    if style == 0:  # H&E stained tissue: pink stroma, purple nuclei
        stroma = np.array([0.92, 0.6, 0.75], np.float32) * _u(rng, 0.8, 1.1)
        img = _mix(np.array([0.97, 0.9, 0.95], np.float32), stroma, _fractal(rng, h, w, _u(rng, 10, 60), 4))
        nuc = np.array([0.35, 0.2, 0.55], np.float32) * _u(rng, 0.6, 1.2)
        for _ in range(_i(rng, 50, 900)):
            r = _u(rng, 0.004, 0.018) * s
            cv2.ellipse(
                img,
                _pt(_u(rng, 0, w), _u(rng, 0, h)),
                (max(1, round(r)), max(1, round(r * _u(rng, 0.5, 1)))),
                _u(rng, 0, 180),
                0,
                360,
                _c(nuc * _u(rng, 0.7, 1.3)),
                -1,
            )
        if _chance(rng, 0.5):  # glands / lumina
            for _ in range(_i(rng, 1, 6)):
                cv2.ellipse(
                    img,
                    _pt(_u(rng, 0, w), _u(rng, 0, h)),
                    (max(1, round(_u(rng, 0.03, 0.12) * s)), max(1, round(_u(rng, 0.03, 0.12) * s))),
                    _u(rng, 0, 180),
                    0,
                    360,
                    (0.98, 0.95, 0.97),
                    -1,
                )
        return _blur(img, _u(rng, 0.3, 1.5))
    if style == 1:  # fluorescence: coloured blobs on black
        img = np.zeros((h, w, 3), np.float32)
        for ch in range(3):
            if _chance(rng, 0.6) or ch == 2:
                layer = np.zeros((h, w), np.float32)
                for _ in range(_i(rng, 5, 150)):
                    r = _u(rng, 0.005, 0.04) * s
                    cv2.ellipse(
                        layer,
                        _pt(_u(rng, 0, w), _u(rng, 0, h)),
                        (max(1, round(r)), max(1, round(r * _u(rng, 0.4, 1)))),
                        _u(rng, 0, 180),
                        0,
                        360,
                        _u(rng, 0.3, 1.0),
                        -1,
                    )
                if _chance(rng, 0.4):  # filaments
                    for _ in range(_i(rng, 5, 60)):
                        p = (_u(rng, 0, w), _u(rng, 0, h))
                        cv2.line(
                            layer,
                            _pt(*p),
                            _pt(p[0] + _u(rng, -0.2, 0.2) * w, p[1] + _u(rng, -0.2, 0.2) * h),
                            _u(rng, 0.2, 0.7),
                            1,
                            cv2.LINE_AA,
                        )
                img[..., ch] = _blur(layer, _u(rng, 1, 4))
        return np.clip(img * _u(rng, 1.0, 2.0), 0, 1)
    if style == 2:  # blood smear: red discs with pale centres, a few stained leukocytes
        img = _canvas(h, w, np.array([0.93, 0.88, 0.85], np.float32) * _u(rng, 0.9, 1.05))
        r = _u(rng, 0.015, 0.04) * s
        for _ in range(min(int(h * w / (r * r * _u(rng, 3, 12))), 1500)):
            x, y = _u(rng, 0, w), _u(rng, 0, h)
            cv2.circle(img, _pt(x, y), max(1, round(r)), (0.85, 0.45, 0.45), -1)
            cv2.circle(img, _pt(x, y), max(1, round(r * 0.45)), (0.92, 0.7, 0.7), -1)
        for _ in range(_i(rng, 0, 5)):
            cv2.circle(img, _pt(_u(rng, 0, w), _u(rng, 0, h)), max(1, round(r * 1.6)), (0.45, 0.3, 0.65), -1)
        return _blur(img, _u(rng, 0.5, 1.5))
    # phase contrast / bright field cells: gray with dark rims and bright halos
    g = 0.5 + 0.1 * _fractal(rng, h, w, 80, 2)
    for _ in range(_i(rng, 10, 300)):
        x, y, r = _u(rng, 0, w), _u(rng, 0, h), _u(rng, 0.01, 0.05) * s
        cv2.ellipse(
            g,
            _pt(x, y),
            (max(1, round(r * 1.15)), max(1, round(r * 0.9))),
            _u(rng, 0, 180),
            0,
            360,
            0.85,
            max(1, round(r * 0.2)),
        )
        cv2.ellipse(
            g,
            _pt(x, y),
            (max(1, round(r)), max(1, round(r * 0.8))),
            _u(rng, 0, 180),
            0,
            360,
            0.25,
            max(1, round(r * 0.12)),
        )
        if _chance(rng, 0.7):
            cv2.circle(g, _pt(x, y), max(1, round(r * 0.3)), 0.35, -1)
    g = _blur(g, _u(rng, 0.5, 2))
    out = np.repeat(g[..., None], 3, axis=2)
    if _chance(rng, 0.4):  # eyepiece circle
        r = s * _u(rng, 0.4, 0.55)
        m = _ellipse_mask(h, w, (w / 2, h / 2), (r, r), blur=s * 0.02)
        out *= m[..., None]
    return out


def _astronomy(rng: np.random.Generator, h: int, w: int) -> Image:
    img = np.zeros((h, w, 3), np.float32)
    if _chance(rng, 0.4):  # nebula / Milky Way glow
        neb = _fractal(rng, h, w, _u(rng, 40, 200), 5) ** _u(rng, 1.5, 4)
        img += neb[..., None] * _hsv_color(rng, (0.2, 1), (0.5, 1))[None, None, :] * _u(rng, 0.3, 1.0)
    if _chance(rng, 0.5):  # galaxy: bright core, exponential disc, spiral arms
        cx, cy = _u(rng, 0.2, 0.8) * w, _u(rng, 0.2, 0.8) * h
        size = _u(rng, 0.05, 0.4) * min(h, w)
        layer = np.zeros((h, w), np.float32)
        arms, pitch, rot = _i(rng, 2, 4), _u(rng, 0.2, 0.5), _u(rng, 0, 6.3)
        for a in range(arms):
            for t in np.linspace(0.1, 3.5, 200):
                r = size * 0.15 * math.exp(pitch * t)
                if r > size:
                    break
                ang = rot + t + a * 2 * math.pi / arms
                cv2.circle(
                    layer,
                    _pt(cx + r * math.cos(ang), cy + r * math.sin(ang) * 0.6),
                    max(1, round(size * 0.04)),
                    0.5,
                    -1,
                )
        layer = _blur(layer, size * 0.05)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = np.sqrt(((xx - cx) / size) ** 2 + ((yy - cy) / (size * 0.6)) ** 2)
        layer += np.exp(-d * 4)
        img += layer[..., None] * np.array([1.0, 0.95, 0.85], np.float32)
    if _chance(rng, 0.2):  # a planet or the moon with craters
        cx, cy, r = _u(rng, 0.2, 0.8) * w, _u(rng, 0.2, 0.8) * h, _u(rng, 0.1, 0.45) * min(h, w)
        shade = _shaded_disc(h, w, cx, cy, r, (_u(rng, -0.9, 0.9), _u(rng, -0.9, 0.9)))
        surf = 0.7 + 0.3 * _fractal(rng, h, w, r * 0.3, 4)
        col = _hsv_color(rng, (0, 0.5), (0.6, 1))
        img += (shade * surf)[..., None] * col[None, None, :]
    n = _i(rng, 20, 2500)
    xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
    mags = rng.pareto(_u(rng, 1.5, 3.0), n) * _u(rng, 0.3, 1.0)  # many faint stars, a few bright ones
    stars = np.zeros((h, w), np.float32)
    for x, y, m in zip(xs, ys, mags, strict=True):
        b = float(min(1.0, 0.08 + 0.25 * m))
        r = round(min(5.0, m - 2.0)) if m > 3 else 0
        cv2.circle(stars, _pt(x, y), r, b, -1)
        if m > 5 and _chance(rng, 0.5):  # diffraction spikes
            ln = min(h, w) * min(0.12, 0.008 * m)
            cv2.line(stars, _pt(x - ln, y), _pt(x + ln, y), b * 0.6, 1, cv2.LINE_AA)
            cv2.line(stars, _pt(x, y - ln), _pt(x, y + ln), b * 0.6, 1, cv2.LINE_AA)
    stars = np.clip(stars + 1.5 * _blur(stars, _u(rng, 0.6, 1.5)), 0, 1)
    tint = np.clip(np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.1, 3), 0.6, 1).astype(np.float32)
    img += stars[..., None] * tint
    img += rng.normal(0, _u(rng, 0, 0.03), (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 1)


def _aerial(rng: np.random.Generator, h: int, w: int) -> Image:
    """Satellite/map-like: patchwork fields, roads, a river, blocks of buildings."""
    map_style = _chance(rng, 0.3)
    palette = (
        [np.array(c, np.float32) for c in ((0.93, 0.92, 0.88), (0.8, 0.9, 0.75), (0.95, 0.95, 0.95), (0.85, 0.85, 0.8))]
        if map_style
        else [
            np.array(c, np.float32)
            for c in ((0.3, 0.45, 0.2), (0.55, 0.5, 0.3), (0.4, 0.55, 0.25), (0.6, 0.55, 0.45), (0.25, 0.35, 0.15))
        ]
    )
    img = _canvas(h, w, palette[0])
    for _ in range(_i(rng, 5, 40)):  # fields: rotated quads
        cx, cy = _u(rng, 0, w), _u(rng, 0, h)
        bw, bh = _u(rng, 0.05, 0.35) * w, _u(rng, 0.05, 0.35) * h
        box = cv2.boxPoints(((cx, cy), (bw, bh), _u(rng, -30, 30))).astype(np.int32)
        col = _pick(rng, palette) * _u(rng, 0.85, 1.15)
        cv2.fillPoly(img, [box], _c(np.clip(col, 0, 1)))
    if not map_style:
        img *= (0.85 + 0.3 * _fractal(rng, h, w, 20, 3))[..., None]
    if _chance(rng, 0.5):  # river
        pts = np.cumsum(rng.normal(0, 0.05 * w, (12, 2)), axis=0) + np.array([_u(rng, 0, w), 0])
        pts[:, 1] = np.linspace(-0.1 * h, 1.1 * h, 12)
        cv2.polylines(
            img,
            [pts.astype(np.int32)],
            False,
            (0.25, 0.4, 0.6) if not map_style else (0.6, 0.75, 0.95),
            max(2, round(_u(rng, 0.01, 0.05) * w)),
            cv2.LINE_AA,
        )
    road = (0.35, 0.35, 0.35) if not map_style else (1.0, 0.85, 0.5)
    for _ in range(_i(rng, 1, 8)):
        p0 = (_u(rng, -0.2, 1.2) * w, _u(rng, -0.2, 1.2) * h)
        a = _u(rng, 0, math.pi)
        ln = 2 * max(h, w)
        cv2.line(
            img,
            _pt(p0[0] - ln * math.cos(a), p0[1] - ln * math.sin(a)),
            _pt(p0[0] + ln * math.cos(a), p0[1] + ln * math.sin(a)),
            road,
            max(1, round(_u(rng, 0.004, 0.02) * w)),
            cv2.LINE_AA,
        )
    if _chance(rng, 0.6):  # town: grid of small roofs
        bx, by = _u(rng, 0, 0.7) * w, _u(rng, 0, 0.7) * h
        s = _u(rng, 0.01, 0.04) * min(h, w)
        for i in range(_i(rng, 3, 12)):
            for j in range(_i(rng, 3, 12)):
                if _chance(rng, 0.8):
                    col = _color(rng, 0.4, 0.9) if not map_style else np.array([0.85, 0.8, 0.8])
                    cv2.rectangle(
                        img,
                        _pt(bx + i * s * 1.6, by + j * s * 1.6),
                        _pt(bx + i * s * 1.6 + s, by + j * s * 1.6 + s),
                        _c(col),
                        -1,
                    )
    if map_style and _chance(rng, 0.7):
        for _ in range(_i(rng, 2, 10)):
            _text(
                img,
                _word(rng, 3, 9).capitalize(),
                (_u(rng, 0, 0.8) * w, _u(rng, 0.05, 1) * h),
                h * _u(rng, 0.015, 0.03),
                (0.2, 0.2, 0.2),
            )
    return img


def _spectral(rng: np.random.Generator, h: int, w: int, alpha: float) -> np.ndarray:
    """Gaussian noise with a 1/f^alpha amplitude spectrum (alpha ~ 1-2 is the spectrum of natural images)."""
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(w).astype(np.float32)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spec = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f**alpha
    spec[0, 0] = 0
    out = np.fft.irfft2(spec, s=(h, w)).astype(np.float32)
    return (out - out.min()) / (float(np.ptp(out)) + 1e-6)


def _noise(rng: np.random.Generator, h: int, w: int) -> Image:
    kind = _i(rng, 0, 10)
    if kind >= 9:  # natural-image-like spectrum, gray or with correlated colour channels
        alpha = _u(rng, 0.5, 2.5)
        if _chance(rng, 0.5):
            g = _spectral(rng, h, w, alpha)
            return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))
        chans = np.stack([_spectral(rng, h, w, alpha) for _ in range(3)], -1)
        mixing = np.eye(3, dtype=np.float32) * _u(rng, 0.2, 1) + _u(rng, 0, 0.8)
        out = chans @ mixing.T
        return np.ascontiguousarray((out - out.min()) / (float(np.ptp(out)) + 1e-6))
    colour = _chance(rng, 0.5)
    c = 3 if colour else 1
    if kind == 0:  # uniform
        img = rng.uniform(0, 1, (h, w, c)).astype(np.float32)
    elif kind == 1:  # gaussian around a level
        img = np.clip(rng.normal(_u(rng, 0.2, 0.8), _u(rng, 0.05, 0.3), (h, w, c)), 0, 1).astype(np.float32)
    elif kind == 2:  # salt and pepper over a flat or gradient field
        base = _u(rng, 0, 1) * np.ones((h, w), np.float32) if _chance(rng, 0.5) else _gradient(h, w, _u(rng, 0, 6.3))
        r = rng.random((h, w))
        p = _u(rng, 0.01, 0.3)
        base = np.where(r < p / 2, 0.0, np.where(r > 1 - p / 2, 1.0, base)).astype(np.float32)
        img = base[..., None]
    elif kind == 3:  # fractal / plasma
        img = np.stack([_fractal(rng, h, w, _u(rng, 4, 200), _i(rng, 1, 6)) for _ in range(c)], -1)
    elif kind == 4:  # gratings, stripes, moire
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.zeros((h, w), np.float32)
        for _ in range(_i(rng, 1, 3)):
            a, f = _u(rng, 0, math.pi), _u(rng, 0.02, 0.6)
            img += np.sin((xx * math.cos(a) + yy * math.sin(a)) * f + _u(rng, 0, 6.3))
        img = (img - img.min()) / (np.ptp(img) + 1e-6)
        if _chance(rng, 0.4):
            img = (img > 0.5).astype(np.float32)
        img = img[..., None]
    elif kind == 5:  # checkerboard / mosaic blocks
        bs = _i(rng, 2, max(3, min(h, w) // 3))
        gh, gw = h // bs + 1, w // bs + 1
        if _chance(rng, 0.5):
            small = ((np.add.outer(np.arange(gh), np.arange(gw)) % 2).astype(np.float32))[..., None]
            small = np.repeat(small, c, 2)
        else:
            small = rng.uniform(0, 1, (gh, gw, c)).astype(np.float32)
        img = cv2.resize(small, (gw * bs, gh * bs), interpolation=cv2.INTER_NEAREST)
        img = img.reshape(gh * bs, gw * bs, -1)[:h, :w]
    elif kind == 6:  # flat colour or gradient with faint noise (blank frames, test cards)
        img = _mix(
            _hsv_color(rng, (0, 1), (0, 1)),
            _hsv_color(rng, (0, 1), (0, 1)),
            _gradient(h, w, _u(rng, 0, 6.3)) * _pick(rng, [0.0, 1.0]),
        )
        img = img + rng.normal(0, _u(rng, 0.002, 0.05), img.shape).astype(np.float32)
    elif kind == 7:  # colour bars test pattern
        n = _i(rng, 3, 10)
        img = np.zeros((h, w, 3), np.float32)
        for k in range(n):
            img[:, k * w // n : (k + 1) * w // n] = _hsv_color(rng, (0, 1), (0.1, 1))
        if _chance(rng, 0.5):
            img = img.transpose(1, 0, 2).copy() if h == w else cv2.resize(img.transpose(1, 0, 2), (w, h))
    else:  # structured: random lines and rectangles (scribbles)
        img = _canvas(h, w, _u(rng, 0, 1))
        for _ in range(_i(rng, 5, 200)):
            p0, p1 = (_u(rng, 0, w), _u(rng, 0, h)), (_u(rng, 0, w), _u(rng, 0, h))
            col = _c(_color(rng))
            if _chance(rng, 0.5):
                cv2.line(img, _pt(*p0), _pt(*p1), col, _i(rng, 1, 8), cv2.LINE_AA)
            else:
                cv2.rectangle(img, _pt(*p0), _pt(*p1), col, -1 if _chance(rng, 0.5) else _i(rng, 1, 5))
    img = np.clip(img, 0, 1).astype(np.float32)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if _chance(rng, 0.3):
        img = _blur(img, _u(rng, 0.5, 4))
    return np.ascontiguousarray(img)


def _dead_leaves(rng: np.random.Generator, h: int, w: int) -> Image:
    """Occluding shapes with power-law sizes (the "dead leaves" model): edges, occlusion and scale statistics
    close to those of natural photographs, without depicting anything in particular."""
    img = _canvas(h, w, _color(rng))
    s = min(h, w)
    rmin, rmax = s * _u(rng, 0.005, 0.02), s * _u(rng, 0.15, 0.6)
    a = _u(rng, 2.0, 3.0)  # density of radii ~ r^-a
    n = _i(rng, 100, 1500)
    u = rng.random(n)
    radii = (rmin ** (1 - a) + u * (rmax ** (1 - a) - rmin ** (1 - a))) ** (1 / (1 - a))
    hue0, hue_spread = _u(rng, 0, 180), _u(rng, 10, 180)
    sat = (_u(rng, 0, 0.5), _u(rng, 0.5, 1.0))
    shapes = _i(rng, 0, 3)
    for r in sorted(radii, reverse=True) if _chance(rng, 0.3) else radii:
        x, y = _u(rng, -0.1, 1.1) * w, _u(rng, -0.1, 1.1) * h
        hue = (hue0 + _u(rng, -hue_spread, hue_spread)) % 180
        hsv = np.array([[[hue, _u(rng, *sat) * 255, _u(rng, 0.05, 1) * 255]]])
        col = _c(cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0] / 255.0)
        kind = shapes if shapes < 3 else _i(rng, 0, 2)
        if kind == 0:
            cv2.circle(img, _pt(x, y), max(1, round(r)), col, -1, cv2.LINE_AA)
        elif kind == 1:
            axes = (max(1, round(r)), max(1, round(r * _u(rng, 0.2, 1))))
            cv2.ellipse(img, _pt(x, y), axes, _u(rng, 0, 180), 0, 360, col, -1, cv2.LINE_AA)
        else:
            box = cv2.boxPoints(((x, y), (2 * r, 2 * r * _u(rng, 0.2, 1)), _u(rng, 0, 180))).astype(np.int32)
            cv2.fillPoly(img, [box], col, cv2.LINE_AA)
    if _chance(rng, 0.5):  # textured leaves
        tex = _spectral(rng, h, w, _u(rng, 0.8, 2.0))
        img = np.clip(img * (1 + _u(rng, 0.1, 0.5) * (tex[..., None] - 0.5)), 0, 1)
    return img


_RENDERERS: dict[str, Callable[[np.random.Generator, int, int], Image]] = {
    "photo_scene": _photo_scene,
    "photo_object": _photo_object,
    "texture": _texture,
    "document": _document,
    "screenshot": _screenshot,
    "chart": _chart,
    "logo": _logo,
    "ultrasound": _ultrasound,
    "dose_field": _dose_field,
    "noise": _noise,
    "micrograph": _micrograph,
    "astronomy": _astronomy,
    "cross_section": _cross_section,
    "aerial": _aerial,
    "dead_leaves": _dead_leaves,
}
assert set(_RENDERERS) == set(OTHER_KINDS)


# --- finishing: the nuisances of real files ------------------------------------------------------------------


def _finish(img: Image, rng: np.random.Generator, kind: str) -> np.ndarray:
    """Camera/scanner/codec nuisances, so the class is not tied to the renderers' clean look."""
    h, w = img.shape[:2]
    img = np.clip(img, 0, 1).astype(np.float32)
    photo_like = kind in ("photo_scene", "photo_object", "texture", "aerial")
    if _chance(rng, 0.5 if photo_like else 0.15):  # focus / motion blur
        if _chance(rng, 0.7):
            img = _blur(img, _u(rng, 0.4, 3.0))
        else:
            k = _i(rng, 3, 15)
            kernel = np.zeros((k, k), np.float32)
            kernel[k // 2, :] = 1.0 / k
            m = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), _u(rng, 0, 180), 1.0)
            kernel = cv2.warpAffine(kernel, m, (k, k))
            img = cv2.filter2D(img, -1, kernel / max(float(kernel.sum()), 1e-6))
    if _chance(rng, 0.4 if photo_like else 0.15):  # exposure, contrast, gamma, white balance
        img = np.clip((img - 0.5) * _u(rng, 0.6, 1.5) + 0.5 + _u(rng, -0.15, 0.15), 0, 1)
        img = img ** _u(rng, 0.6, 1.6)
        img = np.clip(img * np.clip(1 + rng.normal(0, 0.08, 3), 0.7, 1.3).astype(np.float32), 0, 1)
    if photo_like and _chance(rng, 0.4):  # vignetting
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        img = img * (1 - _u(rng, 0.1, 0.5) * np.clip(d / 2, 0, 1))[..., None]
    if _chance(rng, 0.45 if photo_like else 0.2):  # sensor noise
        img = np.clip(img + rng.normal(0, _u(rng, 0.005, 0.06), img.shape).astype(np.float32), 0, 1)
    if _chance(rng, 0.08):  # negative
        img = 1.0 - img
    if _chance(rng, 0.1):  # rotated / mirrored
        img = np.ascontiguousarray(np.rot90(img, _i(rng, 1, 3))) if h == w else np.ascontiguousarray(img[:, ::-1])
    out = np.rint(img * 255).astype(np.uint8)
    if _chance(rng, 0.4):  # an earlier lossy save, quality anywhere from awful to fine
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, _i(rng, 15, 95)])
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    if _chance(rng, 0.2):  # a grayscale original
        out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    return out


# --- public API ----------------------------------------------------------------------------------------------


def render_other(kind: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One non-radiograph image of ``kind``: uint8, RGB (H x W x 3) or grayscale (H x W).

    Deterministic in the state of ``rng``; every random choice is drawn from it.
    """
    if kind not in _RENDERERS:
        raise ValueError(f"unknown non-radiograph kind {kind!r}; expected one of {OTHER_KINDS}")
    if height < 16 or width < 16:
        raise ValueError(f"image must be at least 16x16, got {height}x{width}")
    img = _RENDERERS[kind](rng, int(height), int(width))
    if img.shape[:2] != (height, width):  # a renderer that tiles or rotates must still honour the size asked
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    return _finish(img, rng, kind)


def other_rng(seed: int, index: int) -> np.random.Generator:
    """One independent stream per ``other`` image (image ``index`` is the same whatever count is asked).

    The stream tag keeps these streams apart from the phantom archive's ``[seed, index]`` streams.
    """
    return np.random.default_rng([int(seed), _UID_TAG, int(index)])


def kind_for_index(seed: int, index: int, kinds: Sequence[str] = OTHER_KINDS) -> str:
    """Kind of ``other`` image ``index``: each consecutive block of ``len(kinds)`` indices holds every kind
    once, in an order shuffled per block, so any count is balanced to within one per kind and index ``i``
    does not depend on the count."""
    kinds = tuple(kinds)
    if not kinds:
        raise ValueError("kinds must not be empty")
    unknown = [k for k in kinds if k not in _RENDERERS]
    if unknown:
        raise ValueError(f"unknown non-radiograph kind(s) {unknown}; expected some of {OTHER_KINDS}")
    block, pos = divmod(int(index), len(kinds))
    order = np.random.default_rng([int(seed), _UID_TAG, 0xB10C, block]).permutation(len(kinds))
    return kinds[int(order[pos])]


def other_size(rng: np.random.Generator, min_side: int = 192, max_side: int = 640) -> tuple[int, int]:
    """Height and width: mostly the aspect ratios of photos, pages and screens, sometimes anything."""
    long = int(rng.integers(min_side, max_side + 1))
    aspect = float(rng.choice([1.0, 4 / 3, 3 / 2, 16 / 9, 1.414, rng.uniform(1.0, 2.5)]))
    short = max(min_side // 2, round(long / aspect))
    return (long, short) if rng.random() < 0.45 else (short, long)


def render_other_sample(
    seed: int, index: int, kinds: Sequence[str] = OTHER_KINDS
) -> tuple[np.ndarray, str, np.random.Generator]:
    """Image ``index`` of the ``other`` stream for ``seed``: (pixels, kind, generator positioned after it)."""
    kind = kind_for_index(seed, index, kinds)
    rng = other_rng(seed, index)
    h, w = other_size(rng)
    return render_other(kind, rng, h, w), kind, rng


def kind_of_image_id(image_id: str) -> str | None:
    """The kind named in an ``other`` row's id (``s3-other-ultrasound-000007`` -> ``ultrasound``), else None.

    Lets an evaluation break abstention down by kind without a manifest column for it.
    """
    parts = str(image_id).split("-")
    if len(parts) == 4 and parts[1] == "other" and parts[2] in _RENDERERS:
        return parts[2]
    return None
