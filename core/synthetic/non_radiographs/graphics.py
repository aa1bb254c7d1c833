"""Renderers of things people put on screens and paper: document pages (text, columns, tables,
handwriting, slides, receipts, code), screenshots and UI, charts, logos."""

from __future__ import annotations

import math

import cv2
import numpy as np

from core.synthetic.non_radiographs.photos import (
    _bokeh,
    _photo_scene,
    _texture,
    _wood,
)
from core.synthetic.non_radiographs.primitives import (
    _BODY_FONTS,
    _COLORMAPS,
    _FONTS,
    Image,
    _blit,
    _c,
    _canvas,
    _chance,
    _color,
    _fill_text_line,
    _fractal,
    _gradient,
    _hsv_color,
    _i,
    _mix,
    _paste,
    _pick,
    _pt,
    _sentence,
    _text,
    _text_width,
    _u,
    _word,
)


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


def _window_title_bar(
    img: Image,
    rng: np.random.Generator,
    x0: float,
    y0: float,
    x1: float,
    bar: float,
    bg: np.ndarray,
    fg: tuple[float, float, float],
    accent: np.ndarray,
    font: int,
) -> float:
    """A window's title bar: flat or accent-coloured, three window buttons, a title.  Returns the text size
    in pixels the rest of the window uses."""
    cv2.rectangle(img, _pt(x0, y0), _pt(x1, y0 + bar), _c(accent if _chance(rng, 0.4) else bg * 0.85), -1)
    for k in range(3):
        cv2.circle(
            img,
            _pt(x1 - bar * (0.6 + k * 0.9), y0 + bar / 2),
            max(1, round(bar * 0.25)),
            _c(_pick(rng, [np.array([0.9, 0.3, 0.3]), np.array([0.9, 0.8, 0.2]), np.array([0.3, 0.8, 0.3]), bg * 0.5])),
            -1,
        )
    px = bar * _u(rng, 0.35, 0.5)
    _text(img, _sentence(rng, _i(rng, 1, 4)), (x0 + bar * 0.4, y0 + bar * 0.7), px, fg, font)
    return px


def _window_sidebar(
    img: Image,
    rng: np.random.Generator,
    x0: float,
    x1: float,
    cy: float,
    y1: float,
    px: float,
    bg: np.ndarray,
    fg: tuple[float, float, float],
    dark: bool,
    font: int,
) -> float:
    """A navigation sidebar: a shaded strip with a list of (sometimes iconed) entries.  Returns its width."""
    side = _u(rng, 0.15, 0.3) * (x1 - x0)
    cv2.rectangle(img, _pt(x0, cy), _pt(x0 + side, y1), _c(bg * 0.92 if not dark else bg * 1.5), -1)
    y = cy + px * 2.5
    while y < y1 - px:
        if _chance(rng, 0.7):
            _icon(img, rng, x0 + px * 0.5, y - px, px)
        _text(img, _word(rng, 3, 10).capitalize(), (x0 + px * 2, y), px * 0.9, fg, font)
        y += px * _u(rng, 2.0, 3.0)
    return side


def _window_row(
    img: Image,
    rng: np.random.Generator,
    cx0: float,
    x1: float,
    y: float,
    y1: float,
    px: float,
    bg: np.ndarray,
    fg: tuple[float, float, float],
    accent: np.ndarray,
    font: int,
) -> float:
    """One row of window content - buttons, an input field, a chart, icons, a thumbnail or a line of text -
    so windows vary as real applications do.  Returns the next row's baseline."""
    h = img.shape[0]
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
        return y + px * 3.5
    if r < 0.3:  # input field
        cv2.rectangle(img, _pt(cx0, y - px * 1.5), _pt(cx0 + (x1 - cx0) * _u(rng, 0.3, 0.9), y + px * 0.7), fg, 1)
        _text(img, _word(rng), (cx0 + px * 0.5, y), px, fg, font)
        return y + px * 3.5
    if r < 0.42 and y + 0.3 * h < y1:  # chart panel
        ch = _u(rng, 0.15, 0.4) * h
        _chart_into(img, rng, cx0, y, x1 - px, y + ch, fg, font)
        return y + ch + px * 2
    if r < 0.52:  # icon grid
        s = px * _u(rng, 2, 5)
        for k in range(_i(rng, 2, 8)):
            _icon(img, rng, cx0 + k * s * 1.4, y - s * 0.6, s)
        return y + s * 1.6
    if r < 0.6:  # image thumbnail
        th = _u(rng, 0.1, 0.3) * h
        tw = th * _u(rng, 1.0, 1.8)
        thumb = _photo_scene(rng, max(2, int(th)), max(2, int(tw)))
        _blit(img, thumb, cx0, y)
        return y + th + px * 2
    _fill_text_line(img, rng, cx0, x1 - px, y, px, fg, font)  # text line
    return y + px * 2.2


