"""sbibm tasks written as a user writes a model (sbilab.tasks: plain functions + configs, no Simulator class).

Every task composes through Hydra as ``experiment=<task>``, simulates through FunctionSimulator with sbibm's
dimensions, seeded and reproducible; its prior is sbibm's; sbibm's published observation 1 is a plausible
draw at its true θ; gaussian_linear_uniform's exact posterior sampler is checked. The full comparison with
sbibm's observations 1-10 is scripts/check_sbibm_tasks.py.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sbilab.config import check_config
from sbilab.priors import sample_prior
from sbilab.rng import per_index_seeds
from sbilab.simulators import sbibm_reference
from sbilab.simulators.function import FunctionSimulator
from sbilab.spec import instantiate_part, part_config
from sbilab.summaries.identity import Identity
from sbilab.tasks import bernoulli_glm, gaussian_linear_uniform, lotka_volterra, sir, slcp_distractors

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
#: (θ dimension, x dimension) as in sbibm 1.1.0
DIMS = {"gaussian_linear_uniform": (10, 10), "bernoulli_glm": (10, 10), "bernoulli_glm_raw": (10, 100),
        "sir": (2, 10), "lotka_volterra": (4, 20), "slcp_distractors": (5, 100)}
TASKS = sorted(DIMS)
#: log p(x | θ) of each task (slcp_distractors: SLCP's 8 entries), for the plausibility of sbibm's x_o
LOG_LIKELIHOOD = {
    "gaussian_linear_uniform": gaussian_linear_uniform.log_likelihood,
    "bernoulli_glm_raw": bernoulli_glm.log_likelihood_raw,
    "sir": sir.log_likelihood,
    "lotka_volterra": lotka_volterra.log_likelihood,
    "slcp_distractors": lambda theta, x: slcp_distractors.slcp_log_likelihood(
        theta, np.asarray(x)[..., slcp_distractors.slcp_positions()]),
}


def _compose(overrides: list[str]):
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture(scope="module", params=TASKS)
def composed(request):
    """(task, config, simulator, prior) of ``experiment=<task>``."""
    cfg = _compose([f"experiment={request.param}"])
    return (request.param, cfg, instantiate_part(part_config(cfg, "simulator")),
            instantiate_part(part_config(cfg, "prior")))


def _simulate(simulator, theta: np.ndarray, seed: int) -> np.ndarray:
    theta = torch.as_tensor(np.asarray(theta), dtype=torch.float32)
    return simulator.simulate(theta, per_index_seeds(seed, 0, theta.shape[0])).double().numpy()


# -- configs and the user path -------------------------------------------------------------------


def test_experiment_composes_as_a_user_model(composed):
    task, cfg, simulator, prior = composed
    check_config(cfg)
    assert cfg.simulator.name == task and cfg.prior.name == task and cfg.summary.name == "identity"
    assert isinstance(simulator, FunctionSimulator) and simulator.vectorized
    assert simulator.fn_path.startswith("sbilab.tasks.") and cfg.simulator._target_.endswith("FunctionSimulator")
    assert isinstance(instantiate_part(part_config(cfg, "summary")), Identity)
    # the generic, untuned training at sbibm's 10k simulations
    assert (cfg.estimator.name, cfg.method.name, cfg.trainer.lr_decay) == ("maf", "npe", None)
    assert cfg.simulation.num_simulations == 10_000 and cfg.diagnostics.num_observation_samples == 10_000
    assert cfg.benchmark.task == task and list(cfg.benchmark.score) == list(range(1, 11))
    assert 0.5 < cfg.benchmark.c2st_target <= 1.0


def test_simulates_sbibms_dimensions_seeded(composed):
    task, _, simulator, prior = composed
    theta_dim, x_dim = DIMS[task]
    theta = sample_prior(prior, 6, seed=3)
    assert theta.shape == (6, theta_dim)
    x = _simulate(simulator, theta, seed=1)
    assert x.shape == (6, x_dim) and np.isfinite(x).all()
    assert np.array_equal(x, _simulate(simulator, theta, seed=1))
    assert not np.array_equal(x, _simulate(simulator, theta, seed=2))


def test_observations_are_sbibms(composed):
    task, _, _, _ = composed
    for k in (1, 2, 3):
        cfg = _compose([f"experiment={task}", f"benchmark.num_observation={k}"])
        theta_k, x_k = sbibm_reference.benchmark_observation(task, k)
        assert list(cfg.observation.theta) == theta_k and list(cfg.benchmark.x_o) == x_k
        assert (len(theta_k), len(x_k)) == DIMS[task]
    cfg = _compose([f"experiment={task}", "observation=summary", "observation.x=${benchmark.x_o}"])
    check_config(cfg)
    x_o = OmegaConf.to_container(cfg.observation, resolve=True)["x"]
    assert x_o == sbibm_reference.benchmark_observation(task, 1)[1]


def test_observation_1_is_plausible_at_its_true_theta(composed):
    task, _, simulator, prior = composed
    theta, x_o = (np.array(v) for v in sbibm_reference.benchmark_observation(task, 1))
    assert torch.isfinite(prior.log_prob(torch.as_tensor(theta, dtype=torch.float32)))
    sims = _simulate(simulator, np.repeat(theta[None], 2000, axis=0), seed=0)
    if task == "bernoulli_glm":  # the summaries of sbibm's raw spike train are its x_o
        raw = np.array(sbibm_reference.benchmark_observation("bernoulli_glm_raw", 1)[1])
        assert np.allclose(bernoulli_glm.summarise(raw[None])[0], x_o, atol=1e-4)
        task, x_o = "bernoulli_glm_raw", raw
        sims = bernoulli_glm.simulate_raw(np.repeat(theta[None], 2000, axis=0), np.random.default_rng(0))
    loglik = LOG_LIKELIHOOD[task]
    below = (loglik(np.repeat(theta[None], len(sims), axis=0), sims) < loglik(theta[None], x_o[None])[0]).mean()
    assert 0.002 < below < 0.998, f"{task}: x_o's log-likelihood is at percentile {below:.4f} of simulated x"


# -- the priors ------------------------------------------------------------------------------------


def test_priors_are_sbibms():
    def prior(task):
        return instantiate_part(part_config(_compose([f"prior={task}"]), "prior"))

    log_theta = sample_prior(prior("sir"), 20_000, seed=0).double().log()
    assert np.allclose(log_theta.mean(0), np.log([0.4, 0.125]), atol=0.02)
    assert np.allclose(log_theta.std(0), [0.5, 0.2], atol=0.02)
    log_theta = sample_prior(prior("lotka_volterra"), 20_000, seed=0).double().log()
    assert np.allclose(log_theta.mean(0), [-0.125, -3.0, -0.125, -3.0], atol=0.02)
    assert np.allclose(log_theta.std(0), 0.5, atol=0.02)
    glm = prior("bernoulli_glm")
    assert np.allclose(glm.precision_matrix.double().numpy(), bernoulli_glm.prior_precision(), atol=1e-6)
    assert torch.equal(prior("bernoulli_glm_raw").precision_matrix, glm.precision_matrix)
    for task, bound in (("gaussian_linear_uniform", 1.0), ("slcp_distractors", 3.0)):
        theta = sample_prior(prior(task), 5000, seed=0)
        assert theta.abs().max() <= bound and theta.abs().max() > 0.99 * bound
        assert theta.shape[1] == DIMS[task][0]


# -- the tasks' own definitions ------------------------------------------------------------------


def test_gaussian_linear_uniform_exact_posterior():
    """The truncated Gaussian sampler against sbibm's own method: rejection of N(x_o, 0.1 I) outside the box."""
    x_o = np.array(sbibm_reference.benchmark_observation("gaussian_linear_uniform", 1)[1])
    rng = np.random.default_rng(0)
    ours = gaussian_linear_uniform.posterior_sample(x_o, 20_000, rng)
    draws = x_o + np.sqrt(0.1) * rng.standard_normal((200_000, 10))
    sbibms = draws[(np.abs(draws) <= 1).all(axis=1)]
    assert len(sbibms) > 5000 and (np.abs(ours) <= 1).all()
    assert np.allclose(ours.mean(0), sbibms.mean(0), atol=0.02)
    assert np.allclose(ours.std(0), sbibms.std(0), atol=0.02)


