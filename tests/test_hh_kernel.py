"""Tests of the compiled Hodgkin-Huxley kernel (sbilab.simulators.hh_kernel).

Tolerance on noiseless traces: the kernel and simulate_traces_numpy run the same
float64 scheme but with different exp implementations (glibc libmvec vs NumPy,
both within a few ulp) and a slightly different operation order (e.g.
exp(-dt (a + b)) instead of exp(-dt / (1 / (a + b)))). Those ~1e-16 relative
differences are carried through 12,000 steps and amplified around spikes; the
observed maximum is ~2e-8 mV. We allow 1e-6 mV (~1e-8 of the 100 mV spike
amplitude): far below any physical scale, yet a real modelling error (a wrong
constant, an off-by-one step in the current or the gate update) moves V by
millivolts and fails it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import numpy as np
import pytest

from sbilab.rng import per_index_seeds
from sbilab.simulators import hh_kernel
from sbilab.simulators.base import row_generators
from sbilab.simulators.hh_equations import INFERABLE, HHParams, simulate_traces_numpy
from sbilab.summaries.hh_features import hh_feature_array

V_ATOL = 1e-6  # mV, see module docstring
FEATURE_RTOL = 1e-8
THETAS = np.array([[50.0, 5.0], [4.0, 1.5], [20.0, 15.0], [0.5, 1e-4], [80.0, 15.0]])
NOISELESS = HHParams(noise_scale=0.0)


def assert_features_close(actual: np.ndarray, expected: np.ndarray, rtol: float = FEATURE_RTOL) -> None:
    """Spike counts identical; the other statistics equal to ``rtol`` (relative to their scale)."""
    np.testing.assert_array_equal(actual[:, 0], expected[:, 0])
    scale = np.maximum(np.abs(expected[:, 1:]), 1e-3)
    assert np.all(np.abs(actual[:, 1:] - expected[:, 1:]) <= rtol * scale), (actual, expected)


@pytest.fixture(scope="module")
def noiseless_reference() -> np.ndarray:
    """simulate_traces_numpy for THETAS without noise."""
    return simulate_traces_numpy(THETAS, np.zeros((len(THETAS), NOISELESS.num_steps - 1)), NOISELESS)


def test_noiseless_matches_numpy_reference(noiseless_reference: np.ndarray) -> None:
    V, features = hh_kernel.run(THETAS, np.arange(len(THETAS), dtype=np.uint64), NOISELESS, traces=True, features=True)
    assert V.shape == noiseless_reference.shape and V.dtype == np.float64
    np.testing.assert_allclose(V, noiseless_reference, rtol=0, atol=V_ATOL)
    assert_features_close(features, hh_feature_array(noiseless_reference, NOISELESS))
    assert features[:, 0].tolist() != [0] * len(THETAS)  # the set includes spiking neurons


def plain_hh(gbar_na: float, gbar_k: float, p: HHParams) -> list[float]:
    """Deliberately plain scalar float64 exponential Euler (no noise), written from the model equations."""

    def efun(z: float) -> float:
        return 1.0 - z / 2.0 if abs(z) < 1e-4 else z / (math.exp(z) - 1.0)

    def rates(V: float) -> dict[str, tuple[float, float]]:
        v = V - p.V_T
        a_m, b_m = 0.32 * efun(-0.25 * (v - 13.0)) / 0.25, 0.28 * efun(0.2 * (v - 40.0)) / 0.2
        a_h, b_h = 0.128 * math.exp(-(v - 17.0) / 18.0), 4.0 / (1.0 + math.exp(-0.2 * (v - 40.0)))
        a_n, b_n = 0.032 * efun(-0.2 * (v - 15.0)) / 0.2, 0.5 * math.exp(-(v - 10.0) / 40.0)
        out = {q: (a / (a + b), 1.0 / (a + b)) for q, a, b in (("m", a_m, b_m), ("h", a_h, b_h), ("n", a_n, b_n))}
        out["p"] = (1.0 / (1.0 + math.exp(-0.1 * (V + 35.0))),
                    p.tau_max / (3.3 * math.exp(0.05 * (V + 35.0)) + math.exp(-0.05 * (V + 35.0))))
        return out

    area = math.pi * (p.soma_radius_um * 1e-4) ** 2
    i_on, i_off = round(p.t_on / p.dt), round(p.t_off / p.dt)
    V = [p.V0]
    gate = {q: inf for q, (inf, _) in rates(p.V0).items()}
    for i in range(1, p.num_steps):
        current = p.current / area if i_on <= i - 1 < i_off else 0.0
        g_na = gate["m"] ** 3 * gate["h"] * gbar_na
        g_k = gate["n"] ** 4 * gbar_k
        g_m = p.gbar_M * gate["p"]
        g_total = g_na + g_k + p.g_leak + g_m
        v_inf = (g_na * p.E_Na + g_k * p.E_K + p.g_leak * p.E_leak + g_m * p.E_K + current) / g_total
        V.append(v_inf + (V[-1] - v_inf) * math.exp(-p.dt * g_total / p.C))
        for q, (inf, tau) in rates(V[-1]).items():
            gate[q] = inf + (gate[q] - inf) * math.exp(-p.dt / tau)
    return V


@pytest.mark.parametrize("theta", [(50.0, 5.0), (4.0, 1.5)])
def test_noiseless_matches_plain_scalar_implementation(theta: tuple[float, float]) -> None:
    expected = np.array([plain_hh(*theta, NOISELESS)])
    V, features = hh_kernel.run(np.array([theta]), np.zeros(1, np.uint64), NOISELESS, traces=True, features=True)
    np.testing.assert_allclose(V, expected, rtol=0, atol=V_ATOL)
    assert_features_close(features, hh_feature_array(expected, NOISELESS))


@pytest.mark.parametrize("theta", [(50.0, 5.0), (4.0, 1.5)])
def test_noisy_statistics_agree_with_numpy_reference_in_distribution(theta: tuple[float, float]) -> None:
    """Means over 100 seeds of each statistic agree within 4 standard errors (different RNGs)."""
    p, count = HHParams(), 100
    thetas = np.tile(theta, (count, 1))
    _, kernel = hh_kernel.run(thetas, per_index_seeds(11, 0, count), p, traces=False, features=True)
    noise = np.stack([g.standard_normal(p.num_steps - 1) for g in row_generators(per_index_seeds(12, 0, count))])
    reference = hh_feature_array(simulate_traces_numpy(thetas, noise, p), p)
    for column, (a, b) in enumerate(zip(kernel.T, reference.T)):
        se = math.sqrt(a.var(ddof=1) / count + b.var(ddof=1) / count)
        assert abs(a.mean() - b.mean()) <= 4.0 * se + 1e-9 * abs(b.mean()), (column, a.mean(), b.mean(), se)
    assert kernel[:, 0].mean() > 0


@pytest.mark.parametrize("noise_scale", [0.1, 1.0])
def test_fused_features_equal_features_of_own_traces(noise_scale: float) -> None:
    """Streamed statistics = hh_feature_array of the kernel's traces; strong noise stresses the peak rule."""
    p, count = HHParams(noise_scale=noise_scale), 64
    theta = np.random.default_rng(0).uniform([0.5, 1e-4], [80.0, 15.0], size=(count, 2))
    seeds = per_index_seeds(5, 0, count)
    V, features = hh_kernel.run(theta, seeds, p, traces=True, features=True)
    assert_features_close(features, hh_feature_array(V, p))
    V_only, none = hh_kernel.run(theta, seeds, p, traces=True, features=False)
    none_v, features_only = hh_kernel.run(theta, seeds, p, traces=False, features=True)
    assert none is None and none_v is None
    np.testing.assert_array_equal(V_only, V)
    np.testing.assert_array_equal(features_only, features)


