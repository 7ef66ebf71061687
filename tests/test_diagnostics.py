"""Tests of sbilab.diagnostics on a conjugate Gaussian toy with a known posterior.

θ ~ N(0, σ0² I), x | θ ~ N(θ, σ² I), D = 2, so p(θ | x) = N(v x / σ², v I) with
v = 1 / (1/σ0² + 1/σ²). Wrapping it (optionally with its covariance scaled) in a small
object with ``sample_batched`` / ``log_prob_batched`` / ``sample`` / ``log_prob`` gives a
calibrated, an over-confident and an under-confident "posterior".

Sizes: N = 2000 test points, S = 300 samples. At N = 2000 the coverage error of an exact
posterior exceeds 0.05 with probability ≈ 1e-4 and |ATC| has sd ≈ 0.003 (gate 0.05);
the over-confident posterior uses a covariance scale of 0.2 (ATC ≈ −0.075 ± 0.004;
at 0.3 the ATC is only ≈ −0.06, too close to the −0.05 gate to be a robust test).
The SBC KS gate (p ≥ 0.01 per parameter) fails an exact posterior with probability
≤ 1 % per parameter *by construction*; every seed here is fixed, so the tests are
deterministic.
"""

from __future__ import annotations

import io
import json
import math
import warnings

import numpy as np
import pytest
import torch
from conftest import NullTracker
from matplotlib.figure import Figure
from torch.distributions import MultivariateNormal

from sbilab.diagnostics import (
    DiagnosticsInputs,
    DiagnosticsSeeds,
    DiagnosticsSettings,
    GateReport,
    GateThresholds,
    LC2STSettings,
    c2st_score,
    compute_diagnostics,
    discrete_uniform_ks,
    ecdf_simultaneous_band,
    evaluate_gates,
    ppc_distance,
)
from sbilab.plots.diagnostics import (
    CENTRAL_COVERAGE_FIGURE_KEY,
    FIGURE_KEYS,
    LC2ST_FIGURE_KEY,
    MISSPECIFICATION_FIGURE_KEY,
    PPC_FIGURE_KEY,
    diagnostic_figures,
)

torch.set_num_threads(1)

SIGMA0, SIGMA, D = 1.0, 0.5, 2
N_TEST, S = 2000, 300
NAMES = ["mu_a", "mu_b"]
POST_VAR = 1.0 / (1.0 / SIGMA0**2 + 1.0 / SIGMA**2)


class GaussianPosterior:
    """Exact conjugate posterior, covariance optionally scaled by ``cov_scale``."""

    def __init__(self, cov_scale: float = 1.0, shift: float = 0.0):
        self.cov_scale = cov_scale
        self.shift = shift

    def _dist(self, x: torch.Tensor) -> MultivariateNormal:
        x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, D)
        loc = POST_VAR * x / SIGMA**2 + self.shift
        return MultivariateNormal(loc, covariance_matrix=self.cov_scale * POST_VAR * torch.eye(D))

    def sample_batched(self, sample_shape, x, **kwargs):
        return self._dist(x).sample(sample_shape)  # [S, N, D]

    def log_prob_batched(self, theta, x, norm_posterior=False):
        return self._dist(x).log_prob(theta)  # [S, N]

    def sample(self, sample_shape, x, **kwargs):
        return self._dist(x).sample(sample_shape)[:, 0]

    def log_prob(self, theta, x, **kwargs):
        return self._dist(x).log_prob(theta)


class SampleOnlyPosterior(GaussianPosterior):
    """No ``sample_batched``: exercises the per-x fallback."""

    sample_batched = None  # type: ignore[assignment]


def seeds(seed: int) -> DiagnosticsSeeds:
    """The seeds one ``seed`` gave each purpose before they were named (seed, +1, +2, +3)."""
    return DiagnosticsSeeds(sampling=seed, c2st=seed, tarp=seed + 1, observation_log_prob=seed + 2,
                            observation_samples=seed + 3, tarp_bootstrap=seed + 4, lc2st=seed + 5,
                            misspecification=seed + 6)


