"""Images without subject: noise of many structures (uniform, Gaussian, salt and pepper, gratings,
checkerboards, 1/f spectra) and "dead leaves" occlusion images with the statistics of natural photographs."""

from __future__ import annotations

import math

import cv2
import numpy as np

from core.synthetic.non_radiographs.primitives import (
    Image,
    _blur,
    _c,
    _canvas,
    _chance,
    _color,
    _fractal,
    _gradient,
    _hsv_color,
    _i,
    _mix,
    _pick,
    _pt,
    _u,
)


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
