"""Posterior predictive check at the observation (the caller simulates the predictive).

``ppc/distance`` = mean over summary statistics of ``|x_o − median| / IQR`` of the
posterior predictive: a robust "how many predictive IQRs away is the observation".
Roughly 0–1 for a typical observation, ≫ 1 when the model cannot reproduce it.

Guards: non-finite predictive values (failed simulations) are ignored per statistic;
a statistic whose predictive IQR is 0 falls back to the predictive standard deviation;
a statistic whose predictive is constant is left out of the mean (with a warning if
the observation differs from that constant). If every statistic is degenerate the
distance is 0 when the observation matches everywhere and ``inf`` otherwise.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from sbilab.diagnostics.sampling import as_numpy


@dataclass
class PPCResult:
    distance: float
    x_o: np.ndarray  # [d]
    median: np.ndarray  # [d]
    iqr: np.ndarray  # [d] (0 where the predictive is degenerate)
    scale: np.ndarray  # [d] IQR, or std where IQR == 0, or nan where constant
    scaled_deviation: np.ndarray  # [d] |x_o − median| / scale (nan where excluded)
    tail_probability: np.ndarray  # [d] two-sided predictive tail probability of x_o
    num_predictive: np.ndarray  # [d] finite predictive values per statistic
    statistic_names: list[str] = field(default_factory=list)
    predictive: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # [M, d] the predictive it was judged on

    def metrics(self) -> dict[str, float]:
        return {"ppc/distance": float(self.distance)}

    def arrays(self) -> dict[str, np.ndarray]:
        """Raw arrays by artifact path."""
        return {"diagnostics/ppc_scaled_deviation.npy": self.scaled_deviation,
                "diagnostics/ppc_tail_probability.npy": self.tail_probability}


def ppc_distance(
    predictive_x: Any, x_o: Any, *, statistic_names: Optional[Sequence[str]] = None
) -> PPCResult:
    """Robust distance of ``x_o [d]`` from the posterior predictive ``predictive_x [M, d]``."""
    pred = as_numpy(predictive_x)
    if pred.ndim == 1:
        pred = pred[:, None]
    pred = pred.reshape(pred.shape[0], -1)
    xo = as_numpy(x_o).reshape(-1)
    d = pred.shape[1]
    if xo.shape[0] != d:
        raise ValueError(f"x_o has {xo.shape[0]} statistics but predictive_x has {d}")
    names = list(statistic_names) if statistic_names is not None else [f"x_{j}" for j in range(d)]
    if len(names) != d:
        raise ValueError(f"{len(names)} statistic names for {d} statistics")

    median = np.full(d, np.nan)
    iqr = np.full(d, np.nan)
    scale = np.full(d, np.nan)
    tail = np.full(d, np.nan)
    count = np.zeros(d, dtype=np.int64)
    for j in range(d):
        col = pred[:, j]
        col = col[np.isfinite(col)]
        count[j] = col.size
        if col.size == 0:
            continue
        q25, q50, q75 = np.quantile(col, [0.25, 0.5, 0.75])
        median[j], iqr[j] = q50, q75 - q25
        if iqr[j] > 0:
            scale[j] = iqr[j]
        elif col.std() > 0:
            scale[j] = col.std()
        tail[j] = min(1.0, 2.0 * min(np.mean(col <= xo[j]), np.mean(col >= xo[j])))
    dev = np.abs(xo - median)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(np.isfinite(scale) & np.isfinite(xo), dev / scale, np.nan)

    usable = np.isfinite(scaled)
    # a constant predictive that x_o matches (the HH default's spike count at θ*) is left out quietly;
    # one that x_o misses, an empty one or a non-finite x_o is worth a warning
    mismatched = [names[j] for j in range(d) if not usable[j] and not (dev[j] == 0)]
    if mismatched:
        warnings.warn(
            f"ppc: statistics {mismatched} have a degenerate or empty predictive that x_o does not match "
            f"(or a non-finite x_o) and are left out of ppc/distance",
            stacklevel=2,
        )
    if usable.any():
        distance = float(np.mean(scaled[usable]))
    else:
        distance = 0.0 if np.all(dev == 0) else float("inf")
    return PPCResult(
        distance=distance,
        x_o=xo,
        median=median,
        iqr=np.nan_to_num(iqr, nan=0.0),
        scale=scale,
        scaled_deviation=scaled,
        tail_probability=tail,
        num_predictive=count,
        statistic_names=names,
        predictive=pred,
    )
