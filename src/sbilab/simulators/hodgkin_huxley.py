"""The Hodgkin-Huxley neuron of the sbi tutorial (Pospischil et al. 2008 kinetics).

Parameters are (gbar_Na, gbar_K) in mS/cm²; the output is the membrane potential in
mV on t = 0, dt, ..., duration. Every constant of the model is a field of
:class:`HHParams` and therefore a config key under ``simulator.``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from sbilab.simulators.base import Simulator, as_float64_numpy, to_tensor
from sbilab.errors import ConfigError


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


def _kernel_source_hash() -> str:
    """First 12 hex digits of the kernel source's sha256 ('nosource' when it is not shipped)."""
    source = Path(__file__).with_name("_hh_kernel.c")
    return hashlib.sha256(source.read_bytes()).hexdigest()[:12] if source.exists() else "nosource"


class HodgkinHuxley(Simulator):
    """The tutorial's HH neuron; ``simulate`` returns V [B, T] in mV (float64).

    ``backend="compiled"`` uses the C kernel (features fused in the same pass);
    ``backend="numpy"`` is the readable vectorised NumPy integration.
    """

    parameter_dim = 2
    #: model version + a hash of the C kernel's source: editing the kernel invalidates cached simulations
    version = "1+" + _kernel_source_hash()

    def __init__(self, backend: str = "compiled", **constants: float) -> None:
        if backend not in ("compiled", "numpy"):
            raise ConfigError(f"simulator.backend={backend!r}: allowed values are 'compiled', 'numpy'")
        self.backend = backend
        self.params = HHParams(**constants)

    def config(self) -> dict:
        """The constants that determine the output (for cache keys and logs)."""
        return {"backend": self.backend, **asdict(self.params)}

    def trace_axes(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Time (ms), injected current density and its scale to nA (times the soma area)."""
        return self.params.time(), self.params.input_current(), self.params.soma_area * 1e3

    def simulate(self, theta: Tensor, seeds: np.ndarray) -> Tensor:
        theta_np = as_float64_numpy(theta)
        if self.backend == "compiled":
            from sbilab.simulators import hh_kernel

            traces, _ = hh_kernel.run(theta_np, seeds, self.params, traces=True, features=False)
        else:
            traces = simulate_traces_numpy(theta_np, self._noise(seeds), self.params)
        return to_tensor(traces, torch.float64)

    def simulate_summaries(
        self, theta: Tensor, seeds: np.ndarray, summary: Callable[[Tensor], Tensor]
    ) -> Tensor:
        """Use the kernel's fused features when the summary is the tutorial's 7."""
        from sbilab.summaries.hh_features import HHFeatures

        if self.backend == "compiled" and type(summary) is HHFeatures and summary.matches(self.params):
            from sbilab.simulators import hh_kernel

            _, features = hh_kernel.run(as_float64_numpy(theta), seeds, self.params, traces=False, features=True)
            return to_tensor(features)
        return summary(self.simulate(theta, seeds))

    def _noise(self, seeds: np.ndarray) -> np.ndarray:
        """Standard-normal ξ [B, T-1], one generator per row seed."""
        steps = self.params.num_steps - 1
        noise = np.zeros((len(seeds), steps))
        for row, seed in enumerate(np.asarray(seeds, dtype=np.uint64)):
            noise[row] = np.random.default_rng(int(seed)).standard_normal(steps)
        return noise
