"""The vectorised HH model equals a deliberately plain, scalar float64 implementation."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from sbilab.simulators.hh_equations import HHParams, simulate_traces_numpy
from sbilab.simulators.hodgkin_huxley import HodgkinHuxley


def plain_hh(gbar_na: float, gbar_k: float, xi: np.ndarray, p: HHParams) -> list[float]:
    """The tutorial's HHsimulator, step by step with the math module (ξ given per step)."""

    def efun(z):
        return 1 - z / 2 if abs(z) < 1e-4 else z / (math.exp(z) - 1)

    def rates(V):
        v = V - p.V_T
        am = 0.32 * efun(-0.25 * (v - 13.0)) / 0.25
        bm = 0.28 * efun(0.2 * (v - 40.0)) / 0.2
        ah = 0.128 * math.exp(-(v - 17.0) / 18.0)
        bh = 4.0 / (1 + math.exp(-0.2 * (v - 40.0)))
        an = 0.032 * efun(-0.2 * (v - 15.0)) / 0.2
        bn = 0.5 * math.exp(-(v - 10.0) / 40.0)
        pinf = 1.0 / (1.0 + math.exp(-0.1 * (V + 35.0)))
        taup = p.tau_max / (3.3 * math.exp(0.05 * (V + 35.0)) + math.exp(-0.05 * (V + 35.0)))
        return {
            "m": (am / (am + bm), 1 / (am + bm)),
            "h": (ah / (ah + bh), 1 / (ah + bh)),
            "n": (an / (an + bn), 1 / (an + bn)),
            "p": (pinf, taup),
        }

    steps = int(round(p.duration / p.dt)) + 1
    area = math.pi * (p.soma_radius_um * 1e-4) ** 2
    current = [p.current / area if round(p.t_on / p.dt) <= i < round(p.t_off / p.dt) else 0.0 for i in range(steps)]
    V = [p.V0]
    q = {name: inf for name, (inf, _) in rates(p.V0).items()}
    for i in range(1, steps):
        g_na = q["m"] ** 3 * gbar_na * q["h"]
        g_k = q["n"] ** 4 * gbar_k
        tau_inv = (g_na + g_k + p.g_leak + p.gbar_M * q["p"]) / p.C
        v_inf = (g_na * p.E_Na + g_k * p.E_K + p.g_leak * p.E_leak + p.gbar_M * q["p"] * p.E_K
                 + current[i - 1] + p.noise_scale * xi[i - 1] / p.dt**0.5) / (tau_inv * p.C)
        V.append(v_inf + (V[-1] - v_inf) * math.exp(-p.dt * tau_inv))
        for name, (inf, tau) in rates(V[-1]).items():
            q[name] = inf + (q[name] - inf) * math.exp(-p.dt / tau)
    return V


THETAS = np.array([[50.0, 5.0], [4.0, 1.5], [20.0, 15.0], [0.5, 1e-4]])


@pytest.mark.parametrize("noise_scale", [0.0, 0.1])
def test_vectorised_model_equals_plain_reference(noise_scale):
    p = HHParams(duration=40.0, t_off=30.0, noise_scale=noise_scale)  # shorter trace: same dynamics, faster test
    xi = np.random.default_rng(3).standard_normal((len(THETAS), p.num_steps - 1))
    V = simulate_traces_numpy(THETAS, xi, p)
    for row, (gna, gk) in enumerate(THETAS):
        expected = np.array(plain_hh(gna, gk, xi[row], p))
        np.testing.assert_allclose(V[row], expected, rtol=0, atol=1e-9)


def test_default_trace_shape_units_and_spikes():
    sim = HodgkinHuxley(backend="numpy")
    V = sim.simulate(torch.tensor([[50.0, 5.0]]), np.array([1], dtype=np.uint64))
    assert V.shape == (1, 12_001) and V.dtype == torch.float64
    assert V[0, 0] == -70.0
    assert V[0, :1000].max() < -60  # at rest before the stimulus
    assert V[0, 1000:11000].max() > 20  # action potentials during it


def test_same_seed_same_trace_other_seed_other_noise():
    sim = HodgkinHuxley(backend="numpy", duration=20.0, t_off=15.0)
    theta = torch.tensor([[50.0, 5.0], [50.0, 5.0]])
    a = sim.simulate(theta, np.array([1, 2], dtype=np.uint64))
    b = sim.simulate(theta[:1], np.array([1], dtype=np.uint64))
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0], a[1])


def test_every_constant_is_configurable():
    sim = HodgkinHuxley(backend="numpy", duration=10.0, dt=0.02, t_on=2.0, t_off=8.0, noise_scale=0.0, E_leak=-65.0,
                        V0=-65.0)
    V = sim.simulate(torch.tensor([[1.0, 1.0]]), np.array([0], dtype=np.uint64))
    assert V.shape == (1, 501)
    assert abs(float(V[0, 50]) + 65.0) < 1.0


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="simulator.backend"):
        HodgkinHuxley(backend="gpu")


