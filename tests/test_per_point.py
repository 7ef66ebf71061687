"""Diagnostics of posteriors that are not amortised: sampled one x at a time, within a time budget;
and the terminal's account of failed gates."""

from __future__ import annotations

import math

import pytest
import torch
from sbi.inference import NLE
from sbi.utils import BoxUniform

from sbilab.diagnostics.draws import draw_test_set
from sbilab.diagnostics.gates import GateCheck, GateReport, InUse, explain_failures, margin
from sbilab.diagnostics.per_point import PILOT_POINTS, is_amortised, points_for_budget
from sbilab.diagnostics.settings import SamplerBudgetSettings


def trained_on_a_box(method, epochs: int):
    """``method`` (sbi's NLE or NPE) trained ``epochs`` on 500 pairs x = θ + noise, θ on [-2, 2]²; and the prior."""
    torch.manual_seed(0)
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    theta = prior.sample((500,))
    x = theta + 0.3 * torch.randn_like(theta)
    inference = method(prior, show_progress_bars=False)
    estimator = inference.append_simulations(theta, x).train(max_num_epochs=epochs, show_train_summary=False)
    return inference, estimator, prior


def noisy_pairs(theta):
    return theta, theta + 0.3 * torch.randn_like(theta)


@pytest.fixture(scope="module")
def nle_problem():
    """A 2-D NLE trained a few epochs (quality is not the point: the samplers must run on the test set)."""
    inference, estimator, prior = trained_on_a_box(NLE, 30)
    return inference, estimator, *noisy_pairs(prior.sample((4,)))


@pytest.mark.parametrize("sample_with", ["rejection", "importance"])  # MCMC of each kind: test_method_matrix
def test_every_sampler_draws_the_test_set(nle_problem, sample_with):
    inference, estimator, theta, x = nle_problem
    posterior = inference.build_posterior(estimator, sample_with=sample_with)
    assert not is_amortised(posterior)
    # the rejection sampler's bound search needs gradients: the test set is sampled as at x_o, not under no_grad
    budget = SamplerBudgetSettings(seconds=1e6, max_samples=30, min_test_points=4)
    draws = draw_test_set(posterior, theta, x, 100, seed=3, sampler_budget=budget)
    assert draws.samples.shape == (30, 4, 2) and torch.isfinite(draws.samples).all()
    assert draws.plan is not None and draws.plan.num_points == 4 and draws.plan.reduced  # 30 of 100 samples
    assert draws.log_prob_samples.shape == (30, 4)
    if sample_with == "importance":  # seeded: the same numbers (the others cost seconds per x)
        again = draw_test_set(posterior, theta, x, 100, seed=3, sampler_budget=budget)
        assert torch.equal(draws.samples, again.samples)


def test_budget_cuts_the_test_points_and_says_so(nle_problem):
    inference, estimator, theta, x = nle_problem
    posterior = inference.build_posterior(estimator, sample_with="importance")
    pinned = SamplerBudgetSettings(max_samples=20, test_points=3)
    draws = draw_test_set(posterior, theta, x, 20, seed=0, sampler_budget=pinned)
    assert draws.num_points == 3 and draws.theta.shape == (3, 2)
    assert any("3 of 4 test points" in note for note in draws.notes)
    # the first points get the same samples whatever the cut: one seeded stream, points in order
    more = draw_test_set(posterior, theta, x, 20, seed=0, sampler_budget=SamplerBudgetSettings(max_samples=20,
                                                                                               test_points=4))
    assert torch.equal(draws.samples, more.samples[:, :3])


def test_points_for_budget_respects_time_first():
    assert points_for_budget(0.01, 120, 1000, 20) == 1000  # fits: every point
    assert points_for_budget(0.5, 120, 1000, 20) == 200  # 240 affordable: the ladder step below
    assert points_for_budget(4.0, 120, 1000, 20) == 30  # 30 affordable
    assert points_for_budget(7.0, 120, 1000, 20) == 17  # 17 affordable, below the minimum: time wins over 20
    assert points_for_budget(500.0, 120, 1000, 20) == PILOT_POINTS  # never fewer than the pilot already drew
    assert points_for_budget(5.0, 120, 10, 20) == 10