def run_diagnostics(posterior, theta, x, *, num_posterior_samples: int, seed: int, **inputs):
    """All diagnostics with default settings except the samples per test point and fewer L-C2ST null trials."""
    settings = DiagnosticsSettings(num_posterior_samples=num_posterior_samples, lc2st=LC2STSettings(num_trials_null=20))
    return compute_diagnostics(DiagnosticsInputs(posterior, theta, x, **inputs), settings, seeds(seed))


def simulate(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    theta = SIGMA0 * torch.randn(n, D, generator=g)
    x = theta + SIGMA * torch.randn(n, D, generator=g)
    return theta, x


@pytest.fixture(scope="module")
def test_set():
    return simulate(N_TEST, seed=2024)


@pytest.fixture(scope="module")
def observation():
    theta_o = torch.tensor([0.3, -0.5])
    g = torch.Generator().manual_seed(7)
    x_o = theta_o + SIGMA * torch.randn(D, generator=g)
    # posterior predictive at x_o: θ_m ~ p(θ | x_o), x_m ~ p(x | θ_m)
    g2 = torch.Generator().manual_seed(8)
    loc = POST_VAR * x_o / SIGMA**2
    theta_m = loc + math.sqrt(POST_VAR) * torch.randn(1000, D, generator=g2)
    predictive = theta_m + SIGMA * torch.randn(1000, D, generator=g2)
    reference = loc + math.sqrt(POST_VAR) * torch.randn(1000, D, generator=g2)
    return theta_o, x_o, predictive, reference


@pytest.fixture(scope="module")
def exact_result(test_set, observation):
    theta, x = test_set
    theta_o, x_o, predictive, reference = observation
    return run_diagnostics(
        GaussianPosterior(),
        theta,
        x,
        parameter_names=NAMES,
        prior_variance=[SIGMA0**2] * D,
        num_posterior_samples=S,
        seed=11,
        x_o=x_o,
        theta_o=theta_o,
        predictive_x=predictive,
        statistic_names=["x_a", "x_b"],
        reference_samples=reference,
    )


def _run(cov_scale: float, test_set) -> object:
    theta, x = test_set
    return run_diagnostics(
        GaussianPosterior(cov_scale),
        theta,
        x,
        parameter_names=NAMES,
        prior_variance=[SIGMA0**2] * D,
        num_posterior_samples=S,
        seed=12,
    )


# ----------------------------------------------------------------------------- gates


def test_exact_posterior_passes_every_gate(exact_result):
    m = exact_result.metrics
    for name in NAMES:
        assert m[f"sbc/ks_pvalue/{name}"] >= 0.01
    assert abs(m["tarp/atc"]) <= 0.05
    assert m["coverage/error"] <= 0.05
    assert m["c2st"] <= 0.6
    assert exact_result.verdict == "pass", exact_result.gates.to_dict()
    assert {c.name for c in exact_result.gates.checks} == {
        "sbc/ks_pvalue/mu_a",
        "sbc/ks_pvalue/mu_b",
        "tarp/atc",
        "coverage/error",
        "c2st",
        "lc2st/pvalue",
        "coverage/central_error/mu_a",
        "coverage/central_error/mu_b",
    }


def test_overconfident_posterior_fails_sbc_coverage_and_tarp(test_set):
    res = _run(0.2, test_set)
    failed = {c.name for c in res.gates.failed}
    assert {"sbc/ks_pvalue/mu_a", "sbc/ks_pvalue/mu_b", "coverage/error", "tarp/atc"} <= failed
    assert res.verdict == "fail"
    assert res.metrics["tarp/atc"] < -0.05
    # over-confidence: HPD regions cover less than nominal
    curve = res.arrays["diagnostics/coverage_curve.npy"]
    mid = np.argmin(np.abs(curve[:, 0] - 0.5))
    assert curve[mid, 1] < 0.4


def test_underconfident_posterior_has_positive_atc(test_set):
    res = _run(3.0, test_set)
    assert res.metrics["tarp/atc"] > 0.03
    assert res.metrics["coverage/error"] > 0.05
    curve = res.arrays["diagnostics/coverage_curve.npy"]
    mid = np.argmin(np.abs(curve[:, 0] - 0.5))
    assert curve[mid, 1] > 0.6


# ------------------------------------------------------------------ outputs contract


def test_metric_figure_and_array_keys(exact_result):
    res = exact_result
    expected_metrics = {
        "sbc/ks_pvalue/mu_a",
        "sbc/ks_pvalue/mu_b",
        "coverage/error",
        "tarp/atc",
        "tarp/ks_pvalue",
        "ppc/distance",
        "c2st",
        "posterior/logprob_true_theta",
        "diagnostics/num_test_points",
        "diagnostics/dropped_test_points",
        # issue 14: calibration completed, local calibration, misspecification
        *(f"{group}/{name}" for group in ("sbc/log_gamma", "coverage/central_error", "posterior/contraction",
                                          "posterior/z_score", "posterior/z_score_sd") for name in NAMES),
        "tarp/atc_ci_low",
        "tarp/atc_ci_high",
        "lc2st/statistic",
        "lc2st/pvalue",
        "misspecification/mmd",
        "misspecification/mmd_pvalue",
        "misspecification/logprob_pvalue",
        "misspecification/misspecified",
    }
    assert set(res.metrics) == expected_metrics
    assert res.metrics["diagnostics/dropped_test_points"] == 0
    assert all(isinstance(v, float) and math.isfinite(v) for v in res.metrics.values())

    figures = diagnostic_figures(res)
    assert set(figures) == set(FIGURE_KEYS) | {PPC_FIGURE_KEY, CENTRAL_COVERAGE_FIGURE_KEY, LC2ST_FIGURE_KEY,
                                               MISSPECIFICATION_FIGURE_KEY}
    for key, fig in figures.items():
        assert isinstance(fig, Figure), key
    buf = io.BytesIO()
    figures["plots/sbc_ecdf.png"].savefig(buf, format="png", dpi=50)
    assert buf.getvalue()[:4] == b"\x89PNG"

    n = res.num_test_points
    shapes = {
        "diagnostics/sbc_ranks.npy": (n, D),
        "diagnostics/coverage_curve.npy": (101, 2),
        "diagnostics/posterior_means.npy": (n, D),
        "diagnostics/posterior_stds.npy": (n, D),
        "diagnostics/z_scores.npy": (n, D),
        "diagnostics/contraction.npy": (n, D),
        "diagnostics/test_theta.npy": (n, D),
        "diagnostics/observed_posterior_samples.npy": (1000, D),
        "diagnostics/coverage_central_curve.npy": (101, 1 + D),
        "diagnostics/lc2st_probabilities.npy": (1000,),
    }
    for key, shape in shapes.items():
        assert res.arrays[key].shape == shape, key
    assert res.arrays["diagnostics/tarp_ecp.npy"].shape == res.arrays["diagnostics/tarp_alpha.npy"].shape
    for key, arr in res.arrays.items():
        assert np.all(np.isfinite(arr)), key
    ranks = res.arrays["diagnostics/sbc_ranks.npy"]
    assert ranks.min() >= 0 and ranks.max() <= S
    assert set(res.timings) >= {"sampling", "log_prob", "sbc", "coverage", "tarp", "total", "lc2st",
                                "misspecification"}
    json.dumps(res.summary())  # JSON-serialisable digest


def test_recovery_and_contraction_values(exact_result):
    # exact posterior: contraction = 1 − v / σ0² = 0.8, z-scores ~ N(0, 1)
    contraction = exact_result.arrays["diagnostics/contraction.npy"]
    assert abs(np.median(contraction) - (1 - POST_VAR / SIGMA0**2)) < 0.02
    z = exact_result.arrays["diagnostics/z_scores.npy"]
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1.0) < 0.1
    assert np.all(exact_result.recovery.r2 > 0.7)


