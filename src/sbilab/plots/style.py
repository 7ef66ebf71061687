"""Shared look of the diagnostic figures: colours and a grid of panels (no pyplot)."""

from __future__ import annotations

import math
from typing import Optional, Sequence

from matplotlib.figure import Figure

#: confidence bands
BAND = "#c7c7c7"
#: the measured curve
LINE = "#1f4e79"
#: the observation
OBSERVED = "#c0392b"


def panel_grid(num_panels: int, panel_size: float = 3.2, max_cols: int = 4) -> tuple[Figure, list]:
    """A pyplot-free figure with ``num_panels`` axes in rows of at most ``max_cols``."""
    ncols = max(1, min(num_panels, max_cols))
    nrows = max(1, math.ceil(num_panels / ncols))
    fig = Figure(figsize=(panel_size * ncols, panel_size * nrows * 0.95), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[num_panels:]:
        ax.set_visible(False)
    return fig, axes[:num_panels]


def default_names(names: Optional[Sequence[str]], d: int, prefix: str = "theta") -> list[str]:
    """The given names or ``<prefix>_0..``."""
    return list(names) if names is not None else [f"{prefix}_{j}" for j in range(d)]
