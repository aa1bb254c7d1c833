"""The phantoms' anatomy and imaging physics: the cues that tell body parts apart and make a phantom look
like a radiograph rather than a cartoon (a model that never saw radiograph-like texture or soft-tissue
fall-off calls real radiographs "not a radiograph")."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.synthetic import phantoms
from core.synthetic.phantoms import _arm, _expose, _leg, _Sketch, _thickness


def _bone_runs(row: np.ndarray, level: float) -> list[int]:
    """Widths (pixels) of the bone runs a horizontal line crosses."""
    inside = np.concatenate([[False], row > level, [False]])
    edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
    return [int(b - a) for a, b in zip(edges[::2], edges[1::2], strict=True)]


@pytest.mark.parametrize("seed", range(6))
def test_forearm_bones_match_but_the_fibula_is_much_thinner_than_the_tibia(seed: int) -> None:
    # Below the elbow / knee and above the wrist / ankle (0.4 units below the centre, every view): radius and
    # ulna have similar calibre; the tibia is several times the fibula.
    ratios = {}
    for name, draw in (("arm", _arm), ("leg", _leg)):
        s = _Sketch(400, 400, 1.0, 0.0, 0.0, 0.0)
        draw(s, np.random.default_rng(seed))
        runs = _bone_runs(s.bone[280], 0.3)
        assert len(runs) == 2, (name, runs)
        ratios[name] = max(runs) / min(runs)
    assert ratios["arm"] < 1.6, ratios
    assert ratios["leg"] > 2.0, ratios


def test_soft_tissue_fades_towards_the_skin_line() -> None:
    # A disc of tissue projects as a chord length: thickest in the middle, thinning smoothly to the edge.
    soft = np.zeros((101, 101), np.float32)
    cv2.circle(soft, (50, 50), 40, 1.0, -1)
    t = _thickness(soft, np.random.default_rng(0))
    profile = t[50, 50:91]
    assert t[50, 50] == pytest.approx(t.max())
    assert np.all(np.diff(profile) <= 1e-6), "thickness must fall monotonically from the centre"
    assert profile[-1] < 0.5 * profile[0], "no flat fill: the skin line is thin"
    assert t[0, 0] == 0.0


def test_exposure_is_log_attenuation_with_bone_bright() -> None:
    # Denser -> fewer photons -> brighter (MONOCHROME2); the detector is logarithmic, so equal steps of
    # attenuation give (nearly) equal steps of signal where scatter is low.
    a = np.repeat(np.linspace(0.0, 0.8, 4, dtype=np.float32), 64)[None, :].repeat(64, axis=0)
    means = []
    for seed in range(6):
        raw = _expose(a, np.random.default_rng(seed), collimate=False)
        assert raw.dtype == np.float32 and raw.min() >= 0.0 and raw.max() <= 1.0
        means.append([float(np.median(raw[20:44, 64 * k + 20 : 64 * k + 44])) for k in range(4)])
    assert all(np.all(np.diff(m) > 0) for m in means), means


def test_phantoms_carry_fine_texture() -> None:
    # Real radiographs have correlated fine texture (lung markings, trabeculae, quantum noise); phantoms that
    # lack it teach a model that texture alone means "not a radiograph".
    for part in phantoms.CLASSES:
        img = phantoms.render_phantom(part, np.random.default_rng(3), 256, 256)
        detail = img - cv2.GaussianBlur(img, (0, 0), 2.0)
        assert float(detail.std()) > 0.002, part
