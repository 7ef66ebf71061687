"""Expected coverage of highest-posterior-density (HPD) regions (Deistler et al. 2022) and of
central intervals per parameter.

For every test pair, the HPD credibility level at which the true θ enters the region
is estimated from the shared posterior samples: ``rank = #{s: log q(θ_s|x) > log q(θ*|x)}``
(the same rank sbi's ``run_sbc`` computes with ``reduce_fns=-log_prob``). The
mid-point PIT ``(rank + 0.5) / (S + 1)`` is uniform when the posterior is calibrated,
and the empirical coverage at nominal level ``α`` is the fraction of test points
whose level is ``<= α``. Under-coverage (curve below the diagonal) means an
over-confident posterior.

``coverage/error`` is ``sup_α |empirical(α) − α|`` over *all* levels (the KS distance
of the credibility levels), so it is ``>=`` the maximum over the saved grid.

Central intervals (BayesFlow's ``calibration_error``, per parameter): θ_j lies in the central
``α`` interval of its marginal posterior iff its fractional SBC rank ``u`` satisfies
``|2u − 1| <= α``; ``coverage/central_error/<param>`` is the same sup-distance for these levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binom

from sbilab.diagnostics.sampling import as_numpy


@dataclass
class CoverageResult:
    """Expected-coverage curve of HPD regions."""

    ranks: np.ndarray  # [N] number of samples more probable than the true θ
    credibility: np.ndarray  # [N] mid-point PIT of the HPD level containing the true θ
    nominal: np.ndarray  # [L] nominal levels, 0..1
    empirical: np.ndarray  # [L] empirical coverage at each level
    error: float  # sup_α |empirical − nominal|
    num_posterior_samples: int

    @property
    def curve(self) -> np.ndarray:
        """``[L, 2]`` array with columns (nominal, empirical)."""
        return np.column_stack([self.nominal, self.empirical])

    def metrics(self) -> dict[str, float]:
        return {"coverage/error": float(self.error)}

    def arrays(self) -> dict[str, np.ndarray]:
        """Raw arrays by artifact path."""
        return {"diagnostics/coverage_curve.npy": self.curve, "diagnostics/coverage_credibility.npy": self.credibility}


def hpd_ranks(log_prob_samples: Any, log_prob_true: Any) -> np.ndarray:
    """``#{s: lp_samples[s, i] > lp_true[i]}`` for ``[S, N]`` and ``[N]`` log-probs.

    NaN sample log-probs count as less probable; a ``-inf`` true log-prob (θ outside
    the support) gives rank S (never covered).
    """
    lps = as_numpy(log_prob_samples)
    lpt = as_numpy(log_prob_true).reshape(-1)
    if lps.ndim != 2 or lps.shape[1] != lpt.shape[0]:
        raise ValueError(f"log-prob shapes {lps.shape} and {lpt.shape} do not match [S,N]/[N]")
    return (lps > lpt[None, :]).sum(axis=0).astype(np.int64)


def ks_distance_uniform(u: np.ndarray) -> float:
    """Exact ``sup_t |ECDF(t) − t|`` of values in [0, 1]."""
    u = np.sort(np.asarray(u, dtype=np.float64))
    n = u.size
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - u), np.max(u - (i - 1) / n)))


def empirical_coverage(levels: np.ndarray, nominal: np.ndarray) -> np.ndarray:
    """Fraction of ``levels`` (each the smallest credibility level whose region holds the truth) at or below
    each nominal level."""
    return np.searchsorted(np.sort(levels), nominal, side="right") / levels.size


def coverage_from_ranks(ranks: np.ndarray, num_posterior_samples: int, num_levels: int = 101) -> CoverageResult:
    """Coverage curve on ``num_levels`` equally spaced nominal levels in [0, 1]."""
    ranks = np.asarray(ranks, dtype=np.int64)
    cred = (ranks + 0.5) / (num_posterior_samples + 1)
    nominal = np.linspace(0.0, 1.0, int(num_levels))
    empirical = empirical_coverage(cred, nominal)
    return CoverageResult(
        ranks=ranks,
        credibility=cred,
        nominal=nominal,
        empirical=empirical,
        error=ks_distance_uniform(cred),
        num_posterior_samples=int(num_posterior_samples),
    )


def expected_coverage(
    log_prob_samples: Any, log_prob_true: Any, *, num_levels: int = 101
) -> CoverageResult:
    """Expected HPD coverage from sample log-probs ``[S, N]`` and true-θ log-probs ``[N]``."""
    lps = as_numpy(log_prob_samples)
    return coverage_from_ranks(hpd_ranks(lps, log_prob_true), lps.shape[0], num_levels)


@dataclass
class CentralCoverageResult:
    """Coverage of central intervals, one curve per parameter."""

    levels: np.ndarray  # [N, D] smallest central level containing the true θ_j
    nominal: np.ndarray  # [L]
    empirical: np.ndarray  # [L, D]
    errors: np.ndarray  # [D] sup_α |empirical − nominal|
    parameter_names: list[str]

    def metrics(self) -> dict[str, float]:
        return {f"coverage/central_error/{n}": float(e) for n, e in zip(self.parameter_names, self.errors)}

    def arrays(self) -> dict[str, np.ndarray]:
        """Raw arrays by artifact path: columns (nominal, empirical per parameter)."""
        return {"diagnostics/coverage_central_curve.npy": np.column_stack([self.nominal, self.empirical])}


def central_coverage(ranks: np.ndarray, num_posterior_samples: int, parameter_names: list[str],
                     num_levels: int = 101) -> CentralCoverageResult:
    """Central-interval coverage per parameter from SBC ranks ``[N, D]`` (``#samples < θ``)."""
    u = (np.asarray(ranks, dtype=np.float64) + 0.5) / (num_posterior_samples + 1)
    levels = np.abs(2.0 * u - 1.0)
    nominal = np.linspace(0.0, 1.0, int(num_levels))
    empirical = np.column_stack([empirical_coverage(levels[:, j], nominal) for j in range(levels.shape[1])])
    errors = np.array([ks_distance_uniform(levels[:, j]) for j in range(levels.shape[1])])
    return CentralCoverageResult(levels=levels, nominal=nominal, empirical=empirical, errors=errors,
                                 parameter_names=list(parameter_names))


def coverage_band(num_test_points: int, nominal: np.ndarray, confidence: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise binomial ``confidence`` band of the empirical coverage at each level."""
    a = (1.0 - confidence) / 2.0
    nominal = np.asarray(nominal, dtype=np.float64)
    lo = binom.ppf(a, num_test_points, nominal) / num_test_points
    hi = binom.ppf(1.0 - a, num_test_points, nominal) / num_test_points
    return np.nan_to_num(lo, nan=0.0), np.nan_to_num(hi, nan=1.0)
