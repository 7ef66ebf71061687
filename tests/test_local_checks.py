"""Issue 14, the checks at x_o on real small posteriors and simulators.

* two_moons (the reference posterior is exact): L-C2ST's verdict agrees with C2ST against the
  reference, for a trained and a deliberately under-trained network.
* Hodgkin-Huxley: the misspecification tests pass an x_o the simulator produced (θ* = (50, 5))
  and flag one no simulation could produce (every statistic 1e6) with p < 0.01.
* A learned embedding: the MMD is also run in its space.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import NullTracker
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sbilab.diagnostics import (
    DiagnosticsInputs,
    DiagnosticsSettings,
    LC2STSettings,
    MisspecificationSettings,
    check_misspecification,
    compute_diagnostics,
)
from sbilab.diagnostics.gates import GateThresholds
from test_diagnostics import seeds

torch.set_num_threads(1)
CONF = Path(__file__).resolve().parents[1] / "conf"


def _parts(*overrides: str) -> dict:
    """Simulator, prior and summary of a composed config, built from their ``_target_`` (name dropped)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    out = {}
    for group in ("simulator", "prior", "summary"):
        part = OmegaConf.to_container(cfg[group], resolve=True)
        part.pop("name", None)
        part.pop("reference", None)
        out[group] = instantiate(part, _convert_="all")
    return out


# ------------------------------------------------------------------------- two moons


@pytest.fixture(scope="module")
def two_moons():
    parts = _parts("experiment=two_moons")
    simulator, prior = parts["simulator"], parts["prior"]

    def simulate(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            theta = prior.sample((n,))
        return theta, simulator.simulate(theta, np.arange(n) + seed * 1_000_000)

    x_o = torch.tensor([-0.6396706, 0.16234657])  # sbibm's observation 1
    return prior, simulate, x_o, simulator.reference_posterior(x_o, 2000, 1)


def _npe(prior, theta, x, epochs: int):
    from sbi.inference import NPE

    torch.manual_seed(0)
    inference = NPE(prior=prior, density_estimator="nsf", show_progress_bars=False, tracker=NullTracker())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not yet converged" for the under-trained one
        estimator = inference.append_simulations(theta, x).train(max_num_epochs=epochs)
    return inference.build_posterior(estimator)


@pytest.mark.parametrize("epochs,should_pass", [(100, True), (2, False)], ids=["trained", "under-trained"])
def test_lc2st_verdict_agrees_with_c2st_against_the_exact_reference(two_moons, epochs, should_pass):
    prior, simulate, x_o, reference = two_moons
    posterior = _npe(prior, *simulate(1000, 1), epochs)
    test_theta, test_x = simulate(1000, 2)  # the default num_test: at 500, L-C2ST with the default classifier
    # patience misses the under-trained network (p = 0.65; patience 50 catches it, at twice the cost)
    settings = DiagnosticsSettings(num_posterior_samples=100, num_observation_samples=2000,
                                   lc2st=LC2STSettings(num_trials_null=20),
                                   misspecification=MisspecificationSettings(logprob=False),
                                   thresholds=GateThresholds(c2st_max=0.7))  # the two_moons preset's bar
    result = compute_diagnostics(DiagnosticsInputs(posterior, test_theta, test_x, x_o=x_o, reference_samples=reference),
                                 settings, seeds(5))
    c2st_passes = result.metrics["c2st"] <= 0.7
    # at 20 null classifiers: fails when the statistic beats every one of them (p = 1/21, its smallest value)
    lc2st_passes = min(result.metrics["lc2st/pvalue"], result.metrics["lc2st/nf_pvalue"]) > 1 / 21 + 1e-9
    assert c2st_passes == lc2st_passes == should_pass, result.metrics
    assert result.misspecified is False  # x_o is one two_moons produces
    gated = {c.name for c in result.gates.checks}
    assert {"lc2st/pvalue", "lc2st/nf_pvalue"} <= gated  # a flow: both variants, both gated


# ---------------------------------------------------------------------- Hodgkin-Huxley


@pytest.fixture(scope="module")
def hh_prior_predictive():
    parts = _parts()
    simulator, prior, summary = parts["simulator"], parts["prior"], parts["summary"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        theta = prior.sample((1000,))
    x = simulator.simulate_summaries(theta, np.arange(1000), summary)
    x_o = simulator.simulate_summaries(torch.tensor([[50.0, 5.0]]), np.array([2026]), summary)[0]
    return x, x_o


def test_hh_observation_from_the_simulator_is_not_misspecified(hh_prior_predictive):
    x, x_o = hh_prior_predictive
    result = check_misspecification(x, x_o, MisspecificationSettings(), seed=1)
    assert not result.misspecified, result.p_values
    assert min(result.p_values.values()) > 0.05


def test_hh_impossible_observation_is_misspecified(hh_prior_predictive):
    x, _ = hh_prior_predictive
    result = check_misspecification(x, torch.full((x.shape[1],), 1e6), MisspecificationSettings(), seed=1)
    assert result.misspecified
    assert result.p_values["misspecification/mmd_pvalue"] < 0.01
    assert result.p_values["misspecification/logprob_pvalue"] < 0.01
    assert result.metrics()["misspecification/misspecified"] == 1.0


def test_misspecification_runs_in_the_learned_embeddings_space_too():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 30, generator=g)
    embedding = torch.nn.Linear(30, 4)
    settings = MisspecificationSettings(mmd_num_shuffles=200, logprob_max_epochs=20)
    typical = check_misspecification(x[1:], x[0], settings, seed=2, embedding_net=embedding)
    far = check_misspecification(x[1:], x[0] + 50.0, settings, seed=2, embedding_net=embedding)
    assert set(typical.p_values) == {"misspecification/mmd_pvalue", "misspecification/mmd_embedding_pvalue",
                                     "misspecification/logprob_pvalue"}
    assert typical.logprob_space == "embedding" and not typical.misspecified
    assert far.misspecified and far.p_values["misspecification/mmd_embedding_pvalue"] < 0.01
