"""A user's plain Python function as an sbilab simulator.

Scientists have a function, not a class: ``simulate(theta, rng) -> x``. This adapter gives it the
:class:`~sbilab.simulators.base.Simulator` contract (per-row seeds, chunks, worker processes, the
content-addressed cache) without the user writing any of it:

- **one θ at a time** (``vectorized: false``, the default): ``fn(theta[D], rng) -> x[...]`` is called
  once per row with ``numpy.random.default_rng(seeds[i])``, so a row's x depends only on (θ_i, seed_i),
  never on the chunk or the number of workers;
- **batched** (``vectorized: true``): ``fn(theta[B, D], rng) -> x[B, ...]`` is called once per chunk with
  a generator seeded by all of the chunk's row seeds; chunks are fixed by ``simulation.chunk_size``
  and the seed, so the same config reproduces the same numbers (changing ``chunk_size`` changes them);
- ``array: torch`` passes θ as a float64 tensor instead of a NumPy array; the output may be a NumPy
  array, a tensor, a list or a number. A function that takes no ``rng`` argument is run with NumPy's
  and torch's global generators seeded from the same seeds (and restored afterwards);
- a row whose simulation raises becomes NaN (``on_error: nan``, dropped and counted as invalid like a
  NaN the function returns itself); a function that raises on every row of a chunk is a bug, and its
  error is raised with the θ it failed on. ``on_error: raise`` raises on the first failure.

The cache key includes a digest of the function's source file, so editing the function never serves x
simulated by the old code; ``version`` is for changes outside that file (a data file it reads).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from sbilab.errors import ConfigError
from sbilab.simulators.base import Simulator, as_float64_numpy, to_tensor

log = logging.getLogger(__name__)

ON_ERROR = ("nan", "raise")
ARRAYS = ("numpy", "torch")


class SimulatorFunctionError(RuntimeError):
    """The user's simulator function failed (every row of a chunk, or any row with ``on_error: raise``)."""


def resolve_function(path: str, key: str = "simulator.fn") -> Callable[..., Any]:
    """``"package.module:function"`` (or ``package.module.function``) → the function; one line if it is not there."""
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{key} is not set: name your function as package.module:function "
                          f"(e.g. {key}=mypkg.sim:simulate)")
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attribute:
        raise ConfigError(f"{key}={path!r}: expected package.module:function (e.g. mypkg.sim:simulate)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{key}={path!r}: cannot import {module_name!r} ({error}); is its folder on "
                          "PYTHONPATH or the package installed (pip install -e .)?") from None
    fn = getattr(module, attribute, None)
    if not callable(fn):
        raise ConfigError(f"{key}={path!r}: module {module_name!r} has no function {attribute!r}")
    return fn


