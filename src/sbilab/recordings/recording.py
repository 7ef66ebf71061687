"""A recorded current-clamp trace with its stimulus, checked, and the simulator protocol it implies.

A :class:`Recording` is what every reader returns: the membrane potential (mV), its
sampling interval (ms), the stimulus as a single rectangular step (:class:`StepProtocol`,
detected from the injected current trace or given explicitly) and where it came from.
:func:`make_recording` builds one and refuses, with one line naming the file and the
problem, a trace with NaNs, a truncated trace, and a stimulus that is not a single
step. :func:`protocol_keys` turns it into the HH simulator's protocol keys, so that
x_o and every simulation share one time axis and one stimulus.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from sbilab.errors import ObservationError
from sbilab.simulators.hh_equations import HHParams

#: Relative deviation from the step's amplitude tolerated inside and outside the step.
STEP_TOLERANCE = 0.05


@dataclass(frozen=True)
class StepProtocol:
    """A single current step: on for t_on <= t < t_off (ms, on the sample grid), ``amplitude_uA`` µA."""

    t_on_ms: float
    t_off_ms: float
    amplitude_uA: float


@dataclass(frozen=True)
class Recording:
    """A current-clamp recording: V(t) on t = i·dt, its step stimulus, and its origin."""

    voltage_mV: np.ndarray  # [T] float64; the junction potential already added
    dt_ms: float
    step: StepProtocol
    source: str  # the file it was read from
    cell_id: str
    current_uA: Optional[np.ndarray] = None  # [T] float64 when the file holds the injected current
    sweep_number: Optional[int] = None
    soma_area_cm2: Optional[float] = None  # the cell's membrane area, when known
    junction_potential_mV: float = 0.0  # offset added to the file's voltages

    @property
    def num_samples(self) -> int:
        return int(self.voltage_mV.shape[0])

    @property
    def duration_ms(self) -> float:
        """Time of the last sample (the first is at 0)."""
        return _on_grid((self.num_samples - 1) * self.dt_ms)

    def time_ms(self) -> np.ndarray:
        """The time axis ``i * dt`` (ms), as the simulator's."""
        return np.arange(self.num_samples) * self.dt_ms

    def digest(self) -> str:
        """sha256 of the source file (first 16 hex digits): which bytes the run used."""
        return hashlib.sha256(Path(self.source).read_bytes()).hexdigest()[:16]

    def metadata(self) -> dict[str, str | float | int]:
        """Flat description for run records (source, cell, sampling, stimulus, corrections, digest)."""
        out: dict[str, str | float | int] = {
            "source": self.source,
            "cell_id": self.cell_id,
            "digest": self.digest(),
            "num_samples": self.num_samples,
            "dt_ms": self.dt_ms,
            "t_on_ms": self.step.t_on_ms,
            "t_off_ms": self.step.t_off_ms,
            "amplitude_pA": self.step.amplitude_uA * 1e6,
            "junction_potential_mV": self.junction_potential_mV,
        }
        if self.sweep_number is not None:
            out["sweep_number"] = self.sweep_number
        if self.soma_area_cm2 is not None:
            out["soma_area_cm2"] = self.soma_area_cm2
        return out


def _on_grid(t: float) -> float:
    """A time computed as i·dt, rounded to 1e-9 ms: config values read 205.0, not 205.00000000000003."""
    return round(float(t), 9)


