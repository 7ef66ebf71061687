"""The sbibm benchmark tasks: per-row seeding, the simulators' laws, reference posteriors, configs.

Reference posteriors are checked three ways: gaussian_linear against its analytic
moments; the exact samplers (two_moons, gaussian_mixture) against the generic
tempered SMC run on the likelihood alone; and every task against sbibm's
published reference samples (c2st ≈ 0.5), when those are cached or can be fetched.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from sbi.utils.metrics import c2st

from sbilab.config import SyntheticObservation, check_config
from sbilab.observation import make_observation
from sbilab.priors import sample_prior
from sbilab.rng import per_index_seeds
from sbilab.simulators import sbibm_reference
from sbilab.simulators.benchmark_tasks import TASKS
from sbilab.simulators.benchmark_tasks.base import BoxPrior, row_uniforms, smc_sample
from sbilab.simulators.benchmark_tasks.gaussian_linear import GaussianLinear
from sbilab.simulators.benchmark_tasks.gaussian_mixture import GaussianMixture
from sbilab.simulators.benchmark_tasks.two_moons import TwoMoons
from sbilab.spec import instantiate_part, part_config
from sbilab.summaries.identity import Identity

torch.set_num_threads(1)

CONF = Path(__file__).resolve().parents[1] / "conf"
NAMES = sorted(TASKS)
DIMS = {"two_moons": (2, 2), "gaussian_linear": (10, 10), "slcp": (5, 8), "gaussian_mixture": (2, 2),
        "gaussian_linear_uniform": (10, 10), "bernoulli_glm": (10, 10), "bernoulli_glm_raw": (10, 100), "sir": (2, 10),
        "lotka_volterra": (4, 20), "slcp_distractors": (5, 100)}


def fast_c2st(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """sbi's c2st (random forest, z-scored), lighter: 50 trees, 3 folds."""
    a, b = (torch.as_tensor(np.asarray(v), dtype=torch.float32) for v in (a, b))
    return float(c2st(a, b, seed=1, n_folds=3, classifier_kwargs={"n_estimators": 50}))


def prior_theta(task, n: int, seed: int) -> torch.Tensor:
    return torch.as_tensor(task.prior.sample(n, np.random.default_rng(seed)), dtype=torch.float32)


@pytest.fixture(scope="module")
def published():
    """sbibm's cached files (fetched once if missing); the tests using it skip when offline."""
    try:
        sbibm_reference.fetch()
    except sbibm_reference.SbibmDataUnavailable as error:
        pytest.skip(f"sbibm reference files unavailable: {error}")
    return sbibm_reference.published_observation


# -- per-row random numbers -------------------------------------------------------------


def test_row_uniforms_depend_only_on_the_row_seed():
    seeds = per_index_seeds(7, 0, 1000)
    u = row_uniforms(seeds, 6)
    assert u.shape == (1000, 6) and u.dtype == np.float64
    assert (u > 0).all() and (u < 1).all()
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    assert np.array_equal(row_uniforms(seeds[::-1], 6), u[::-1])
    assert np.array_equal(row_uniforms(seeds[10:11], 6)[0], u[10])
    assert np.array_equal(row_uniforms(seeds, 3), u[:, :3])  # draw k does not depend on how many are drawn
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.1
    assert abs(np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]) < 0.1


# -- simulators ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_simulate_shape_dtype_and_determinism(name):
    task = TASKS[name]()
    dim_theta, dim_x = DIMS[name]
    assert task.parameter_dim == dim_theta and task.data_dim == dim_x and task.version
    theta = prior_theta(task, 64, 0)
    seeds = per_index_seeds(3, 0, 64)
    x = task.simulate(theta, seeds)
    assert x.shape == (64, dim_x) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(task.simulate(theta, seeds), x)
    assert not torch.equal(task.simulate(theta, per_index_seeds(4, 0, 64)), x)
    assert torch.equal(task(theta, seed=3), x)


@pytest.mark.parametrize("name", NAMES)
def test_row_output_does_not_depend_on_the_batch(name):
    task = TASKS[name]()
    theta = prior_theta(task, 50, 1)
    seeds = per_index_seeds(11, 0, 50)
    x = task.simulate(theta, seeds)
    order = np.random.default_rng(0).permutation(50)
    assert torch.equal(task.simulate(theta[order], seeds[order]), x[order])
    chunks = torch.cat([task.simulate(theta[i : i + 7], seeds[i : i + 7]) for i in range(0, 50, 7)])
    assert torch.equal(chunks, x)
    assert torch.equal(task.simulate(theta[13:14], seeds[13:14])[0], x[13])
    # same seed, other θ in the batch: row 0 unchanged
    other = theta.clone()
    other[1:] = prior_theta(task, 49, 2)
    assert torch.equal(task.simulate(other, seeds)[0], x[0])


