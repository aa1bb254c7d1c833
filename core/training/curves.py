"""Training curves a user looks at: loss and macro-F1 per epoch, train vs validation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(history: Sequence[dict], path: str | Path) -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    ax1.set(title="loss", xlabel="epoch")
    ax2.plot(epochs, [h["train_macro_f1"] for h in history], "o-", label="train")
    ax2.plot(epochs, [h["val_macro_f1"] for h in history], "s-", label="validation")
    ax2.set(title="macro-F1", xlabel="epoch", ylim=(0, 1.02))
    for i, h in enumerate(history):
        if i and h.get("phase") != history[i - 1].get("phase"):
            for ax in (ax1, ax2):
                ax.axvline(h["epoch"] - 0.5, color="grey", ls="--", lw=0.8)
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
