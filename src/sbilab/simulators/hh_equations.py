"""The Hodgkin-Huxley equations of the sbi tutorial (Pospischil et al. 2008 kinetics).

One home for the model: its constants (:class:`HHParams`), the gate kinetics
(:func:`efun`, :func:`gate_rates`) and the readable vectorised NumPy integration
(:func:`simulate_traces_numpy`). The compiled kernel (:mod:`sbilab.simulators.hh_kernel`),
the simulator class (:mod:`sbilab.simulators.hodgkin_huxley`) and the HH summaries
all import from here; this module imports none of them.

Which constants θ holds is a choice (``inferred``): any of :data:`INFERABLE`, in
any order. The tutorial infers (gbar_Na, gbar_K); Gonçalves et al. 2020 (eLife
9:e56261, the Allen cells of Fig. 7) infer all eight. The others keep their
:class:`HHParams` values. Note the signs: that paper's parameters 6 and 8 are -V_T
and -E_leak; here θ holds V_T and E_leak themselves (mV).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

#: The tutorial's 7 summary statistics, in order. A summary that asks for exactly these
#: (``summaries.hh_features``) can have them computed inside the compiled kernel.
MOMENT_STATISTICS = ("spike_count", "rest_mean", "rest_std", "stim_mean", "stim_var", "stim_skew", "stim_kurtosis")
#: The constants that θ may hold (per simulation), in the kernel's column order.
INFERABLE = ("gbar_Na", "gbar_K", "g_leak", "gbar_M", "tau_max", "V_T", "noise_scale", "E_leak")
#: The tutorial's θ.
TUTORIAL_INFERRED = ("gbar_Na", "gbar_K")


@dataclass(frozen=True)
class HHParams:
    """All constants of the tutorial's HH model (units as in the tutorial).

    The stimulus is a step of ``current`` µA from ``t_on`` to ``t_off`` over the soma
    area (π ``soma_radius_um``², or ``soma_area_cm2`` when given, e.g. a recorded
    cell's). ``gbar_Na`` and ``gbar_K`` are used only when θ does not hold them.
    """

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
    gbar_Na: float = 50.0  # mS/cm² (when not inferred)
    gbar_K: float = 5.0  # mS/cm² (when not inferred)
    soma_area_cm2: Optional[float] = None  # cm²; replaces π soma_radius_um² when set

    @property
    def num_steps(self) -> int:
        """Number of time points T (t = 0..duration inclusive)."""
        return int(round(self.duration / self.dt)) + 1

    @property
    def soma_area(self) -> float:
        """Soma area in cm²: ``soma_area_cm2`` when given, else π r²."""
        if self.soma_area_cm2 is not None:
            return float(self.soma_area_cm2)
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


def row_constants(theta: np.ndarray, p: HHParams, inferred: Sequence[str] = TUTORIAL_INFERRED) -> np.ndarray:
    """Per-simulation values of the :data:`INFERABLE` constants, [B, 8] float64.

    Column ``INFERABLE.index(name)`` holds θ's column ``inferred.index(name)`` for an
    inferred constant and ``getattr(p, name)`` for every row otherwise.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[1] != len(inferred):
        raise ValueError(f"theta must be [B, {len(inferred)}] ({', '.join(inferred)}), got shape {theta.shape}")
    rows = np.empty((theta.shape[0], len(INFERABLE)))
    for column, name in enumerate(INFERABLE):
        rows[:, column] = theta[:, list(inferred).index(name)] if name in inferred else getattr(p, name)
    return rows


def gate_rates(
    V: np.ndarray, V_T: float | np.ndarray, tau_max: float | np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Steady state q∞(V) and time constant τ_q(V) for each gate q ∈ {m, h, n, p}."""
    v = V - V_T
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
        tau_max / (3.3 * np.exp(0.05 * vp) + np.exp(-0.05 * vp)),
    )
    return rates


def simulate_traces_numpy(
    theta: np.ndarray, noise: np.ndarray, p: HHParams, inferred: Sequence[str] = TUTORIAL_INFERRED
) -> np.ndarray:
    """Vectorised exponential-Euler integration over the batch.

    ``theta`` is [B, len(inferred)] (default: gbar_Na, gbar_K); ``noise`` is standard
    normal [B, T-1] (ξ of each step). Returns V [B, T] in mV, float64.
    """
    rows = row_constants(theta, p, inferred)
    gbar_na, gbar_k, g_leak, gbar_M, tau_max, V_T, noise_scale, E_leak = rows.T
    batch, steps = rows.shape[0], p.num_steps
    current = p.input_current()
    noise_current = noise_scale[:, None] * noise / math.sqrt(p.dt)
    V = np.empty((batch, steps))
    V[:, 0] = p.V0
    gates = {q: inf for q, (inf, _) in gate_rates(np.full(batch, p.V0), V_T, tau_max).items()}
    for i in range(1, steps):
        g_na = gates["m"] ** 3 * gates["h"] * gbar_na
        g_k = gates["n"] ** 4 * gbar_k
        g_m = gbar_M * gates["p"]
        tau_v_inv = (g_na + g_k + g_leak + g_m) / p.C
        v_inf = (
            g_na * p.E_Na + g_k * p.E_K + g_leak * E_leak + g_m * p.E_K + current[i - 1] + noise_current[:, i - 1]
        ) / (tau_v_inv * p.C)
        V[:, i] = v_inf + (V[:, i - 1] - v_inf) * np.exp(-p.dt * tau_v_inv)
        for q, (q_inf, tau_q) in gate_rates(V[:, i], V_T, tau_max).items():
            gates[q] = q_inf + (gates[q] - q_inf) * np.exp(-p.dt / tau_q)
    return V
