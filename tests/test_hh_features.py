"""The 7 statistics: constructed traces with known answers, and the tutorial's own code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from sbilab.simulators.hh_equations import HHParams
from sbilab.summaries.hh_features import FEATURE_NAMES, HHFeatures, hh_feature_array

P = HHParams()
T = P.time()


def _spike(trace: np.ndarray, t_peak: float, height: float = 30.0, width_ms: float = 0.3) -> None:
    trace += height * np.exp(-0.5 * ((T - t_peak) / (width_ms / 3)) ** 2) * 1.0


def tutorial_statistics(v_trace: np.ndarray) -> np.ndarray:
    """calculate_summary_statistics of the sbi tutorial (n_mom = 4), transcribed literally."""
    t, dt, t_on, t_off, n_mom = T, P.dt, P.t_on, P.t_off, 4
    v = np.array(v_trace)
    v[np.where(v < -10)] = -10
    v[np.where(np.diff(v) < 0)] = -10
    ind = np.where(np.diff(v) < 0)
    spike_times = np.array(t)[ind]
    spike_times_stim = spike_times[(spike_times > t_on) & (spike_times < t_off)]
    if spike_times_stim.shape[0] > 0:
        spike_times_stim = spike_times_stim[np.append(1, np.diff(spike_times_stim)) > 0.5]
    rest_pot = np.mean(v_trace[t < t_on])
    rest_pot_std = np.std(v_trace[int(0.9 * t_on / dt) : int(t_on / dt)])
    window = v_trace[(t > t_on) & (t < t_off)]
    std_pw = np.power(np.std(window), np.linspace(3, n_mom, n_mom - 2))
    std_pw = np.concatenate((np.ones(1), std_pw))
    moments = stats.moment(window, np.linspace(2, n_mom, n_mom - 1).astype(int)) / std_pw
    return np.concatenate(([spike_times_stim.shape[0]], [rest_pot, rest_pot_std, np.mean(window)], moments))


def test_constructed_trace_counts_spikes_in_the_stimulus_only():
    trace = np.full(P.num_steps, -65.0)
    for t_peak in (5.0, 20.0, 40.0, 60.0, 115.0):  # 5 and 115 ms lie outside [10, 110]
        _spike(trace, t_peak, height=95.0)
    out = hh_feature_array(trace[None], P)[0]
    assert out[0] == 3


def test_double_peak_within_half_a_millisecond_counts_once():
    trace = np.full(P.num_steps, -65.0)
    _spike(trace, 30.0, height=95.0, width_ms=0.1)
    _spike(trace, 30.3, height=95.0, width_ms=0.1)  # second peak 0.3 ms later
    _spike(trace, 50.0, height=50.0)  # peaks at -15 mV: below threshold
    assert hh_feature_array(trace[None], P)[0, 0] == 1


def test_moments_of_a_known_signal():
    rng = np.random.default_rng(0)
    trace = np.empty(P.num_steps)
    trace[: P.i_on] = -70.0 + 0.5 * np.sin(np.arange(P.i_on))
    trace[P.i_on :] = -60.0 + 2.0 * rng.standard_normal(P.num_steps - P.i_on)
    out = hh_feature_array(trace[None], P)[0]
    window = trace[1001:11000]
    assert out[1] == pytest.approx(np.mean(trace[:1000]))
    assert out[2] == pytest.approx(np.std(trace[900:1000]))
    assert out[3] == pytest.approx(window.mean())
    assert out[4] == pytest.approx(window.var())
    assert out[5] == pytest.approx(stats.skew(window))
    assert out[6] == pytest.approx(stats.kurtosis(window, fisher=False))
    assert abs(out[6] - 3.0) < 0.2  # Gaussian noise: kurtosis ≈ 3 (non-excess)


def test_equals_the_tutorial_code_on_simulated_traces():
    from sbilab.simulators.hh_equations import simulate_traces_numpy

    theta = np.array([[50.0, 5.0], [4.0, 1.5], [20.0, 15.0]])
    V = simulate_traces_numpy(theta, np.random.default_rng(1).standard_normal((3, P.num_steps - 1)), P)
    ours = hh_feature_array(V, P)
    for row in range(3):
        np.testing.assert_allclose(ours[row], tutorial_statistics(V[row]), rtol=1e-9, atol=1e-12)
    assert (ours[:, 0] > 0).all()


def test_summary_is_float32_batch_by_seven():
    out = HHFeatures()(torch.full((4, P.num_steps), -70.0, dtype=torch.float64))
    assert out.shape == (4, len(FEATURE_NAMES)) and out.dtype == torch.float32
