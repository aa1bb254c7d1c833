"""Photograph-like renderers: outdoor and indoor scenes, portraits, objects on a table, material textures,
the night sky and aerial views.  Flat cartoons would teach the model "not a cartoon", so every surface gets
shading, texture and blur."""

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
    _cylinder_shade,
    _ellipse_mask,
    _fractal,
    _gradient,
    _hsv_color,
    _i,
    _mix,
    _paste,
    _pick,
    _pt,
    _rect_mask,
    _shaded_disc,
    _smooth,
    _text,
    _u,
    _word,
)


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


def _tabletop(rng: np.random.Generator, h: int, w: int) -> tuple[Image, float]:
    """A blurred room or bokeh behind, usually a wooden or plain table in front: the context product and
    snapshot photos put objects in.  Returns the image and the table edge's row."""
    img = _bokeh(rng, h, w) if _chance(rng, 0.6) else _indoor(rng, h, w)
    img = _blur(img, _u(rng, 1, 6))
    table_y = _u(rng, 0.5, 0.9) * h
    if _chance(rng, 0.75):
        top = _wood(rng, h, w) if _chance(rng, 0.5) else _canvas(h, w, _hsv_color(rng, (0, 0.5), (0.2, 1.0)))
        yy = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
        _paste(img, top * (0.7 + 0.3 * _gradient(h, w, math.pi / 2)[..., None]), (yy > table_y).astype(np.float32))
    return np.ascontiguousarray(img), table_y


def _cup(
    img: Image,
    rng: np.random.Generator,
    cx: float,
    base_y: float,
    size: float,
    col: np.ndarray,
    light: tuple[float, float],
) -> None:
    """A mug: a side-lit cylinder with a handle and a drink seen through its rim."""
    h, w = img.shape[:2]
    cw, ch = size * 0.5, size * _u(rng, 0.6, 1.0)
    x0, x1 = cx - cw, cx + cw
    m = _rect_mask(h, w, (x0, base_y - ch), (x1, base_y))
    cv2.ellipse(m, _pt(cx, base_y), (max(1, round(cw)), max(1, round(cw * 0.25))), 0, 0, 180, 1.0, -1)
    _paste(img, col[None, None, :] * _cylinder_shade(w, x0, x1, light[0])[..., None], m)
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
    cv2.ellipse(img, _pt(cx, base_y - ch), (max(1, round(cw)), max(1, round(cw * 0.25))), 0, 0, 360, _c(col * 0.9), -1)
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


def _bottle(
    img: Image,
    rng: np.random.Generator,
    cx: float,
    base_y: float,
    size: float,
    col: np.ndarray,
    light: tuple[float, float],
) -> None:
    """A bottle: shaded glass body and neck, often with a printed label, the text-on-curve look of products."""
    h, w = img.shape[:2]
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
    _paste(img, col[None, None, :] * _cylinder_shade(w, x0, x1, light[0])[..., None], m * _u(rng, 0.6, 1.0))
    if _chance(rng, 0.7):  # label
        lab = _color(rng, 0.6, 1.0)
        cv2.rectangle(img, _pt(x0, base_y - bh * 0.5), _pt(x1, base_y - bh * 0.2), _c(lab), -1)
        _text(img, _word(rng, 3, 6).upper(), (x0 + 2, base_y - bh * 0.3), bh * 0.08, _c(col * 0.5))


def _fruit(
    img: Image,
    rng: np.random.Generator,
    cx: float,
    base_y: float,
    size: float,
    col: np.ndarray,
    light: tuple[float, float],
) -> None:
    """A fruit or ball: a sphere shaded by the scene's light, with a specular highlight."""
    h, w = img.shape[:2]
    lx, ly = light
    r = size * 0.45
    shade = _shaded_disc(h, w, cx, base_y - r, r, (lx, ly))
    _paste(img, col[None, None, :] * shade[..., None] + 0.0, (shade > 0).astype(np.float32))
    hl = _ellipse_mask(h, w, (cx + lx * r * 0.5, base_y - r + ly * r * 0.5), (r * 0.15, r * 0.15), blur=r * 0.1)
    _paste(img, _canvas(h, w, 1.0), hl * 0.7 * (shade > 0))


def _bowl(
    img: Image,
    rng: np.random.Generator,
    cx: float,
    base_y: float,
    size: float,
    col: np.ndarray,
    light: tuple[float, float],
) -> None:
    """A bowl or plate seen from above the table: two flat ellipses, no random draws of its own."""
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


def _box(
    img: Image,
    rng: np.random.Generator,
    cx: float,
    base_y: float,
    size: float,
    col: np.ndarray,
    light: tuple[float, float],
) -> None:
    """A book or box: hard straight edges and a lit top face, sometimes a printed title."""
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


# Index = the object kind drawn from ``_i(rng, 0, 4)``; the order is part of the images' reproducibility.
_TABLE_OBJECTS = (_cup, _bottle, _fruit, _bowl, _box)


def _photo_object(rng: np.random.Generator, h: int, w: int) -> Image:
    """Close-up of one to four everyday objects on a table, each casting a contact shadow under one light."""
    img, table_y = _tabletop(rng, h, w)
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
        _TABLE_OBJECTS[_i(rng, 0, 4)](img, rng, cx, base_y, size, col, (lx, ly))
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
