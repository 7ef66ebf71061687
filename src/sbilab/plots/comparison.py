"""Figures that compare runs: metric against simulation budget, two-factor heatmaps, HPO history."""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

#: one panel: (metric name, {series label: [(budget, value), ...]})
Panel = tuple[str, Mapping[str, Sequence[tuple[float, float]]]]


def _mean_by_x(points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean value per distinct x (replicates, e.g. seeds, collapse to one point of the line)."""
    grouped: dict[float, list[float]] = {}
    for x, y in points:
        grouped.setdefault(float(x), []).append(float(y))
    xs = np.array(sorted(grouped))
    return xs, np.array([np.mean(grouped[x]) for x in xs])


def metric_vs_budget(panels: Sequence[Panel], budget_label: str = "simulation.num_simulations") -> Figure:
    """One panel per metric; x = simulation budget, one line per series (estimator), points = runs."""
    panels = [p for p in panels if any(p[1].values())]
    if not panels:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.text(0.5, 0.5, "no finished runs with these metrics", ha="center", va="center")
        ax.set_axis_off()
        return fig
    labels = sorted({label for _, series in panels for label in series})
    colors = {label: plt.cm.tab10(i % 10) for i, label in enumerate(labels)}
    all_x = [x for _, series in panels for pts in series.values() for x, _ in pts]
    log_x = bool(all_x) and min(all_x) > 0 and max(all_x) / min(all_x) >= 3
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (metric, series) in zip(axes[0], panels):
        for label in labels:
            points = [p for p in series.get(label, []) if math.isfinite(p[1])]
            if not points:
                continue
            xs, ys = _mean_by_x(points)
            ax.plot(xs, ys, "-o", color=colors[label], label=label, ms=5)
            raw_x, raw_y = zip(*points)
            if len(points) > len(xs):  # replicates: show every run as well as the mean
                ax.plot(raw_x, raw_y, ".", color=colors[label], alpha=0.4)
        if log_x:
            ax.set_xscale("log")
        distinct_x = sorted(set(all_x))
        if 0 < len(distinct_x) <= 8:
            ax.set_xticks(distinct_x, [f"{x:g}" for x in distinct_x])
            ax.minorticks_off()
        ax.set_xlabel(budget_label)
        ax.set_title(metric)
        ax.spines[["top", "right"]].set_visible(False)
    handles, names = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    if handles:
        fig.legend(handles, names, loc="upper center", ncol=min(len(names), 5), frameon=False,
                   bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.9 if handles else 1))
    return fig


def heatmap(grid: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], row_name: str,
            col_name: str, metric: str, note: Optional[str] = None) -> Figure:
    """A grid of ``metric`` over two swept factors (mean per cell; blank = no finished run)."""
    grid = np.asarray(grid, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * len(col_labels) + 3, 0.7 * len(row_labels) + 2.2))
    masked = np.ma.masked_invalid(grid)
    image = ax.imshow(masked, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels], rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    ax.set_xlabel(col_name)
    ax.set_ylabel(row_name)
    finite = grid[np.isfinite(grid)]
    middle = float(np.mean([finite.min(), finite.max()])) if finite.size else 0.0
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=9,
                        color="white" if grid[i, j] < middle else "black")
    fig.colorbar(image, ax=ax, label=metric)
    ax.set_title(metric if note is None else f"{metric}\n({note})", fontsize=10)
    fig.tight_layout()
    return fig


def optimization_history(values: Sequence[Optional[float]], metric: str, direction: str = "minimize") -> Figure:
    """Objective per trial and the best value so far (HPO)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    trials = [i for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    ys = [float(values[i]) for i in trials]  # type: ignore[arg-type]
    ax.plot(trials, ys, "o", label="trial")
    if ys:
        best = np.minimum.accumulate(ys) if direction == "minimize" else np.maximum.accumulate(ys)
        ax.step(trials, best, where="post", color="k", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def param_slices(points: Mapping[str, Sequence[tuple[object, float]]], metric: str,
                 log_keys: Sequence[str] = ()) -> Figure:
    """Objective against each searched parameter, one panel per parameter (HPO)."""
    keys = list(points)
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.8 * max(len(keys), 1), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pairs = [(x, y) for x, y in points[key] if y is not None and math.isfinite(y)]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in pairs)
        if pairs and numeric:
            ax.plot([x for x, _ in pairs], [y for _, y in pairs], "o", alpha=0.8)
            if key in log_keys:
                ax.set_xscale("log")
                xs = [float(x) for x, _ in pairs if float(x) > 0]  # type: ignore[arg-type]
                decades = math.log10(max(xs) / min(xs)) if xs else 0.0
                ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades < 1.5 else (1.0,)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
        elif pairs:
            labels = sorted({str(x) for x, _ in pairs})
            ax.plot([labels.index(str(x)) for x, _ in pairs], [y for _, y in pairs], "o", alpha=0.8)
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
