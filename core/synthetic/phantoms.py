"""Synthetic radiograph-like phantoms of body parts.

The demo and the tests need a labelled X-ray archive that can be generated offline, shipped with no
patient data and reproduced bit for bit from a seed.  These phantoms are cartoons drawn with OpenCV
primitives, but they keep the cues a real body-part classifier relies on (skull ring, ribcage over dark
lungs, lumbar column with bowel gas, pelvic butterfly with femoral heads, paired forearm bones, thick
femur/tibia with a patella, finger rays) and add the nuisances real archives have (pose, cropping, exposure,
noise, inverted polarity, collimation, burned-in side markers) so the classifier has to learn anatomy rather
than a fixed template.

The drawing is an attenuation map, imaged the way an X-ray system images a patient (:func:`_attenuation`,
:func:`_expose`, :func:`_present`): soft tissue as a path length that fades to the skin line, gas replacing
tissue, textured lungs and bone, exponential attenuation, heel effect, collimator penumbra, scatter, quantum
noise, a log detector, and either raw ("for processing", flat and low-contrast) or processed display.  This
matters for trust: a model that only ever saw smooth hard-edged cartoons calls a real radiograph's texture
and gradients "not a radiograph" (pydicom-data's raw CR chest RG1 was abstained as ``other`` until the
phantoms were imaged this way).

A more literal limb anatomy (forearm and lower leg drawn at true proportions in their own frame, each view
filling the frame) was tried and measured: the demo-size model then confused arm and leg far more (accepted
accuracy 0.89-0.93 against 0.96), because at 96 px an AP elbow and an AP knee, or a forearm and a tib/fib,
differ only in few-pixel details once size no longer tells them apart.  The limbs below keep the size
relation a detector of one physical size sees (a leg is about twice a forearm).

Coordinates below are in "units": half the shorter image side, origin at the image centre, x right, y down.
A global similarity transform (scale, rotation, translation) is applied while drawing, so no resampling pass
is needed and anatomy that extends off-canvas is simply clipped, as it would be by a detector.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from core.io import schema

CLASSES = schema.BODY_PARTS

# Attenuation weights of the three layers when they are combined into one image.
_SOFT_W = 0.30
_BONE_W = 0.52
_AIR_W = 0.25

Point = tuple[float, float]


class _Sketch:
    """Soft-tissue, bone and air layers drawn in unit coordinates under one similarity transform."""

    def __init__(self, h: int, w: int, scale: float, angle_deg: float, tx: float, ty: float) -> None:
        self.h, self.w = h, w
        self.unit = min(h, w) / 2.0
        self.k = scale * self.unit  # pixels per anatomical unit
        self.angle = angle_deg
        a = math.radians(angle_deg)
        self.cos, self.sin = math.cos(a), math.sin(a)
        self.cx = w / 2.0 + tx * self.unit
        self.cy = h / 2.0 + ty * self.unit
        self.soft = np.zeros((h, w), np.float32)
        self.bone = np.zeros((h, w), np.float32)
        self.air = np.zeros((h, w), np.float32)

    def p(self, x: float, y: float) -> tuple[int, int]:
        px = self.cx + self.k * (x * self.cos - y * self.sin)
        py = self.cy + self.k * (x * self.sin + y * self.cos)
        return round(px), round(py)

    def px(self, length: float) -> int:
        return max(1, round(length * self.k))

    def ellipse(
        self,
        layer: np.ndarray,
        x: float,
        y: float,
        ax: float,
        ay: float,
        value: float,
        angle: float = 0.0,
        thickness: float | None = None,
        start: float = 0.0,
        end: float = 360.0,
    ) -> None:
        th = -1 if thickness is None else self.px(thickness)
        axes = (max(1, round(ax * self.k)), max(1, round(ay * self.k)))
        cv2.ellipse(layer, self.p(x, y), axes, angle + self.angle, start, end, float(value), th)

    def poly(self, layer: np.ndarray, pts: Sequence[Point], value: float) -> None:
        arr = np.array([self.p(x, y) for x, y in pts], np.int32)
        cv2.fillPoly(layer, [arr], float(value))

    def line(self, layer: np.ndarray, pts: Sequence[Point], value: float, thickness: float) -> None:
        arr = np.array([self.p(x, y) for x, y in pts], np.int32)
        cv2.polylines(layer, [arr], False, float(value), self.px(thickness))

    def long_bone(self, a: Point, b: Point, width: float, value: float = 1.0, canal: float = 0.62) -> None:
        """Shaft with a bright cortex and a dimmer medullary canal, the look of a tubular bone on film."""
        self.line(self.bone, [a, b], value, width)
        # Shorten the canal so the bone ends stay solid.
        dx, dy = b[0] - a[0], b[1] - a[1]
        n = math.hypot(dx, dy) or 1.0
        m = min(width, 0.3 * n) / n
        self.line(
            self.bone,
            [(a[0] + dx * m, a[1] + dy * m), (b[0] - dx * m, b[1] - dy * m)],
            value * canal,
            width * 0.5,
        )


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# --- anatomy ------------------------------------------------------------------------------------------------


def _head(s: _Sketch, rng: np.random.Generator) -> None:
    a = _u(rng, 0.58, 0.68)
    b = a * _u(rng, 1.12, 1.25)
    cy = _u(rng, -0.12, -0.02)
    # Neck and scalp.
    s.poly(s.soft, [(-0.3, cy + b * 0.6), (0.3, cy + b * 0.6), (0.34, 1.6), (-0.34, 1.6)], 1.0)
    s.ellipse(s.soft, 0, cy, a + 0.05, b + 0.05, 1.0)
    # Vault: both tables of the skull superimpose, so the interior stays moderately bright.
    s.ellipse(s.bone, 0, cy, a, b, 0.32)
    s.ellipse(s.bone, 0, cy, a, b, 1.0, thickness=_u(rng, 0.045, 0.075))
    s.ellipse(s.bone, 0, cy, a * 0.9, b * 0.9, 0.55, thickness=0.015)
    # Petrous ridges.
    py = cy + b * _u(rng, 0.22, 0.32)
    for side in (-1, 1):
        s.line(s.bone, [(side * a * 0.85, py + 0.05), (side * a * 0.3, py - 0.05)], 0.75, 0.05)
    # Orbits: bright rims, relatively lucent inside.
    oy = cy + b * _u(rng, 0.35, 0.45)
    ox = a * _u(rng, 0.4, 0.48)
    orx, ory = _u(rng, 0.12, 0.16), _u(rng, 0.1, 0.13)
    for side in (-1, 1):
        s.ellipse(s.bone, side * ox, oy, orx, ory, 0.12)
        s.ellipse(s.bone, side * ox, oy, orx, ory, 0.95, thickness=0.03)
    # Nasal cavity and maxillary sinuses.
    ny = oy + 0.2
    s.poly(s.bone, [(0, oy - 0.02), (-0.08, ny + 0.08), (0.08, ny + 0.08)], 0.1)
    s.line(s.bone, [(0, oy), (0, ny + 0.08)], 0.7, 0.02)
    # Teeth row and mandible.
    ty = ny + _u(rng, 0.15, 0.2)
    for x in np.linspace(-0.24, 0.24, 9):
        s.ellipse(s.bone, float(x), ty, 0.022, 0.05, 1.0)
    jaw_w = a * _u(rng, 0.72, 0.85)
    chin = ty + _u(rng, 0.2, 0.27)
    s.line(
        s.bone,
        [
            (-jaw_w, oy + 0.02),
            (-jaw_w * 0.92, ty + 0.08),
            (-jaw_w * 0.45, chin - 0.02),
            (0, chin),
            (jaw_w * 0.45, chin - 0.02),
            (jaw_w * 0.92, ty + 0.08),
            (jaw_w, oy + 0.02),
        ],
        0.9,
        _u(rng, 0.05, 0.08),
    )
    # Cervical spine below the chin.
    for k in range(4):
        y = chin + 0.08 + k * 0.14
        s.ellipse(s.bone, 0, y, 0.1, 0.05, 0.7)


def _vessel(
    s: _Sketch,
    layer: np.ndarray,
    rng: np.random.Generator,
    start: Point,
    angle: float,
    width: float,
    length: float,
    depth: int,
) -> None:
    """One vessel segment and, recursively, its two daughter branches (narrower, shorter, diverging)."""
    end = (start[0] + length * math.cos(angle), start[1] + length * math.sin(angle))
    mid = (0.5 * (start[0] + end[0]) + _u(rng, -0.03, 0.03), 0.5 * (start[1] + end[1]) + _u(rng, -0.03, 0.03))
    s.line(layer, [start, mid, end], 1.0, width)
    if depth > 1:
        for turn in (-1, 1):
            _vessel(
                s,
                layer,
                rng,
                end,
                angle + turn * _u(rng, 0.2, 0.6),
                width * 0.72,
                length * _u(rng, 0.6, 0.85),
                depth - 1,
            )


def _lung_fields(s: _Sketch, rng: np.random.Generator) -> tuple[float, float, float]:
    """Both lungs as air: apex, lateral wall, costophrenic angle, diaphragm dome, mediastinal border.

    Returns the lung half-width, apex and base heights, which the ribs, heart and clavicles are placed by."""
    lw = _u(rng, 0.62, 0.75)
    top = _u(rng, -0.78, -0.66)
    base = _u(rng, 0.3, 0.5)
    for side in (-1, 1):
        dome = base - _u(rng, 0.12, 0.22) + (0.04 if side > 0 else 0.0)
        pts = [
            (side * 0.12, top + 0.1),
            (side * 0.25, top),
            (side * 0.45, top + 0.06),
            (side * lw * 0.95, top + 0.35),
            (side * lw, base - 0.15),
            (side * lw * 1.02, base),
            (side * lw * 0.8, dome + 0.02),
            (side * 0.45, dome - 0.04),
            (side * 0.15, dome + 0.05),
        ]
        s.poly(s.air, pts, 1.0)
    return lw, top, base


def _lung_markings(s: _Sketch, rng: np.random.Generator) -> None:
    """Bronchovascular markings: vessel trees branching out of each hilum, tapering towards the periphery.

    Vessels are blood, not air, so they take lucency away from the lung they cross."""
    vessels = np.zeros_like(s.air)
    for side in (-1, 1):
        for _ in range(int(rng.integers(3, 5))):
            hilum = (side * 0.18, _u(rng, -0.2, 0.0))
            heading = (0.0 if side > 0 else math.pi) + side * _u(rng, -1.2, 1.2)
            _vessel(s, vessels, rng, hilum, heading, 0.035, 0.28, 4)
    s.air *= 1.0 - np.minimum(vessels, 1.0) * np.float32(_u(rng, 0.35, 0.6))


def _mediastinum(s: _Sketch, rng: np.random.Generator, base: float) -> None:
    """Mediastinum, heart and aortic knob: soft tissue that cancels the lung lucency in the middle."""
    s.poly(s.air, [(-0.12, -1.0), (0.12, -1.0), (0.14, 0.6), (-0.14, 0.6)], 0.0)
    hx, hy = _u(rng, 0.08, 0.16), base - _u(rng, 0.3, 0.4)
    s.ellipse(s.air, hx, hy, _u(rng, 0.26, 0.34), _u(rng, 0.2, 0.26), 0.0, angle=_u(rng, -25, -10))
    s.ellipse(s.air, -0.08, -0.35, 0.08, 0.22, 0.0)  # aortic knob / SVC


def _posterior_ribs(
    s: _Sketch, lw: float, top: float, n_ribs: int, spacing: float, rib_th: float, slope: float, rib_v: float
) -> None:
    """Posterior ribs: arcs sloping down and out from the spine, each wrapping round the chest wall."""
    for side in (-1, 1):
        for k in range(n_ribs):
            y = top + 0.02 + k * spacing
            span = lw * 0.55 + 0.04 * k / n_ribs
            s.ellipse(
                s.bone,
                side * (0.06 + span),
                y + 0.08,
                span,
                0.09 + 0.012 * k,
                rib_v,
                angle=side * slope,
                thickness=rib_th,
                start=180,
                end=360,
            )
            # Lateral end wrapping round the chest wall.
            s.ellipse(
                s.bone,
                side * (0.06 + span * 1.75),
                y + 0.2,
                span * 0.28,
                0.16,
                rib_v * 0.8,
                angle=side * slope,
                thickness=rib_th * 0.9,
                start=270 if side > 0 else 180,
                end=360 if side > 0 else 270,
            )


def _rib_cage(s: _Sketch, rng: np.random.Generator, lw: float, top: float, base: float) -> None:
    """Spine, posterior ribs and the fainter anterior ribs: the repeating bony pattern a chest film is
    recognised by."""
    for k in range(14):
        y = -0.95 + k * 0.14
        s.ellipse(s.bone, 0, y, 0.085, 0.05, 0.45)
    n_ribs = int(rng.integers(8, 11))
    spacing = (base - top) / (n_ribs - 0.5)
    rib_th = _u(rng, 0.02, 0.03)
    slope = _u(rng, 14, 24)
    # A rib is ~1 cm of bone against ~20 cm of trunk: it shows, but far less than the spine or the heart.
    rib_v = _u(rng, 0.2, 0.35)
    _posterior_ribs(s, lw, top, n_ribs, spacing, rib_th, slope, rib_v)
    # Anterior ribs: fainter (costal cartilage ends them), sloping down towards the sternum.
    for side in (-1, 1):
        for k in range(int(rng.integers(4, 7))):
            y = top + 0.25 + k * spacing * 1.3
            s.line(
                s.bone,
                [(side * lw * 0.95, y - 0.1), (side * lw * 0.6, y + 0.02), (side * 0.3, y + 0.15)],
                rib_v * 0.5,
                rib_th * 1.2,
            )


def _shoulder_girdle(s: _Sketch, rng: np.random.Generator, tw: float, top: float) -> None:
    """Clavicles above the lung apices and humeral heads at the top corners."""
    cy = top - _u(rng, 0.0, 0.06)
    for side in (-1, 1):
        s.line(
            s.bone,
            [
                (side * 0.08, cy + 0.06),
                (side * 0.3, cy + 0.02),
                (side * 0.55, cy - 0.04),
                (side * 0.72, cy - 0.08),
            ],
            0.92,
            _u(rng, 0.04, 0.055),
        )
    for side in (-1, 1):
        s.ellipse(s.bone, side * (tw + 0.02), cy + 0.02, 0.12, 0.13, 0.85)


def _chest(s: _Sketch, rng: np.random.Generator) -> None:
    """A PA chest: trunk and shoulders, lungs with vessel markings, mediastinum, rib cage, shoulder girdle."""
    tw = _u(rng, 0.85, 0.98)
    s.ellipse(s.soft, 0, 0.45, tw, 1.5, 1.0)
    s.poly(s.soft, [(-0.25, -1.0), (0.25, -1.0), (0.3, -0.6), (-0.3, -0.6)], 1.0)
    s.ellipse(s.soft, 0, -0.72, tw * 1.05, 0.22, 1.0)  # shoulders
    lw, top, base = _lung_fields(s, rng)
    _lung_markings(s, rng)
    _mediastinum(s, rng, base)
    _rib_cage(s, rng, lw, top, base)
    _shoulder_girdle(s, rng, tw, top)


def _abdomen(s: _Sketch, rng: np.random.Generator) -> None:
    s.ellipse(s.soft, 0, 0.1, _u(rng, 0.85, 0.98), 1.5, 1.0)
    # Liver shadow on the patient's right (image left).
    s.ellipse(s.soft, -0.45, -0.65, 0.5, 0.35, 1.2, angle=15)
    # Lumbar vertebrae with pedicles and transverse processes.
    n = 5
    vh = _u(rng, 0.2, 0.25)
    vw = _u(rng, 0.12, 0.15)
    top = _u(rng, -0.95, -0.75)
    for k in range(n):
        y = top + k * (vh + 0.06) + vh / 2
        w = vw * (1 + 0.04 * k)
        s.poly(s.bone, [(-w, y - vh / 2), (w, y - vh / 2), (w * 1.05, y + vh / 2), (-w * 1.05, y + vh / 2)], 0.72)
        for side in (-1, 1):
            s.ellipse(s.bone, side * w * 0.55, y - vh * 0.15, 0.03, 0.045, 1.0, thickness=0.015)
            tp = _u(rng, 0.12, 0.2)
            s.line(s.bone, [(side * w, y - vh * 0.1), (side * (w + tp), y - vh * 0.05)], 0.65, 0.04)
        s.line(s.bone, [(0, y - vh * 0.3), (0, y + vh * 0.25)], 0.9, 0.03)  # spinous process
    bottom = top + n * (vh + 0.06)
    # Lowest ribs at the top corners.
    for side in (-1, 1):
        for k in range(2):
            y0 = top - 0.15 + k * 0.18
            s.line(s.bone, [(side * 0.2, y0), (side * 0.5, y0 + 0.12), (side * 0.75, y0 + 0.35)], 0.6, 0.035)
    # Tops of the iliac crests and the sacrum at the bottom.
    for side in (-1, 1):
        s.ellipse(s.bone, side * 0.5, bottom + 0.42, 0.42, 0.4, 0.5, angle=side * 15, start=180, end=360)
        s.ellipse(
            s.bone,
            side * 0.5,
            bottom + 0.42,
            0.42,
            0.4,
            0.85,
            angle=side * 15,
            thickness=0.04,
            start=185,
            end=355,
        )
    s.poly(s.bone, [(-0.18, bottom), (0.18, bottom), (0.0, bottom + 0.6)], 0.55)
    # Psoas margins.
    for side in (-1, 1):
        s.line(s.soft, [(side * 0.15, top + 0.2), (side * 0.4, bottom + 0.1)], 1.15, 0.03)
    # Bowel gas: small dark blobs plus a gas-filled colon segment.
    for _ in range(int(rng.integers(6, 16))):
        x, y = _u(rng, -0.7, 0.7), _u(rng, -0.45, 0.85)
        r = _u(rng, 0.03, 0.11)
        s.ellipse(s.air, x, y, r, r * _u(rng, 0.6, 1.0), _u(rng, 0.6, 1.0), angle=_u(rng, 0, 180))
    if rng.random() < 0.6:
        y = _u(rng, -0.4, -0.1)
        pts = [
            (-0.6, 0.7),
            (-0.65, y + 0.2),
            (-0.5, y),
            (0.0, y + _u(rng, -0.05, 0.1)),
            (0.5, y),
            (0.62, 0.6),
        ]
        s.line(s.air, pts, 0.7, _u(rng, 0.08, 0.14))
        for x, yy in pts[1:-1]:  # haustral folds interrupt the gas column
            s.line(s.air, [(x - 0.04, yy - 0.07), (x + 0.04, yy + 0.07)], 0.2, 0.02)


def _pelvis(s: _Sketch, rng: np.random.Generator) -> None:
    s.ellipse(s.soft, 0, 0.0, _u(rng, 0.95, 1.05), 1.4, 1.0)
    wing = _u(rng, 0.78, 0.9)
    crest = _u(rng, -0.9, -0.75)
    hx = _u(rng, 0.45, 0.55)
    hy = _u(rng, 0.12, 0.22)
    hr = _u(rng, 0.11, 0.14)
    # L5 above the sacrum.
    s.poly(
        s.bone,
        [(-0.14, crest - 0.25), (0.14, crest - 0.25), (0.15, crest - 0.05), (-0.15, crest - 0.05)],
        0.7,
    )
    for side in (-1, 1):
        # Iliac wing: a fan from the sacroiliac joint to the acetabular roof.
        pts = [
            (side * 0.16, crest + 0.2),
            (side * 0.25, crest),
            (side * 0.5, crest - 0.06),
            (side * wing, crest + 0.18),
            (side * (wing - 0.05), hy - 0.35),
            (side * (hx + 0.12), hy - 0.14),
            (side * (hx - 0.1), hy - 0.12),
            (side * 0.2, hy - 0.28),
        ]
        s.poly(s.bone, pts, 0.45)
        s.line(s.bone, pts[1:5], 0.9, 0.045)  # iliac crest cortex
        s.line(s.bone, [pts[0], pts[-1], (side * (hx - 0.1), hy - 0.12)], 0.85, 0.035)  # iliopectineal line
        # Acetabulum, femoral head, neck, trochanter and shaft.
        s.ellipse(s.bone, side * hx, hy, hr + 0.03, hr + 0.03, 0.95, thickness=0.03, start=180, end=360)
        s.ellipse(s.bone, side * hx, hy, hr, hr, 0.92)
        nx, ny = side * (hx + 0.18), hy + 0.2
        s.line(s.bone, [(side * hx, hy), (nx, ny)], 0.85, _u(rng, 0.11, 0.14))
        s.ellipse(s.bone, side * (hx + 0.24), hy + 0.14, 0.08, 0.11, 0.9)
        s.ellipse(s.bone, side * (hx + 0.12), hy + 0.33, 0.05, 0.04, 0.9)  # lesser trochanter
        s.long_bone((nx, ny), (side * (hx + 0.12), 1.5), _u(rng, 0.15, 0.19), 0.95)
        # Pubic and ischial rami around the dark obturator foramen.
        ox, oy = side * _u(rng, 0.24, 0.3), hy + _u(rng, 0.22, 0.28)
        s.ellipse(s.bone, ox, oy, 0.13, 0.1, 0.0, angle=side * 20)
        s.ellipse(s.bone, ox, oy, 0.13, 0.1, 0.9, angle=side * 20, thickness=_u(rng, 0.04, 0.06))
    # Sacrum with its foramina; coccyx.
    s.poly(s.bone, [(-0.2, crest + 0.02), (0.2, crest + 0.02), (0.02, 0.1), (-0.02, 0.1)], 0.62)
    for k in range(4):
        y = crest + 0.12 + k * 0.13
        for side in (-1, 1):
            s.ellipse(s.bone, side * (0.1 - 0.02 * k), y, 0.025, 0.02, 0.35)
    s.line(s.bone, [(0, 0.1), (0, 0.22)], 0.6, 0.03)


def _limb_sleeve(s: _Sketch, half_width: float, taper: float) -> None:
    s.poly(
        s.soft,
        [(-half_width, -1.6), (half_width, -1.6), (half_width * taper, 1.6), (-half_width * taper, 1.6)],
        1.0,
    )


def _arm(s: _Sketch, rng: np.random.Generator) -> None:
    hw = _u(rng, 0.2, 0.27)
    if rng.random() < 0.55:
        # Elbow: humerus above, radius and ulna below the joint.
        _limb_sleeve(s, hw * 1.15, _u(rng, 0.75, 0.9))
        j = _u(rng, -0.25, 0.2)
        bw = _u(rng, 0.09, 0.12)
        s.long_bone((0.0, -1.6), (0.0, j - 0.12), bw)
        s.ellipse(s.bone, 0.0, j - 0.08, bw * 1.5, 0.07, 0.95)  # condyles
        s.ellipse(s.bone, 0.0, j - 0.1, 0.04, 0.035, 0.35)  # olecranon fossa
        fw = _u(rng, 0.055, 0.075)
        s.ellipse(s.bone, -0.06, j + 0.04, fw * 0.9, 0.035, 0.95)  # radial head
        s.long_bone((-0.06, j + 0.06), (-0.09, 1.6), fw)
        s.long_bone((0.06, j - 0.02), (0.08, 1.6), fw * 1.05)
        s.ellipse(s.bone, 0.05, j - 0.02, fw * 1.1, 0.06, 0.95)  # olecranon
    else:
        # Forearm: two parallel slender bones of similar calibre ending at the wrist.
        _limb_sleeve(s, hw, _u(rng, 0.8, 0.95))
        wrist = _u(rng, 0.6, 0.9)
        fw = _u(rng, 0.055, 0.075)
        gap = _u(rng, 0.07, 0.1)
        s.long_bone((-gap, -1.6), (-gap * 1.2, wrist), fw)
        s.long_bone((gap, -1.6), (gap * 1.1, wrist), fw * 0.9)
        s.ellipse(s.bone, -gap * 1.2, wrist, fw * 1.6, 0.05, 0.95)  # distal radius
        s.ellipse(s.bone, gap * 1.15, wrist, fw * 0.9, 0.04, 0.95)  # ulnar head
        for k in range(4):
            s.ellipse(s.bone, -0.09 + 0.06 * k, wrist + 0.12 + 0.02 * (k % 2), 0.03, 0.035, 0.8)


def _leg(s: _Sketch, rng: np.random.Generator) -> None:
    hw = _u(rng, 0.4, 0.5)
    _limb_sleeve(s, hw, _u(rng, 0.7, 0.85))
    bw = _u(rng, 0.17, 0.22)
    side = 1 if rng.random() < 0.5 else -1
    if rng.random() < 0.7:
        # Knee: femur with condyles, superimposed patella, tibial plateau, fibular head.
        j = _u(rng, -0.2, 0.2)
        s.long_bone((0.0, -1.6), (0.0, j - 0.15), bw)
        for c in (-1, 1):
            s.ellipse(s.bone, c * bw * 0.55, j - 0.08, bw * 0.62, 0.1, 0.95)
        s.ellipse(s.bone, 0.0, j - 0.05, 0.03, 0.05, 0.35)  # intercondylar notch
        s.ellipse(s.bone, _u(rng, -0.03, 0.03), j - _u(rng, 0.1, 0.2), 0.09, 0.12, 0.55)  # patella
        s.ellipse(s.bone, _u(rng, -0.03, 0.03), j - 0.15, 0.09, 0.12, 0.9, thickness=0.02)
        s.ellipse(s.bone, 0.0, j + 0.1, bw * 1.25, 0.06, 0.95)  # tibial plateau
        s.long_bone((0.0, j + 0.12), (side * 0.02, 1.6), bw * 0.95)
        fx = side * bw * 1.15
        s.ellipse(s.bone, fx, j + 0.2, 0.05, 0.045, 0.9)
        s.long_bone((fx, j + 0.22), (fx * 1.05, 1.6), _u(rng, 0.04, 0.055))
    else:
        # Lower leg: one thick tibia, a thin fibula and the ankle mortise.
        ank = _u(rng, 0.55, 0.85)
        s.ellipse(s.bone, 0.0, -1.2, bw * 1.25, 0.08, 0.95)
        s.long_bone((0.0, -1.6), (-side * 0.02, ank), bw)
        fx = side * bw * 1.2
        s.long_bone((fx, -1.6), (fx * 1.05, ank + 0.08), _u(rng, 0.04, 0.055))
        s.ellipse(s.bone, -side * 0.02, ank, bw * 0.75, 0.06, 0.95)  # plafond
        s.ellipse(s.bone, fx * 1.05, ank + 0.08, 0.05, 0.07, 0.9)  # lateral malleolus
        s.ellipse(s.bone, 0.0, ank + 0.16, bw * 0.8, 0.08, 0.9)  # talus


def _hand(s: _Sketch, rng: np.random.Generator) -> None:
    base_y = _u(rng, 0.0, 0.12)  # MCP joint line
    spread = _u(rng, 3.0, 9.0)
    carpal_y = base_y + _u(rng, 0.5, 0.58)
    # Palm and wrist.
    s.poly(
        s.soft,
        [
            (-0.33, base_y - 0.05),
            (0.33, base_y - 0.05),
            (0.38, carpal_y),
            (0.24, 1.6),
            (-0.24, 1.6),
            (-0.32, carpal_y),
        ],
        1.0,
    )
    lengths = [
        (0.26, 0.15, 0.11),
        (0.3, 0.19, 0.12),
        (0.32, 0.21, 0.13),
        (0.3, 0.19, 0.12),
        (0.24, 0.14, 0.1),
    ]
    finger_scale = _u(rng, 0.85, 1.1)
    for f in range(4):
        x0 = -0.24 + f * 0.16
        ang = math.radians((f - 1.5) * spread + _u(rng, -3, 3))
        dx, dy = math.sin(ang), -math.cos(ang)
        # Metacarpal from the carpus to the MCP joint.
        s.long_bone((-0.1 + f * 0.065, carpal_y - 0.05), (x0, base_y), _u(rng, 0.05, 0.065))
        s.ellipse(s.bone, x0, base_y, 0.035, 0.03, 0.95)
        x, y = x0, base_y - 0.04
        total = sum(lengths[f + 1]) * finger_scale
        s.line(s.soft, [(x, y + 0.04), (x + dx * (total + 0.06), y + dy * (total + 0.06))], 1.0, 0.13)
        width = 0.055
        for seg in lengths[f + 1]:
            seg *= finger_scale
            s.long_bone((x, y), (x + dx * seg, y + dy * seg), width, canal=0.75)
            x, y = x + dx * (seg + 0.035), y + dy * (seg + 0.035)
            width *= 0.85
    # Thumb: shorter, off to the side and angled away from the fingers.
    ta = math.radians(_u(rng, 35, 55))
    dx, dy = math.sin(ta), -math.cos(ta)
    x, y = 0.2, carpal_y - 0.08
    s.line(s.soft, [(x, y), (x + dx * 0.72, y + dy * 0.72)], 1.0, 0.15)
    width = 0.065
    for seg in lengths[0]:
        seg = seg * finger_scale * 1.05
        s.long_bone((x, y), (x + dx * seg, y + dy * seg), width, canal=0.75)
        x, y = x + dx * (seg + 0.035), y + dy * (seg + 0.035)
        width *= 0.85
    # Carpal bones: a cluster of small rounded blocks.
    for r in range(2):
        for c in range(4):
            s.ellipse(
                s.bone,
                -0.15 + c * 0.1 + r * 0.02,
                carpal_y + 0.02 + r * 0.1,
                0.045,
                0.042,
                0.85,
                angle=_u(rng, 0, 90),
            )
    # Distal radius and ulna.
    ry = carpal_y + 0.2
    s.long_bone((-0.08, ry + 0.05), (-0.1, 1.6), 0.11)
    s.ellipse(s.bone, -0.06, ry, 0.14, 0.05, 0.95)
    s.long_bone((0.13, ry + 0.05), (0.14, 1.6), 0.07)


_DRAW: dict[str, Callable[[_Sketch, np.random.Generator], None]] = {
    "head": _head,
    "chest": _chest,
    "abdomen": _abdomen,
    "pelvis": _pelvis,
    "arm": _arm,
    "leg": _leg,
    "hand": _hand,
}


# --- acquisition nuisances ----------------------------------------------------------------------------------


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    low = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)


def _bandpass(rng: np.random.Generator, h: int, w: int, fine: float, coarse: float) -> np.ndarray:
    """Zero-mean, unit-variance noise correlated between two scales (pixels).

    Real radiographs are full of fine correlated texture (lung parenchyma and vessels, trabecular bone,
    detector noise).  Phantoms without it teach a model that any fine texture means "not a radiograph".
    """
    n = rng.standard_normal((h, w), dtype=np.float32)
    a = cv2.GaussianBlur(n, (0, 0), fine)
    a -= cv2.GaussianBlur(a, (0, 0), coarse)
    a /= np.float32(float(a.std()) + 1e-6)
    return a


def _thickness(soft: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soft tissue as a path length, not a flat fill: a ray through a rounded limb or trunk crosses less
    tissue near its edge (a circle's chord, sqrt(1 - (1 - r)^2)), so the body fades out to the skin line
    instead of ending at a step.  ``r`` is the distance to the outline over a depth that varies per image."""
    mask = (soft > 0.05).astype(np.uint8)
    d = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    dmax = float(d.max())
    if dmax <= 0:
        return soft
    r = np.minimum(d * np.float32(1.0 / (dmax * _u(rng, 0.45, 1.0))), 1.0)
    r *= 2.0 - r
    np.sqrt(r, out=r)
    return r * soft


