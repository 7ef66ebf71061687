"""What the sbibm benchmark tasks share: the task base class, per-row uniforms, priors, tempered SMC.

Randomness. Row ``i`` draws its variates from the SplitMix64 stream started at
``seeds[i]`` (:func:`row_uniforms`): a counter-based generator evaluated for the
whole batch at once, so a row's output depends only on (θ_i, seed_i), and 100k
rows take milliseconds. Each task consumes a fixed number of uniforms per row and
turns them into its noise (normals by the inverse normal CDF).

Priors. The reference posteriors assume each task's sbibm prior (``prior`` on the
task class), which ``conf/prior/<task>.yaml`` reproduces; a run with another prior
gets the wrong reference. The benchmark's observations 1-3 are tabulated in
:mod:`sbilab.simulators.sbibm_reference`; with ``reference="published"`` and an
x_o equal to one of sbibm's observations, the published samples are returned
(when cached), else the likelihood-based ones.
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from scipy.special import ndtri
from torch import Tensor

from sbilab.errors import ConfigError
from sbilab.simulators import sbibm_reference
from sbilab.simulators.base import Simulator, as_float64_numpy, to_tensor

log = logging.getLogger(__name__)

REFERENCE_SOURCES = ("likelihood", "published")

# --------------------------------------------------------------------------------------
# Per-row random numbers
# --------------------------------------------------------------------------------------

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def row_uniforms(seeds: np.ndarray, count: int) -> np.ndarray:
    """Uniforms in (0, 1), [B, count]: entry (i, k) is output k of SplitMix64 seeded with ``seeds[i]``.

    SplitMix64 (Steele, Lea & Flood 2014) is counter-based: output k of the stream
    with state s is mix(s + (k+1)·γ), so all rows and draws are computed at once
    and a row never sees another row's seed.
    """
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)
    counter = np.arange(1, count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = seeds[:, None] + counter[None, :] * _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    # top 53 bits, centred in their cell: never exactly 0 or 1
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def normals(u: np.ndarray) -> np.ndarray:
    """Standard normals from uniforms in (0, 1) (inverse CDF: one uniform per normal)."""
    return ndtri(u)


# --------------------------------------------------------------------------------------
# Priors (NumPy twins of conf/prior/<task>.yaml, for the reference samplers)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxPrior:
    """Independent uniforms on [low, high]."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low, self.high, size=(n, len(self.low)))

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        low, high = np.asarray(self.low), np.asarray(self.high)
        inside = np.all((theta >= low) & (theta <= high), axis=1)
        return np.where(inside, -np.sum(np.log(high - low)), -np.inf)

    def config(self) -> dict[str, list[float]]:
        return {"low": list(self.low), "high": list(self.high)}


@dataclass(frozen=True)
class GaussianPrior:
    """Independent normals N(loc, scale²)."""

    loc: tuple[float, ...]
    scale: tuple[float, ...]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(self.loc, self.scale, size=(n, len(self.loc)))

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        z = (theta - np.asarray(self.loc)) / np.asarray(self.scale)
        return -0.5 * np.sum(z**2, axis=1) - np.sum(np.log(self.scale)) - 0.5 * len(self.loc) * math.log(2 * math.pi)

    def config(self) -> dict[str, list[float]]:
        return {"loc": list(self.loc), "scale": list(self.scale)}


Prior = BoxPrior | GaussianPrior

# --------------------------------------------------------------------------------------
# Likelihood-based reference sampler: adaptive tempered SMC
# --------------------------------------------------------------------------------------


@dataclass
class SMCInfo:
    """What a tempered-SMC run did (for logging and tests)."""

    temperatures: int = 0
    sweeps: int = 0
    final_acceptance: float = float("nan")
    log_evidence: float = 0.0


def _ess(log_weights: np.ndarray) -> float:
    finite = np.isfinite(log_weights)
    if not finite.any():
        return 0.0
    w = np.exp(log_weights[finite] - log_weights[finite].max())
    return float(w.sum() ** 2 / np.sum(w**2))


def _next_increment(log_lik: np.ndarray, remaining: float, target_ess: float) -> float:
    """Largest Δβ ≤ remaining whose incremental weights exp(Δβ·ℓ) keep ESS ≥ target (bisection)."""
    finite = np.isfinite(log_lik)
    target = min(target_ess, 0.999 * finite.sum())
    ll = np.where(finite, log_lik, -np.inf)
    if _ess(remaining * ll) >= target:
        return remaining
    low, high = 0.0, remaining
    for _ in range(60):
        mid = 0.5 * (low + high)
        if _ess(mid * ll) >= target:
            low = mid
        else:
            high = mid
    return max(low, 1e-12 * remaining)


