"""Prior builders: supports, normalisation and the one-line errors naming the key."""

from __future__ import annotations

import math

import pytest
import torch

from sbilab.priors import box_uniform, gaussian, log_uniform, truncated_gaussian


def _integral_1d(log_prob, low: float, high: float, n: int = 20_001) -> float:
    grid = torch.linspace(low, high, n)[:, None]
    return float(torch.trapezoid(log_prob(grid).exp(), grid[:, 0]))


def test_truncated_gaussian_stays_in_bounds_is_normalised_and_has_exact_moments():
    prior = truncated_gaussian([0.0, 5.0], [1.0, 10.0], [-0.5, 0.0], [2.0, 8.0], ["a", "b"])
    torch.manual_seed(0)
    samples = prior.sample((50_000,))
    assert samples.shape == (50_000, 2)
    assert (samples[:, 0] >= -0.5).all() and (samples[:, 0] <= 2.0).all()
    assert (samples[:, 1] >= 0.0).all() and (samples[:, 1] <= 8.0).all()
    first = prior.dists[0]
    assert _integral_1d(first.log_prob, -0.5, 2.0) == pytest.approx(1.0, abs=1e-3)
    assert float(first.mean) == pytest.approx(float(samples[:, 0].mean()), abs=0.01)
    assert float(first.variance) == pytest.approx(float(samples[:, 0].var()), rel=0.02)
    assert prior.log_prob(torch.tensor([[3.0, 1.0]])).item() == -math.inf


def test_log_uniform_is_uniform_in_log_space():
    prior = log_uniform([1e-2], [1e2], ["g"])
    torch.manual_seed(0)
    logs = prior.sample((40_000,)).log10()
    assert ((logs > -2) & (logs < 2)).all()
    assert abs(float((logs < 0).float().mean()) - 0.5) < 0.01
    assert _integral_1d(lambda t: prior.log_prob(t), 1e-2, 1e2, 400_001) == pytest.approx(1.0, abs=2e-3)
    from sbi.utils.sbiutils import within_support

    inside = within_support(prior, torch.tensor([[1.0], [1e3], [1e-3]]))
    assert inside.tolist() == [True, False, False]  # posteriors are truncated to the box, not to (0, inf)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: box_uniform([1, 2], [0, 3], ["a", "b"]), "prior.low must be < prior.high"),
        (lambda: box_uniform([0, 0], [1, 1], ["a"]), "prior.names has 1 entries"),
        (lambda: box_uniform([0, 0, 0], [1, 1], ["a", "b"]), "prior.low has 3 entries but prior.high has 2"),
        (lambda: log_uniform([0.0], [1.0], ["a"]), "log-uniform prior needs low > 0"),
        (lambda: gaussian([0.0], [-1.0], ["a"]), "prior.scale"),
        (lambda: truncated_gaussian([0.0], [1.0], [1.0], [0.0], ["a"]), "prior.low must be < prior.high"),
        (lambda: box_uniform(["x"], [1], ["a"]), "prior.low"),
    ],
)
def test_bad_priors_name_the_key(build, message):
    with pytest.raises(ValueError, match=message):
        build()
