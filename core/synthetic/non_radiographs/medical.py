"""Medical images that are not projection radiographs: ultrasound, dose-like fields, CT/MR-like
cross-sections, micrographs.  They are the nearest neighbours of the body-part classes."""

from __future__ import annotations

import math

import cv2
import numpy as np

from core.synthetic.non_radiographs.primitives import (
    _BODY_FONTS,
    _COLORMAPS,
    Image,
    _blit,
    _blur,
    _c,
    _canvas,
    _chance,
    _ellipse_mask,
    _fractal,
    _i,
    _mix,
    _pick,
    _pt,
    _sentence,
    _smooth,
    _text,
    _text_width,
    _u,
    _word,
)


def _scan_field(
    rng: np.random.Generator, h: int, w: int, xx: np.ndarray, yy: np.ndarray
) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray]:
    """Where the probe sees: a fan (sector/convex probe) or rectangle (linear probe).

    Returns the field's top row and depth in pixels, its mask, and each pixel's normalised depth and lateral
    position, which the echo texture and the depth attenuation follow."""
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
    return top, depth, inside, r_norm, theta


def _echogenicity(
    rng: np.random.Generator,
    xx: np.ndarray,
    yy: np.ndarray,
    top: float,
    depth: float,
    r_norm: np.ndarray,
    theta: np.ndarray,
) -> np.ndarray:
    """How strongly each pixel echoes: layered tissue, bright fascia lines following the probe's curve, and
    dark fluid-filled structures with the posterior enhancement sonographers look for."""
    h, w = xx.shape
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
    return ech


def _doppler_box(
    out: Image,
    rng: np.random.Generator,
    xx: np.ndarray,
    yy: np.ndarray,
    top: float,
    depth: float,
    inside: np.ndarray,
) -> Image:
    """A colour Doppler box: red/blue flow inside a gray frame, the one saturated colour on many scans."""
    h, w = xx.shape
    bx, by = _u(rng, 0.3, 0.6) * w, top + _u(rng, 0.2, 0.5) * depth
    bw_, bh_ = _u(rng, 0.1, 0.3) * w, _u(rng, 0.1, 0.3) * h
    flow = _smooth(rng, h, w, _u(rng, 8, 25))
    box = (xx > bx) & (xx < bx + bw_) & (yy > by) & (yy < by + bh_) & inside & (np.abs(flow) > 0.6)
    red = np.stack([np.clip(flow, 0, 1), np.zeros_like(flow), np.clip(-flow, 0, 1)], -1) * 1.5
    out = np.where(box[..., None], np.clip(red, 0, 1), out)
    cv2.rectangle(out, _pt(bx, by), _pt(bx + bw_, by + bh_), (0.8, 0.8, 0.8), 1)
    return out


def _ultrasound_annotations(out: Image, rng: np.random.Generator, top: float, depth: float) -> None:
    """Scanner overlays, in place: settings text in the corners, depth ticks, a gray bar, sometimes a
    caliper - burnt-in text a classifier must not mistake for a radiograph's markers."""
    h, w = out.shape[:2]
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


def _ultrasound(rng: np.random.Generator, h: int, w: int) -> Image:
    """B-mode image: speckle in a fan (curved/phased probe) or rectangle (linear probe) on black."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    top, depth, inside, r_norm, theta = _scan_field(rng, h, w, xx, yy)
    ech = _echogenicity(rng, xx, yy, top, depth, r_norm, theta)
    speckle = rng.rayleigh(1.0, (h, w)).astype(np.float32)
    speckle = cv2.GaussianBlur(speckle, (0, 0), sigmaX=_u(rng, 0.6, 2.5), sigmaY=_u(rng, 0.4, 1.2))
    gain = 1.0 - _u(rng, 0.0, 0.6) * r_norm  # depth attenuation
    img = np.clip(ech * speckle * gain * _u(rng, 0.45, 0.8), 0, 1)
    img = np.where(inside, img, 0.0).astype(np.float32)
    out = np.repeat(img[..., None], 3, axis=2)
    if _chance(rng, 0.15):  # sepia / tinted display
        out *= np.array([1.0, 0.9, 0.75], np.float32)
    if _chance(rng, 0.25):
        out = _doppler_box(out, rng, xx, yy, top, depth, inside)
    _ultrasound_annotations(out, rng, top, depth)
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


def _stained_tissue(rng: np.random.Generator, h: int, w: int) -> Image:
    """H&E stained tissue: pink stroma, purple nuclei, pale glands - the commonest pathology slide look."""
    s = min(h, w)
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


def _fluorescence_channel(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One stain's channel: glowing blobs (nuclei, vesicles), sometimes filaments (cytoskeleton), blurred."""
    s = min(h, w)
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
    return _blur(layer, _u(rng, 1, 4))


def _fluorescence(rng: np.random.Generator, h: int, w: int) -> Image:
    """Fluorescence micrograph: coloured structures on black, the blue (nuclear) channel always present."""
    img = np.zeros((h, w, 3), np.float32)
    for ch in range(3):
        if _chance(rng, 0.6) or ch == 2:
            img[..., ch] = _fluorescence_channel(rng, h, w)
    return np.clip(img * _u(rng, 1.0, 2.0), 0, 1)


def _blood_smear(rng: np.random.Generator, h: int, w: int) -> Image:
    """Blood smear: packed red discs with pale centres and a few stained leukocytes."""
    s = min(h, w)
    img = _canvas(h, w, np.array([0.93, 0.88, 0.85], np.float32) * _u(rng, 0.9, 1.05))
    r = _u(rng, 0.015, 0.04) * s
    for _ in range(min(int(h * w / (r * r * _u(rng, 3, 12))), 1500)):
        x, y = _u(rng, 0, w), _u(rng, 0, h)
        cv2.circle(img, _pt(x, y), max(1, round(r)), (0.85, 0.45, 0.45), -1)
        cv2.circle(img, _pt(x, y), max(1, round(r * 0.45)), (0.92, 0.7, 0.7), -1)
    for _ in range(_i(rng, 0, 5)):
        cv2.circle(img, _pt(_u(rng, 0, w), _u(rng, 0, h)), max(1, round(r * 1.6)), (0.45, 0.3, 0.65), -1)
    return _blur(img, _u(rng, 0.5, 1.5))


def _phase_contrast_cells(rng: np.random.Generator, h: int, w: int) -> Image:
    """Phase contrast / bright field cells: gray with bright halos and dark rims, sometimes seen through an
    eyepiece; a gray image whose round rims the model must not read as bone."""
    s = min(h, w)
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


# Index = the style drawn from ``_i(rng, 0, 3)``; the order is part of the images' reproducibility.
_MICROGRAPH_STYLES = (_stained_tissue, _fluorescence, _blood_smear, _phase_contrast_cells)


def _micrograph(rng: np.random.Generator, h: int, w: int) -> Image:
    """A microscope image in one of four common looks; none is anatomy, all are medical."""
    return _MICROGRAPH_STYLES[_i(rng, 0, 3)](rng, h, w)