@pytest.mark.parametrize("name", NAMES)
def test_simulating_100k_rows_is_fast(name):
    task = TASKS[name]()
    theta = prior_theta(task, 100_000, 0)
    seeds = per_index_seeds(0, 0, 100_000)
    started = time.perf_counter()
    x = task.simulate(theta, seeds)
    assert time.perf_counter() - started < 2.0
    assert x.shape[0] == 100_000


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_rejected(name):
    task = TASKS[name]()
    with pytest.raises(ValueError, match="columns"):
        task.simulate(torch.zeros(3, task.parameter_dim + 1), per_index_seeds(0, 0, 3))
    with pytest.raises(ValueError, match="seeds"):
        task.simulate(torch.zeros(3, task.parameter_dim), per_index_seeds(0, 0, 2))
    with pytest.raises(ValueError, match="x_o"):
        task.reference_posterior(torch.zeros(task.data_dim + 1), 10, 0)
    with pytest.raises(ValueError, match="simulator.reference"):
        TASKS[name](reference="sbibm")


def _simulate_at(task, theta, n=40_000):
    theta = torch.as_tensor(np.tile(np.asarray(theta, dtype=np.float32), (n, 1)))
    return task.simulate(theta, per_index_seeds(5, 0, n)).double().numpy()


def test_two_moons_law():
    task = TwoMoons()
    theta = (0.3, -0.5)
    x = _simulate_at(task, theta)
    shift = np.array([-abs(theta[0] + theta[1]), theta[1] - theta[0]]) / math.sqrt(2)
    p = x - shift
    r = np.hypot(p[:, 0] - 0.25, p[:, 1])
    assert abs(r.mean() - 0.1) < 3e-4 and abs(r.std() - 0.01) < 3e-4
    angle = np.arctan2(p[:, 1], p[:, 0] - 0.25)
    assert angle.min() > -math.pi / 2 and angle.max() < math.pi / 2
    assert abs(angle.mean()) < 0.03 and abs(angle.var() - math.pi**2 / 12) < 0.03


def test_gaussian_linear_law():
    theta = np.linspace(-0.5, 0.5, 10)
    x = _simulate_at(GaussianLinear(), theta)
    assert np.abs(x.mean(0) - theta).max() < 0.01
    assert np.abs(np.cov(x, rowvar=False) - 0.1 * np.eye(10)).max() < 0.006


def test_slcp_law():
    task = TASKS["slcp"]()
    theta = np.array([0.5, -1.0, 1.2, -0.8, 0.7])
    x = _simulate_at(task, theta).reshape(-1, 4, 2)
    s1, s2, rho = theta[2] ** 2, theta[3] ** 2, math.tanh(theta[4])
    sigma = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]]) + 1e-6 * np.eye(2)
    for j in range(4):  # each of the 4 points ~ N(m, Σ), independent of each other
        assert np.abs(x[:, j].mean(0) - theta[:2]).max() < 0.03
        assert np.abs(np.cov(x[:, j], rowvar=False) - sigma).max() < 0.04
    assert abs(np.corrcoef(x[:, 0, 0], x[:, 1, 0])[0, 1]) < 0.02


def test_gaussian_mixture_law():
    theta = (3.0, -7.0)
    d = _simulate_at(GaussianMixture(), theta) - np.array(theta)
    assert np.abs(d.mean(0)).max() < 0.015
    assert np.abs(d.var(0) - 0.505).max() < 0.015  # ½·1 + ½·0.01
    narrow = np.abs(d).max(1) < 0.5  # nearly all of the 0.1-scale component, 0.15 of the wide one
    assert abs(narrow.mean() - (0.5 + 0.5 * (math.erf(0.5 / math.sqrt(2)) ** 2))) < 0.01


# -- reference posteriors --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_reference_posterior_shape_support_and_seed(name):
    task = TASKS[name]()
    _, x_o = sbibm_reference.benchmark_observation(name, 1)
    samples = task.reference_posterior(torch.tensor(x_o), 1000, seed=3)
    assert samples.shape == (1000, task.parameter_dim) and samples.dtype == torch.float32
    assert torch.isfinite(samples).all()
    assert np.isfinite(task.log_posterior_unnormalised(samples.double().numpy(), np.array(x_o))).all()
    if isinstance(task.prior, BoxPrior):
        low, high = torch.tensor(task.prior.low), torch.tensor(task.prior.high)
        assert ((samples >= low) & (samples <= high)).all()
    assert torch.equal(task.reference_posterior(torch.tensor(x_o), 1000, seed=3), samples)
    assert not torch.equal(task.reference_posterior(torch.tensor(x_o), 1000, seed=4), samples)