def test_rows_do_not_depend_on_batch_or_position(monkeypatch: pytest.MonkeyPatch) -> None:
    p, count = HHParams(duration=40.0, t_on=5.0, t_off=35.0), 37  # 37: not a multiple of the lane count
    theta = np.random.default_rng(1).uniform([0.5, 1e-4], [80.0, 15.0], size=(count, 2))
    seeds = per_index_seeds(7, 0, count)
    V, features = hh_kernel.run(theta, seeds, p, traces=True, features=True)
    again = hh_kernel.run(theta, seeds, p, traces=True, features=True)
    np.testing.assert_array_equal(again[0], V)
    np.testing.assert_array_equal(again[1], features)
    shuffled = [3, 3, 20, 1, 8, 30, 12, 2, 19, 4, 33, 6, 7, 9, 10, 11, 25]  # repeats, odd size
    for rows in ([5], [36, 0, 17], list(range(count))[::-1], shuffled):
        V_sub, features_sub = hh_kernel.run(theta[rows], seeds[rows], p, traces=True, features=True)
        np.testing.assert_array_equal(V_sub, V[rows])
        np.testing.assert_array_equal(features_sub, features[rows])
    monkeypatch.setattr(hh_kernel, "CHUNK_ROWS", 5)  # one SIMD block per chunk: 3 chunks on two threads
    V_threads, features_threads = hh_kernel.run(theta, seeds, p, traces=True, features=True, num_threads=2)
    np.testing.assert_array_equal(V_threads, V)
    np.testing.assert_array_equal(features_threads, features)


