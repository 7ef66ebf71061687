"""The Hodgkin-Huxley neuron of the sbi tutorial as an sbilab simulator.

θ holds the constants named by ``inferred`` (default: the tutorial's gbar_Na,
gbar_K in mS/cm²; all eight of :data:`~sbilab.simulators.hh_equations.INFERABLE`
for the model of Gonçalves et al. 2020); the output is the membrane potential in mV
on t = 0, dt, ..., duration. Every constant of the model, the stimulus protocol
included, is a field of :class:`~sbilab.simulators.hh_equations.HHParams` and
therefore a config key under ``simulator.``. The equations live in
:mod:`sbilab.simulators.hh_equations`.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from sbilab.errors import ConfigError
from sbilab.simulators import hh_kernel
from sbilab.simulators.base import Simulator, as_float64_numpy, kernel_fusion, to_tensor
from sbilab.simulators.hh_equations import INFERABLE, TUTORIAL_INFERRED, HHParams, simulate_traces_numpy

#: Memory for raw traces that a non-fused summary is computed from, per call: longer
#: protocols are simulated and summarised in sub-batches of rows that fit (a 1,450 ms
#: trace at dt = 0.02 ms is 580 kB; 2,000 of them would take 1.2 GB).
TRACE_BATCH_BYTES = 256 * 2**20


class HodgkinHuxley(Simulator):
    """The tutorial's HH neuron; ``simulate`` returns V [B, T] in mV (float64).

    ``backend="compiled"`` uses the C kernel (statistics fused in the same pass when
    the summary asks for them, see :class:`~sbilab.simulators.base.KernelFusion`);
    ``backend="numpy"`` is the readable vectorised NumPy integration.
    """

    #: model version + a hash of the C kernel's source: editing the kernel invalidates cached simulations
    version = "1+" + hh_kernel.source_hash()

    def __init__(
        self, backend: str = "compiled", inferred: Sequence[str] = TUTORIAL_INFERRED, context: Sequence[str] = (),
        **constants: float | None
    ) -> None:
        if backend not in ("compiled", "numpy"):
            raise ConfigError(f"simulator.backend={backend!r}: allowed values are 'compiled', 'numpy'")
        self.backend = backend
        self.inferred = check_inferred(inferred)
        self.parameter_dim = len(self.inferred)
        self.params = check_params(constants)
        self.context = check_context(context)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """θ's columns, in order (``simulator.inferred``)."""
        return self.inferred

    def config(self) -> dict:
        """The constants that determine the output (for cache keys and logs)."""
        return {"backend": self.backend, "inferred": list(self.inferred), "context": list(self.context),
                **asdict(self.params)}

    def observation_context(self) -> Tensor | None:
        """The protocol's values named by ``simulator.context`` (appended to every summary), or None.

        A network trained on several recordings' protocols at once (one network for many cells)
        must know which protocol produced a summary: the current density of the step and the
        initial potential are what the Allen cells' protocols differ in.
        """
        if not self.context:
            return None
        return torch.tensor([CONTEXT_VALUES[name](self.params) for name in self.context], dtype=torch.float32)

    def trace_axes(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Time (ms), injected current density and its scale to nA (times the soma area)."""
        return self.params.time(), self.params.input_current(), self.params.soma_area * 1e3

    def simulate(self, theta: Tensor, seeds: np.ndarray) -> Tensor:
        theta_np = as_float64_numpy(theta)
        if self.backend == "compiled":
            traces, _ = hh_kernel.run(theta_np, seeds, self.params, traces=True, features=False, inferred=self.inferred)
        else:
            traces = simulate_traces_numpy(theta_np, self._noise(seeds), self.params, self.inferred)
        return to_tensor(traces, torch.float64)

    def can_fuse(self, summary: object) -> bool:
        """True when the kernel can compute ``summary`` itself: the same statistics on the same time axis."""
        request = kernel_fusion(summary)
        return (
            self.backend == "compiled"
            and request is not None
            and request.statistics == hh_kernel.STATISTICS
            and request.timing == self.params.timing
        )

    def simulate_summaries(
        self, theta: Tensor, seeds: np.ndarray, summary: Callable[[Tensor], Tensor]
    ) -> Tensor:
        """The kernel's fused statistics when the summary asks for them, else ``summary(simulate(...))``.

        Unfused, rows are simulated and summarised in sub-batches whose traces fit
        :data:`TRACE_BATCH_BYTES` (one batch for the tutorial's 12,001-step traces).
        """
        context = self.observation_context()
        x = self._summaries(theta, seeds, summary)
        if context is None:
            return x
        x = x.reshape(x.shape[0], -1)
        return torch.cat([x, context.to(x.dtype).expand(x.shape[0], -1)], dim=1)

    def _summaries(self, theta: Tensor, seeds: np.ndarray, summary: Callable[[Tensor], Tensor]) -> Tensor:
        if self.can_fuse(summary):
            _, features = hh_kernel.run(
                as_float64_numpy(theta), seeds, self.params, traces=False, features=True, inferred=self.inferred
            )
            return to_tensor(features)
        rows = max(1, TRACE_BATCH_BYTES // (8 * self.params.num_steps))
        if theta.shape[0] <= rows:
            return summary(self.simulate(theta, seeds))
        seeds = np.asarray(seeds)
        parts = [summary(self.simulate(theta[i : i + rows], seeds[i : i + rows])) for i in range(0, len(seeds), rows)]
        return torch.cat(parts)

    def _noise(self, seeds: np.ndarray) -> np.ndarray:
        """Standard-normal ξ [B, T-1], one generator per row seed."""
        steps = self.params.num_steps - 1
        noise = np.zeros((len(seeds), steps))
        for row, seed in enumerate(np.asarray(seeds, dtype=np.uint64)):
            noise[row] = np.random.default_rng(int(seed)).standard_normal(steps)
        return noise


def check_inferred(inferred: Sequence[str]) -> tuple[str, ...]:
    """``simulator.inferred`` as a tuple: distinct names of :data:`INFERABLE`, at least one."""
    names = (inferred,) if isinstance(inferred, str) else tuple(inferred)
    unknown = [name for name in names if name not in INFERABLE]
    if not names or unknown or len(set(names)) != len(names):
        problem = f"unknown {unknown}" if unknown else ("empty" if not names else "repeated names")
        raise ConfigError(f"simulator.inferred={list(names)}: {problem}; "
                          f"allowed: distinct names of {', '.join(INFERABLE)}")
    return names


#: ``simulator.context`` names: protocol values a summary can carry
CONTEXT_VALUES: dict[str, Callable[[HHParams], float]] = {
    "current_density": lambda p: float(p.current) / p.soma_area,  # µA/cm², the step's
    "V0": lambda p: float(p.V0),  # mV
}


def check_context(context: Sequence[str]) -> tuple[str, ...]:
    """``simulator.context`` as a tuple of distinct names of :data:`CONTEXT_VALUES`."""
    names = (context,) if isinstance(context, str) else tuple(context or ())
    unknown = [name for name in names if name not in CONTEXT_VALUES]
    if unknown or len(set(names)) != len(names):
        problem = f"unknown {unknown}" if unknown else "repeated names"
        raise ConfigError(f"simulator.context={list(names)}: {problem}; allowed: distinct names of "
                          f"{', '.join(CONTEXT_VALUES)} (or [] for none)")
    return names


def check_params(constants: dict[str, float | None]) -> HHParams:
    """The model's constants from config: known keys, a stimulus within the trace, positive dt and area."""
    known = {f.name for f in fields(HHParams)}
    unknown = sorted(set(constants) - known)
    if unknown:
        raise ConfigError(f"simulator.{unknown[0]} is not a constant of the HH model; "
                          f"allowed: {', '.join(sorted(known))}")
    p = HHParams(**constants)
    if not p.dt > 0 or not p.duration >= p.dt:
        raise ConfigError(f"simulator.dt={p.dt}, simulator.duration={p.duration}: need 0 < dt <= duration (ms)")
    if not 0 <= p.t_on <= p.t_off <= p.duration:
        raise ConfigError(
            f"simulator.t_on={p.t_on}, simulator.t_off={p.t_off}: need 0 <= t_on <= t_off <= duration={p.duration} (ms)"
        )
    if not p.soma_area > 0:
        raise ConfigError(f"simulator.soma_area_cm2={p.soma_area_cm2}, simulator.soma_radius_um={p.soma_radius_um}: "
                          "the soma area must be > 0")
    return p
