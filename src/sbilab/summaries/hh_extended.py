"""The tutorial's 7 HH statistics plus 6 spike-shape and spike-timing statistics (13 in all).

Spikes are the tutorial's (:func:`sbilab.summaries.hh_features.spike_count`): index i
is a peak when V[i] > ``threshold``, V[i+1] >= V[i] and V[i+2] < V[i+1], with
t_on < t[i] < t_off; a peak within ``min_isi`` ms of the previous peak belongs to the
same spike. A spike's time is t[i+1] and its peak voltage V[i+1] (the local maximum),
so the number of spikes below always equals the tutorial's spike count.

The extra statistics, in order after the 7 (``FEATURE_NAMES``), with V_rest the mean
potential before the stimulus (the tutorial's ``rest_mean``) and D = t_off − t_on:

- ``spike_latency`` (ms): time of the first spike minus t_on. No spike: D.
- ``isi_mean`` (ms): mean inter-spike interval. Fewer than 2 spikes: D.
- ``isi_cv``: standard deviation (ddof 0) over mean of the inter-spike intervals.
  Fewer than 2 spikes: 0 (one interval gives 0 by the definition).
- ``ap_amplitude`` (mV): mean over spikes of peak voltage minus V_rest. No spike:
  the maximum of V during the stimulus minus V_rest (the largest subthreshold
  depolarisation), so the statistic moves continuously into the spiking regime.
- ``ap_width`` (ms): mean over spikes of the full width at half amplitude — the time
  between the upward and the downward crossing of V_rest + (peak − V_rest)/2 around
  the peak, linearly interpolated between samples; a crossing not found within
  ``width_window`` ms of the peak is taken at that distance. No spike: 0.
- ``adaptation_index``: mean over consecutive intervals of
  (ISI_{k+1} − ISI_k) / (ISI_{k+1} + ISI_k); > 0 when firing slows down.
  Fewer than 3 spikes (fewer than 2 intervals): 0.

All values are finite for every finite trace.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sbilab.errors import ConfigError
from sbilab.simulators.hh_equations import HHParams
from sbilab.summaries.hh_features import FEATURE_NAMES as TUTORIAL_NAMES
from sbilab.summaries.hh_features import hh_feature_array

EXTRA_NAMES = ("spike_latency", "isi_mean", "isi_cv", "ap_amplitude", "ap_width", "adaptation_index")
FEATURE_NAMES = TUTORIAL_NAMES + EXTRA_NAMES

#: spikes whose widths are measured in one vectorised block (bounds memory)
_WIDTH_BLOCK = 4096


def spike_peaks(V: np.ndarray, time: np.ndarray, t_on: float, t_off: float, threshold: float = -10.0,
                min_isi: float = 0.5) -> list[np.ndarray]:
    """Per row, the sample indices of the spike peaks (the tutorial's spikes, see module doc)."""
    a, b, c = V[:, :-2], V[:, 1:-1], V[:, 2:]
    peak = (a > threshold) & (b >= a) & (c < b)
    t_peak = time[:-2]
    peak &= (t_peak > t_on) & (t_peak < t_off)
    out = [np.zeros(0, dtype=np.int64)] * V.shape[0]
    for row in np.flatnonzero(peak.any(axis=1)):
        idx = np.flatnonzero(peak[row])
        keep = np.concatenate(([True], np.diff(t_peak[idx]) > min_isi))
        out[row] = idx[keep] + 1
    return out


def half_widths(V: np.ndarray, rows: np.ndarray, peaks: np.ndarray, levels: np.ndarray, dt: float,
                window: int) -> np.ndarray:
    """Full width (ms) at ``levels`` around each peak (row, sample index), interpolated."""
    widths = np.zeros(len(peaks))
    num_steps = V.shape[1]
    offsets = np.arange(-window, window + 1)
    for start in range(0, len(peaks), _WIDTH_BLOCK):
        sl = slice(start, start + _WIDTH_BLOCK)
        r, p, level = rows[sl], peaks[sl], levels[sl]
        cols = np.clip(p[:, None] + offsets[None, :], 0, num_steps - 1)
        seg = V[r[:, None], cols]  # [S, 2W+1], peak at column `window`
        below = seg < level[:, None]
        # left: last column < window with V below the level; right: first column > window
        left_part = below[:, :window][:, ::-1]
        has_left = left_part.any(axis=1)
        left = window - 1 - np.argmax(left_part, axis=1)
        right_part = below[:, window + 1 :]
        has_right = right_part.any(axis=1)
        right = window + 1 + np.argmax(right_part, axis=1)
        idx = np.arange(len(p))
        # interpolate between the sample below the level and its neighbour towards the peak
        v_l0, v_l1 = seg[idx, left], seg[idx, np.minimum(left + 1, 2 * window)]
        v_r0, v_r1 = seg[idx, np.maximum(right - 1, 0)], seg[idx, right]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac_l = np.where(v_l1 != v_l0, (level - v_l0) / (v_l1 - v_l0), 0.0)
            frac_r = np.where(v_r0 != v_r1, (v_r0 - level) / (v_r0 - v_r1), 0.0)
        t_left = np.where(has_left, left + np.clip(frac_l, 0.0, 1.0), 0.0)
        t_right = np.where(has_right, right - 1 + np.clip(frac_r, 0.0, 1.0), 2.0 * window)
        widths[sl] = (t_right - t_left) * dt
    return widths


def hh_extended_array(V: np.ndarray, p: HHParams, threshold: float = -10.0, min_isi: float = 0.5,
                      width_window: float = 5.0) -> np.ndarray:
    """The 13 statistics of traces V [B, T] (float64) as [B, 13] float64."""
    base = hh_feature_array(V, p)
    time = p.time()
    duration = p.t_off - p.t_on
    rest = base[:, 1]
    batch = V.shape[0]
    peaks = spike_peaks(V, time, p.t_on, p.t_off, threshold, min_isi)

    latency = np.full(batch, duration)
    isi_mean = np.full(batch, duration)
    isi_cv = np.zeros(batch)
    adaptation = np.zeros(batch)
    stim = (time > p.t_on) & (time < p.t_off)
    amplitude = V[:, stim].max(axis=1) - rest
    width = np.zeros(batch)

    counts = np.array([len(k) for k in peaks])
    spiking = np.flatnonzero(counts > 0)
    if len(spiking):
        rows = np.repeat(spiking, counts[spiking])
        all_peaks = np.concatenate([peaks[r] for r in spiking])
        heights = V[rows, all_peaks]
        levels = rest[rows] + 0.5 * (heights - rest[rows])
        window = max(1, int(round(width_window / p.dt)))
        all_widths = half_widths(V, rows, all_peaks, levels, p.dt, window)
        bounds = np.concatenate(([0], np.cumsum(counts[spiking])))
        for j, row in enumerate(spiking):
            sl = slice(bounds[j], bounds[j + 1])
            times = time[all_peaks[sl]]
            latency[row] = times[0] - p.t_on
            amplitude[row] = np.mean(heights[sl] - rest[row])
            width[row] = np.mean(all_widths[sl])
            if len(times) >= 2:
                isi = np.diff(times)
                isi_mean[row] = isi.mean()
                isi_cv[row] = isi.std() / isi.mean()
                if len(isi) >= 2:
                    adaptation[row] = np.mean((isi[1:] - isi[:-1]) / (isi[1:] + isi[:-1]))
    extra = np.stack([latency, isi_mean, isi_cv, amplitude, width, adaptation], axis=1)
    return np.concatenate([base, extra], axis=1)


class HHExtended:
    """Callable summary: traces [B, T] → 13 statistics [B, 13] (float32); see the module doc."""

    names = FEATURE_NAMES

    def __init__(self, duration: float = 120.0, dt: float = 0.01, t_on: float = 10.0, t_off: float = 110.0,
                 threshold: float = -10.0, min_isi: float = 0.5, width_window: float = 5.0) -> None:
        if min_isi <= 0:
            raise ConfigError(f"summary.min_isi={min_isi!r} is invalid: expected a number > 0 (ms)")
        if width_window <= 0:
            raise ConfigError(f"summary.width_window={width_window!r} is invalid: expected a number > 0 (ms)")
        self.params = HHParams(duration=duration, dt=dt, t_on=t_on, t_off=t_off)
        self.threshold = float(threshold)
        self.min_isi = float(min_isi)
        self.width_window = float(width_window)

    @property
    def dim(self) -> int:
        return len(FEATURE_NAMES)

    def __call__(self, traces: Tensor) -> Tensor:
        V = np.asarray(traces.detach().cpu().numpy(), dtype=np.float64).reshape(traces.shape[0], -1)
        out = hh_extended_array(V, self.params, self.threshold, self.min_isi, self.width_window)
        return torch.from_numpy(out.astype(np.float32))