def test_noise_differs_between_seeds_and_is_absent_without_noise() -> None:
    p = HHParams(duration=20.0)
    theta = np.tile([50.0, 5.0], (3, 1))
    V, _ = hh_kernel.run(theta, np.array([1, 2, 3], dtype=np.uint64), p, traces=True, features=False)
    assert not np.array_equal(V[0], V[1]) and not np.array_equal(V[1], V[2])
    assert np.all(np.abs(np.diff(V, axis=0)) > 0, axis=0)[1:].mean() > 0.99  # differ at almost every step
    quiet, _ = hh_kernel.run(theta, np.array([1, 2, 3], dtype=np.uint64), HHParams(duration=20.0, noise_scale=0.0),
                             traces=True, features=False)
    np.testing.assert_array_equal(quiet[0], quiet[1])


def test_constants_come_from_params_and_short_odd_traces() -> None:
    """Non-default constants and a step count that ends mid noise block match the reference."""
    p = HHParams(duration=25.03, t_on=2.0, t_off=20.0, E_K=-100.0, g_leak=0.12, gbar_M=0.1, tau_max=400.0,
                 V_T=-58.0, current=6e-4, C=1.1, noise_scale=0.0)
    assert (p.num_steps - 1) % 2 == 1
    expected = simulate_traces_numpy(THETAS, np.zeros((len(THETAS), p.num_steps - 1)), p)
    V, features = hh_kernel.run(THETAS, np.arange(5, dtype=np.uint64), p, traces=True, features=True)
    np.testing.assert_allclose(V, expected, rtol=0, atol=V_ATOL)
    assert_features_close(features, hh_feature_array(expected, p))
    assert np.all(V[:, 0] == p.V0)


def test_empty_batch_and_bad_shapes() -> None:
    V, features = hh_kernel.run(np.zeros((0, 2)), np.zeros(0, np.uint64), HHParams(), traces=True, features=True)
    assert V.shape == (0, HHParams().num_steps) and features.shape == (0, 7)
    with pytest.raises(ValueError, match="theta"):
        hh_kernel.run(np.zeros((3, 3)), np.zeros(3, np.uint64), HHParams(), traces=False, features=True)
    with pytest.raises(ValueError, match="seeds"):
        hh_kernel.run(np.zeros((3, 2)), np.zeros(2, np.uint64), HHParams(), traces=False, features=True)


def test_clear_error_when_extension_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    hh_kernel._library.cache_clear()
    monkeypatch.setitem(sys.modules, "sbilab.simulators._hh_kernel", None)  # makes the import fail
    try:
        with pytest.raises(ImportError, match="pip install -e"):
            hh_kernel.run(np.ones((1, 2)), np.zeros(1, np.uint64), HHParams(), traces=False, features=True)
    finally:
        hh_kernel._library.cache_clear()


def test_simulator_class_uses_kernel() -> None:
    import torch

    from sbilab.simulators.hodgkin_huxley import HodgkinHuxley
    from sbilab.summaries.hh_features import HHFeatures

    simulator = HodgkinHuxley(duration=30.0, t_on=5.0, t_off=25.0)
    theta = torch.tensor([[50.0, 5.0], [4.0, 1.5]])
    seeds = per_index_seeds(0, 0, 2)
    traces = simulator.simulate(theta, seeds)
    summary = HHFeatures(duration=30.0, t_on=5.0, t_off=25.0)
    fused = simulator.simulate_summaries(theta, seeds, summary)
    assert traces.shape == (2, simulator.params.num_steps)
    torch.testing.assert_close(fused, summary(traces))


