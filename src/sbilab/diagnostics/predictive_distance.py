"""Standardized posterior-predictive distance at x_o, as the NPE-PF paper computes it.

Vetter et al. 2025 (``mackelab/npe-pfn``, ``tabpfn_sbi/evals/eval_standardized_distance.py``)
report, on the ten Allen cells, the mean over posterior-predictive simulations of

    ‖(x − x_o) / sd‖₂

where x = summary(simulator(θ)) for θ drawn from the posterior at x_o, and ``sd`` is the
per-statistic standard deviation (``torch.std``: n − 1 in the denominator) of the prior
predictive (simulations from prior draws); a statistic whose sd is below 1e-10 gets
sd = 1. Their means cancel in the difference. They use 10,000 of each.

Here, unlike there, simulations with a non-finite statistic are left out (and counted) on
both sides: theirs would turn the whole distance into NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sbilab.diagnostics.sampling import as_numpy

#: statistics whose prior-predictive sd is below this are not rescaled (sd := 1), as in NPE-PF
MIN_SD = 1e-10


@dataclass
class StandardizedDistanceResult:
    """The distance of each posterior-predictive simulation from x_o, in prior-predictive sds."""

    distance: float  # mean over the valid posterior-predictive simulations
    per_simulation: np.ndarray  # [M_valid]
    scale: np.ndarray  # [d] the prior-predictive sd (1 where below MIN_SD)
    num_prior: int  # valid prior-predictive simulations the sd came from
    num_invalid_prior: int
    num_invalid_predictive: int

    def metrics(self) -> dict[str, float]:
        return {"ppc/standardized_distance": self.distance,
                "ppc/standardized_distance_median": float(np.median(self.per_simulation)),
                "ppc/standardized_distance_invalid": float(self.num_invalid_predictive)}

    def arrays(self) -> dict[str, np.ndarray]:
        """Raw arrays by artifact path."""
        return {"diagnostics/ppc_standardized_distance.npy": self.per_simulation,
                "diagnostics/ppc_prior_predictive_sd.npy": self.scale}


def finite_rows(values: Any) -> tuple[np.ndarray, int]:
    """The rows of ``values`` [n, d] whose entries are all finite, and how many were not."""
    array = as_numpy(values)
    array = array.reshape(array.shape[0], -1)
    keep = np.isfinite(array).all(axis=1)
    return array[keep], int((~keep).sum())


def standardized_distance(predictive_x: Any, x_o: Any, prior_x: Any) -> StandardizedDistanceResult:
    """Mean ‖(x − x_o)/sd‖₂ over ``predictive_x`` [M, d], sd per statistic of ``prior_x`` [N, d]."""
    predictive, invalid_predictive = finite_rows(predictive_x)
    prior, invalid_prior = finite_rows(prior_x)
    xo = as_numpy(x_o).reshape(-1)
    if predictive.shape[1] != xo.shape[0] or prior.shape[1] != xo.shape[0]:
        raise ValueError(f"x_o has {xo.shape[0]} statistics, the predictive {predictive.shape[1]}, "
                         f"the prior predictive {prior.shape[1]}")
    if prior.shape[0] < 2 or predictive.shape[0] < 1:
        raise ValueError(f"need >= 2 finite prior-predictive and >= 1 posterior-predictive simulations, got "
                         f"{prior.shape[0]} and {predictive.shape[0]}")
    sd = prior.std(axis=0, ddof=1)
    sd = np.where(sd < MIN_SD, 1.0, sd)
    per_simulation = np.linalg.norm((predictive - xo) / sd, axis=1)
    return StandardizedDistanceResult(
        distance=float(per_simulation.mean()), per_simulation=per_simulation, scale=sd,
        num_prior=int(prior.shape[0]), num_invalid_prior=invalid_prior, num_invalid_predictive=invalid_predictive,
    )
