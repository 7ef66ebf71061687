"""The observation x_o a run conditions on: simulated from θ* (``synthetic``), given (``summary``) or recorded.

A recording (``observation=recording``) is read by :mod:`sbilab.recordings`; its stimulus
protocol is merged into the simulator's config by ``sbilab.spec.prepare`` before the
simulator is built, so here it is summarised exactly like a simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from sbilab.errors import ObservationError
from sbilab.recordings import Recording, StepProtocol, allen_recording, read_recording
from sbilab.recordings.allen import CELLS, find_cell_file
from sbilab.rng import per_index_seeds
from sbilab.simulators.base import Simulator


@dataclass
class Observation:
    """x_o [d] (float32) and, where known, the true θ* [D] and the raw trace."""

    x: Tensor
    theta: Optional[Tensor] = None
    raw: Optional[Tensor] = None
    source: str = "theta"  # the observation key that gave x_o: theta, x, file or cell
    recording: Optional[Recording] = None  # observation=recording: the recording (its file, stimulus, cell)


def _finite_vector(values: Sequence[float], key: str) -> Tensor:
    try:
        out = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    except (TypeError, ValueError):
        raise ObservationError(f"{key}={values!r}: expected a list of numbers") from None
    if out.numel() == 0 or not torch.isfinite(out).all():
        raise ObservationError(f"{key}={out.tolist()}: expected a non-empty list of finite numbers")
    return out


def read_observed_recording(settings: Any, directories: Sequence[str | Path] = ()) -> Recording:
    """The recording named by ``observation=recording`` (``observation.file`` or ``observation.cell``), checked.

    A cell is searched among the shipped Allen cells, then in ``directories``
    (``paths.recordings``); it gets the papers' corrections unless the config overrides them.
    Any problem: one ``ObservationError`` line naming the key, the file and the problem.
    """
    step = None
    if settings.step is not None:
        step = StepProtocol(float(settings.step.t_on), float(settings.step.t_off), settings.step.amplitude_pA * 1e-6)
    if settings.cell is not None and settings.cell in CELLS:
        try:
            find_cell_file(settings.cell, directories)
        except ObservationError as error:
            raise ObservationError(f"observation.cell: {error}; name the folder that holds it with "
                                   "paths.recordings=<folder>") from None
    try:
        if settings.cell is not None:
            corrections = {} if settings.junction_potential_mV is None else {
                "junction_potential_mV": settings.junction_potential_mV}
            return allen_recording(settings.cell, directories, soma_area_cm2=settings.soma_area_cm2, **corrections)
        return read_recording(settings.file, dt_ms=settings.dt_ms, step=step, soma_area_cm2=settings.soma_area_cm2,
                              junction_potential_mV=settings.junction_potential_mV or 0.0, series=settings.series)
    except ObservationError as error:
        key = "observation.cell" if settings.cell is not None else "observation.file"
        raise ObservationError(f"{key}: {error}") from None


def make_observation(simulator: Simulator, summary: Callable[[Tensor], Tensor], settings: Any,
                     x_dim: int, recording: Optional[Recording] = None) -> Observation:
    """x_o for the ``observation`` option (``synthetic``, ``summary`` or ``recording``), checked against ``x_dim``.

    ``recording`` is the one ``observation=recording`` names (:func:`read_observed_recording`),
    read before the simulator was built on its protocol.
    """
    if settings.name == "synthetic":
        theta_o = _finite_vector(settings.theta, "observation.theta")
        if theta_o.numel() != simulator.parameter_dim:
            raise ObservationError(
                f"observation.theta has {theta_o.numel()} values but the simulator takes {simulator.parameter_dim}"
            )
        raw = simulator.simulate(theta_o[None], per_index_seeds(settings.seed, 0, 1))
        obs = Observation(x=summary(raw)[0].float(), theta=theta_o, raw=raw[0], source="theta")
    elif settings.name == "summary":
        obs = Observation(x=_finite_vector(settings.x, "observation.x"), source="x")
    else:
        if recording is None:
            raise ValueError("observation=recording: pass the recording read by read_observed_recording")
        trace = torch.from_numpy(recording.voltage_mV)[None]
        source = "cell" if settings.cell is not None else "file"
        obs = Observation(x=summary(trace)[0].float(), raw=trace[0], source=source, recording=recording)
    context = simulator.observation_context()  # what simulate_summaries appends to every simulation's
    if context is not None and (obs.source != "x" or obs.x.numel() == x_dim - context.numel()):
        obs = replace(obs, x=torch.cat([obs.x.reshape(-1), context]))  # a given x: the statistics alone too
    if obs.x.numel() != x_dim:
        with_context = f" (with the simulator's {context.numel()} context values: {x_dim - context.numel()} " \
                       "alone get them appended)" if context is not None else ""
        raise ObservationError(
            f"observation.{obs.source} gives {obs.x.numel()} summary values but the summary produces {x_dim}"
            f"{with_context}"
        )
    if not torch.isfinite(obs.x).all():
        raise ObservationError(f"observation.{obs.source} summarises to non-finite values: {obs.x.tolist()}")
    return obs
