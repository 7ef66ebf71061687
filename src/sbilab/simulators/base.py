"""The simulator contract shared by every simulator in sbilab.

A simulator maps a batch of parameters to a batch of raw outputs. Randomness is
seeded *per row*: row ``i`` uses ``seeds[i]`` only, so the output of a row does
not depend on the batch it was simulated in, on chunking or on worker count.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from sbilab.rng import per_index_seeds


def row_generators(seeds: np.ndarray) -> list[np.random.Generator]:
    """One independent NumPy generator per row seed."""
    return [np.random.default_rng(int(s)) for s in np.asarray(seeds, dtype=np.uint64)]


@dataclass(frozen=True)
class KernelFusion:
    """What a summary asks of a simulator that can compute statistics inside its own kernel.

    A summary declares it with a ``kernel_fusion`` attribute; a simulator whose kernel
    computes exactly ``statistics`` (names, in order) on the time axis ``timing`` may
    return them without materialising the raw output. Anything else is summarised
    from the raw output, so a simulator never needs to know a summary's type.
    """

    #: names of the statistics, in output order
    statistics: tuple[str, ...]
    #: the time axis the statistics assume (simulator-specific, compared for equality)
    timing: tuple[float, ...]


def kernel_fusion(summary: object) -> Optional[KernelFusion]:
    """The summary's fusion request, or None when it has none."""
    request = getattr(summary, "kernel_fusion", None)
    return request if isinstance(request, KernelFusion) else None


class Simulator(ABC):
    """Batched simulator: ``simulate(theta[B, D], seeds[B]) -> x[B, ...]``."""

    #: number of parameters the simulator takes
    parameter_dim: int
    #: bumped whenever the simulator's numbers change; part of the cache key
    version: str = "1"

    @abstractmethod
    def simulate(self, theta: Tensor, seeds: np.ndarray) -> Tensor:
        """Simulate one output per row of ``theta``; row ``i`` is seeded by ``seeds[i]``."""

    def simulate_summaries(
        self, theta: Tensor, seeds: np.ndarray, summary: Callable[[Tensor], Tensor]
    ) -> Tensor:
        """Summaries of simulations; simulators with a fused kernel override this (see :class:`KernelFusion`)."""
        return summary(self.simulate(theta, seeds))

    #: names of the values ``observation_context`` appends (after the summary's statistics)
    context: tuple[str, ...] = ()

    def observation_context(self) -> Optional[Tensor]:
        """Values that ``simulate_summaries`` appends to every summary (e.g. the settings of the
        experiment it simulates, for a network shared by several experiments), to be appended to an
        observation's summary too; None (most simulators) when there are none."""
        return None

    def trace_axes(self) -> Optional[tuple[np.ndarray, Optional[np.ndarray], float]]:
        """(time, input or None, input scale) for plotting raw outputs as traces, or None."""
        return None

    def reference_posterior(self, x_o: Tensor, num_samples: int, seed: int) -> Optional[Tensor]:
        """Samples of the true posterior at ``x_o`` when known, else ``None``."""
        return None

    def __call__(self, theta: Tensor, seed: int = 0) -> Tensor:
        """Convenience: simulate with per-row seeds derived from one seed."""
        return self.simulate(theta, per_index_seeds(seed, 0, theta.shape[0]))


def as_float64_numpy(theta: Tensor | np.ndarray) -> np.ndarray:
    """Parameters as a C-contiguous float64 array of shape [B, D]."""
    if isinstance(theta, Tensor):
        theta = theta.detach().cpu().numpy()
    return np.ascontiguousarray(np.atleast_2d(theta), dtype=np.float64)


def to_tensor(x: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
    """Simulator output as a tensor (float32, sbi's dtype, unless asked otherwise)."""
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)