def test_fusion_is_declared_by_the_summary() -> None:
    """The simulator fuses what a summary declares (statistics + time axis), whatever the summary's type."""
    import torch

    from sbilab.simulators.hodgkin_huxley import HodgkinHuxley
    from sbilab.summaries.hh_extended import HHExtended
    from sbilab.summaries.hh_features import HHFeatures

    timing = dict(duration=30.0, t_on=5.0, t_off=25.0)
    simulator = HodgkinHuxley(**timing)
    features = HHFeatures(**timing)

    class Declared:
        """Not an HHFeatures, but asks for the same statistics on the same axis."""

        kernel_fusion = features.kernel_fusion

        def __call__(self, traces):
            raise AssertionError("a fused summary is never called on traces")

    assert simulator.can_fuse(features) and simulator.can_fuse(Declared())
    assert not simulator.can_fuse(HHFeatures())  # another time axis
    assert not simulator.can_fuse(HHExtended(**timing))  # declares nothing: summarised from traces
    assert not HodgkinHuxley(backend="numpy", **timing).can_fuse(features)
    theta, seeds = np.array([[50.0, 5.0]]), per_index_seeds(0, 0, 1)
    out = simulator.simulate_summaries(torch.as_tensor(theta), seeds, Declared())
    assert out.shape == (1, 7) and out[0, 0] > 0


# --- the 8-parameter model (Gonçalves et al. 2020): every inferable constant per simulation -----------------

#: Allen-like protocol, shortened (the full 1,450 ms one is in the slow test below): dt = 0.02 ms, a 170 pA step
#: over the membrane area of cell 518290966, V0 its first sample with the -14 mV junction potential.
ALLEN_SHORT = HHParams(duration=300.0, dt=0.02, t_on=50.0, t_off=250.0, current=1.7e-4, soma_area_cm2=0.0234 / 126,
                       V0=-86.78125, noise_scale=0.0)
#: (gbar_Na, gbar_K, g_leak, gbar_M, tau_max, V_T, noise_scale, E_leak): the NPE-PF paper's synthetic θ of cell
#: 518290966 (its -V_T, -E_leak negated), both corners of the hh8_box prior, and the tutorial's constants.
THETAS_8 = np.array([
    [8.932692, 2.006126, 0.028068965, 0.03327207, 2792.28, -65.309746, 0.03135364, -86.49111],
    [0.5, 1e-4, 1e-4, 1e-4, 50.0, -90.0, 1e-4, -100.0],
    [80.0, 15.0, 0.6, 0.6, 3000.0, -40.0, 0.15, -35.0],
    [50.0, 5.0, 0.1, 0.07, 600.0, -60.0, 0.1, -70.0],
])


def noiseless(thetas: np.ndarray) -> np.ndarray:
    out = thetas.copy()
    out[:, INFERABLE.index("noise_scale")] = 0.0
    return out


def test_eight_parameters_match_numpy_reference() -> None:
    theta = noiseless(THETAS_8)
    expected = simulate_traces_numpy(theta, np.zeros((len(theta), ALLEN_SHORT.num_steps - 1)), ALLEN_SHORT, INFERABLE)
    V, features = hh_kernel.run(theta, np.arange(len(theta), dtype=np.uint64), ALLEN_SHORT, traces=True,
                                features=True, inferred=INFERABLE)
    np.testing.assert_allclose(V, expected, rtol=0, atol=V_ATOL)
    assert_features_close(features, hh_feature_array(expected, ALLEN_SHORT))
    assert features[0, 0] > 0 and features[2, 0] == 0  # the set covers spiking and silent cells


@pytest.mark.parametrize("row", [0, 3])
def test_eight_parameters_match_plain_scalar_implementation(row: int) -> None:
    """The plain scalar model with the row's constants put into HHParams (the tutorial's code, all eight set)."""
    values = dict(zip(INFERABLE, noiseless(THETAS_8)[row]))
    p = replace(ALLEN_SHORT, soma_area_cm2=None, soma_radius_um=math.sqrt(0.0234 / 126 / math.pi) * 1e4,
                **{k: v for k, v in values.items() if k not in ("gbar_Na", "gbar_K")})
    expected = np.array([plain_hh(values["gbar_Na"], values["gbar_K"], p)])
    V, _ = hh_kernel.run(noiseless(THETAS_8)[row : row + 1], np.zeros(1, np.uint64), ALLEN_SHORT, traces=True,
                         features=False, inferred=INFERABLE)
    np.testing.assert_allclose(V, expected, rtol=0, atol=V_ATOL)