def test_logprob_true_theta_matches_analytic(exact_result, observation):
    theta_o, x_o, _, _ = observation
    exact = GaussianPosterior()._dist(x_o).log_prob(theta_o[None]).item()
    assert exact_result.metrics["posterior/logprob_true_theta"] == pytest.approx(exact, abs=1e-5)


# ----------------------------------------------------------------------------- c2st


def test_c2st_same_vs_shifted():
    post = GaussianPosterior()
    x_o = torch.tensor([0.2, -0.1])
    torch.manual_seed(0)
    a = post.sample((1000,), x=x_o)
    b = post.sample((1000,), x=x_o)
    assert abs(c2st_score(a, b, seed=0) - 0.5) < 0.06  # independent draws, same law
    assert abs(c2st_score(a, a, seed=0) - 0.5) < 0.1  # the very same samples
    shifted = GaussianPosterior(shift=1.0).sample((1000,), x=x_o)  # ≈ 2.2 posterior sd
    assert c2st_score(a, shifted, seed=0) > 0.75


# ------------------------------------------------------------------------------- ppc


def test_ppc_distance_typical_vs_far(exact_result, observation):
    _, x_o, predictive, _ = observation
    assert exact_result.metrics["ppc/distance"] < 1.0
    far = ppc_distance(predictive, x_o + 10.0)
    assert far.distance > 5.0
    assert ppc_distance(predictive, x_o).distance == pytest.approx(exact_result.metrics["ppc/distance"])


