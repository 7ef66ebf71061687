"""Weights that make a truncated sequential run's training set follow the prior across its last region.

TSNPE trains each round on all simulations so far: round 0's from the prior, round k's from the prior
truncated to region R_k. Relative to the prior, that mixture has the density

    ρ(θ) = Σ_k (n_k / N) · 1[θ ∈ R_k] / Z_k        (Z_k: the prior mass of R_k; R_0 is the whole prior)

and NPE trained on it learns p(θ | x) · ρ(θ), normalised. Deistler et al. (2022) rely on ρ being
constant where the posterior lives, which holds inside the last region only where that region lies in
every earlier one. Regions of a quantile as large as 1e-3 shrink to a few per cent of the prior and need
not be nested; where the last region leaves an earlier one, ρ drops and the network learns too little
posterior mass there, inside the very region the run is calibrated on. Weighting every simulation
inside the last region by ρ_max / ρ(θ) (ρ_max: ρ of a θ in every region) makes the weighted mixture
∝ prior across that region; every other simulation keeps weight 1, so training keeps the focus that
truncation buys. Nested regions give all weights 1, and the same numbers as without them.

Measured on two Allen cells (``experiment=allen_cell``, quantile 1e-3): 23-26 % of the last region's
simulations lie outside an earlier region, weights reach 1.9; the correction did not remove the SBC
failures on that region (docs/recordings.md), so ``method.nesting_correction`` is off by default.

The masses Z_k come from the simulations themselves, by the self-consistent estimator for samples from
several truncations of one density (Vardi 1985; WHAM/MBAR with 0/1 bias factors): consistent for any
overlap, and defined where the region is too small for prior draws to hit it often.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

#: iterations of the mass estimator at most, and its relative tolerance
MAX_ITERATIONS = 1_000
TOLERANCE = 1e-10


def region_masses(membership: Tensor, sizes: Sequence[int]) -> Tensor:
    """Prior masses [K] of the regions the simulations were drawn from (column 0: the prior, mass 1).

    ``membership``: bool [N, K], whether θ_i lies in region k (column 0 all true); ``sizes``: how many
    of the N simulations each region produced (rows in round order). The fixed point of
    Z_k = (1/N) Σ_i 1[θ_i ∈ R_k] / ρ(θ_i), with ρ as in the module's docstring.
    """
    inside = membership.to(torch.float64)
    share = torch.as_tensor(list(sizes), dtype=torch.float64) / inside.shape[0]
    masses = torch.ones(inside.shape[1], dtype=torch.float64)
    for _ in range(MAX_ITERATIONS):
        density_ratio = inside @ (share / masses)
        updated = (inside / density_ratio[:, None]).mean(dim=0)
        updated = updated / updated[0]
        converged = bool(((updated - masses).abs() <= TOLERANCE * masses).all())
        masses = updated
        if converged:
            break
    return masses


def nesting_weights(membership: Tensor, sizes: Sequence[int]) -> Tensor:
    """Per-simulation loss weights [N], mean 1: ρ_max / ρ(θ) inside the last region (column K−1), else 1."""
    inside = membership.to(torch.float64)
    share = torch.as_tensor(list(sizes), dtype=torch.float64) / inside.shape[0]
    per_region = share / region_masses(membership, sizes)
    density_ratio = inside @ per_region
    weights = torch.ones(inside.shape[0], dtype=torch.float64)
    last = membership[:, -1].bool()
    weights[last] = inside[last].max(dim=0).values @ per_region / density_ratio[last]
    return (weights / weights.mean()).to(torch.float32)
