"""sbibm's gaussian_linear task: θ ~ N(0, 0.1·I₁₀), x ~ N(θ, 0.1·I₁₀); analytic reference."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from sbilab.simulators.benchmark_tasks.base import BenchmarkTask, GaussianPrior, normals


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
