"""The verdict's false-alarm level holds: an exact posterior, used as its own network, passes the gates.

sbibm's gaussian_linear (θ ~ N(0, 0.1·I₁₀), x ~ N(θ, 0.1·I₁₀)) has the exact posterior N(x/2, 0.05·I): 10
SBC p-values, 10 central-coverage errors and the HPD coverage error make 21 statistical gates over the
prior, plus TARP's ATC. Each alone at 1 % would fail an exact posterior in ~20 % of runs; tested together at
``family_level`` 0.05 (weighted Holm) it must pass on at least 19 of 20 seeds. The L-C2ST gates at x_o join
the same family with a p-value that is exact by construction (``permutation_p_value``); their 100 null
classifiers per seed are measured by ``scripts/bench_gate_level.py``, not here (minutes per seed).
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import MultivariateNormal

from sbilab.diagnostics import DiagnosticsInputs, compute_diagnostics, evaluate_gates
from sbilab.diagnostics.settings import DiagnosticsSeeds, DiagnosticsSettings

D, PRIOR_VAR, NOISE_VAR = 10, 0.1, 0.1
POST_VAR = 1.0 / (1.0 / PRIOR_VAR + 1.0 / NOISE_VAR)


class ExactPosterior:
    """p(θ | x) = N(x · POST_VAR / NOISE_VAR, POST_VAR · I), with sbi's sampling and log-prob interface."""

    def _dist(self, x: torch.Tensor) -> MultivariateNormal:
        x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, D)
        return MultivariateNormal(x * POST_VAR / NOISE_VAR, covariance_matrix=POST_VAR * torch.eye(D))

    def sample_batched(self, sample_shape, x, **kwargs):
        return self._dist(x).sample(sample_shape)

    def log_prob_batched(self, theta, x, norm_posterior=False):
        return self._dist(x).log_prob(theta)

    def sample(self, sample_shape, x, **kwargs):
        return self._dist(x).sample(sample_shape)[:, 0]

    def log_prob(self, theta, x, **kwargs):
        return self._dist(x).log_prob(theta)


def run_seed(seed: int, at_observation: bool = False):
    generator = torch.Generator().manual_seed(seed)
    theta = PRIOR_VAR**0.5 * torch.randn(1001, D, generator=generator)
    x = theta + NOISE_VAR**0.5 * torch.randn(1001, D, generator=generator)
    torch.manual_seed(seed)
    settings = DiagnosticsSettings(num_posterior_samples=300)  # the default gates, level and L-C2ST null trials
    seeds = DiagnosticsSeeds(*[seed * 10 + k for k in range(8)])
    observation = {"x_o": x[0], "theta_o": theta[0]} if at_observation else {}
    inputs = DiagnosticsInputs(ExactPosterior(), theta[1:], x[1:], prior_variance=[PRIOR_VAR] * D, **observation)
    return compute_diagnostics(inputs, settings, seeds)


@pytest.mark.timeout(600)
def test_an_exact_posterior_passes_the_gates_on_19_of_20_seeds():
    results = [run_seed(seed) for seed in range(20)]
    statistical = [c for c in results[0].gates.checks if not c.name.startswith(("tarp/", "c2st", "ppc/"))]
    assert len(statistical) == 21 and "family-wise 0.05" in results[0].gates.level
    failures = {seed: [(c.name, round(c.value, 4), round(c.threshold, 4)) for c in r.gates.failed]
                for seed, r in enumerate(results) if r.verdict != "pass"}
    assert len(failures) <= 1, failures
    # the per-gate rule of old on the same draws (docs/calibration.md: 6 of 20) cries wolf far more often
    per_gate = sum(not evaluate_gates(r.metrics, {"family_level": None}).passed for r in results)
    assert per_gate >= 3, per_gate