def _app_window(img: Image, rng: np.random.Generator, dark: bool, font: int) -> None:
    """One application window, in place: title bar, maybe a sidebar, then rows of content to its bottom."""
    h, w = img.shape[:2]
    x0, y0 = _u(rng, -0.05, 0.4) * w, _u(rng, -0.05, 0.3) * h
    x1, y1 = min(w, x0 + _u(rng, 0.5, 1.1) * w), min(h, y0 + _u(rng, 0.5, 1.1) * h)
    bg = _color(rng, 0.08, 0.2) if dark else _color(rng, 0.9, 1.0)
    fg = _c(np.array([0.85] * 3)) if dark else _c(np.array([_u(rng, 0, 0.3)] * 3))
    accent = _hsv_color(rng, (0.5, 1), (0.5, 1))
    cv2.rectangle(img, _pt(x0, y0), _pt(x1, y1), _c(bg), -1)
    bar = max(8.0, _u(rng, 0.03, 0.07) * h)
    px = _window_title_bar(img, rng, x0, y0, x1, bar, bg, fg, accent, font)
    cy = y0 + bar
    side = 0.0
    if _chance(rng, 0.6):
        side = _window_sidebar(img, rng, x0, x1, cy, y1, px, bg, fg, dark, font)
    cx0 = x0 + side + px
    y = cy + px * 2.5
    while y < y1 - px * 2:
        y = _window_row(img, rng, cx0, x1, y, y1, px, bg, fg, accent, font)


def _task_bar(img: Image, rng: np.random.Generator) -> None:
    """A dark strip of icons along the bottom edge, in place, as desktop captures have."""
    h, w = img.shape[:2]
    tb = max(6.0, _u(rng, 0.03, 0.06) * h)
    cv2.rectangle(img, _pt(0, h - tb), _pt(w, h), _c(_color(rng, 0.05, 0.3)), -1)
    for k in range(_i(rng, 2, 10)):
        _icon(img, rng, tb * (0.5 + 1.4 * k), h - tb * 0.85, tb * 0.7)


def _mouse_pointer(img: Image, rng: np.random.Generator) -> None:
    """A white arrow with a black outline somewhere on the screen, in place."""
    h, w = img.shape[:2]
    x, y = _u(rng, 0, w), _u(rng, 0, h)
    s = max(6.0, h * 0.03)
    pts = np.array([_pt(x, y), _pt(x, y + s), _pt(x + s * 0.3, y + s * 0.75), _pt(x + s * 0.7, y + s * 0.7)])
    cv2.fillPoly(img, [pts], (1.0, 1.0, 1.0))
    cv2.polylines(img, [pts], True, (0.0, 0.0, 0.0), 1)


def _screenshot(rng: np.random.Generator, h: int, w: int) -> Image:
    """A desktop capture: windows over a wallpaper, maybe a task bar and pointer - screenshots end up in
    imaging archives next to the studies they document."""
    dark = _chance(rng, 0.3)
    desk = _bokeh(rng, h, w) if _chance(rng, 0.4) else _canvas(h, w, _hsv_color(rng, (0, 0.8), (0.2, 0.9)))
    img = np.ascontiguousarray(desk)
    font = _pick(rng, _BODY_FONTS[:3])
    for _ in range(_i(rng, 1, 3)):
        _app_window(img, rng, dark, font)
    if _chance(rng, 0.5):
        _task_bar(img, rng)
    if _chance(rng, 0.4):
        _mouse_pointer(img, rng)
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