def test_inferred_constants_are_config_and_checked():
    from sbilab.errors import ConfigError
    from sbilab.simulators.hh_equations import INFERABLE

    assert HodgkinHuxley().parameter_names == ("gbar_Na", "gbar_K") and HodgkinHuxley().parameter_dim == 2
    eight = HodgkinHuxley(backend="numpy", inferred=list(INFERABLE), duration=10.0, t_on=2.0, t_off=8.0)
    assert eight.parameter_dim == 8
    theta = torch.tensor([[50.0, 5.0, 0.1, 0.07, 600.0, -60.0, 0.0, E_leak] for E_leak in (-60.0, -80.0)])
    V = eight.simulate(theta, np.array([0, 0], dtype=np.uint64))
    assert V.shape == (2, 1001) and V[0, 150] > -69.5 > -70.5 > V[1, 150]  # E_leak from θ: drifts up / down from V0
    for bad, message in [(["gbar_Na", "E_Na"], "unknown ['E_Na']"), ([], "empty"), (["V_T", "V_T"], "repeated")]:
        with pytest.raises(ConfigError, match=r"simulator\.inferred=.*" + re.escape(message)):
            HodgkinHuxley(inferred=bad)


@pytest.mark.parametrize("constants,key", [
    ({"gbar_NA": 1.0}, "simulator.gbar_NA"), ({"t_off": 130.0}, "simulator.t_on"), ({"dt": 0.0}, "simulator.dt"),
    ({"soma_area_cm2": -1.0}, "soma_area_cm2"),
])
def test_bad_constants_fail_with_the_key(constants, key):
    from sbilab.errors import ConfigError

    with pytest.raises(ConfigError, match=key):
        HodgkinHuxley(**constants)


def test_long_traces_are_summarised_in_sub_batches(monkeypatch):
    """A summary that needs raw traces gets them a few rows at a time: same numbers, bounded memory."""
    from sbilab.simulators import hodgkin_huxley
    from sbilab.summaries.hh_extended import HHExtended

    timing = dict(duration=60.0, t_on=5.0, t_off=50.0)
    simulator, summary = HodgkinHuxley(**timing), HHExtended(**timing)
    theta = torch.tensor([[50.0, 5.0], [4.0, 1.5], [20.0, 15.0]]).repeat(4, 1)
    seeds = np.arange(12, dtype=np.uint64)
    whole = simulator.simulate_summaries(theta, seeds, summary)
    calls = []
    monkeypatch.setattr(hodgkin_huxley, "TRACE_BATCH_BYTES", 5 * 8 * simulator.params.num_steps)  # 5 rows
    original = simulator.simulate
    monkeypatch.setattr(simulator, "simulate", lambda t, s: calls.append(len(s)) or original(t, s))
    torch.testing.assert_close(simulator.simulate_summaries(theta, seeds, summary), whole, rtol=0, atol=0)
    assert calls == [5, 5, 2]


def test_eight_parameter_configs_compose_with_matching_names():
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from sbilab.spec import instantiate_part, part_config

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["simulator=hodgkin_huxley_8p", "prior=hh8_box"])
    simulator = instantiate_part(part_config(cfg, "simulator"))
    assert list(simulator.parameter_names) == list(cfg.prior.names) and simulator.parameter_dim == 8
    assert simulator.params.num_steps == 72_500 and simulator.params.timing == (1449.98, 0.02, 205.0, 1205.0)
    assert part_config(cfg, "summary")["duration"] == 1449.98  # the statistics follow the simulator's protocol
    assert all(lo < hi for lo, hi in zip(cfg.prior.low, cfg.prior.high))


def test_context_appends_the_protocol_to_every_summary_and_leaves_the_statistics_alone():
    """``simulator.context``: one network for several protocols learns which protocol made each summary."""
    from sbilab.summaries.hh_features import HHFeatures

    constants = {"duration": 60.0, "dt": 0.025, "t_on": 10.0, "t_off": 50.0, "current": 3e-4, "V0": -65.0,
                 "soma_area_cm2": 2e-4}
    summary = HHFeatures(duration=60.0, dt=0.025, t_on=10.0, t_off=50.0)
    theta = torch.tensor([[50.0, 5.0], [20.0, 8.0], [70.0, 2.0]])
    seeds = np.array([1, 2, 3])
    plain = HodgkinHuxley(**constants)
    tagged = HodgkinHuxley(context=["current_density", "V0"], **constants)
    x_plain = plain.simulate_summaries(theta, seeds, summary)
    x_tagged = tagged.simulate_summaries(theta, seeds, summary)
    assert plain.observation_context() is None and x_tagged.shape == (3, x_plain.shape[1] + 2)
    torch.testing.assert_close(x_tagged[:, :-2], x_plain.to(x_tagged.dtype))
    context = torch.tensor([3e-4 / 2e-4, -65.0])
    torch.testing.assert_close(x_tagged[:, -2:], context.expand(3, 2).to(x_tagged.dtype))
    torch.testing.assert_close(tagged.observation_context(), context)
    # another protocol, other context; the order is the config's
    other = HodgkinHuxley(context=["V0", "current_density"], **{**constants, "V0": -80.0, "current": 6e-4})
    torch.testing.assert_close(other.observation_context(), torch.tensor([-80.0, 6e-4 / 2e-4]))