def test_any_subset_in_any_order_and_the_tutorial_as_a_subset() -> None:
    """θ's columns follow `inferred`; constants not inferred come from HHParams; per-row and shared modes agree."""
    p = replace(ALLEN_SHORT, noise_scale=0.0)
    reordered = ("E_leak", "gbar_K", "V_T", "gbar_Na")
    theta = THETAS_8[:, [INFERABLE.index(k) for k in reordered]]
    fixed = {k: v for k, v in zip(INFERABLE, THETAS_8[0]) if k not in reordered and k != "noise_scale"}
    V_subset, _ = hh_kernel.run(theta[:1], np.zeros(1, np.uint64), replace(p, **fixed), traces=True,
                                features=False, inferred=reordered)
    V_all, _ = hh_kernel.run(noiseless(THETAS_8[:1]), np.zeros(1, np.uint64), p, traces=True, features=False,
                             inferred=INFERABLE)
    np.testing.assert_array_equal(V_subset, V_all)  # both run per row: the same code, the same numbers
    tutorial = replace(p, **dict(zip(INFERABLE[2:], noiseless(THETAS_8)[3, 2:])))
    V_shared, _ = hh_kernel.run(THETAS_8[3:, :2], np.zeros(1, np.uint64), tutorial, traces=True, features=False)
    V_rows, _ = hh_kernel.run(noiseless(THETAS_8[3:]), np.zeros(1, np.uint64), tutorial, traces=True,
                              features=False, inferred=INFERABLE)
    np.testing.assert_allclose(V_shared, V_rows, rtol=0, atol=V_ATOL)


def test_per_row_noise_scale_and_rows_independent_of_batch() -> None:
    p = replace(ALLEN_SHORT, duration=120.0, t_on=20.0, t_off=100.0)
    theta = np.tile(THETAS_8[0], (21, 1))
    theta[:, INFERABLE.index("noise_scale")] = np.linspace(0.0, 0.15, 21)
    theta[:, 0] = np.linspace(5.0, 60.0, 21)
    seeds = per_index_seeds(8, 0, 21)
    V, features = hh_kernel.run(theta, seeds, p, traces=True, features=True, inferred=INFERABLE)
    quiet, _ = hh_kernel.run(theta[:1], seeds[:1] + np.uint64(1), p, traces=True, features=False, inferred=INFERABLE)
    np.testing.assert_array_equal(V[0], quiet[0])  # noise_scale 0 in a noisy batch: no noise, whatever the seed
    for rows in ([7], [20, 3, 3, 11]):
        V_sub, features_sub = hh_kernel.run(theta[rows], seeds[rows], p, traces=True, features=True,
                                            inferred=INFERABLE)
        np.testing.assert_array_equal(V_sub, V[rows])
        np.testing.assert_array_equal(features_sub, features[rows])
    assert_features_close(features, hh_feature_array(V, p))


def test_eight_parameter_noise_statistics_agree_with_numpy_reference_in_distribution() -> None:
    """Means over 100 seeds of each statistic agree within 4 standard errors (different RNGs)."""
    p, count = replace(ALLEN_SHORT, duration=150.0, t_on=20.0, t_off=130.0), 100
    thetas = np.tile(THETAS_8[0], (count, 1))
    _, kernel = hh_kernel.run(thetas, per_index_seeds(21, 0, count), p, traces=False, features=True,
                              inferred=INFERABLE)
    noise = np.stack([g.standard_normal(p.num_steps - 1) for g in row_generators(per_index_seeds(22, 0, count))])
    reference = hh_feature_array(simulate_traces_numpy(thetas, noise, p, INFERABLE), p)
    for column, (a, b) in enumerate(zip(kernel.T, reference.T)):
        se = math.sqrt(a.var(ddof=1) / count + b.var(ddof=1) / count)
        assert abs(a.mean() - b.mean()) <= 4.0 * se + 1e-9 * abs(b.mean()), (column, a.mean(), b.mean(), se)
    assert kernel[:, 0].mean() > 0


@pytest.mark.slow
def test_eight_parameters_full_allen_protocol_match_numpy_reference() -> None:
    """The 1,450 ms protocol (72,500 samples): kernel = NumPy reference, fused statistics = their definition."""
    p = replace(ALLEN_SHORT, duration=1449.98, t_on=205.0, t_off=1205.0)
    theta = noiseless(THETAS_8[[0, 2]])
    expected = simulate_traces_numpy(theta, np.zeros((2, p.num_steps - 1)), p, INFERABLE)
    V, features = hh_kernel.run(theta, np.arange(2, dtype=np.uint64), p, traces=True, features=True,
                                inferred=INFERABLE)
    assert V.shape == (2, 72_500)
    np.testing.assert_allclose(V, expected, rtol=0, atol=V_ATOL)
    assert_features_close(features, hh_feature_array(expected, p))