def _collimator_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """1 inside the exposed field, 0 under the collimator blades, with a blurred (penumbra) edge.

    The blades are straight and may be slightly rotated; one to four sides are closed in."""
    m = np.ones((h, w), np.float32)
    sides = [e for e in range(4) if rng.random() < 0.55] or [int(rng.integers(4))]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for e in sides:
        frac = _u(rng, 0.03, 0.2)
        tilt = math.tan(math.radians(_u(rng, -4, 4)))
        if e == 0:
            m[yy < h * frac + (xx - w / 2) * tilt] = 0.0
        elif e == 1:
            m[yy > h * (1 - frac) + (xx - w / 2) * tilt] = 0.0
        elif e == 2:
            m[xx < w * frac + (yy - h / 2) * tilt] = 0.0
        else:
            m[xx > w * (1 - frac) + (yy - h / 2) * tilt] = 0.0
    return cv2.GaussianBlur(m, (0, 0), max(0.5, _u(rng, 0.002, 0.01) * min(h, w)))


def _shutter(img: np.ndarray, rng: np.random.Generator) -> None:
    """Electronic shutter: software blacks out the borders after acquisition (a display-side, not physical,
    nuisance, so it is drawn on the final image)."""
    h, w = img.shape
    value = _u(rng, 0.0, 0.06)
    edges = [e for e in range(4) if rng.random() < 0.5] or [int(rng.integers(4))]
    for e in edges:
        frac = _u(rng, 0.03, 0.12)
        if e == 0:
            img[: int(h * frac), :] = value
        elif e == 1:
            img[h - int(h * frac) :, :] = value
        elif e == 2:
            img[:, : int(w * frac)] = value
        else:
            img[:, w - int(w * frac) :] = value


