"""Four SBI-benchmark tasks of sbibm (Lueckmann et al. 2021) with reference posteriors.

=================  ====  ====  ==============================================
task               dim θ dim x reference posterior
=================  ====  ====  ==============================================
two_moons            2     2   exact: simulator noise pushed through the
                               inverse map, rejected outside the prior box
gaussian_linear     10    10   analytic Gaussian
slcp                 5     8   tempered SMC on the exact Gaussian likelihood
gaussian_mixture     2     2   exact: mixture of box-truncated Gaussians
=================  ====  ====  ==============================================

Randomness. Row ``i`` draws its variates from the SplitMix64 stream started at
``seeds[i]`` (:func:`row_uniforms`): a counter-based generator evaluated for the
whole batch at once, so a row's output depends only on (θ_i, seed_i), and 100k
rows take milliseconds. Each task consumes a fixed number of uniforms per row and
turns them into its noise (normals by the inverse normal CDF).

Priors. The reference posteriors assume each task's sbibm prior (``prior`` below),
which ``conf/prior/<task>.yaml`` reproduces; a run with another prior gets the
wrong reference. The benchmark's observations 1-3 are tabulated in
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
from scipy import stats
from scipy.special import log_ndtr, ndtri
from torch import Tensor

from sbilab.simulators import sbibm_reference
from sbilab.simulators.base import Simulator, as_float64_numpy, to_tensor
from sbilab.errors import ConfigError

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


def _log_normal_mass(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """log(Φ(high) − Φ(low)) elementwise, accurate in both tails (low < high)."""
    upper = low > 0  # both in the upper tail: use the mirror interval
    a, b = np.where(upper, -high, low), np.where(upper, -low, high)
    log_b, log_a = log_ndtr(b), log_ndtr(a)
    return log_b + np.log1p(-np.exp(log_a - log_b))


# --------------------------------------------------------------------------------------
# The tasks
# --------------------------------------------------------------------------------------


class TwoMoons(BenchmarkTask):
    """two_moons: θ ~ U(-1, 1)²; x = p + (−|θ₁+θ₂|/√2, (−θ₁+θ₂)/√2).

    p = (r cos a + 0.25, r sin a) with a ~ U(−π/2, π/2), r ~ N(0.1, 0.01²).
    """

    name = "two_moons"
    parameter_dim = 2
    data_dim = 2
    num_variates = 2
    version = "1"
    prior = BoxPrior((-1.0, -1.0), (1.0, 1.0))
    A_LOW, A_HIGH, R_LOC, R_SCALE, OFFSET = -math.pi / 2, math.pi / 2, 0.1, 0.01, 0.25

    def moon_points(self, u: np.ndarray) -> np.ndarray:
        """p [B, 2] from uniforms [B, 2] (the simulator's only noise)."""
        a = self.A_LOW + (self.A_HIGH - self.A_LOW) * u[:, 0]
        r = self.R_LOC + self.R_SCALE * normals(u[:, 1])
        return np.stack([r * np.cos(a) + self.OFFSET, r * np.sin(a)], axis=1)

    @staticmethod
    def shift(theta: np.ndarray) -> np.ndarray:
        """(−|θ₁+θ₂|/√2, (−θ₁+θ₂)/√2): x − p."""
        return np.stack([-np.abs(theta[:, 0] + theta[:, 1]), theta[:, 1] - theta[:, 0]], axis=1) / math.sqrt(2)

    def simulate_from_uniforms(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self.moon_points(u) + self.shift(theta)

    def log_likelihood(self, theta: np.ndarray, x_o: np.ndarray) -> np.ndarray:
        """Density of p = x_o − shift(θ): polar (r, a) density with the Jacobian 1/r.

        p(u, v) = N(r; 0.1, 0.01²) · 1/π · 1/r for u = p₁ − 0.25 > 0 (a ∈ (−π/2, π/2)),
        r = √(u² + v²). (sbibm's own potential leaves out 1/(π r); its reference
        samples come from the exact sampler below.)
        """
        p = x_o[None, :] - self.shift(theta)
        u, v = p[:, 0] - self.OFFSET, p[:, 1]
        r = np.hypot(u, v)
        with np.errstate(divide="ignore"):
            out = (stats.norm.logpdf(r, self.R_LOC, self.R_SCALE) - math.log(self.A_HIGH - self.A_LOW) - np.log(r))
        return np.where(u > 0, out, -np.inf)

    def sample_reference(self, x_o: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Exact: draw p from the simulator's noise, solve x_o = p + shift(θ) for θ, keep θ in the box.

        With z = Rθ (rotation by 45°: z₀ = (θ₁+θ₂)/√2, z₁ = (θ₂−θ₁)/√2), x_o = p + (−|z₀|, z₁)
        gives |z₀| = p₁ − x₁ (needs p₁ ≥ x₁) and z₁ = x₂ − p₂; the sign of z₀ is ±
        with probability ½ each (the likelihood is even in z₀). θ = Rᵀz has unit
        Jacobian and the prior is flat, so the accepted θ are posterior samples.
        """
        out: list[np.ndarray] = []
        have, tries = 0, 0
        while have < num_samples:
            batch = max(2 * (num_samples - have), 1024)
            p = self.moon_points(rng.uniform(size=(batch, 2)))
            z0 = (p[:, 0] - x_o[0]) * np.where(rng.uniform(size=batch) < 0.5, -1.0, 1.0)
            z1 = x_o[1] - p[:, 1]
            theta = np.stack([z0 - z1, z0 + z1], axis=1) / math.sqrt(2)
            keep = (p[:, 0] >= x_o[0]) & np.isfinite(self.prior.log_prob(theta))
            out.append(theta[keep])
            have += int(keep.sum())
            tries += batch
            if tries > 1000 * max(num_samples, 1000) and have < num_samples:
                raise RuntimeError(f"two_moons reference: acceptance {have / tries:.1e} at x_o={x_o.tolist()}")
        return np.concatenate(out)[:num_samples]


class GaussianLinear(BenchmarkTask):
    """gaussian_linear: θ ~ N(0, 0.1·I₁₀), x ~ N(θ, 0.1·I₁₀) (covariances); analytic posterior."""

    name = "gaussian_linear"
    parameter_dim = 10
    data_dim = 10
    num_variates = 10
    version = "1"
    PRIOR_VARIANCE = 0.1
    NOISE_VARIANCE = 0.1
    prior = GaussianPrior((0.0,) * 10, (math.sqrt(PRIOR_VARIANCE),) * 10)

    def simulate_from_uniforms(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        return theta + math.sqrt(self.NOISE_VARIANCE) * normals(u)

    def log_likelihood(self, theta: np.ndarray, x_o: np.ndarray) -> np.ndarray:
        return np.sum(stats.norm.logpdf(x_o[None, :], theta, math.sqrt(self.NOISE_VARIANCE)), axis=1)

    def posterior_moments(self, x_o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean [D] and covariance [D, D] of the Gaussian posterior."""
        loc = np.asarray(self.prior.loc)
        precision = 1.0 / self.PRIOR_VARIANCE + 1.0 / self.NOISE_VARIANCE
        mean = (np.asarray(x_o) / self.NOISE_VARIANCE + loc / self.PRIOR_VARIANCE) / precision
        return mean, np.eye(self.parameter_dim) / precision

    def sample_reference(self, x_o: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        mean, cov = self.posterior_moments(x_o)
        return mean + rng.standard_normal((num_samples, self.parameter_dim)) * np.sqrt(np.diag(cov))


class SLCP(BenchmarkTask):
    """slcp: θ ~ U(−3, 3)⁵; x = 4 iid draws of N(m, Σ), flattened as (x₁₁, x₁₂, x₂₁, ...).

    m = (θ₁, θ₂), s₁ = θ₃², s₂ = θ₄², ρ = tanh θ₅,
    Σ = [[s₁², ρ s₁ s₂], [ρ s₁ s₂, s₂²]] + 1e-6·I.
    """

    name = "slcp"
    parameter_dim = 5
    data_dim = 8
    num_points = 4
    num_variates = 8
    version = "1"
    EPS = 1e-6
    prior = BoxPrior((-3.0,) * 5, (3.0,) * 5)
    symmetric_coordinates = (2, 3)  # Σ depends on θ₃², θ₄² only

    def covariance(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Σ₁₁, Σ₂₂, Σ₁₂), each [B]."""
        s1, s2, rho = theta[:, 2] ** 2, theta[:, 3] ** 2, np.tanh(theta[:, 4])
        return s1**2 + self.EPS, s2**2 + self.EPS, rho * s1 * s2

    def simulate_from_uniforms(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        a, b, c = self.covariance(theta)
        l11 = np.sqrt(a)
        l21 = c / l11
        l22 = np.sqrt(np.maximum(b - l21**2, 0.0))
        z = normals(u).reshape(-1, self.num_points, 2)
        x1 = theta[:, None, 0] + l11[:, None] * z[..., 0]
        x2 = theta[:, None, 1] + l21[:, None] * z[..., 0] + l22[:, None] * z[..., 1]
        return np.stack([x1, x2], axis=2).reshape(-1, self.data_dim)

    def log_likelihood(self, theta: np.ndarray, x_o: np.ndarray) -> np.ndarray:
        a, b, c = self.covariance(theta)
        det = a * b - c**2
        d = x_o.reshape(1, self.num_points, 2) - theta[:, None, :2]
        quad = np.sum(b[:, None] * d[..., 0] ** 2 - 2 * c[:, None] * d[..., 0] * d[..., 1]
                      + a[:, None] * d[..., 1] ** 2, axis=1) / det
        return -self.num_points * (math.log(2 * math.pi) + 0.5 * np.log(det)) - 0.5 * quad


class GaussianMixture(BenchmarkTask):
    """gaussian_mixture: θ ~ U(−10, 10)²; x ~ ½ N(θ, I) + ½ N(θ, 0.01·I)."""

    name = "gaussian_mixture"
    parameter_dim = 2
    data_dim = 2
    num_variates = 3  # component, then one normal per dimension
    version = "1"
    SCALES = (1.0, 0.1)
    WEIGHTS = (0.5, 0.5)
    prior = BoxPrior((-10.0, -10.0), (10.0, 10.0))

    def simulate_from_uniforms(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        scale = np.where(u[:, 0] < self.WEIGHTS[0], self.SCALES[0], self.SCALES[1])
        return theta + scale[:, None] * normals(u[:, 1:])

    def log_likelihood(self, theta: np.ndarray, x_o: np.ndarray) -> np.ndarray:
        parts = [math.log(w) + np.sum(stats.norm.logpdf(x_o[None, :], theta, s), axis=1)
                 for w, s in zip(self.WEIGHTS, self.SCALES)]
        return np.logaddexp(*parts)

    def sample_reference(self, x_o: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Exact: the posterior is Σ_k w_k N(θ; x_o, s_k² I) restricted to the box, i.e. a mixture of
        box-truncated Gaussians whose weights are w_k times the box mass of N(x_o, s_k² I)."""
        low, high = np.asarray(self.prior.low), np.asarray(self.prior.high)
        log_mass = np.array([
            math.log(w) + float(np.sum(_log_normal_mass((low - x_o) / s, (high - x_o) / s)))
            for w, s in zip(self.WEIGHTS, self.SCALES)
        ])
        probs = np.exp(log_mass - log_mass.max())
        component = rng.choice(len(self.SCALES), size=num_samples, p=probs / probs.sum())
        scale = np.asarray(self.SCALES)[component][:, None]
        a, b = (low - x_o) / scale, (high - x_o) / scale
        return stats.truncnorm.rvs(a, b, loc=x_o, scale=scale, size=(num_samples, self.parameter_dim),
                                   random_state=rng)


TASKS: dict[str, type[BenchmarkTask]] = {
    cls.name: cls for cls in (TwoMoons, GaussianLinear, SLCP, GaussianMixture)
}
