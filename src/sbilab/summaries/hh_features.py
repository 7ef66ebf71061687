"""The 7 summary statistics of the sbi Hodgkin-Huxley tutorial, vectorised over a batch.

Order (as in the tutorial): number of spikes during the stimulus, mean of the
resting potential (t < t_on), standard deviation of the resting potential (last
10 % before t_on), and over t_on < t < t_off: mean, variance (second central
moment), skewness and kurtosis (non-excess).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sbilab.simulators.base import KernelFusion
from sbilab.simulators.hh_equations import MOMENT_STATISTICS, HHParams

FEATURE_NAMES = MOMENT_STATISTICS


def spike_count(V: np.ndarray, time: np.ndarray, t_on: float, t_off: float, threshold: float = -10.0,
                min_isi: float = 0.5) -> np.ndarray:
    """Peaks above ``threshold`` with t_on < t < t_off, at most one per ``min_isi`` ms.

    The tutorial's rule: index i is a peak when V[i] > threshold, V[i+1] >= V[i]
    and V[i+2] < V[i+1]; its time is t[i]. A peak closer than ``min_isi`` to the
    previous detected peak is not counted.
    """
    a, b, c = V[:, :-2], V[:, 1:-1], V[:, 2:]
    peak = (a > threshold) & (b >= a) & (c < b)
    t_peak = time[:-2]
    peak &= (t_peak > t_on) & (t_peak < t_off)
    counts = np.zeros(V.shape[0])
    for row in np.flatnonzero(peak.any(axis=1)):
        times = t_peak[peak[row]]
        counts[row] = 1 + np.count_nonzero(np.diff(times) > min_isi)
    return counts


def hh_feature_array(V: np.ndarray, p: HHParams) -> np.ndarray:
    """The 7 statistics of traces V [B, T] (float64) as [B, 7] float64."""
    time = p.time()
    rest = V[:, : p.i_on]
    rest_tail = V[:, int(0.9 * p.t_on / p.dt) : int(p.t_on / p.dt)]
    window = V[:, (time > p.t_on) & (time < p.t_off)]
    mean = window.mean(axis=1)
    centred = window - mean[:, None]
    var = np.mean(centred**2, axis=1)
    std = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.mean(centred**3, axis=1) / std**3
        kurt = np.mean(centred**4, axis=1) / std**4
    return np.stack(
        [spike_count(V, time, p.t_on, p.t_off), rest.mean(axis=1), rest_tail.std(axis=1), mean, var, skew, kurt],
        axis=1,
    )


class HHFeatures:
    """Callable summary: traces [B, T] -> the tutorial's 7 statistics [B, 7] (float32).

    It declares :attr:`kernel_fusion`, so the HH simulator's compiled kernel computes
    the same statistics in its pass when its time axis is this summary's.
    """

    names = FEATURE_NAMES

    def __init__(self, duration: float = 120.0, dt: float = 0.01, t_on: float = 10.0, t_off: float = 110.0) -> None:
        self.params = HHParams(duration=duration, dt=dt, t_on=t_on, t_off=t_off)

    @property
    def dim(self) -> int:
        return len(FEATURE_NAMES)

    @property
    def kernel_fusion(self) -> KernelFusion:
        """These statistics on this time axis (a kernel that computes them may fuse them)."""
        return KernelFusion(statistics=FEATURE_NAMES, timing=self.params.timing)

    def __call__(self, traces: Tensor) -> Tensor:
        V = np.asarray(traces.detach().cpu().numpy(), dtype=np.float64)
        return torch.from_numpy(hh_feature_array(V, self.params).astype(np.float32))