def test_gaussian_linear_reference_matches_the_analytic_posterior():
    task = GaussianLinear()
    x_o = np.array(sbibm_reference.benchmark_observation("gaussian_linear", 2)[1])
    mean, cov = task.posterior_moments(x_o)
    # prior N(0, 0.1 I), noise N(0, 0.1 I): posterior N(x/2, 0.05 I)
    assert np.allclose(mean, x_o / 2) and np.allclose(cov, 0.05 * np.eye(10))
    samples = task.reference_posterior(torch.tensor(x_o), 20_000, seed=0).double().numpy()
    assert np.abs(samples.mean(0) - mean).max() < 4 * math.sqrt(0.05 / 20_000)
    assert np.abs(np.cov(samples, rowvar=False) - cov).max() < 0.004


def test_two_moons_exact_sampler_agrees_with_its_likelihood_on_a_grid():
    """Posterior mean and covariance: exact sampler vs prior × likelihood integrated on a fine grid."""
    task = TwoMoons()
    x_o = np.array(sbibm_reference.benchmark_observation("two_moons", 3)[1])
    grid = np.linspace(-1, 1, 1201)
    t1, t2 = np.meshgrid(grid, grid, indexing="ij")
    theta = np.stack([t1.ravel(), t2.ravel()], axis=1)
    log_post = task.log_posterior_unnormalised(theta, x_o)
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    mean = w @ theta
    cov = (theta - mean).T @ ((theta - mean) * w[:, None])
    samples = task.reference_posterior(torch.tensor(x_o), 20_000, seed=1).double().numpy()
    assert np.abs(samples.mean(0) - mean).max() < 0.01
    assert np.abs(np.cov(samples, rowvar=False) - cov).max() < 0.01


@pytest.mark.parametrize("name", ["two_moons", "gaussian_mixture"])
def test_exact_samplers_agree_with_smc_on_the_likelihood(name):
    """Two independent routes to the same posterior: the exact sampler and SMC on prior × likelihood."""
    task = TASKS[name]()
    x_o = np.array(sbibm_reference.benchmark_observation(name, 1)[1])
    exact = task.reference_posterior(torch.tensor(x_o), 2500, seed=0)
    smc, info = smc_sample(lambda t: task.log_likelihood(t, x_o), task.prior, 2500, np.random.default_rng(1))
    assert info.temperatures >= 2 and 0.1 < info.final_acceptance < 0.6
    assert fast_c2st(exact, smc) < 0.55


def test_slcp_reference_is_fast_and_symmetric():
    task = TASKS["slcp"]()
    _, x_o = sbibm_reference.benchmark_observation("slcp", 2)
    started = time.perf_counter()
    samples = task.reference_posterior(torch.tensor(x_o), 10_000, seed=0).numpy()
    assert time.perf_counter() - started < 15.0
    assert len(np.unique(samples, axis=0)) > 9_000  # SMC moves have decorrelated the resampled particles
    # the likelihood is even in θ₃ and θ₄: mirror modes carry equal mass
    for k in (2, 3):
        assert abs((samples[:, k] > 0).mean() - 0.5) < 0.02


@pytest.mark.parametrize("name", NAMES)
def test_reference_matches_sbibm_published_samples(name, published):
    obs = published(name, 1)
    ours = TASKS[name]().reference_posterior(torch.tensor(obs.x), 2500, seed=1)
    theirs = obs.samples[np.random.default_rng(0).permutation(len(obs.samples))[:2500]]
    assert fast_c2st(ours, theirs) < 0.55


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_reference_matches_sbibm_on_all_ten_observations(name, published):
    task = TASKS[name]()
    scores = []
    for k in range(1, 11):
        obs = published(name, k)
        ours = task.reference_posterior(torch.tensor(obs.x), 5000, seed=k)
        scores.append(fast_c2st(ours, obs.samples[np.random.default_rng(k).permutation(len(obs.samples))[:5000]]))
    assert max(scores) < 0.53 and np.mean(scores) < 0.515, (name, scores)


def test_published_mode_returns_sbibm_samples_for_sbibm_observations(published):
    task = TwoMoons(reference="published")
    obs = published("two_moons", 2)
    samples = task.reference_posterior(torch.tensor(obs.x, dtype=torch.float32), 500, seed=0).double().numpy()
    published_rows = {tuple(np.float32(row)) for row in obs.samples}
    assert all(tuple(np.float32(row)) in published_rows for row in samples)
    # another x_o, or more samples than sbibm publishes: the likelihood-based reference
    other = task.reference_posterior(torch.tensor(obs.x) + 0.01, 500, seed=0).double().numpy()
    assert not any(tuple(np.float32(row)) in published_rows for row in other)
    many = task.reference_posterior(torch.tensor(obs.x), 10_001, seed=0).double().numpy()
    assert many.shape == (10_001, 2)


