"""The observation x_o a run conditions on: simulated from θ* (``synthetic``), given (``summary``) or recorded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from sbilab.errors import ObservationError
from sbilab.rng import per_index_seeds
from sbilab.simulators.base import Simulator


@dataclass
class Observation:
    """x_o [d] (float32) and, where known, the true θ* [D] and the raw trace."""

    x: Tensor
    theta: Optional[Tensor] = None
    raw: Optional[Tensor] = None
    source: str = "theta"


def _finite_vector(values: Sequence[float], key: str) -> Tensor:
    try:
        out = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    except (TypeError, ValueError):
        raise ObservationError(f"{key}={values!r}: expected a list of numbers") from None
    if out.numel() == 0 or not torch.isfinite(out).all():
        raise ObservationError(f"{key}={out.tolist()}: expected a non-empty list of finite numbers")
    return out


def read_trace(path: str | Path) -> np.ndarray:
    """A recorded trace from ``.npy`` or CSV/text (one value per line or row), as float64 [T]."""
    path = Path(path)
    if not path.is_file():
        raise ObservationError(f"observation.file={str(path)!r}: no such file")
    try:
        if path.suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            data = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=1)
    except Exception as error:  # numpy raises many types for bad files
        raise ObservationError(
            f"observation.file={str(path)!r}: unreadable ({type(error).__name__}: {error})") from None
    data = np.asarray(data, dtype=np.float64).reshape(-1)
    if data.size == 0:
        raise ObservationError(f"observation.file={str(path)!r}: the file holds no values")
    if not np.isfinite(data).all():
        raise ObservationError(f"observation.file={str(path)!r}: the trace contains NaN or inf")
    return data


def make_observation(simulator: Simulator, summary: Callable[[Tensor], Tensor], settings: Any,
                     x_dim: int) -> Observation:
    """x_o for the ``observation`` option (``synthetic``, ``summary`` or ``recording``), checked against ``x_dim``."""
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
        trace = torch.from_numpy(read_trace(settings.file))[None]
        obs = Observation(x=summary(trace)[0].float(), raw=trace[0], source="file")
    if obs.x.numel() != x_dim:
        raise ObservationError(
            f"observation.{obs.source} gives {obs.x.numel()} summary values but the summary produces {x_dim}"
        )
    if not torch.isfinite(obs.x).all():
        raise ObservationError(f"observation.{obs.source} summarises to non-finite values: {obs.x.tolist()}")
    return obs
