"""The Hodgkin-Huxley neuron of the sbi tutorial as an sbilab simulator.

Parameters are (gbar_Na, gbar_K) in mS/cm²; the output is the membrane potential in
mV on t = 0, dt, ..., duration. Every constant of the model is a field of
:class:`~sbilab.simulators.hh_equations.HHParams` and therefore a config key under
``simulator.``. The equations live in :mod:`sbilab.simulators.hh_equations`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from sbilab.errors import ConfigError
from sbilab.simulators import hh_kernel
from sbilab.simulators.base import Simulator, as_float64_numpy, kernel_fusion, to_tensor
from sbilab.simulators.hh_equations import HHParams, simulate_traces_numpy


class HodgkinHuxley(Simulator):
    """The tutorial's HH neuron; ``simulate`` returns V [B, T] in mV (float64).

    ``backend="compiled"`` uses the C kernel (statistics fused in the same pass when
    the summary asks for them, see :class:`~sbilab.simulators.base.KernelFusion`);
    ``backend="numpy"`` is the readable vectorised NumPy integration.
    """

    parameter_dim = 2
    #: model version + a hash of the C kernel's source: editing the kernel invalidates cached simulations
    version = "1+" + hh_kernel.source_hash()

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
            traces, _ = hh_kernel.run(theta_np, seeds, self.params, traces=True, features=False)
        else:
            traces = simulate_traces_numpy(theta_np, self._noise(seeds), self.params)
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
        """The kernel's fused statistics when the summary asks for them, else ``summary(simulate(...))``."""
        if self.can_fuse(summary):
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