def test_gaussian_linear_uniform_posterior_matches_sbibms_reference():
    if not sbibm_reference.is_cached():
        pytest.skip("sbibm's reference files are not cached (scripts/benchmark_reference.py fetch)")
    from sbilab.diagnostics.c2st import c2st_score

    published = sbibm_reference.published_observation("gaussian_linear_uniform", 1)
    ours = gaussian_linear_uniform.posterior_sample(published.x, 1000, np.random.default_rng(1))
    assert c2st_score(ours, published.samples, seed=1, max_samples=1000, classifier="rf") < 0.56


def test_bernoulli_glm_summaries_are_sbibms_conv1d():
    """Xᵀy is sbibm's [spike count, conv1d(y, stimulus, padding=8)[-9:]] (torch's conv1d is a correlation)."""
    rng = np.random.default_rng(0)
    y = (rng.random((3, 100)) < 0.4).astype(np.float64)
    stimulus = torch.tensor(np.array(bernoulli_glm.stimulus()), dtype=torch.float64)
    for row, summary in zip(y, bernoulli_glm.summarise(y)):
        sta = torch.nn.functional.conv1d(torch.as_tensor(row).reshape(1, 1, -1), stimulus.reshape(1, 1, -1),
                                         padding=8).squeeze()[-9:]
        assert summary[0] == row.sum() and np.allclose(summary[1:], sta.numpy())