def _finite(values: np.ndarray, name: str, dt: float, source: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ObservationError(f"{source}: the {name} trace must be a non-empty 1-D series, got shape {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ObservationError(f"{source}: the {name} trace has {bad.size} NaN/inf samples "
                               f"(first at sample {bad[0]}, t = {bad[0] * dt:.2f} ms)")
    return values


def detect_step(current_uA: np.ndarray, dt_ms: float, source: str, tolerance: float = STEP_TOLERANCE) -> StepProtocol:
    """The single rectangular step in an injected-current trace, or an error naming what is not one.

    Samples with |I| above ``tolerance`` of the peak are 'active'; they must form one
    contiguous run that starts after the first sample, ends before the last one, and
    stays within ``tolerance`` of its mean (the amplitude).
    """
    peak = float(np.max(np.abs(current_uA)))
    if peak == 0.0:
        raise ObservationError(f"{source}: the injected current is zero throughout; supported stimulus: a single step")
    active = np.abs(current_uA) > tolerance * peak
    starts = np.flatnonzero(np.diff(active.astype(np.int8)) == 1) + 1
    pulses = len(starts) + int(active[0])
    if pulses > 1:
        raise ObservationError(f"{source}: the stimulus has {pulses} separate pulses; supported: a single step")
    first, last = np.flatnonzero(active)[[0, -1]]
    inside = current_uA[first : last + 1]
    amplitude = float(inside.mean())
    deviation = float(np.max(np.abs(inside - amplitude))) / abs(amplitude)
    if deviation > tolerance:
        raise ObservationError(f"{source}: the stimulus is not a constant step (the current varies by "
                               f"{100 * deviation:.0f}% of its mean during it); supported: a single rectangular step")
    if first == 0:
        raise ObservationError(f"{source}: the step starts at the first sample; the statistics need a resting "
                               "period before it")
    if last == current_uA.shape[0] - 1:
        raise ObservationError(f"{source}: the trace ends during the step (at {_on_grid(last * dt_ms)} ms): "
                               "truncated trace?")
    return StepProtocol(_on_grid(first * dt_ms), _on_grid((last + 1) * dt_ms), amplitude)


def make_recording(
    voltage_mV: np.ndarray,
    dt_ms: float,
    source: str | Path,
    *,
    current_uA: Optional[np.ndarray] = None,
    step: Optional[StepProtocol] = None,
    cell_id: Optional[str] = None,
    sweep_number: Optional[int] = None,
    soma_area_cm2: Optional[float] = None,
    junction_potential_mV: float = 0.0,
) -> Recording:
    """A checked :class:`Recording`; the stimulus from ``current_uA`` (a step is detected) or ``step``."""
    source = str(source)
    if not (isinstance(dt_ms, (int, float, np.floating)) and np.isfinite(dt_ms) and dt_ms > 0):
        raise ObservationError(f"{source}: the sampling interval dt={dt_ms!r} ms is not a positive number")
    dt_ms = float(dt_ms)
    voltage = _finite(voltage_mV, "voltage", dt_ms, source)
    current = None
    if current_uA is not None:
        current = _finite(current_uA, "current", dt_ms, source)
        if current.shape != voltage.shape:
            raise ObservationError(f"{source}: the voltage has {voltage.size} samples but the current {current.size}: "
                                   "truncated trace?")
        detected = detect_step(current, dt_ms, source)
        if step is not None and not _same_step(step, detected, dt_ms):
            raise ObservationError(f"{source}: the stimulus in the file ({_describe(detected)}) differs from the one "
                                   f"given ({_describe(step)})")
        step = detected
    if step is None:
        raise ObservationError(f"{source}: no stimulus: the file holds no current trace and no step was given "
                               "(t_on, t_off, amplitude)")
    duration = _on_grid((voltage.size - 1) * dt_ms)
    if not 0 < step.t_on_ms < step.t_off_ms:
        raise ObservationError(f"{source}: the step ({_describe(step)}) needs 0 < t_on < t_off")
    if step.t_off_ms >= duration:
        raise ObservationError(f"{source}: the stimulus ends at {step.t_off_ms} ms but the trace at {duration} ms: "
                               "truncated trace?")
    if soma_area_cm2 is not None and not soma_area_cm2 > 0:
        raise ObservationError(f"{source}: the soma area {soma_area_cm2!r} cm² is not a positive number")
    return Recording(voltage + junction_potential_mV, dt_ms, step, source, str(cell_id or Path(source).stem),
                     current, sweep_number, soma_area_cm2, float(junction_potential_mV))


def _same_step(a: StepProtocol, b: StepProtocol, dt_ms: float) -> bool:
    """Within one sample in time and ``STEP_TOLERANCE`` in amplitude."""
    return (abs(a.t_on_ms - b.t_on_ms) <= 1.5 * dt_ms and abs(a.t_off_ms - b.t_off_ms) <= 1.5 * dt_ms
            and abs(a.amplitude_uA - b.amplitude_uA) <= STEP_TOLERANCE * abs(b.amplitude_uA))


def _describe(step: StepProtocol) -> str:
    return f"{step.amplitude_uA * 1e6:g} pA from {step.t_on_ms} to {step.t_off_ms} ms"


def protocol_keys(recording: Recording) -> dict[str, float]:
    """The HH simulator's keys for this recording's protocol (set them under ``simulator.``).

    duration, dt, t_on, t_off and current (µA) reproduce the recording's time axis and
    step sample for sample; V0 is its first sample (the initial condition Gonçalves
    et al. 2020 use); soma_area_cm2 is included when the recording knows the cell's
    area. A summary that follows the simulator's time axis then summarises x_o and
    every simulation identically.
    """
    keys = {
        "duration": recording.duration_ms,
        "dt": recording.dt_ms,
        "t_on": recording.step.t_on_ms,
        "t_off": recording.step.t_off_ms,
        "current": recording.step.amplitude_uA,
        "V0": float(recording.voltage_mV[0]),
    }
    if recording.soma_area_cm2 is not None:
        keys["soma_area_cm2"] = float(recording.soma_area_cm2)
    params = HHParams(**keys)
    first, last = round(recording.step.t_on_ms / recording.dt_ms), round(recording.step.t_off_ms / recording.dt_ms)
    if (params.num_steps, params.i_on, params.i_off) != (recording.num_samples, first, last):
        raise ObservationError(f"{recording.source}: the protocol does not map onto the simulator's grid "
                               f"({params.num_steps} steps, step {params.i_on}..{params.i_off}; recording "
                               f"{recording.num_samples} samples, step {first}..{last})")
    return keys