def _systematic_resample(log_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    w = np.exp(log_weights - np.max(log_weights))
    cumulative = np.cumsum(w / w.sum())
    cumulative[-1] = 1.0
    n = len(log_weights)
    return np.searchsorted(cumulative, (rng.uniform() + np.arange(n)) / n)


def smc_sample(
    log_likelihood: Callable[[np.ndarray], np.ndarray],
    prior: Prior,
    num_samples: int,
    rng: np.random.Generator,
    *,
    nonnegative: Sequence[int] = (),
    min_particles: int = 4000,
    ess_fraction: float = 0.5,
    final_moves: float = 8.0,
    max_sweeps_per_step: int = 50,
) -> tuple[np.ndarray, SMCInfo]:
    """Samples of prior(θ)·L(θ) by adaptive likelihood tempering (Del Moral et al. 2006).

    Particles start at the prior; each step raises the likelihood's exponent β as far
    as keeps the effective sample size at ``ess_fraction``, resamples, and moves the
    particles with random-walk Metropolis kernels (proposal covariance: the particle
    covariance, scaled to ~30% acceptance) that leave prior·L^β invariant, until
    90% of them have moved. At β = 1 the particles move until each has made
    ``final_moves`` accepted moves on average.

    ``nonnegative``: coordinates in which the posterior is symmetric under a sign
    flip (prior and likelihood both even in them). The sampler works on the half
    space θ_k ≥ 0 and flips each sign with probability 1/2 at the end, which is
    exact and avoids mixing between mirror modes.
    """
    n = max(int(num_samples), int(min_particles))
    dim = len(prior.low) if isinstance(prior, BoxPrior) else len(prior.loc)
    folded = np.zeros(dim, dtype=bool)
    folded[list(nonnegative)] = True

    def log_prior(theta: np.ndarray) -> np.ndarray:
        lp = prior.log_prob(theta)
        return np.where(np.all(theta[:, folded] >= 0, axis=1), lp, -np.inf)

    def evaluate(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lp = log_prior(theta)
        ll = np.full(theta.shape[0], -np.inf)
        inside = np.isfinite(lp)
        if inside.any():
            ll[inside] = log_likelihood(theta[inside])
        ll[np.isnan(ll)] = -np.inf
        return lp, ll

    theta = prior.sample(n, rng)
    theta[:, folded] = np.abs(theta[:, folded])
    lp, ll = evaluate(theta)
    if not np.isfinite(ll).any():
        raise RuntimeError("reference posterior: the likelihood is zero on every prior sample")
    info = SMCInfo()
    beta, scale = 0.0, 2.38 / math.sqrt(dim)

    def move(theta, lp, ll, beta, scale, stop):
        """Random-walk Metropolis sweeps at temperature β until ``stop(moved, sweeps)``."""
        moved = np.zeros(n)
        sweeps = 0
        acceptance = float("nan")
        while True:
            cov = np.cov(theta, rowvar=False) + 1e-12 * np.eye(dim)
            chol = np.linalg.cholesky(cov)
            proposal = theta + scale * rng.standard_normal((n, dim)) @ chol.T
            lp_new, ll_new = evaluate(proposal)
            with np.errstate(invalid="ignore"):
                log_ratio = (lp_new + beta * ll_new) - (lp + beta * ll)
            accept = np.log(rng.uniform(size=n)) < np.nan_to_num(log_ratio, nan=-np.inf)
            theta = np.where(accept[:, None], proposal, theta)
            lp, ll = np.where(accept, lp_new, lp), np.where(accept, ll_new, ll)
            moved += accept
            sweeps += 1
            acceptance = float(accept.mean())
            scale *= 0.75 if acceptance < 0.2 else (1.3 if acceptance > 0.4 else 1.0)
            scale = min(max(scale, 1e-4), 10.0)
            if stop(moved, sweeps):
                return theta, lp, ll, scale, sweeps, acceptance

    while beta < 1.0:
        remaining = 1.0 - beta
        delta = _next_increment(ll, remaining, ess_fraction * n)
        log_weights = delta * ll
        finite = np.isfinite(log_weights)
        top = log_weights[finite].max()
        info.log_evidence += float(top + np.log(np.mean(np.exp(np.where(finite, log_weights - top, -np.inf)))))
        index = _systematic_resample(np.where(finite, log_weights, -np.inf), rng)
        theta, lp, ll = theta[index], lp[index], ll[index]
        beta = 1.0 if delta >= remaining else beta + delta
        info.temperatures += 1
        theta, lp, ll, scale, sweeps, _ = move(
            theta, lp, ll, beta, scale,
            lambda moved, sweeps: (sweeps >= 2 and np.mean(moved > 0) >= 0.9) or sweeps >= max_sweeps_per_step,
        )
        info.sweeps += sweeps
    theta, lp, ll, scale, sweeps, acceptance = move(
        theta, lp, ll, 1.0, scale,
        lambda moved, sweeps: np.mean(moved) >= final_moves or sweeps >= 25 * final_moves,
    )
    info.sweeps += sweeps
    info.final_acceptance = acceptance
    theta = theta[rng.permutation(n)[:num_samples]]
    signs = np.where(rng.uniform(size=(num_samples, int(folded.sum()))) < 0.5, -1.0, 1.0)
    theta[:, folded] *= signs
    return theta, info


# --------------------------------------------------------------------------------------
# The shared task machinery
# --------------------------------------------------------------------------------------


class BenchmarkTask(Simulator):
    """A benchmark task: vectorised per-row-seeded simulation, exact likelihood, reference posterior.

    Subclasses set ``name`` (sbibm's), ``parameter_dim``, ``data_dim``,
    ``num_variates`` (uniforms per row), ``prior``, and implement
    :meth:`simulate_from_uniforms` and :meth:`log_likelihood`; they override
    :meth:`sample_reference` where an exact sampler exists (the default is
    :func:`smc_sample` on the likelihood).
    """

    name: str
    data_dim: int
    num_variates: int
    prior: Prior
    #: coordinates the posterior is even in (see :func:`smc_sample`)
    symmetric_coordinates: tuple[int, ...] = ()

    def __init__(self, reference: str = "likelihood") -> None:
        if reference not in REFERENCE_SOURCES:
            raise ConfigError(f"simulator.reference={reference!r}: expected one of {', '.join(REFERENCE_SOURCES)}")
        self.reference = reference

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reference={self.reference!r})"

    # -- simulation ---------------------------------------------------------------------

    def simulate(self, theta: Tensor, seeds: np.ndarray) -> Tensor:
        params = as_float64_numpy(theta)
        if params.shape[1] != self.parameter_dim:
            raise ValueError(f"{self.name}: theta has {params.shape[1]} columns, expected {self.parameter_dim}")
        seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)
        if seeds.shape[0] != params.shape[0]:
            raise ValueError(f"{self.name}: {params.shape[0]} parameter rows but {seeds.shape[0]} seeds")
        x = self.simulate_from_uniforms(params, row_uniforms(seeds, self.num_variates))
        return to_tensor(x)

    @abstractmethod
    def simulate_from_uniforms(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """x [B, data_dim] (float64) from θ [B, D] and the row's uniforms u [B, num_variates]."""

    # -- likelihood and reference posterior ---------------------------------------------

    @abstractmethod
    def log_likelihood(self, theta: np.ndarray, x_o: np.ndarray) -> np.ndarray:
        """log p(x_o | θ) for θ [N, D] (float64) and one x_o [data_dim]: [N]."""

    def log_posterior_unnormalised(self, theta: np.ndarray, x_o: np.ndarray) -> np.ndarray:
        """log prior(θ) + log p(x_o | θ), [N]."""
        lp = self.prior.log_prob(theta)
        out = np.full(theta.shape[0], -np.inf)
        inside = np.isfinite(lp)
        out[inside] = lp[inside] + self.log_likelihood(theta[inside], x_o)
        return out

    def sample_reference(self, x_o: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Posterior samples [num_samples, D] at x_o (default: tempered SMC on the exact likelihood)."""
        samples, info = smc_sample(
            lambda theta: self.log_likelihood(theta, x_o), self.prior, num_samples, rng,
            nonnegative=self.symmetric_coordinates,
        )
        log.debug("%s reference SMC: %d temperatures, %d sweeps, final acceptance %.2f",
                  self.name, info.temperatures, info.sweeps, info.final_acceptance)
        return samples

    def reference_posterior(self, x_o: Tensor, num_samples: int, seed: int) -> Optional[Tensor]:
        x = as_float64_numpy(x_o).reshape(-1)
        if x.shape[0] != self.data_dim:
            raise ValueError(f"{self.name}: x_o has {x.shape[0]} values, expected {self.data_dim}")
        rng = np.random.default_rng(int(seed))
        if self.reference == "published":
            published = self._published_samples(x, num_samples, rng)
            if published is not None:
                return to_tensor(published)
        return to_tensor(self.sample_reference(x, int(num_samples), rng))

    def _published_samples(self, x: np.ndarray, num_samples: int, rng: np.random.Generator) -> Optional[np.ndarray]:
        """sbibm's published samples when x is one of its observations and they are cached, else None."""
        if not sbibm_reference.is_cached():
            log.warning("%s: sbibm's reference files are not cached (scripts/benchmark_reference.py fetch); "
                        "using the likelihood-based reference", self.name)
            return None
        k = sbibm_reference.match_observation(self.name, x)
        if k is None:
            log.info("%s: x_o is not one of sbibm's observations; using the likelihood-based reference", self.name)
            return None
        samples = sbibm_reference.published_observation(self.name, k).samples
        if num_samples > samples.shape[0]:
            log.warning("%s: %d samples asked, sbibm publishes %d; using the likelihood-based reference",
                        self.name, num_samples, samples.shape[0])
            return None
        return samples[rng.permutation(samples.shape[0])[:num_samples]]
