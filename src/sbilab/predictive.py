"""Posterior-predictive simulations at x_o: summaries (PPC, standardized distance) and raw traces (figures)."""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from sbilab.rng import per_index_seeds
from sbilab.spec import RunSpec

#: raw traces simulated from the first posterior samples, for the predictive-trace figures
NUM_PREDICTIVE_TRACES = 3


def simulate_predictive_traces(spec: RunSpec, samples: Tensor) -> Optional[Tensor]:
    """Raw traces simulated from the first posterior samples (trace simulators with a raw x_o only)."""
    simulator, raw = spec.parts.simulator, spec.observation.raw
    axes = simulator.trace_axes()
    if axes is None or raw is None or raw.numel() != len(axes[0]):
        return None
    seeds = per_index_seeds(spec.seeds.ppc_traces, 0, NUM_PREDICTIVE_TRACES)
    return simulator.simulate(samples[:NUM_PREDICTIVE_TRACES], seeds)


def simulate_predictive(spec: RunSpec, samples: Tensor) -> Tensor:
    """Summaries simulated from the first posterior samples at x_o: ``num_ppc`` of them for the PPC, all of them
    for the standardized distance (row i's seed depends on i alone, so the PPC's rows are the same either way)."""
    settings, parts = spec.diagnostics, spec.parts
    theta = samples if settings.predictive_distance.enabled else samples[: settings.num_ppc]
    return parts.simulator.simulate_summaries(theta, per_index_seeds(spec.seeds.ppc, 0, theta.shape[0]),
                                              parts.summary)
