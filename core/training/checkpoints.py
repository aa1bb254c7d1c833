"""Checkpoints that hold everything a run depends on, so a resumed run takes the steps an uninterrupted one would.

Weights, best weights, optimizer slots (so Adam continues rather than restarts), the dropout RNG state and the
loop state; the model's weights are one ``.npz`` of ``model.weights`` in order (far cheaper per checkpoint
than Keras's ``.weights.h5``, one h5py dataset per variable).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np

from core.training.config import CHECKPOINT_WEIGHTS, CHECKPOINT_WEIGHTS_H5, ReportFn


def save_arrays(path: str, arrays: list[np.ndarray]) -> None:
    np.savez(path, *arrays)


def load_arrays(path: str) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def assign_all(variables, values: list[np.ndarray], what: str) -> None:
    variables = list(variables)
    if len(variables) != len(values):
        raise ValueError(f"checkpoint {what} has {len(values)} arrays, the model expects {len(variables)}")
    for var, val in zip(variables, values, strict=True):
        if tuple(var.shape) != tuple(val.shape):
            raise ValueError(f"checkpoint {what}: {var.path} has shape {tuple(var.shape)}, saved {val.shape}")
        var.assign(val)


def model_state_variables(model) -> list:
    """Variables outside ``model.weights`` that still shape training: the dropout seed generators."""
    weight_ids = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weight_ids]


def load_checkpoint_weights(model, ckpt_dir: str) -> None:
    """Load a checkpoint's model weights into ``model`` (built like the run's): the .npz, or an older .weights.h5."""
    weights = os.path.join(ckpt_dir, CHECKPOINT_WEIGHTS)
    if os.path.exists(weights):
        assign_all(model.weights, load_arrays(weights), "weights")
    else:
        model.load_weights(os.path.join(ckpt_dir, CHECKPOINT_WEIGHTS_H5))


def keep_checkpoints(directory: str) -> ReportFn:
    """A ``report`` callback for runs without Ray: copies each epoch's checkpoint to ``directory/epoch_NNN``.

    Pass ``resume_dir=latest_checkpoint(directory)`` to :func:`run_training` to continue such a run.
    """
    os.makedirs(directory, exist_ok=True)

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        if ckpt_dir:
            shutil.copytree(ckpt_dir, os.path.join(directory, f"epoch_{int(metrics['epoch']):03d}"))

    return report


def latest_checkpoint(directory: str) -> str | None:
    """The newest checkpoint written by :func:`keep_checkpoints`, or None."""
    if not os.path.isdir(directory):
        return None
    names = sorted(n for n in os.listdir(directory) if n.startswith("epoch_"))
    return os.path.join(directory, names[-1]) if names else None
