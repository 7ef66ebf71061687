"""Figures about the posterior at the observation: pairplot, predictive traces, a recording against simulations."""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sbi.analysis import pairplot as sbi_pairplot  # noqa: E402
from torch import Tensor  # noqa: E402

#: histogram bins per axis of the pairplot: the Freedman-Diaconis choice, kept in this range
PAIRPLOT_BINS = (10, 200)


def axis_limits(samples: np.ndarray, limits: Optional[Sequence[Sequence[float]]]) -> list[list[float]]:
    """The given limits, else each parameter's sample range, widened where it has no width."""
    if limits is not None:
        return [[float(lo), float(hi)] for lo, hi in limits]
    out = []
    for column in samples.T:
        finite = column[np.isfinite(column)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        pad = 0.5 * max(abs(lo), 1.0) if hi <= lo else 0.0
        out.append([lo - pad, hi + pad])
    return out


def histogram_bins(samples: np.ndarray, limits: Sequence[Sequence[float]]) -> int:
    """One bin count for every axis: the median Freedman-Diaconis count over the plotted ranges, within
    ``PAIRPLOT_BINS`` (sbi's own heuristic asks for infinitely many bins when a posterior collapses to a
    point, e.g. at an x_o no simulation resembles, and crashes)."""
    low, high = PAIRPLOT_BINS
    counts = []
    for column, (lo, hi) in zip(samples.T, limits):
        finite = column[np.isfinite(column)]
        q75, q25 = np.percentile(finite, [75, 25]) if finite.size else (0.0, 0.0)
        width = 2.0 * (q75 - q25) * max(finite.size, 1) ** (-1.0 / 3.0)
        counts.append(high if width <= 0 else (hi - lo) / width)
    return int(np.clip(np.median(counts), low, high))


def pairplot(samples: Tensor, names: Sequence[str], limits: Optional[Sequence[Sequence[float]]],
             theta_true: Optional[Tensor]) -> Figure:
    """sbi's pairplot of posterior samples, prior limits as axes, θ* marked in red."""
    values = samples.detach().cpu().double().numpy()
    axes = axis_limits(values, limits)
    bins = histogram_bins(values, axes)
    fig, _ = sbi_pairplot(
        samples,
        points=None if theta_true is None else theta_true[None],
        limits=axes,
        labels=list(names),
        figsize=(5, 5),
        diag_kwargs={"mpl_kwargs": {"bins": bins}},
        upper_kwargs={"np_hist_kwargs": {"bins": bins}},
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


def recording_overlay(time: np.ndarray, recorded: np.ndarray, simulated: np.ndarray,
                      current: Optional[np.ndarray], current_scale: float = 1.0, title: str = "") -> Figure:
    """A recorded trace above traces simulated from posterior samples, one panel each with the recording
    in grey behind it, and the injected current underneath (a long spike train overlaid on itself is a blur)."""
    rows = 1 + len(simulated) + (current is not None)
    heights = [3] * (1 + len(simulated)) + [1] * (current is not None)
    fig, axes = plt.subplots(rows, 1, figsize=(9, 1.6 * rows + 0.6), sharex=True, sharey=False, squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    axes = axes[:, 0]
    axes[0].plot(time, recorded, lw=0.6, color="k")
    axes[0].set_ylabel("recording\n(mV)")
    for ax, trace in zip(axes[1 : 1 + len(simulated)], simulated):
        ax.plot(time, recorded, lw=0.6, color="0.8")
        ax.plot(time, trace, lw=0.6, color="tab:orange")
        ax.set_ylabel("posterior\nsample (mV)")
    voltages = np.concatenate([recorded[None], np.reshape(simulated, (-1, recorded.shape[0]))])
    for ax in axes[: 1 + len(simulated)]:  # one voltage scale for all panels
        ax.set_ylim(float(np.nanmin(voltages)) - 5, float(np.nanmax(voltages)) + 5)
    if current is not None:
        axes[-1].plot(time, current * current_scale, "k", lw=1.0)
        axes[-1].set_ylabel("input (nA)")
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    axes[-1].set_xlabel("time (ms)")
    if title:
        axes[0].set_title(f"{title}: recording (black) and simulations from posterior samples (orange)", fontsize=10)
    fig.tight_layout()
    return fig