def _marker(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape
    text = "L" if rng.random() < 0.5 else "R"
    scale = min(h, w) / 256.0 * _u(rng, 0.8, 1.4)
    thick = max(1, round(2 * scale))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    margin = int(0.04 * min(h, w))
    x = margin if rng.random() < 0.5 else w - margin - tw
    y = margin + th if rng.random() < 0.5 else h - margin
    if rng.random() < 0.5:  # lead markers often sit on a small square tag
        cv2.rectangle(img, (x - 3, y - th - 3), (x + tw + 3, y + 3), 0.2, -1)
    # OpenCV only renders text into 8-bit images, so draw a coverage mask and blend it in.
    mask = np.zeros((h, w), np.uint8)
    cv2.putText(mask, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
    if rng.random() < 0.5:  # mirrored, as a marker placed on the detector's far side reads
        mask = np.ascontiguousarray(mask[:, ::-1])
    alpha = mask.astype(np.float32) * np.float32(1 / 255)
    img += alpha * (np.float32(_u(rng, 0.9, 1.0)) - img)


def _attenuation(s: _Sketch, rng: np.random.Generator) -> np.ndarray:
    """Line integral of attenuation through the drawn anatomy (arbitrary units, >= 0).

    Soft tissue contributes in proportion to its path length (:func:`_thickness`); gas in lungs and bowel
    REPLACES tissue along the ray (so it can never make a region lighter than no body at all); bone adds.
    Lung parenchyma and trabecular bone carry fine correlated texture.
    """
    h, w = s.h, s.w
    edge = max(0.6, 0.008 * s.k)
    soft = cv2.GaussianBlur(_thickness(s.soft, rng), (0, 0), edge * 1.5)
    bone = cv2.GaussianBlur(s.bone, (0, 0), edge)
    np.maximum(bone, 0.0, out=bone)
    air = cv2.GaussianBlur(s.air, (0, 0), edge * 2)
    fine = max(0.6, 0.006 * s.k)
    bone *= 1.0 + np.float32(_u(rng, 0.03, 0.12)) * _bandpass(rng, h, w, fine, fine * 4)
    air *= 1.0 + np.float32(_u(rng, 0.02, 0.08)) * _bandpass(rng, h, w, fine * 2, fine * 10)
    np.clip(air, 0.0, 1.0, out=air)
    # Tissue density varies smoothly (fat, muscle, organs).
    dens = _smooth_field(rng, h, w, 12)
    dens *= np.float32(0.08)
    dens += 1.0
    air *= np.float32(_AIR_W / _SOFT_W * _u(rng, 0.75, 1.0))  # depth of inspiration, gas volume
    np.subtract(1.0, air, out=air)
    a = soft * dens
    a *= air
    a *= np.float32(_SOFT_W * _u(rng, 0.8, 1.2))
    bone *= np.float32(_BONE_W * _u(rng, 0.85, 1.15))
    a += bone
    np.maximum(a, 0.0, out=a)
    return a


def _expose(a: np.ndarray, rng: np.random.Generator, collimate: bool = True) -> np.ndarray:
    """X-ray physics from attenuation to the detector's log signal, returned in [0, 1], bone bright.

    Primary fluence falls as exp(-mu t); the anode heel effect tilts it across the field; the collimator
    blades stop it outside the field; scatter (a broad blur of the transmitted fluence, strongest without a
    grid) fogs the image and lowers contrast in dense regions; quantum noise grows as the square root of the
    photon count, correlated over a couple of pixels by the detector.  Detectors record ~log exposure, so
    the raw image is -log of what arrives.
    """
    h, w = a.shape
    fluence = np.exp(a * np.float32(-_u(rng, 2.5, 5.0)))
    if rng.random() < 0.5:
        ramp = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    else:
        ramp = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    fluence *= 1.0 + ramp * np.float32(_u(rng, -0.15, 0.15))
    if rng.random() < 0.55 and collimate:
        fluence *= _collimator_mask(rng, h, w)
    spr = _u(rng, 0.0, 0.6)  # scatter-to-primary ratio at the centre
    if spr > 0.02:
        small = cv2.resize(fluence, (max(4, w // 8), max(4, h // 8)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), _u(rng, 2.0, 5.0))
        fluence += np.float32(spr) * cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    counts = _u(rng, 300.0, 5000.0)  # photons per pixel through no object
    noise = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), _u(rng, 0.4, 1.0))
    noise *= np.sqrt(np.maximum(fluence, 0.0) * np.float32(1.0 / counts))
    fluence += noise
    np.maximum(fluence, np.float32(2e-3), out=fluence)
    raw = -np.log(fluence)
    lo, hi = float(raw.min()), float(raw.max())
    raw -= np.float32(lo)
    raw *= np.float32(1.0 / max(hi - lo, 1e-6))
    return raw


def _present(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Processing for display, or none.

    "For presentation" images get multi-scale contrast (unsharp masking boosts detail against the broad
    density range) and a sigmoid look-up table; "for processing" (raw) images keep the flat, low-contrast
    log signal, and archives hold both."""
    h, w = img.shape
    if rng.random() < 0.35:
        return img
    sigma = _u(rng, 0.02, 0.08) * min(h, w)
    small = cv2.resize(img, (max(4, w // 4), max(4, h // 4)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(0.5, sigma / 4))
    broad = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    out = img + np.float32(_u(rng, 0.0, 1.5)) * (img - broad)
    centre = float(np.median(out)) + _u(rng, -0.1, 0.1)
    slope = _u(rng, 3.0, 9.0)
    out = 1.0 / (1.0 + np.exp((centre - out) * np.float32(slope)))
    lo, hi = float(out.min()), float(out.max())
    return ((out - lo) * np.float32(1.0 / max(hi - lo, 1e-6))).astype(np.float32)


def render_phantom(body_part: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Draw one synthetic radiograph so archives can be generated without any real patient data.

    The anatomy is drawn as attenuation maps (soft-tissue thickness, gas, bone), then imaged the way an
    X-ray system does (:func:`_expose`: exponential attenuation, heel effect, collimation, scatter, quantum
    noise, log detector) and optionally processed for display (:func:`_present`).
    The result is float32 in [0, 1] with MONOCHROME2 polarity (bone bright, air dark) unless the random
    "inverted" nuisance fired, which mimics archives where some studies were exported with the wrong polarity.
    Every random choice comes from ``rng``, so the same generator state always yields the same image.
    """
    if body_part not in _DRAW:
        raise ValueError(f"unknown body part {body_part!r}; expected one of {CLASSES}")
    if height < 16 or width < 16:
        raise ValueError(f"phantom size must be at least 16x16, got {height}x{width}")
    h, w = int(height), int(width)
    scale = _u(rng, 0.75, 1.15)
    angle = _u(rng, -15, 15)
    tx, ty = _u(rng, -0.1, 0.1), _u(rng, -0.1, 0.1)
    if rng.random() < 0.25:  # partial cropping: push some anatomy off one edge, never most of it
        shift = _u(rng, 0.12, 0.3) * (1 if rng.random() < 0.5 else -1)
        if rng.random() < 0.5:
            tx += shift
        else:
            ty += shift
    s = _Sketch(h, w, scale, angle, tx, ty)
    _DRAW[body_part](s, rng)

    img = _present(_expose(_attenuation(s, rng), rng), rng)
    if rng.random() < 0.5:
        img = cv2.flip(img, 1)  # left/right (or left vs right limb)
    # Exposure: gamma and window-like contrast stretch.
    img = cv2.pow(img, _u(rng, 0.7, 1.4))
    lo, hi = _u(rng, 0.0, 0.1), _u(rng, 0.8, 1.0)
    img *= np.float32(hi - lo)
    img += np.float32(lo)
    if rng.random() < 0.5:
        _marker(img, rng)
    if rng.random() < 0.15:
        _shutter(img, rng)
    sigma = _u(rng, 0.0, 1.5)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    noise = rng.standard_normal((h, w), dtype=np.float32)
    noise *= np.float32(_u(rng, 0.002, 0.015))  # electronic noise, on top of the quantum noise
    img += noise
    if rng.random() < 0.15:
        np.subtract(1.0, img, out=img)
    np.clip(img, 0.0, 1.0, out=img)
    return img