# -- sbibm's published files --------------------------------------------------------------------


def test_observation_table(published):
    for name in sbibm_reference.TASKS:
        for k in (1, 2, 3):
            theta, x = sbibm_reference.benchmark_observation(name, k)
            obs = published(name, k)
            assert np.array_equal(np.float32(theta), np.float32(obs.theta))
            assert np.array_equal(np.float32(x), np.float32(obs.x))
            assert sbibm_reference.match_observation(name, x) == k
            assert obs.samples.shape == (10_000, DIMS[name][0])
    assert sbibm_reference.match_observation("slcp", np.zeros(8)) is None
    with pytest.raises(ValueError, match="tabulated"):
        sbibm_reference.benchmark_observation("slcp", 4)


def test_fetch_fails_clearly_without_the_wheel(tmp_path, monkeypatch):
    with pytest.raises(sbibm_reference.SbibmDataUnavailable, match="sha256"):
        bogus = tmp_path / sbibm_reference.WHEEL_NAME
        bogus.write_bytes(b"not a wheel")
        sbibm_reference.fetch(tmp_path, wheel=bogus)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(sbibm_reference.SbibmDataUnavailable, match="offline"):
        sbibm_reference.fetch(tmp_path)
    assert not sbibm_reference.is_cached(tmp_path)
    with pytest.raises(sbibm_reference.SbibmDataUnavailable, match="benchmark_reference.py fetch"):
        sbibm_reference.published_observation("two_moons", 1, tmp_path)
    # the tasks do not need the files
    task = TwoMoons(reference="published")
    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
    x_o = sbibm_reference.benchmark_observation("two_moons", 1)[1]
    assert task.reference_posterior(torch.tensor(x_o), 100, seed=0).shape == (100, 2)


# -- configs --------------------------------------------------------------------------------------


def _compose(overrides: list[str]):
    os.environ.setdefault("PROJECT_ROOT", str(CONF.parent))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("name", NAMES)
def test_experiment_config_composes_and_instantiates(name):
    cfg = _compose([f"experiment={name}"])
    check_config(cfg)
    assert cfg.simulator.name == name and cfg.prior.name == name and cfg.summary.name == "identity"
    simulator = instantiate_part(part_config(cfg, "simulator"))
    prior = instantiate_part(part_config(cfg, "prior"))
    summary = instantiate_part(part_config(cfg, "summary"))
    assert isinstance(simulator, TASKS[name]) and isinstance(summary, Identity)
    # the prior config is the task's sbibm prior, which the reference posterior assumes
    prior_cfg = part_config(cfg, "prior")
    for key, values in simulator.prior.config().items():
        assert np.allclose(prior_cfg[key], values), key
    assert len(prior_cfg["names"]) == simulator.parameter_dim
    theta = sample_prior(prior, 5, 0)
    assert theta.shape == (5, simulator.parameter_dim)
    # observation.theta defaults to sbibm's observation 1
    theta_1, x_1 = sbibm_reference.benchmark_observation(name, 1)
    assert list(cfg.observation.theta) == theta_1 and list(cfg.benchmark.x_o) == x_1
    settings = SyntheticObservation(theta=list(cfg.observation.theta), seed=int(cfg.observation.seed))
    observation = make_observation(simulator, summary, settings, x_dim=simulator.data_dim)
    reference = simulator.reference_posterior(observation.x, 200, seed=0)
    assert reference.shape == (200, simulator.parameter_dim)
    assert cfg.diagnostics.thresholds.c2st_max >= 0.6 and cfg.diagnostics.num_observation_samples == 10_000


@pytest.mark.parametrize("name", NAMES)
def test_experiment_selects_sbibm_observations(name):
    for k in (2, 3):
        cfg = _compose([f"experiment={name}", f"benchmark.num_observation={k}"])
        theta_k, x_k = sbibm_reference.benchmark_observation(name, k)
        assert list(cfg.observation.theta) == theta_k and list(cfg.benchmark.x_o) == x_k
    cfg = _compose([f"experiment={name}", "observation=summary", "observation.x=${benchmark.x_o}"])
    check_config(cfg)
    x_o = OmegaConf.to_container(cfg.observation, resolve=True)["x"]
    assert x_o == sbibm_reference.benchmark_observation(name, 1)[1]


@pytest.mark.parametrize("name", NAMES)
def test_simulator_and_prior_options_compose_alone(name):
    for group in ("simulator", "prior"):
        cfg = _compose([f"{group}={name}"])
        assert instantiate_part(part_config(cfg, group)) is not None
