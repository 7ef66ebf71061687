"""sbibm's gaussian_mixture task: θ ∈ [-10, 10]², x ~ ½ N(θ, I) + ½ N(θ, 0.01·I); exact reference sampler."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.special import log_ndtr

from sbilab.simulators.benchmark_tasks.base import BenchmarkTask, BoxPrior, normals


def _log_normal_mass(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """log(Φ(high) − Φ(low)) elementwise, accurate in both tails (low < high)."""
    upper = low > 0  # both in the upper tail: use the mirror interval
    a, b = np.where(upper, -high, low), np.where(upper, -low, high)
    log_b, log_a = log_ndtr(b), log_ndtr(a)
    return log_b + np.log1p(-np.exp(log_a - log_b))



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
