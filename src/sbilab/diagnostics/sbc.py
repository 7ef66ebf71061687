"""Simulation-based calibration (Talts et al. 2018) on pre-drawn posterior samples.

Ranks follow sbi's convention (``sbi.diagnostics.sbc._run_sbc``): the rank of the true
θ_j is the number of posterior samples with ``sample_j < θ_j``, an integer in
``{0, …, S}`` that is discrete-uniform under calibration.

Uniformity is tested per parameter with a Kolmogorov–Smirnov test against the
*discrete* uniform on ``{0, …, S}``: the statistic is the exact sup-distance between
the rank ECDF and the discrete-uniform CDF, and the p-value uses the continuous
Kolmogorov distribution (``scipy.stats.kstwo``), which is conservative for a discrete
null. (sbi's ``check_uniformity_frequentist`` instead compares the integer ranks with
the continuous ``U(0, S)``, slightly mis-specified for small S, and ``check_sbc``
also runs random-forest C2STs that cost seconds; neither is used here.)

The simultaneous ECDF band follows Säilynoja, Bürkner & Vehtari (2022), computed by
simulation as in BayesFlow's ``calibration_ecdf``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional, Sequence

import numpy as np
import torch
from scipy.stats import binom, kstwo
from torch import Tensor

from sbilab.diagnostics.sampling import as_float_tensor


@dataclass
class SBCResult:
    """SBC ranks and per-parameter uniformity p-values."""

    ranks: np.ndarray  # [N, D] int64 in {0..S}
    ks_pvalues: np.ndarray  # [D]
    num_posterior_samples: int
    parameter_names: list[str] = field(default_factory=list)
    log_gamma: Optional[np.ndarray] = None  # [D] log(γ / γ_0.05), < 0: uniformity rejected at 5 %

    def metrics(self) -> dict[str, float]:
        """``{"sbc/ks_pvalue/<param>": p}`` and ``{"sbc/log_gamma/<param>": log γ}``."""
        out = {f"sbc/ks_pvalue/{n}": float(p) for n, p in zip(self.parameter_names, self.ks_pvalues)}
        if self.log_gamma is not None:
            out.update({f"sbc/log_gamma/{n}": float(g) for n, g in zip(self.parameter_names, self.log_gamma)})
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """Raw arrays by artifact path."""
        return {"diagnostics/sbc_ranks.npy": self.ranks}


def sbc_ranks(samples: Any, theta: Any) -> np.ndarray:
    """Ranks ``#{s: samples[s, i, j] < theta[i, j]}`` for ``samples [S, N, D]``, ``theta [N, D]``."""
    s = samples if isinstance(samples, Tensor) else torch.as_tensor(np.asarray(samples))
    t = theta if isinstance(theta, Tensor) else torch.as_tensor(np.asarray(theta))
    s = s.detach().cpu()
    t = t.detach().cpu().to(s.dtype)
    if s.ndim != 3 or t.shape != s.shape[1:]:
        raise ValueError(f"samples {tuple(s.shape)} and theta {tuple(t.shape)} do not match [S,N,D]/[N,D]")
    return (s < t.unsqueeze(0)).sum(dim=0).numpy().astype(np.int64)


def fractional_ranks(ranks: np.ndarray, num_posterior_samples: int) -> np.ndarray:
    """Mid-point PIT values ``(rank + 0.5) / (S + 1)`` in (0, 1), uniform under calibration
    up to a discretisation of at most ``0.5 / (S + 1)``."""
    return (np.asarray(ranks, dtype=np.float64) + 0.5) / (num_posterior_samples + 1)


