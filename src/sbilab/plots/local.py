"""Figures of the checks at the observation: the L-C2ST probability-probability plot and the
misspecification tests (built from their results, without pyplot)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sbilab.plots.style import BAND, LINE, OBSERVED, panel_grid

if TYPE_CHECKING:
    from sbilab.diagnostics.lc2st import LC2STResult
    from sbilab.diagnostics.misspecification import MisspecificationResult

_VARIANT_TITLES = {"lc2st": "L-C2ST (permutation null)", "nf": "L-C2ST-NF (flow base space)"}


def plot_lc2st_pp(results: Sequence["LC2STResult"], conf_alpha: float = 0.05) -> Figure:
    """sbi's L-C2ST P-P plot per variant: the classifier's probabilities at x_o against chance (0.5),
    with the band the null trials span; outside the band the posterior at x_o is off."""
    from sbi.analysis import pp_plot_lc2st

    fig, axes = panel_grid(len(results), panel_size=3.6)
    for ax, result in zip(axes, results):
        pp_plot_lc2st(probs=[result.probabilities], probs_null=list(result.null_probabilities),
                      conf_alpha=conf_alpha, ax=ax, color=LINE, label="classifier at x_o")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("threshold")
        ax.set_ylabel("empirical CDF of the probabilities")
        ax.set_title(f"{_VARIANT_TITLES.get(result.variant, result.variant)}\n"
                     f"T = {result.statistic:.4f}, p = {result.p_value:.3g}", fontsize=9)
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    fig.suptitle("Local calibration at x_o", fontsize=10)
    return fig


def _null_panel(ax: Axes, null: np.ndarray, observed: float, title: str, xlabel: str) -> None:
    """Histogram of a statistic under the null with the observation's value marked (or noted off-scale)."""
    finite = null[np.isfinite(null)]
    ax.hist(finite, bins=40, color=BAND, edgecolor="white", lw=0.4, label="prior predictive (null)")
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    margin = 0.5 * max(hi - lo, 1e-12)
    if math.isfinite(observed) and lo - margin <= observed <= hi + margin:
        ax.axvline(observed, color=OBSERVED, lw=2, label="x_o")
    else:  # far off the null's scale (x_o = 1e6 gives log p = -1e31): say so instead of squashing the histogram
        left = observed < lo  # NaN compares False: shown on the right
        ax.text(0.02 if left else 0.98, 0.5, f"x_o: {observed:.3g}\n(off scale {'←' if left else '→'})",
                transform=ax.transAxes, ha="left" if left else "right", color=OBSERVED, fontsize=9)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_yticks([])
    ax.legend(loc="upper left", fontsize=7, frameon=False)


def plot_misspecification(result: "MisspecificationResult") -> Figure:
    """Each misspecification test: its statistic over prior-predictive draws, x_o marked."""
    panels = [(result.mmd.null, result.mmd.statistic, f"MMD, summary space: p = {result.mmd.p_value:.3g}",
               "MMD (z-scored statistics)")]
    if result.mmd_embedding is not None:
        e = result.mmd_embedding
        panels.append((e.null, e.statistic, f"MMD, learned embedding: p = {e.p_value:.3g}", "MMD (embedding)"))
    if result.logprob_reference is not None and result.logprob_observation is not None:
        panels.append((result.logprob_reference, result.logprob_observation,
                       f"marginal log-prob ({result.logprob_space}): p = {result.logprob_p_value:.3g}",
                       "log p(x) of held-out simulations"))
    fig, axes = panel_grid(len(panels), panel_size=3.6)
    for ax, (null, observed, title, xlabel) in zip(axes, panels):
        _null_panel(ax, np.asarray(null, dtype=np.float64), float(observed), title, xlabel)
    verdict = "MISSPECIFIED" if result.misspecified else "consistent with the simulator"
    fig.suptitle(f"Could the simulator have produced x_o? {verdict} (alpha = {result.alpha:g})", fontsize=10)
    return fig
