"""The Hodgkin-Huxley equations of the sbi tutorial (Pospischil et al. 2008 kinetics).

One home for the model: its constants (:class:`HHParams`), the gate kinetics
(:func:`efun`, :func:`gate_rates`) and the readable vectorised NumPy integration
(:func:`simulate_traces_numpy`). The compiled kernel (:mod:`sbilab.simulators.hh_kernel`),
the simulator class (:mod:`sbilab.simulators.hodgkin_huxley`) and the HH summaries
all import from here; this module imports none of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The tutorial's 7 summary statistics, in order. A summary that asks for exactly these
#: (``summaries.hh_features``) can have them computed inside the compiled kernel.
MOMENT_STATISTICS = ("spike_count", "rest_mean", "rest_std", "stim_mean", "stim_var", "stim_skew", "stim_kurtosis")


@dataclass(frozen=True)
class HHParams:
    """All fixed constants of the tutorial's HH model (units as in the tutorial)."""

    duration: float = 120.0  # ms
    dt: float = 0.01  # ms
    t_on: float = 10.0  # ms, stimulus onset
    t_off: float = 110.0  # ms, stimulus offset
    current: float = 5e-4  # µA, step amplitude before division by the soma area
    soma_radius_um: float = 70.0  # µm
    V0: float = -70.0  # mV
    g_leak: float = 0.1  # mS/cm²
    gbar_M: float = 0.07  # mS/cm²
    tau_max: float = 600.0  # ms
    V_T: float = -60.0  # mV
    E_leak: float = -70.0  # mV
    E_Na: float = 53.0  # mV
    E_K: float = -107.0  # mV
    C: float = 1.0  # µF/cm²
    noise_scale: float = 0.1  # µA/cm²

    @property
    def num_steps(self) -> int:
        """Number of time points T (t = 0..duration inclusive)."""
        return int(round(self.duration / self.dt)) + 1

    @property
    def soma_area(self) -> float:
        """Soma area π r² in cm²."""
        return math.pi * (self.soma_radius_um * 1e-4) ** 2

    @property
    def i_on(self) -> int:
        return int(round(self.t_on / self.dt))

    @property
    def i_off(self) -> int:
        return int(round(self.t_off / self.dt))

    @property
    def timing(self) -> tuple[float, float, float, float]:
        """(duration, dt, t_on, t_off): the time axis and stimulus window statistics depend on."""
        return (self.duration, self.dt, self.t_on, self.t_off)

    def time(self) -> np.ndarray:
        """Time axis in ms, ``i * dt``."""
        return np.arange(self.num_steps) * self.dt

    def input_current(self) -> np.ndarray:
        """Injected current density in µA/cm², on for ``i_on <= i < i_off``."""
        current = np.zeros(self.num_steps)
        current[self.i_on : self.i_off] = self.current / self.soma_area
        return current


def efun(z: np.ndarray) -> np.ndarray:
    """z / (exp(z) - 1), continued by 1 - z/2 near zero."""
    small = np.abs(z) < 1e-4
    safe = np.where(small, 1.0, z)
    return np.where(small, 1.0 - z / 2.0, safe / (np.exp(safe) - 1.0))


def gate_rates(V: np.ndarray, p: HHParams) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Steady state q∞(V) and time constant τ_q(V) for each gate q ∈ {m, h, n, p}."""
    v = V - p.V_T
    alpha_m = 0.32 * efun(-0.25 * (v - 13.0)) / 0.25
    beta_m = 0.28 * efun(0.2 * (v - 40.0)) / 0.2
    alpha_h = 0.128 * np.exp(-(v - 17.0) / 18.0)
    beta_h = 4.0 / (1.0 + np.exp(-0.2 * (v - 40.0)))
    alpha_n = 0.032 * efun(-0.2 * (v - 15.0)) / 0.2
    beta_n = 0.5 * np.exp(-(v - 10.0) / 40.0)
    vp = V + 35.0
    rates = {}
    for name, (a, b) in {"m": (alpha_m, beta_m), "h": (alpha_h, beta_h), "n": (alpha_n, beta_n)}.items():
        rates[name] = (a / (a + b), 1.0 / (a + b))
    rates["p"] = (
        1.0 / (1.0 + np.exp(-0.1 * vp)),
        p.tau_max / (3.3 * np.exp(0.05 * vp) + np.exp(-0.05 * vp)),
    )
    return rates


def simulate_traces_numpy(theta: np.ndarray, noise: np.ndarray, p: HHParams) -> np.ndarray:
    """Vectorised exponential-Euler integration over the batch.

    ``theta`` is [B, 2] (gbar_Na, gbar_K); ``noise`` is standard normal [B, T-1]
    (ξ of each step). Returns V [B, T] in mV, float64.
    """
    gbar_na, gbar_k = theta[:, 0], theta[:, 1]
    batch, steps = theta.shape[0], p.num_steps
    current = p.input_current()
    noise_current = p.noise_scale * noise / math.sqrt(p.dt)
    V = np.empty((batch, steps))
    V[:, 0] = p.V0
    gates = {q: np.full(batch, inf) for q, (inf, _) in gate_rates(np.array([p.V0]), p).items()}
    for i in range(1, steps):
        g_na = gates["m"] ** 3 * gates["h"] * gbar_na
        g_k = gates["n"] ** 4 * gbar_k
        g_m = p.gbar_M * gates["p"]
        tau_v_inv = (g_na + g_k + p.g_leak + g_m) / p.C
        v_inf = (
            g_na * p.E_Na + g_k * p.E_K + p.g_leak * p.E_leak + g_m * p.E_K + current[i - 1] + noise_current[:, i - 1]
        ) / (tau_v_inv * p.C)
        V[:, i] = v_inf + (V[:, i - 1] - v_inf) * np.exp(-p.dt * tau_v_inv)
        for q, (q_inf, tau_q) in gate_rates(V[:, i], p).items():
            gates[q] = q_inf + (gates[q] - q_inf) * np.exp(-p.dt / tau_q)
    return V
