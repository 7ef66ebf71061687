"""Figures about training: loss curves."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def loss_curves(train_losses: Sequence[float], val_losses: Sequence[float], best_epoch: int,
                other_val_losses: Sequence[Sequence[float]] = ()) -> Figure:
    """Training and validation loss per epoch, with the restored (best) epoch marked.

    ``other_val_losses``: the validation curves of an ensemble's further members, drawn thin.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, curve in enumerate(other_val_losses, start=1):
        ax.plot(range(len(curve)), curve, color="0.6", lw=0.8,
                label=f"validation, members 1-{len(other_val_losses)}" if k == 1 else None)
    ax.plot(range(len(train_losses)), train_losses, label="train")
    ax.plot(range(len(val_losses)), val_losses, label="validation")
    if 0 <= best_epoch < len(val_losses):
        ax.axvline(best_epoch, color="k", ls=":", lw=1)
        ax.plot([best_epoch], [val_losses[best_epoch]], "ko", ms=4, label=f"best (epoch {best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (−log q per sample)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig
