"""sbibm's slcp task (simple likelihood, complex posterior): θ ∈ [-3, 3]⁵, x ∈ R⁸; reference by tempered SMC."""

from __future__ import annotations

import math

import numpy as np

from sbilab.simulators.benchmark_tasks.base import BenchmarkTask, BoxPrior, normals


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
