"""Prior builders: supports, normalisation and the one-line errors naming the key."""

from __future__ import annotations

import math

import pytest
import torch

from sbilab.errors import ConfigError
from sbilab.priors import (
    beta,
    box_uniform,
    distribution,
    gamma,
    gaussian,
    independent,
    log_normal,
    log_uniform,
    multivariate_normal,
    truncated_gaussian,
)


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


def test_the_common_families_have_the_moments_their_parameters_say():
    torch.manual_seed(0)
    n = 200_000
    lognormal = log_normal([math.log(0.4), math.log(0.125)], [0.5, 0.2], ["beta", "gamma"]).sample((n,))
    assert lognormal.log().mean(0).tolist() == pytest.approx([math.log(0.4), math.log(0.125)], abs=0.01)
    assert lognormal.log().std(0).tolist() == pytest.approx([0.5, 0.2], rel=0.02)
    gammas = gamma([2.0, 9.0], [1.0, 3.0], ["a", "b"]).sample((n,))
    assert gammas.mean(0).tolist() == pytest.approx([2.0, 3.0], rel=0.02)
    betas = beta([2.0], [6.0], ["p"]).sample((n,))
    assert float(betas.mean()) == pytest.approx(0.25, abs=0.005) and ((betas > 0) & (betas < 1)).all()


def test_a_multivariate_normal_given_its_precision_has_the_inverse_covariance():
    precision = [[2.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 2.0]]  # a smoothness prior
    prior = multivariate_normal([0.0, 1.0, 2.0], ["a", "b", "c"], precision=precision)
    torch.manual_seed(0)
    samples = prior.sample((200_000,))
    expected = torch.linalg.inv(torch.tensor(precision))
    assert torch.allclose(torch.cov(samples.T), expected, atol=0.03)
    assert samples.mean(0).tolist() == pytest.approx([0.0, 1.0, 2.0], abs=0.02)


def test_any_torch_distribution_and_independent_blocks_side_by_side():
    student = distribution("torch.distributions.StudentT", ["a", "b"], df=[3, 3], loc=[0, 10], scale=[1, 1])
    torch.manual_seed(0)
    assert student.sample((50_000,)).median(0).values.tolist() == pytest.approx([0.0, 10.0], abs=0.05)
    combined = independent([
        {"_target_": "sbilab.priors.box_uniform", "low": [0.0], "high": [1.0], "names": ["p"]},
        {"_target_": "sbilab.priors.log_normal", "loc": [0.0, 0.0], "scale": [1.0, 1.0], "names": ["k1", "k2"]},
        {"_target_": "sbilab.priors.truncated_gaussian", "loc": [0.0], "scale": [1.0], "low": [-1.0], "high": [1.0],
         "names": ["z"]},
    ], ["p", "k1", "k2", "z"])
    samples = combined.sample((1000,))
    assert samples.shape == (1000, 4) and (samples[:, 1:3] > 0).all() and (samples[:, 3].abs() <= 1).all()
    # log density: the sum of the blocks' (uniform on [0, 1] contributes 0)
    theta = torch.tensor([[0.5, 1.0, 1.0, 0.0]])
    lognormal_at_1 = -0.5 * math.log(2 * math.pi)
    truncated_at_0 = -0.5 * math.log(2 * math.pi) - math.log(math.erf(1 / math.sqrt(2)))
    assert float(combined.log_prob(theta)) == pytest.approx(2 * lognormal_at_1 + truncated_at_0, abs=1e-4)


@pytest.mark.parametrize("build,message", [
    (lambda: log_normal([0.0], [0.0], ["a"]), r"prior.scale=\[0.0\]: every value must be > 0"),
    (lambda: gamma([1.0, 2.0], [1.0], ["a", "b"]), "prior.concentration has 2 entries but prior.rate has 1"),
    (lambda: beta([1.0], [1.0], ["a", "b"]), "prior.names has 2 entries but the prior has 1 parameters"),
    (lambda: multivariate_normal([0.0, 0.0], ["a", "b"]), "give exactly one of prior.covariance and prior.precision"),
    (lambda: multivariate_normal([0.0, 0.0], ["a", "b"], covariance=[[1.0, 2.0], [2.0, 1.0]]),
     "prior.covariance: the matrix is not symmetric positive definite"),
    (lambda: multivariate_normal([0.0, 0.0], ["a", "b"], precision=[[1.0]]),
     r"prior.precision: expected a finite 2 x 2"),
    (lambda: distribution("os.system", ["a"], command="true"), "prior.distribution='os.system': expected a class from"),
    (lambda: distribution("torch.distributions.Gamma", ["a"], concentration=[1.0]), "prior.distribution=torch"),
    (lambda: independent([], ["a"]), "prior.parts: expected a non-empty list"),
])
def test_bad_family_parameters_name_the_key(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_a_prior_function_of_your_own_is_called_without_names_it_does_not_take(tmp_path, monkeypatch):
    from sbilab.priors import build_prior

    (tmp_path / "myprior.py").write_text(
        "import torch\n\ndef plain():\n    return torch.distributions.Independent("
        "torch.distributions.Exponential(torch.ones(2)), 1)\n\n"
        "def named(names):\n    return torch.distributions.Independent("
        "torch.distributions.Exponential(torch.ones(len(names))), 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert build_prior({"_target_": "myprior.plain", "name": "x", "names": ["a", "b"]}).sample((3,)).shape == (3, 2)
    assert build_prior({"_target_": "myprior.named", "names": ["a", "b", "c"]}).sample((3,)).shape == (3, 3)