def discrete_uniform_ks(ranks: np.ndarray, num_posterior_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """KS statistic and (conservative) p-value of integer ranks vs. discrete U{0..S}.

    ``ranks`` is ``[N]`` or ``[N, D]``; returns arrays of shape ``[D]`` (or scalars' arrays).
    """
    r = np.asarray(ranks)
    squeeze = r.ndim == 1
    if squeeze:
        r = r[:, None]
    n, d = r.shape
    num_s = int(num_posterior_samples)
    cdf0 = np.arange(1, num_s + 2, dtype=np.float64) / (num_s + 1)
    stats = np.empty(d)
    for j in range(d):
        counts = np.bincount(np.clip(r[:, j], 0, num_s), minlength=num_s + 1)
        ecdf = np.cumsum(counts) / n
        stats[j] = np.max(np.abs(ecdf - cdf0))
    pvals = kstwo.sf(stats, n)
    return stats, np.clip(pvals, 0.0, 1.0)


def run_sbc_on_samples(
    samples: Any, theta: Any, parameter_names: Optional[Sequence[str]] = None, *, log_gamma: bool = True
) -> SBCResult:
    """SBC from shared posterior samples ``[S, N, D]`` and true ``theta [N, D]`` (with the log-gamma
    statistic when ``log_gamma``)."""
    samples = as_float_tensor(samples)
    ranks = sbc_ranks(samples, theta)
    num_s = samples.shape[0]
    _, pvals = discrete_uniform_ks(ranks, num_s)
    names = list(parameter_names) if parameter_names is not None else [f"theta_{j}" for j in range(ranks.shape[1])]
    if len(names) != ranks.shape[1]:
        raise ValueError(f"{len(names)} parameter names for {ranks.shape[1]} parameters")
    return SBCResult(ranks=ranks, ks_pvalues=pvals, num_posterior_samples=num_s, parameter_names=names,
                     log_gamma=sbc_log_gamma(ranks, num_s) if log_gamma else None)


# --------------------------------------------------------------------------- bands


@dataclass(frozen=True)
class EcdfBand:
    """Simultaneous ``confidence`` band for the ECDF of N uniform draws on a grid ``z``."""

    z: np.ndarray  # [K] evaluation points in (0, 1)
    lower: np.ndarray  # [K] lower ECDF bound
    upper: np.ndarray  # [K] upper ECDF bound
    gamma: float  # adjusted pointwise level (Säilynoja et al., Alg. 1)
    confidence: float
    num_draws: int


def _tail_probabilities(num_draws: int, z: np.ndarray) -> np.ndarray:
    """``p[i, c] = 2 min(P(X <= c), P(X >= c))``, X ~ Bin(N, z_i): the two-sided binomial tail
    probability of every possible ECDF count ``c`` at every grid point ``z_i``."""
    c = np.arange(num_draws + 1)
    cdf = binom.cdf(c[None, :], num_draws, z[:, None])
    return 2.0 * np.minimum(cdf, binom.sf(c[None, :] - 1, num_draws, z[:, None]))


def _grid(num_points: int) -> np.ndarray:
    return np.arange(1, num_points + 1, dtype=np.float64) / (num_points + 1)


@lru_cache(maxsize=32)
def _null_min_tail_probability(num_draws: int, num_points: int, num_simulations: int, seed: int) -> np.ndarray:
    """Per simulated sample of N uniforms: the smallest tail probability of its ECDF over the grid
    ``z_i = i / (K + 1)`` (Säilynoja et al. 2022). With K = S these are S+1 discrete-uniform ranks."""
    n, k = num_draws, num_points
    rng = np.random.default_rng(seed)
    p_table = _tail_probabilities(n, _grid(k))
    rows = np.arange(k)
    min_p = []
    for start in range(0, num_simulations, 1000):
        m = min(1000, num_simulations - start)
        # ECDF counts of each simulated uniform sample at z: bin the draws, cumsum
        bins = np.minimum((rng.random((m, n)) * (k + 1)).astype(np.int64), k)  # draw <= z_i <=> bin < i
        counts = np.bincount((np.arange(m)[:, None] * (k + 1) + bins).ravel(), minlength=m * (k + 1))
        cum = np.cumsum(counts.reshape(m, k + 1), axis=1)[:, :k]
        min_p.append(p_table[rows[None, :], cum].min(axis=1))
    return np.minimum(np.concatenate(min_p), 1.0)


@lru_cache(maxsize=32)
def _ecdf_band_cached(num_draws: int, num_points: int, confidence: float, num_simulations: int, seed: int) -> EcdfBand:
    n, k = num_draws, num_points
    z = _grid(k)
    # gamma: the (1 - confidence) quantile of the per-sample minimum tail probability
    gamma = float(np.quantile(_null_min_tail_probability(n, k, num_simulations, seed), 1.0 - confidence))
    lower = binom.ppf(gamma / 2.0, n, z) / n
    upper = binom.ppf(1.0 - gamma / 2.0, n, z) / n
    return EcdfBand(z=z, lower=lower, upper=upper, gamma=gamma, confidence=confidence, num_draws=n)


#: quantile of the null that log-gamma is measured against (BayesFlow's ``calibration_log_gamma``)
LOG_GAMMA_QUANTILE = 0.05


def sbc_log_gamma(ranks: np.ndarray, num_posterior_samples: int, *, num_simulations: int = 10_000,
                  seed: int = 0) -> np.ndarray:
    """Log-gamma per parameter (Säilynoja et al. 2022; Modrák et al. 2025): ``log(γ / γ_0.05)``.

    γ is the smallest two-sided binomial tail probability of the rank ECDF over the rank grid
    ``z_i = i / (S + 1)``, γ_0.05 the 5 % quantile of γ for uniform ranks (simulated once per
    (N, S) with a fixed seed). Negative: uniformity rejected at 5 %. Same definition as
    BayesFlow's ``calibration_log_gamma``; more sensitive than the KS test to local deviations.
    """
    r = np.asarray(ranks)
    n, d = r.shape
    num_s = int(num_posterior_samples)
    z = _grid(num_s)
    null = _null_min_tail_probability(n, num_s, int(num_simulations), int(seed))
    threshold = float(np.quantile(null, LOG_GAMMA_QUANTILE))
    out = np.empty(d)
    for j in range(d):
        counts = np.cumsum(np.bincount(np.clip(r[:, j], 0, num_s), minlength=num_s + 1))[:num_s]  # #ranks < i
        tail = 2.0 * np.minimum(binom.cdf(counts, n, z), binom.sf(counts - 1, n, z))
        out[j] = np.log(max(float(tail.min()), 1e-300) / threshold)
    return out


def ecdf_simultaneous_band(
    num_draws: int,
    *,
    num_points: Optional[int] = None,
    confidence: float = 0.99,
    num_simulations: int = 10_000,
    seed: int = 0,
) -> EcdfBand:
    """Simultaneous ECDF band (Säilynoja et al. 2022) by simulation, with a fixed seed.

    Simulates ``num_simulations`` samples of ``num_draws`` uniforms, finds the
    pointwise binomial level ``gamma`` such that the whole ECDF stays inside the
    pointwise ``1 - gamma`` binomial intervals with probability ``confidence``, and
    returns those intervals on ``num_points`` (default ``min(N, 200)``) grid points.
    Results are cached per (N, K, confidence, simulations, seed).
    """
    k = int(num_points) if num_points else min(int(num_draws), 200)
    return _ecdf_band_cached(int(num_draws), max(k, 2), float(confidence), int(num_simulations), int(seed))


def rank_histogram_bins(num_posterior_samples: int, num_bins: int) -> np.ndarray:
    """Bin edges on half-integers so every bin holds a whole number of rank values."""
    num_bins = int(min(max(1, num_bins), num_posterior_samples + 1))
    cuts = np.round(np.linspace(0, num_posterior_samples + 1, num_bins + 1)).astype(np.int64)
    return np.unique(cuts) - 0.5


def rank_histogram_band(
    num_ranks: int, edges: np.ndarray, num_posterior_samples: int, confidence: float = 0.99
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected count and pointwise binomial ``confidence`` interval of every histogram bin."""
    width = np.diff(edges)  # number of integer rank values in each bin
    p = width / (num_posterior_samples + 1)
    a = (1.0 - confidence) / 2.0
    return num_ranks * p, binom.ppf(a, num_ranks, p), binom.ppf(1.0 - a, num_ranks, p)


def default_num_bins(num_ranks: int, num_posterior_samples: int) -> int:
    """About 20 ranks per bin, between 5 and 20 bins (never more than S + 1)."""
    return int(min(num_posterior_samples + 1, max(5, min(20, num_ranks // 20))))
