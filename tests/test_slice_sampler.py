"""sbilab's array-vectorised slice sampler (``method.sampling.mcmc.method: slice_vectorized``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sbi.inference.posteriors import MCMCPosterior
from sbi.utils import BoxUniform

from sbilab.config import TrainerSettings
from sbilab.errors import ConfigError
from sbilab.methods import NLE
from sbilab.methods.slice_sampler import VectorizedSliceMCMCPosterior, slice_sample
from sbilab.rng import seeded
from sbilab.training import train_estimator

COV = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 0.5]])
MEAN = np.array([1.0, -2.0, 3.0])
TRAINER = {"batch_size": 50, "learning_rate": 1e-3, "validation_fraction": 0.1, "stop_after_epochs": 5,
           "clip_max_norm": 5.0, "max_epochs": 30}


def _gaussian_log_prob(x: np.ndarray) -> np.ndarray:
    centred = x - MEAN
    return -0.5 * np.einsum("ni,ij,nj->n", centred, np.linalg.inv(COV), centred)


def test_slice_sample_draws_a_correlated_gaussian():
    rng = np.random.default_rng(0)
    states = slice_sample(_gaussian_log_prob, rng.normal(size=(400, 3)), 40, rng=rng)
    assert states.shape == (400, 40, 3)
    draws = states[:, 10:].reshape(-1, 3)
    np.testing.assert_allclose(draws.mean(axis=0), MEAN, atol=0.05)
    np.testing.assert_allclose(np.cov(draws.T), COV, atol=0.06)


def test_each_chain_keeps_its_mode():
    """Two far-apart modes: no chain crosses, so the draws split as the starting points do (why many
    independently initialised chains are needed for multimodal posteriors)."""

    def two_modes(x: np.ndarray) -> np.ndarray:
        return np.logaddexp(-0.5 * ((x - 10.0) ** 2).sum(1), -0.5 * ((x + 10.0) ** 2).sum(1))

    rng = np.random.default_rng(1)
    init = np.concatenate([np.full((30, 2), 10.0), np.full((10, 2), -10.0)])
    states = slice_sample(two_modes, init, 50, rng=rng)
    assert (states[:30] > 0).all() and (states[30:] < 0).all()


def _trained_nle(sampling: dict) -> tuple[NLE, torch.nn.Module, BoxUniform]:
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    generator = torch.Generator().manual_seed(0)
    theta = prior.low + 4 * torch.rand(1000, 2, generator=generator)
    x = theta + 0.3 * torch.randn(1000, 2, generator=generator)
    method = NLE(sampling={"mcmc": sampling})
    estimator_cfg = {"model": "mdn", "num_components": 1, "hidden_features": 20}
    return method, train_estimator(method, estimator_cfg, theta, x, TrainerSettings(**TRAINER), seed=0).estimator, prior


def test_nle_posterior_with_slice_vectorized_agrees_with_sbis_sampler():
    settings = {"num_chains": 200, "warmup_steps": 20, "thin": 1, "init_strategy": "resample",
                "init_strategy_parameters": {"num_candidate_samples": 200}}
    method, estimator, prior = _trained_nle({"method": "slice_vectorized", **settings})
    ours = method.build_posterior(estimator, prior)
    theirs = NLE(sampling={"mcmc": {"method": "slice_np_vectorized", **settings}}).build_posterior(estimator, prior)
    assert type(ours) is VectorizedSliceMCMCPosterior and type(theirs) is MCMCPosterior
    x_o = torch.tensor([[0.5, -0.5]])
    with seeded(0):
        a = ours.sample((4000,), x=x_o, show_progress_bars=False)
    with seeded(0):
        again = ours.sample((4000,), x=x_o, show_progress_bars=False)
    with seeded(0):
        b = theirs.sample((4000,), x=x_o, show_progress_bars=False)
    torch.testing.assert_close(a, again, rtol=0, atol=0)  # seeded: same draws
    assert a.shape == b.shape == (4000, 2)
    torch.testing.assert_close(a.mean(0), b.mean(0), rtol=0, atol=0.03)
    torch.testing.assert_close(a.std(0), b.std(0), rtol=0.1, atol=0)


def test_unknown_mcmc_method_names_the_key():
    with pytest.raises(ConfigError, match=r"method.sampling.mcmc"):
        NLE(sampling={"mcmc": {"method": "slice_fast"}})