def test_failed_gates_are_named_worst_first_with_rule_and_margin():
    report = GateReport(checks=[
        GateCheck("sbc/ks_pvalue/a", 0.5, 0.01, ">=", True),
        GateCheck("coverage/error", 0.08, 0.05, "<=", False),
        GateCheck("tarp/atc", -0.2, 0.05, "abs<=", False),
        GateCheck("c2st", 0.62, 0.6, "<=", False),
        GateCheck("lc2st/pvalue", math.nan, 0.01, ">=", False),
    ])
    lines = explain_failures(report)
    assert lines[0] == "4 of 5 gates failed; worst:"
    assert [line.split()[0] for line in lines[1:4]] == ["lc2st/pvalue", "tarp/atc", "coverage/error"]
    assert lines[2] == "  tarp/atc = -0.2 (needs |value| <= 0.05; 300% beyond)"
    assert "value is NaN" in lines[1]
    assert lines[4].startswith("what usually helps: ") and "simulation.num_simulations" in lines[4]
    assert margin(GateCheck("c2st", 0.62, 0.6, "<=", False)) == pytest.approx(0.0333, abs=1e-3)
    assert explain_failures(GateReport(checks=[GateCheck("c2st", 0.5, 0.6, "<=", True)])) == []
    # a truncated sequential run was calibrated on its region, and its advice says so
    sbc = GateReport(checks=[GateCheck("sbc/ks_pvalue/a", 0.001, 0.01, ">=", False)])
    assert "miscalibrated over the prior:" in explain_failures(sbc)[-1]
    assert "miscalibrated over the truncated region" in explain_failures(sbc, domain="the truncated region")[-1]


def test_the_advice_leaves_out_what_the_run_already_does():
    sbc = GateReport(checks=[GateCheck("sbc/ks_pvalue/a", 0.001, 0.01, ">=", False)])
    fresh = explain_failures(sbc, in_use=InUse("maf", 1, False))[-1]
    assert all(s in fresh for s in ("estimator=nsf", "trainer.ensemble_size=5", "trainer=default"))
    # an NSF ensemble of five that already stops on its validation loss: none of those three again
    done = explain_failures(sbc, in_use=InUse("nsf", 5, True))[-1]
    assert not any(s in done for s in ("estimator=nsf", "trainer.ensemble_size", "trainer=default")), done
    assert "simulation.num_simulations" in done and "estimator.hidden_features=100" in done
    # a run that is already that wide (estimator=nsf_wide: model nsf, 100 units) is told twice its width
    wide = explain_failures(sbc, in_use=InUse("nsf", 5, True, hidden_features=100))[-1]
    assert "estimator.hidden_features=200" in wide and "hidden_features=100" not in wide
    # recipe=auto chose the estimators, the mixture and the training: only more simulations (its own next step
    # is printed after), not trainer.* or estimator=..., which a recipe run does not train with
    recipe = explain_failures(sbc, in_use=InUse("auto", 1, True, recipe=True))[-1]
    assert recipe.endswith("over the prior: more simulations (simulation.num_simulations=...)"), recipe
    assert not any(s in recipe for s in ("estimator", "trainer")), recipe


@pytest.fixture(scope="module")
def leaky_flow():
    """A real NPE flow, truncated to a box 1/8 as wide as the prior it was trained on: most of its mass lies
    outside, so sampling the test set inside that box draws dozens of proposals per accepted sample."""
    from sbi.inference import NPE
    from sbi.inference.posteriors import DirectPosterior

    _, estimator, _ = trained_on_a_box(NPE, 20)
    narrow = BoxUniform(-0.25 * torch.ones(2), 0.25 * torch.ones(2))
    return DirectPosterior(estimator, prior=narrow), *noisy_pairs(narrow.sample((80,)))


def test_a_slow_batched_sampler_is_cut_to_the_budget_and_says_why(leaky_flow):
    posterior, theta, x = leaky_flow
    assert is_amortised(posterior)
    everything = draw_test_set(posterior, theta, x, 50, seed=1, chunk_size=20,
                               sampler_budget=SamplerBudgetSettings(seconds=1e6))
    assert everything.plan is None and everything.num_points == 80 and not everything.cut
    # a budget the pilot (the first chunk of 20 points) already spends: the rest is cut, never the pilot
    cut = draw_test_set(posterior, theta, x, 50, seed=1, chunk_size=20,
                        sampler_budget=SamplerBudgetSettings(seconds=1e-6))
    assert cut.plan is not None and cut.plan.amortised and cut.plan.num_points == 20 and cut.num_points == 20
    assert cut.samples.shape == (50, 20, 2) and cut.log_prob_true.shape == (20,)
    assert "20 of 80 test points" in cut.cut and "diagnostics.sampler_budget.seconds=1e-06" in cut.cut
    assert "estimator=zuko_maf_unconstrained" in cut.cut  # the flow leaks out of its bounded prior: the hint
    assert cut.plan.metrics()["diagnostics/sampler_seconds_per_point"] > 0
    # the same seeded chunks with or without the cut: the points kept get the numbers an uncut run gets
    assert torch.equal(cut.samples, everything.samples[:, :20])
    pinned = draw_test_set(posterior, theta, x, 50, seed=1, chunk_size=20,
                           sampler_budget=SamplerBudgetSettings(test_points=50))
    assert pinned.num_points == 50 and torch.equal(pinned.samples, everything.samples[:, :50])
    assert "diagnostics.sampler_budget.test_points" in pinned.cut