def test_slcp_distractors_hide_sbibms_slcp_observation():
    x_o = np.array(sbibm_reference.benchmark_observation("slcp_distractors", 2)[1])
    assert np.array_equal(x_o[slcp_distractors.slcp_positions()], sbibm_reference.benchmark_observation("slcp", 2)[1])
    theta = np.array([[0.5, -1.0, 1.2, -0.8, 0.3]])
    x = slcp_distractors.simulate(np.repeat(theta, 20_000, axis=0), np.random.default_rng(0))
    points = x[:, slcp_distractors.slcp_positions()].reshape(-1, 2)
    s1, s2, rho = 1.2**2, 0.8**2, np.tanh(0.3)
    assert np.allclose(points.mean(0), [0.5, -1.0], atol=0.03)
    assert np.allclose(np.cov(points.T), [[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]], rtol=0.03, atol=0.01)


def test_ode_tasks_are_accurate():
    """The fixed-step RK4 integrators against scipy's adaptive DOP853."""
    from scipy.integrate import solve_ivp

    beta, gamma = 0.6, 0.15
    exact = solve_ivp(lambda t, u: [-beta * u[0] * u[1], beta * u[0] * u[1] - gamma * u[1]], (0, 160),
                      [1 - 1e-6, 1e-6], method="DOP853", rtol=1e-11, atol=1e-15, t_eval=sir.OBSERVED_DAYS).y[1]
    assert np.abs(sir.infected_fraction(np.array([[beta, gamma]]))[0] - exact).max() < 1e-6
    a, b, g, d = 0.9, 0.05, 0.8, 0.06
    exact = solve_ivp(lambda t, u: [a - b * np.exp(u[1]), d * np.exp(u[0]) - g], (0, 19.0), np.log([30.0, 1.0]),
                      method="DOP853", rtol=1e-11, atol=1e-11, t_eval=lotka_volterra.OBSERVED_TIMES).y.reshape(-1)
    assert np.abs(lotka_volterra.log_populations(np.array([[a, b, g, d]]))[0] - exact).max() < 1e-4


# -- sbibm's files and the benchmark ----------------------------------------------------------


def test_benchmark_accepts_the_tasks(tmp_path):
    from sbilab.experiments.benchmark import check_selection, compose_job

    check_selection(TASKS, ["preset", "npe"], CONF)
    job = compose_job(CONF, "sir", "preset", ["simulation.num_simulations=100"], tmp_path)
    assert job.task == "sir" and job.method == "npe" and job.target == 0.68 and job.observations == list(range(1, 11))


def test_reference_cache_extracts_the_variants_and_refreshes_an_old_one(tmp_path):
    """bernoulli_glm_raw and slcp_distractors come from their parents' folders; a cache without them is stale."""
    assert set(DIMS) <= set(sbibm_reference.TASKS)
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for task in sbibm_reference.TASKS:
            if task in ("bernoulli_glm_raw", "slcp_distractors"):
                continue
            for k in range(1, 11):
                folder = f"sbibm/tasks/{task}/files/num_observation_{k}/"
                for name in ("true_parameters.csv", "observation.csv", "reference_posterior_samples.csv.bz2",
                             "observation_raw.csv", "observation_distractors.csv", "observation_seed.csv"):
                    archive.writestr(folder + name, f"{task} {k} {name}")
    staging = tmp_path / "staging"
    counts = sbibm_reference._extract(wheel, staging)
    assert counts == {task: 10 for task in sbibm_reference.TASKS}
    raw = staging / "bernoulli_glm_raw" / "num_observation_3"
    assert (raw / "observation.csv").read_text() == "bernoulli_glm 3 observation_raw.csv"
    assert (raw / "true_parameters.csv").read_text() == "bernoulli_glm 3 true_parameters.csv"
    distractors = staging / "slcp_distractors" / "num_observation_7"
    assert (distractors / "observation.csv").read_text() == "slcp 7 observation_distractors.csv"
    assert (distractors / "reference_posterior_samples.csv.bz2").read_text() == (
        "slcp 7 reference_posterior_samples.csv.bz2")
    assert (staging / "slcp" / "num_observation_7" / "observation.csv").read_text() == "slcp 7 observation.csv"
    # a cache extracted when only the four class-based tasks were listed is not complete: fetch extracts again
    cache = sbibm_reference.cache_dir(tmp_path)
    cache.mkdir(parents=True)
    old = {"two_moons": 10, "gaussian_linear": 10, "slcp": 10, "gaussian_mixture": 10}
    (cache / "COMPLETE.json").write_text(json.dumps({"sbibm": "1.1.0", "observations": old}))
    assert not sbibm_reference.is_cached(tmp_path)
    (cache / "COMPLETE.json").write_text(json.dumps({"sbibm": "1.1.0", "observations": counts}))
    assert sbibm_reference.is_cached(tmp_path)


def test_shipped_data():
    data = Path(bernoulli_glm.__file__).with_name("data")
    assert "MIT" in (data / "README.md").read_text()
    assert bernoulli_glm.design_matrix().shape == (100, 10) and bernoulli_glm.stimulus().shape == (100,)
    mixture = slcp_distractors.mixture()
    assert mixture["loc"].shape == (20, 92) and mixture["scale_tril"].shape == (20, 92, 92)
    assert sorted(mixture["permutation"]) == list(range(100)) and np.allclose(mixture["mixture_probs"], 0.05)
