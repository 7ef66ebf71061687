"""Issue 14, calibration completed: log-gamma SBC, central-interval coverage, TARP's ATC interval,
z-score and contraction per parameter — on the exact conjugate Gaussian posterior against a too
narrow (covariance x 0.2) and a too wide (x 3) one. Every seed is fixed: the tests are deterministic.

Expected values (the toy of ``test_diagnostics``: prior N(0, 1), noise sd 0.5, posterior variance
v = 0.2; c scales the posterior covariance): contraction 1 − c·v (0.8 exact, 0.96 at c = 0.2);
z-scores N(0, 1/c), spread 1 (exact), 2.24 (c = 0.2), 0.58 (c = 3); central 50 % intervals cover
2Φ(0.674·√c) − 1: 0.5, 0.24 (c = 0.2), 0.76 (c = 3).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbilab.diagnostics import (
    DiagnosticsInputs,
    DiagnosticsSettings,
    compute_diagnostics,
    run_tarp_on_samples,
    sbc_log_gamma,
)
from sbilab.diagnostics.gates import coverage_noise_floor
from test_diagnostics import N_TEST, NAMES, GaussianPosterior, S, seeds
from test_diagnostics import simulate as simulate_toy

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def results():
    theta, x = simulate_toy(N_TEST, seed=2025)  # a test set of its own (SBC p-values depend on it)
    settings = DiagnosticsSettings(num_posterior_samples=S)
    return {scale: compute_diagnostics(DiagnosticsInputs(GaussianPosterior(scale), theta, x, parameter_names=NAMES,
                                                         prior_variance=[1.0, 1.0]), settings, seeds(21))
            for scale in (1.0, 0.2, 3.0)}


def test_exact_posterior_passes_the_new_calibration_checks(results):
    m = results[1.0].metrics
    floor = coverage_noise_floor(N_TEST)
    for name in NAMES:
        assert m[f"coverage/central_error/{name}"] <= floor
        assert m[f"sbc/log_gamma/{name}"] > 0  # the 5 % test does not reject (seeded; fails 5 % of seeds)
        assert m[f"posterior/contraction/{name}"] == pytest.approx(0.8, abs=1e-3)
        assert abs(m[f"posterior/z_score/{name}"]) < 0.1
        assert m[f"posterior/z_score_sd/{name}"] == pytest.approx(1.0, abs=0.05)
    assert m["tarp/atc_ci_low"] <= m["tarp/atc"] <= m["tarp/atc_ci_high"]
    assert m["tarp/atc_ci_low"] < 0 < m["tarp/atc_ci_high"]  # an exact posterior's ATC interval holds 0
    assert results[1.0].verdict == "pass"


def test_too_narrow_posterior_fails_them(results):
    res = results[0.2]
    m = res.metrics
    for name in NAMES:
        assert m[f"coverage/central_error/{name}"] > 0.2
        assert m[f"sbc/log_gamma/{name}"] < -10
        assert m[f"posterior/contraction/{name}"] == pytest.approx(1 - 0.2 * 0.2, abs=1e-3)
        assert m[f"posterior/z_score_sd/{name}"] == pytest.approx(5**0.5, rel=0.05)
    assert m["tarp/atc_ci_high"] < -0.05  # the whole interval says over-confident
    failed = {c.name for c in res.gates.failed}
    assert {f"coverage/central_error/{name}" for name in NAMES} <= failed
    # central intervals cover less than nominal: 0.24 at 50 %
    curve = res.arrays["diagnostics/coverage_central_curve.npy"]
    mid = np.argmin(np.abs(curve[:, 0] - 0.5))
    assert np.all(curve[mid, 1:] < 0.3)


def test_too_wide_posterior_is_flagged_the_other_way(results):
    m = results[3.0].metrics
    curve = results[3.0].arrays["diagnostics/coverage_central_curve.npy"]
    mid = np.argmin(np.abs(curve[:, 0] - 0.5))
    assert np.all(curve[mid, 1:] > 0.7)  # under-confident: more coverage than nominal
    for name in NAMES:
        assert m[f"posterior/z_score_sd/{name}"] == pytest.approx(3**-0.5, rel=0.05)
    assert m["tarp/atc_ci_low"] > 0.03


def test_log_gamma_rejects_uniform_ranks_at_its_nominal_rate_and_sees_a_tail_spike():
    rng = np.random.default_rng(7)
    num_s, n = 100, 500
    uniform = [sbc_log_gamma(rng.integers(0, num_s + 1, size=(n, 1)), num_s)[0] for _ in range(1000)]
    assert 0.03 < np.mean(np.array(uniform) < 0) < 0.07  # 5 % by definition
    ranks = rng.integers(0, num_s + 1, size=(n, 1))
    ranks[:15] = num_s  # 3 % of truths above every sample: KS barely notices, log-gamma does
    assert sbc_log_gamma(ranks, num_s)[0] < -5


def test_atc_bootstrap_reuses_sbis_tarp_steps_exactly():
    """The bootstrap's coverage values rebuild sbi's ECP curve bit for bit, so its resamples are sbi's TARP."""
    from sbi.diagnostics.tarp import _run_tarp
    from sbi.utils.metrics import l2

    from sbilab.diagnostics.tarp import coverage_values, ecp_from_coverage_values, tarp_references

    g = torch.Generator().manual_seed(0)
    theta = torch.randn(400, 2, generator=g)
    samples = theta + 0.7 * torch.randn(200, 400, 2, generator=g)
    refs = tarp_references(theta, 3)
    ecp, alpha = _run_tarp(samples, theta, refs, distance=l2, num_bins=40, z_score_theta=True)
    ours = ecp_from_coverage_values(coverage_values(samples, theta, refs, distance=l2, z_score_theta=True), 40)
    assert torch.equal(ecp, ours[0]) and torch.equal(alpha, ours[1])
    a = run_tarp_on_samples(samples, theta, seed=3, num_bootstrap=50, bootstrap_seed=1)
    b = run_tarp_on_samples(samples, theta, seed=3, num_bootstrap=50, bootstrap_seed=1)
    assert a.atc_interval == b.atc_interval and a.sbi_version
