"""Augmentation suited to radiographs, applied to preprocessed [0, 1] images.

Small rotations, scale and shifts (positioning varies between technologists), brightness / contrast / gamma
(exposure and detector response vary), Gaussian noise (dose).  No vertical flip: anatomy is not symmetric
top-to-bottom and a flipped chest is not a chest.  Horizontal flips are opt-in (left/right markers matter).
Pure and seeded, so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 10.0
    scale: float = 0.10
    shift: float = 0.08
    brightness: float = 0.08
    contrast: float = 0.15
    gamma: float = 0.25
    noise_std: float = 0.02
    horizontal_flip: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def augment(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Return an augmented copy of one (H, W, C) float32 image in [0, 1]."""
    h, w = image.shape[:2]
    angle = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)
    scale = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
    tx, ty = rng.uniform(-cfg.shift, cfg.shift, size=2) * (w, h)
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
    m[:, 2] += (tx, ty)
    gray = image[:, :, 0]
    out = cv2.warpAffine(gray, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if cfg.horizontal_flip and rng.random() < 0.5:
        out = out[:, ::-1]
    gamma = float(np.exp(rng.uniform(-cfg.gamma, cfg.gamma)))
    out = np.power(np.clip(out, 0.0, 1.0), gamma)
    contrast = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    out = (out - 0.5) * contrast + 0.5 + rng.uniform(-cfg.brightness, cfg.brightness)
    if cfg.noise_std > 0:
        out = out + rng.normal(0.0, rng.uniform(0, cfg.noise_std), size=out.shape)
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return np.repeat(out[:, :, None], image.shape[2], axis=2)
