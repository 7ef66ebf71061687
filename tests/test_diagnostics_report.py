"""The diagnostics report and the figures at x_o: built from results, readable, never crashing on a
posterior that collapsed to a point (what an impossible x_o does to a flow)."""

from __future__ import annotations

import re

import pytest
import torch

from sbilab.diagnostics import (
    DiagnosticsInputs,
    DiagnosticsSettings,
    LC2STSettings,
    MisspecificationSettings,
    compute_diagnostics,
)
from sbilab.plots.diagnostics import diagnostic_figures
from sbilab.plots.posterior import pairplot
from sbilab.plots.report import diagnostics_report
from test_diagnostics import NAMES, GaussianPosterior, seeds
from test_diagnostics import simulate as simulate_toy

torch.set_num_threads(1)


@pytest.fixture(scope="module", params=["typical", "impossible"])
def report(request):
    theta, x = simulate_toy(400, seed=3)
    x_o = torch.tensor([0.2, -0.4]) if request.param == "typical" else torch.tensor([1e6, 1e6])
    settings = DiagnosticsSettings(num_posterior_samples=100, num_observation_samples=1000,
                                   lc2st=LC2STSettings(num_trials_null=10),
                                   misspecification=MisspecificationSettings(mmd_num_shuffles=200,
                                                                             logprob_max_epochs=20))
    result = compute_diagnostics(DiagnosticsInputs(GaussianPosterior(), theta, x, parameter_names=NAMES, x_o=x_o),
                                 settings, seeds(4))
    figures = diagnostic_figures(result)
    return request.param, result, figures, diagnostics_report(result, figures, title="toy")


def test_report_shows_the_verdict_every_gate_and_every_figure(report):
    case, result, figures, html = report
    assert f"Calibration gates: {result.verdict.upper()}" in html
    for check in result.gates.checks:
        assert check.name in html
    assert len(re.findall(r"src='data:image/png;base64,", html)) == len(figures)  # self-contained
    assert ("does not look like anything the simulator produces" in html) == (case == "impossible")
    assert result.misspecified == (case == "impossible")
    assert result.tags()["sbilab.misspecified"] == ("true" if case == "impossible" else "false")


def test_pairplot_of_a_collapsed_posterior_draws():
    """sbi's bin heuristic asks for infinitely many bins when every sample is the same point."""
    collapsed = torch.tensor([[79.99999, 14.999998]]).repeat(1000, 1)
    figure = pairplot(collapsed, ["gbar_Na", "gbar_K"], [[0.5, 80.0], [1e-4, 15.0]], None)
    assert figure.axes
    narrow = torch.tensor([50.0, 5.0]) + 1e-6 * torch.randn(1000, 2)
    assert pairplot(narrow, ["gbar_Na", "gbar_K"], None, torch.tensor([50.0, 5.0])).axes
