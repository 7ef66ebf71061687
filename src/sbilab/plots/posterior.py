"""Figures about the posterior at the observation: pairplot and predictive traces."""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sbi.analysis import pairplot as sbi_pairplot  # noqa: E402
from torch import Tensor  # noqa: E402


def pairplot(samples: Tensor, names: Sequence[str], limits: Optional[Sequence[Sequence[float]]],
             theta_true: Optional[Tensor]) -> Figure:
    """sbi's pairplot of posterior samples, prior limits as axes, θ* marked in red."""
    fig, _ = sbi_pairplot(
        samples,
        points=None if theta_true is None else theta_true[None],
        limits=None if limits is None else [list(map(float, lim)) for lim in limits],
        labels=list(names),
        figsize=(5, 5),
        fig_kwargs=dict(points_colors=["r"], points_offdiag={"markersize": 6}),
    )
    return fig


def predictive_traces(time: np.ndarray, observed: np.ndarray, predicted: np.ndarray,
                      current: Optional[np.ndarray], current_scale: float = 1.0,
                      ylabel: str = "voltage (mV)") -> Figure:
    """The observed trace against traces simulated from posterior draws, input current underneath."""
    rows = 2 if current is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(7, 5), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [4, 1][:rows]})
    ax = axes[0, 0]
    for i, trace in enumerate(predicted):
        ax.plot(time, trace, "--", lw=1, color="tab:orange", alpha=0.7, label="posterior samples" if i == 0 else None)
    ax.plot(time, observed, lw=1.5, color="tab:blue", label="observation")
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, loc="upper right")
    ax.spines[["top", "right"]].set_visible(False)
    if current is not None:
        ax_i = axes[1, 0]
        ax_i.plot(time, current * current_scale, "k", lw=1.5)
        ax_i.set_ylabel("input (nA)")
        ax_i.spines[["top", "right"]].set_visible(False)
    axes[-1, 0].set_xlabel("time (ms)")
    fig.tight_layout()
    return fig
