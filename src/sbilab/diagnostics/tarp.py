"""TARP (Lemos et al. 2023) on the shared posterior samples, via sbi's machinery.

sbi's public ``run_tarp`` draws its own posterior samples; to reuse the samples the
suite already drew we call its internal ``sbi.diagnostics.tarp._run_tarp`` (same
signature in sbi 0.27.0: ``(posterior_samples, thetas, references, distance,
num_bins, z_score_theta)``) and the public ``check_tarp(ecp, alpha) -> (atc, ks_pval)``.

Reference points are drawn like sbi's ``get_tarp_references`` (uniform on the
per-dimension [min, max] box of the test θ) but from a seeded ``torch.Generator``,
so they neither depend on nor disturb the global RNG. ``z_score_theta=True`` matches
``run_tarp``'s default (note ``_run_tarp`` itself defaults to False).

``atc`` ≈ 0 when calibrated, > 0 for an over-dispersed (under-confident) and < 0 for
an under-dispersed (over-confident) posterior. ``ks_pvalue`` is sbi's two-sample KS
test between the ECP values and the α grid (a weak test; reported, not gated by default).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from sbilab.diagnostics.sampling import as_float_tensor


@dataclass
class TarpResult:
    ecp: np.ndarray  # [num_bins + 1] expected coverage probability
    alpha: np.ndarray  # [num_bins + 1] credibility levels
    atc: float
    ks_pvalue: float
    references: np.ndarray  # [N, D] reference points used

    def metrics(self) -> dict[str, float]:
        return {"tarp/atc": float(self.atc), "tarp/ks_pvalue": float(self.ks_pvalue)}

    def arrays(self) -> dict[str, np.ndarray]:
        """Raw arrays by artifact path."""
        return {"diagnostics/tarp_ecp.npy": self.ecp, "diagnostics/tarp_alpha.npy": self.alpha}


def tarp_references(theta: Tensor, seed: int) -> Tensor:
    """One reference point per test θ, uniform on the per-dimension [min, max] box."""
    gen = torch.Generator().manual_seed(int(seed))
    lo = theta.min(dim=0).values
    hi = theta.max(dim=0).values
    u = torch.rand(theta.shape, generator=gen, dtype=theta.dtype)
    return lo + u * (hi - lo)


def run_tarp_on_samples(
    samples: Any,
    theta: Any,
    *,
    seed: int = 0,
    references: Optional[Any] = None,
    num_bins: Optional[int] = None,
    z_score_theta: bool = True,
    distance: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
) -> TarpResult:
    """TARP ECP curve, ATC and KS p-value from samples ``[S, N, D]`` and ``theta [N, D]``.

    ``num_bins=None`` uses sbi's default ``N // 10``.
    """
    from sbi.diagnostics import check_tarp
    from sbi.diagnostics.tarp import _run_tarp
    from sbi.utils.metrics import l2

    samples = as_float_tensor(samples)
    theta = as_float_tensor(theta)
    refs = tarp_references(theta, seed) if references is None else as_float_tensor(references)
    if num_bins is None:
        num_bins = max(2, theta.shape[0] // 10)  # sbi's default N // 10, guarded for tiny N
    ecp, alpha = _run_tarp(
        samples,
        theta,
        refs,
        distance=distance or l2,
        num_bins=num_bins,
        z_score_theta=z_score_theta,
    )
    with warnings.catch_warnings():  # scipy's exact two-sample KS gives up for small grids
        warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful")
        atc, ks_pval = check_tarp(ecp, alpha)
    return TarpResult(
        ecp=ecp.detach().cpu().double().numpy(),
        alpha=alpha.detach().cpu().double().numpy(),
        atc=float(atc),
        ks_pvalue=float(ks_pval),
        references=refs.numpy().astype(np.float64),
    )
