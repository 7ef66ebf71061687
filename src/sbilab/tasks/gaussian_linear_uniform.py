"""sbibm's gaussian_linear_uniform: θ ~ U(-1, 1)¹⁰, x | θ ~ N(θ, 0.1·I₁₀).

sbibm writes the noise as ``precision_matrix = inverse(simulator_scale · I)`` with
``simulator_scale = 0.1``: a covariance of 0.1·I, so a standard deviation of √0.1 per entry.
The posterior is N(x_o, 0.1·I) truncated to the prior's box, one truncated normal per entry.
"""

from __future__ import annotations

import numpy as np

#: the noise covariance is NOISE_VARIANCE · I (sbibm's simulator_scale)
NOISE_VARIANCE = 0.1
#: the prior is uniform on [-PRIOR_BOUND, PRIOR_BOUND]^DIM
PRIOR_BOUND = 1.0
DIM = 10


def simulate(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x [B, 10] for θ [B, 10]: θ plus Gaussian noise of variance 0.1 per entry."""
    return theta + np.sqrt(NOISE_VARIANCE) * rng.standard_normal(theta.shape)


def log_likelihood(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log p(x | θ) per row (θ and x broadcast against each other, last axis the 10 entries)."""
    residual = np.asarray(x, dtype=np.float64) - np.asarray(theta, dtype=np.float64)
    dim = residual.shape[-1]
    return -0.5 * (residual**2).sum(-1) / NOISE_VARIANCE - 0.5 * dim * np.log(2 * np.pi * NOISE_VARIANCE)


def posterior_sample(x_o: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Exact posterior samples [num_samples, 10] at ``x_o``: independent normals truncated to the box."""
    from scipy.stats import truncnorm

    loc = np.asarray(x_o, dtype=np.float64).reshape(-1)
    scale = np.sqrt(NOISE_VARIANCE)
    low, high = (-PRIOR_BOUND - loc) / scale, (PRIOR_BOUND - loc) / scale
    return truncnorm.rvs(low, high, loc=loc, scale=scale, size=(num_samples, loc.size), random_state=rng)