def test_ppc_degenerate_statistics_are_guarded():
    pred = np.column_stack([np.random.default_rng(0).normal(size=200), np.full(200, 3.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a constant statistic that x_o matches is left out quietly
        res = ppc_distance(pred, np.array([0.0, 3.0]))
    assert math.isfinite(res.distance) and res.distance < 1.0
    with pytest.warns(UserWarning, match=r"\['x1'\]"):  # ... one that x_o misses is not
        missed = ppc_distance(pred, np.array([0.0, 4.0]), statistic_names=["x0", "x1"])
    assert missed.distance == pytest.approx(res.distance)
    # IQR == 0 but std > 0: falls back to the standard deviation
    spiky = np.r_[np.zeros(190), np.ones(10)]
    assert math.isfinite(ppc_distance(spiky[:, None], np.array([1.0])).distance)
    # every statistic constant and matching: 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ppc_distance(np.full((50, 2), 1.0), np.array([1.0, 1.0])).distance == 0.0


# ----------------------------------------------------------------------------- gates


def test_gates_json_round_trip(exact_result):
    report = exact_result.gates
    text = report.to_json()
    back = GateReport.from_json(text)
    assert back.to_dict() == report.to_dict()
    assert json.loads(text)["verdict"] == "pass"
    assert back.verdict == report.verdict
    assert exact_result.gates_dict() == report.to_dict()


def test_gates_thresholds_and_nan():
    metrics = {"sbc/ks_pvalue/a": 0.2, "tarp/atc": float("nan"), "coverage/error": 0.01}
    report = evaluate_gates(metrics)
    assert report.verdict == "fail"
    assert [c.name for c in report.failed] == ["tarp/atc"]
    d = json.loads(report.to_json())  # NaN stored as null, still valid JSON
    assert d["checks"][1]["value"] is None
    back = GateReport.from_dict(d)
    assert math.isnan(back.checks[1].value) and back.to_dict() == report.to_dict()

    relaxed = evaluate_gates(metrics, {"tarp_atc_abs_max": None})
    assert relaxed.verdict == "pass" and "tarp/atc" not in {c.name for c in relaxed.checks}
    strict = evaluate_gates(metrics, GateThresholds(sbc_ks_pvalue_min=0.5, family_level=None))  # per gate
    assert "sbc/ks_pvalue/a" in {c.name for c in strict.failed}
    with pytest.raises(ValueError):
        GateThresholds.from_mapping({"sbc_pvalue": 0.1})
    # c2st only gated when present
    assert "c2st" not in {c.name for c in report.checks}
    assert not evaluate_gates({"c2st": 0.9}).passed


def test_holm_tests_the_statistical_gates_as_one_family():
    metrics = {"sbc/ks_pvalue/a": 0.001, "sbc/ks_pvalue/b": 0.02, "sbc/ks_pvalue/c": 0.04, "sbc/ks_pvalue/d": 0.5,
               "c2st": 0.55}
    report = evaluate_gates(metrics)  # family_level 0.05 over 4 p-values: levels 0.0125, 0.0167, 0.025, 0.05
    assert [c.name for c in report.failed] == ["sbc/ks_pvalue/a"]
    levels = {c.name: c.threshold for c in report.checks}
    assert levels["sbc/ks_pvalue/a"] == pytest.approx(0.0125) and levels["sbc/ks_pvalue/b"] == pytest.approx(0.05 / 3)
    # after the first acceptance every later check keeps that step's level: its margin agrees with its result
    assert levels["sbc/ks_pvalue/c"] == levels["sbc/ks_pvalue/d"] == pytest.approx(0.05 / 3)
    assert levels["c2st"] == 0.6  # a quality threshold: outside the family
    assert "family-wise 0.05" in report.to_dict()["level"] and "4 statistical gates" in report.level
    assert GateReport.from_json(report.to_json()).to_dict() == report.to_dict()
    # the per-gate rule of old is one setting away
    assert {c.name for c in evaluate_gates(metrics, {"family_level": None}).failed} == {"sbc/ks_pvalue/a"}
    with pytest.raises(ValueError, match="family_level=0.9: allowed"):
        evaluate_gates(metrics, {"family_level": 0.9})


def test_l_c2st_carries_half_the_weight_so_its_coarse_p_value_can_fail():
    # 1/101: the smallest p-value of 100 null trials; the 20 SBC gates share the other half
    metrics = {**{f"sbc/ks_pvalue/t{i}": 0.3 for i in range(20)}, "lc2st/pvalue": 1 / 101, "lc2st/nf_pvalue": 0.5}
    report = evaluate_gates(metrics)
    assert [c.name for c in report.failed] == ["lc2st/pvalue"]
    assert {c.name: c.threshold for c in report.checks}["lc2st/pvalue"] == pytest.approx(0.05 * 0.25)
    assert "half the weight on L-C2ST" in report.level
    assert evaluate_gates({**metrics, "lc2st/pvalue": 2 / 101}).passed  # beaten by one null classifier: no alarm


def test_a_coverage_gate_fails_only_when_holm_rejects_it_and_the_error_matters():
    from scipy.stats import kstwo

    n = 1000
    significant_but_small = float(kstwo.isf(1e-6, n)) if float(kstwo.isf(1e-6, n)) < 0.05 else 0.049
    report = evaluate_gates({"coverage/error": significant_but_small, "diagnostics/num_test_points": n})
    assert report.passed  # under its 0.05 tolerance: too small to matter
    large = evaluate_gates({"coverage/error": 0.2, "diagnostics/num_test_points": n})
    assert not large.passed and large.checks[0].threshold == pytest.approx(max(0.05, float(kstwo.isf(0.05, n))))


def test_lc2st_p_value_is_never_zero():
    from sbilab.diagnostics.lc2st import permutation_p_value

    assert permutation_p_value(5.0, np.zeros(50)) == pytest.approx(1 / 51)
    assert permutation_p_value(0.0, np.ones(50)) == 1.0


# --------------------------------------------------------------------- building blocks


def test_discrete_uniform_ks():
    s = 99
    uniform_ranks = np.tile(np.arange(s + 1), 5)  # exactly uniform on {0..S}
    _, p = discrete_uniform_ks(uniform_ranks, s)
    assert p[0] > 0.99
    _, p = discrete_uniform_ks(np.zeros(500, dtype=int), s)
    assert p[0] < 1e-10


def test_ecdf_band_is_simultaneous():
    band = ecdf_simultaneous_band(200, confidence=0.99)
    assert np.all(band.lower <= band.z) and np.all(band.upper >= band.z)
    rng = np.random.default_rng(1)
    inside = 0
    for _ in range(500):
        u = np.sort(rng.random(200))
        ecdf = np.searchsorted(u, band.z, side="right") / 200
        inside += np.all((ecdf >= band.lower) & (ecdf <= band.upper))
    assert inside / 500 > 0.97  # nominal 0.99 (measured ≈ 0.99)
    assert ecdf_simultaneous_band(200, confidence=0.99) is band  # cached


def test_nonfinite_rows_dropped_and_seeded(test_set):
    theta, x = test_set
    theta, x = theta[:300].clone(), x[:300].clone()
    x[5, 0] = float("nan")
    theta[7, 1] = float("inf")
    kw = dict(parameter_names=NAMES, num_posterior_samples=100, seed=3)
    state = torch.random.get_rng_state()
    with pytest.warns(UserWarning, match="non-finite"):
        r1 = run_diagnostics(GaussianPosterior(), theta, x, **kw)
    assert torch.equal(torch.random.get_rng_state(), state)  # caller's RNG untouched
    assert r1.num_dropped == 2 and r1.num_test_points == 298
    assert 5 not in r1.arrays["diagnostics/test_indices.npy"]
    with pytest.warns(UserWarning):
        r2 = run_diagnostics(GaussianPosterior(), theta, x, **kw)
    np.testing.assert_array_equal(r1.sbc.ranks, r2.sbc.ranks)
    assert r1.metrics == r2.metrics
    # prior variance falls back to the test θ
    assert r1.recovery.prior_variance_source == "test_theta"


def test_fallback_without_sample_batched(test_set):
    theta, x = test_set
    res = run_diagnostics(
        SampleOnlyPosterior(), theta[:120], x[:120], num_posterior_samples=50, seed=0
    )
    assert res.sbc.ranks.shape == (120, D)
    assert set(res.metrics) >= {"sbc/ks_pvalue/theta_0", "coverage/error", "tarp/atc"}


def test_real_sbi_direct_posterior_smoke():
    """API compatibility with an (untrained) sbi MAF DirectPosterior on a bounded prior."""
    from sbi.inference import DirectPosterior
    from sbi.neural_nets import posterior_nn
    from sbi.utils import BoxUniform

    torch.manual_seed(0)
    prior = BoxUniform(-2 * torch.ones(D), 2 * torch.ones(D))
    theta = prior.sample((200,))
    x = theta + SIGMA * torch.randn_like(theta)
    estimator = posterior_nn(model="maf", hidden_features=10, num_transforms=2)(theta, x)
    posterior = DirectPosterior(estimator, prior)
    res = run_diagnostics(
        posterior,
        theta[:100],
        x[:100],
        prior_samples=prior.sample((1000,)),
        num_posterior_samples=100,
        seed=0,
        x_o=x[0],
        theta_o=theta[0],
    )
    assert res.sbc.ranks.shape == (100, D)
    assert math.isfinite(res.metrics["posterior/logprob_true_theta"])
    assert all(math.isfinite(v) for v in res.metrics.values())


def test_truncated_sampler_matches_rejection_and_drops_hopeless_points():
    """Adaptive per-point truncation to the prior = sbi's rejection sampling, without the worst-point cost."""
    from sbi.inference import NPE
    from sbi.utils import BoxUniform
    from scipy import stats

    from sbilab.diagnostics.sampling import prior_support_mask, truncated_sample_batched

    torch.manual_seed(0)
    prior = BoxUniform(torch.zeros(1), torch.ones(1))
    theta = torch.rand(500, 1)
    x = theta + 0.3 * torch.randn(500, 1)
    inference = NPE(prior=prior, density_estimator="mdn", show_progress_bars=False, tracker=NullTracker())
    posterior = inference.build_posterior(inference.append_simulations(theta, x).train(max_num_epochs=30))
    xs = torch.tensor([[0.5], [-0.4]])  # x=-0.4: much of the flow's mass lies below 0
    ours = truncated_sample_batched(posterior, xs, 2000, prior_support_mask(posterior))
    assert ours.shape == (2000, 2, 1) and torch.isfinite(ours).all()
    assert ((ours >= 0) & (ours <= 1)).all()
    reference = posterior.sample((2000,), x=xs[1], show_progress_bars=False)
    assert stats.ks_2samp(ours[:, 1, 0].numpy(), reference[:, 0].numpy()).pvalue > 1e-3
    hopeless = truncated_sample_batched(posterior, xs[1:], 2000, lambda t: torch.zeros(t.shape[:-1], dtype=torch.bool),
                                        max_draws_per_point=5000)
    assert torch.isnan(hopeless).all()


def test_coverage_gate_is_not_stricter_than_the_test_set_can_resolve():
    """At 100 test points a calibrated posterior routinely shows coverage errors above 0.05: the gate allows
    the 99 % KS critical value there, and keeps the configured 0.05-ish bar at 1,000 points."""
    from sbilab.diagnostics.gates import coverage_noise_floor

    assert 0.15 < coverage_noise_floor(100) < 0.17
    assert 0.05 < coverage_noise_floor(1000) < 0.053
    from scipy.stats import kstwo

    for level in (None, 0.05):  # each gate alone (its 99 % floor) | one family (the KS critical value at its level)
        small = evaluate_gates({"coverage/error": 0.12, "diagnostics/num_test_points": 100.0}, {"family_level": level})
        large = evaluate_gates({"coverage/error": 0.12, "diagnostics/num_test_points": 1000.0}, {"family_level": level})
        floor = coverage_noise_floor(100) if level is None else float(kstwo.isf(level, 100))
        assert small.passed and small.checks[0].threshold == pytest.approx(floor)
        assert not large.passed
    assert evaluate_gates({"coverage/error": 0.12}).checks[0].threshold == 0.05  # no count: the configured bar


class StandardGaussianPosterior:
    """p(θ | x) = N(x/2, I/2) for θ ~ N(0, I), x ~ N(θ, I): the exact posterior under the whole prior."""

    def _dist(self, x):
        x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 2)
        return MultivariateNormal(x / 2, covariance_matrix=0.5 * torch.eye(2))

    def sample_batched(self, sample_shape, x, **kwargs):
        return self._dist(x).sample(sample_shape)

    def log_prob_batched(self, theta, x, norm_posterior=False):
        return self._dist(x).log_prob(theta)


def test_calibration_on_a_truncated_region_compares_with_the_posterior_under_that_prior():
    """TSNPE's test θ come from the prior truncated to a region; the exact posterior under that prior is zero
    outside it. The exact full-prior posterior, truncated to the region, passes SBC and coverage there;
    untruncated, it is far too wide for θ drawn from the region, and the gates say so."""
    generator = torch.Generator().manual_seed(0)
    theta = torch.randn(20_000, 2, generator=generator)
    theta = theta[theta.norm(dim=1) < 0.6][:500]  # the truncated prior: a disc of radius 0.6

    def region(t):
        return t.norm(dim=-1) < 0.6

    x = theta + torch.randn(theta.shape, generator=generator)
    settings = DiagnosticsSettings(num_posterior_samples=200)
    seeds = DiagnosticsSeeds(*range(8))
    posterior = StandardGaussianPosterior()
    on_region = compute_diagnostics(DiagnosticsInputs(posterior, theta, x, region=region), settings, seeds)
    assert on_region.verdict == "pass", on_region.gates.failed
    assert min(v for k, v in on_region.metrics.items() if k.startswith("sbc/ks_pvalue/")) > 0.01
    assert on_region.metrics["diagnostics/num_test_points"] == 500  # nothing dropped: every x has samples inside
    whole = compute_diagnostics(DiagnosticsInputs(posterior, theta, x), settings, seeds)
    assert whole.verdict == "fail"
    assert max(v for k, v in whole.metrics.items() if k.startswith("sbc/ks_pvalue/")) < 0.005