def _source_digest(fn: Callable[..., Any]) -> str:
    """Digest of the file that defines ``fn`` (its code is part of the cache key)."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    if path is None or not Path(path).is_file():
        return "unknown"
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _takes_rng(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts a second positional argument (the generator)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


@contextmanager
def _global_generators_seeded(seed_words: np.ndarray) -> Iterator[None]:
    """NumPy's and torch's global generators seeded from ``seed_words`` for the block, then restored."""
    state = np.random.get_state()
    seed = int(np.random.SeedSequence([int(s) for s in seed_words]).generate_state(1)[0])
    np.random.seed(seed)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        np.random.set_state(state)


class FunctionSimulator(Simulator):
    """A plain function ``fn(theta, rng) -> x`` run with sbilab's per-row seeding (see the module docstring)."""

    def __init__(self, fn: str, vectorized: bool = False, array: str = "numpy", on_error: str = "nan",
                 parameter_dim: Optional[int] = None, version: str = "1") -> None:
        if array not in ARRAYS:
            raise ConfigError(f"simulator.array={array!r}: allowed: {', '.join(ARRAYS)}")
        if on_error not in ON_ERROR:
            raise ConfigError(f"simulator.on_error={on_error!r}: allowed: {', '.join(ON_ERROR)}")
        if parameter_dim is not None and (not isinstance(parameter_dim, int) or parameter_dim < 1):
            raise ConfigError(f"simulator.parameter_dim={parameter_dim!r}: expected an integer >= 1 or null "
                              "(null: as many as the prior has)")
        self.fn_path = fn
        self.fn = resolve_function(fn)
        self.vectorized = bool(vectorized)
        self.array = array
        self.on_error = on_error
        self.parameter_dim = parameter_dim  # type: ignore[assignment]
        self.takes_rng = _takes_rng(self.fn)
        self._last_error: Optional[tuple[np.ndarray, Exception]] = None  # the latest θ that raised, for messages
        self.version = f"{version}:{_source_digest(self.fn)}"

    def __getstate__(self) -> dict[str, Any]:  # worker processes import the function again by name
        return {k: v for k, v in self.__dict__.items() if k != "fn"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.fn = resolve_function(self.fn_path)

    def simulate(self, theta: Tensor, seeds: np.ndarray) -> Tensor:
        theta_np = as_float64_numpy(theta)
        seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)
        if self.vectorized:
            x = self._simulate_batch(theta_np, seeds)
        else:
            x = self._stack([self._simulate_row(theta_np[i], seeds[i : i + 1]) for i in range(len(theta_np))])
        return to_tensor(x)

    # -- calling the user's function --------------------------------------------------------------

    def _call(self, theta: np.ndarray, seed_words: np.ndarray) -> np.ndarray:
        argument: Any = torch.from_numpy(theta.copy()) if self.array == "torch" else theta.copy()
        if self.takes_rng:
            out = self.fn(argument, np.random.default_rng([int(s) for s in seed_words]))
        else:
            with _global_generators_seeded(seed_words):
                out = self.fn(argument)
        if isinstance(out, Tensor):
            out = out.detach().cpu().numpy()
        return np.asarray(out, dtype=np.float64)

    def _simulate_row(self, theta: np.ndarray, seed_words: np.ndarray) -> Optional[np.ndarray]:
        """One row's x, or None when the function raised (``on_error: nan``)."""
        try:
            return self._call(theta, seed_words)
        except Exception as error:  # the user's code: any exception is that θ's failure
            if self.on_error == "raise":
                raise SimulatorFunctionError(f"simulator.fn={self.fn_path} raised at theta={theta.tolist()}: "
                                             f"{type(error).__name__}: {error}") from error
            self._last_error = (theta, error)
            return None

    def _simulate_batch(self, theta: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        try:
            x = self._call(theta, seeds)
        except Exception:
            if self.on_error == "raise":
                raise
            # find the rows that fail: one at a time, each seeded by its own row seed
            return self._stack([self._simulate_row(theta[i : i + 1], seeds[i : i + 1]) for i in range(len(theta))],
                               squeeze_rows=True)
        if x.ndim == 0 or x.shape[0] != theta.shape[0]:
            raise SimulatorFunctionError(
                f"simulator.fn={self.fn_path} (vectorized: true) returned shape {list(x.shape)} for "
                f"{theta.shape[0]} parameter rows; a batched function returns one row per θ row "
                "(or set simulator.vectorized=false to be called one θ at a time)")
        return x

    def _stack(self, rows: list[Optional[np.ndarray]], squeeze_rows: bool = False) -> np.ndarray:
        """Rows (None: failed) → [B, ...] with NaN rows where the function raised."""
        shaped = [r[0] if (squeeze_rows and r is not None) else r for r in rows]
        good = [r for r in shaped if r is not None]
        if not good:
            theta, error = self._last_error
            raise SimulatorFunctionError(
                f"simulator.fn={self.fn_path} raised on every θ of a chunk of {len(rows)} (first at "
                f"theta={np.atleast_1d(theta).reshape(-1).tolist()}): {type(error).__name__}: {error}") from error
        shape = good[0].shape
        for r in good:
            if r.shape != shape:
                raise SimulatorFunctionError(f"simulator.fn={self.fn_path} returned x of shapes {list(shape)} "
                                             f"and {list(r.shape)}: every θ must give x of the same shape")
        failed = sum(r is None for r in shaped)
        if failed:
            theta, error = self._last_error
            log.warning("simulator.fn=%s raised on %d of %d θ (kept as NaN, dropped as invalid); last at theta=%s: "
                        "%s: %s", self.fn_path, failed, len(rows), np.atleast_1d(theta).reshape(-1).tolist(),
                        type(error).__name__, error)
        return np.stack([r if r is not None else np.full(shape, np.nan) for r in shaped])
