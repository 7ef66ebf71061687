"""sbibm's two_moons task: θ ∈ [-1, 1]², x ∈ R²; exact reference sampler."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from sbilab.simulators.benchmark_tasks.base import BenchmarkTask, BoxPrior, normals


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
