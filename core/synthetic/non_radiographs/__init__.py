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

Kinds (``OTHER_KINDS``), one renderer module per family:

* :mod:`~core.synthetic.non_radiographs.photos` - outdoor/indoor scenes and portraits, close-up objects (cups, bottles,
  fruit on a table, blurred backgrounds), material textures, astronomy (stars, galaxies, nebulae, planets),
  aerial/map views;
* :mod:`~core.synthetic.non_radiographs.graphics` - document pages (paragraphs, columns, tables, handwriting, scanned or
  photographed pages, slides, receipts, code listings), screenshots and UI, charts, logos;
* :mod:`~core.synthetic.non_radiographs.medical` - ultrasound sector/linear images with annotations, dose-like fields
  (colour-mapped or isodose lines), CT/MR-like cross-sections, micrographs (stained tissue, cells,
  fluorescence, blood smears);
* :mod:`~core.synthetic.non_radiographs.noise` - noise of many structures and "dead leaves" occlusion images.

Shared drawing helpers live in :mod:`~core.synthetic.non_radiographs.primitives`; this module holds the public API and
the finishing pass.

Images are uint8, RGB channel order (H x W x 3) or grayscale (H x W); callers writing with OpenCV must
convert RGB to BGR.  Every random choice comes from the ``rng`` passed in, so one generator state gives one
image, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from core.synthetic.non_radiographs.graphics import (
    _chart,
    _document,
    _logo,
    _screenshot,
)
from core.synthetic.non_radiographs.medical import (
    _cross_section,
    _dose_field,
    _micrograph,
    _ultrasound,
)
from core.synthetic.non_radiographs.noise import (
    _dead_leaves,
    _noise,
)
from core.synthetic.non_radiographs.photos import (
    _aerial,
    _astronomy,
    _photo_object,
    _photo_scene,
    _texture,
)
from core.synthetic.non_radiographs.primitives import (
    Image,
    _blur,
    _chance,
    _i,
    _u,
)

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
