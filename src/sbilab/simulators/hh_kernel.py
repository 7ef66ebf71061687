"""Python side of the compiled Hodgkin-Huxley kernel (``_hh_kernel.c``).

:func:`run` integrates the model of :func:`~sbilab.simulators.hh_equations.simulate_traces_numpy`
in C, with the tutorial's 7 summary statistics (:data:`STATISTICS`) streamed in the same pass. The
library is called through :mod:`ctypes`, which releases the GIL for the call, so
threads (``num_threads``) and worker processes both run it in parallel.

Row ``i`` of the output depends only on ``(theta[i], seeds[i], params)``: every
simulation goes through the same vector code (incomplete blocks are padded), and its
noise comes from its own xoshiro256++ stream seeded by ``seeds[i]`` (not NumPy's).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from sbilab.simulators.hh_equations import (
    INFERABLE,
    MOMENT_STATISTICS,
    TUTORIAL_INFERRED,
    HHParams,
    gate_rates,
    row_constants,
)

#: The statistics the kernel computes in its pass (names, in output order).
STATISTICS = MOMENT_STATISTICS

#: Rows per call into C: bounds the work between checks for Ctrl-C and shares work between threads.
CHUNK_ROWS = 1024
#: The tutorial's spike rule (hh_features.spike_count defaults).
SPIKE_THRESHOLD = -10.0
MIN_ISI = 0.5
#: Columns of one simulation's row (mirrors HH_ROW_* in the C source): the inferable constants, then the gates at rest.
ROW_COLUMNS = INFERABLE + ("m0", "h0", "n0", "p0")


class _Config(ctypes.Structure):
    """Mirror of ``hh_config`` in ``_hh_kernel.c`` (checked against its ``sizeof``)."""

    _fields_ = [
        *[(name, ctypes.c_double) for name in (
            "dt", "V0", "E_Na", "E_K", "C", "g_leak", "gbar_M", "tau_max", "V_T", "E_leak", "noise_scale",
            "spike_threshold", "min_isi",
        )],
        *[(name, ctypes.c_int64) for name in (
            "per_row", "num_steps", "rest_end", "tail_start", "tail_end", "stim_start", "stim_end",
        )],
    ]


def source_hash() -> str:
    """First 12 hex digits of the kernel source's sha256 ('nosource' when it is not shipped)."""
    source = Path(__file__).with_name("_hh_kernel.c")
    return hashlib.sha256(source.read_bytes()).hexdigest()[:12] if source.exists() else "nosource"


@functools.cache
def _library() -> ctypes.CDLL:
    """The compiled kernel; a clear error when the extension has not been built."""
    try:
        extension = importlib.import_module("sbilab.simulators._hh_kernel")
    except ImportError as exc:
        raise ImportError(
            "The compiled Hodgkin-Huxley kernel (sbilab.simulators._hh_kernel) is not built. "
            "Build it with `pip install -e .` (or `python setup.py build_ext --inplace`) from the "
            "repository root, or use simulator.backend=numpy."
        ) from exc
    lib = ctypes.CDLL(extension.__file__)
    lib.hh_simulate.restype = ctypes.c_int
    lib.hh_simulate.argtypes = [ctypes.POINTER(_Config), ctypes.c_int64] + [ctypes.c_void_p] * 6
    lib.hh_lanes.restype = ctypes.c_int
    lib.hh_config_size.restype = ctypes.c_int64
    lib.hh_row_columns.restype = ctypes.c_int
    if lib.hh_config_size() != ctypes.sizeof(_Config) or lib.hh_row_columns() != len(ROW_COLUMNS):
        raise ImportError("sbilab.simulators._hh_kernel is stale (config layout differs); rebuild it.")
    return lib


def lanes() -> int:
    """Simulations the kernel advances together (one SIMD block)."""
    return int(_library().hh_lanes())


def _slice_bounds(start: int, stop: int, size: int) -> tuple[int, int]:
    """``[start:stop]`` of a length-``size`` axis as a (possibly empty) half-open range."""
    lo, hi, _ = slice(start, stop).indices(size)
    return lo, max(lo, hi)


def _config(p: HHParams, per_row: bool) -> _Config:
    """The constants shared by all rows and the index ranges, taken exactly as hh_feature_array takes them.

    ``per_row``: whether constants other than gbar_Na and gbar_K vary between rows
    (then the kernel reads them from the rows instead of from here).
    """
    steps = p.num_steps
    time = p.time()
    stim = np.flatnonzero((time > p.t_on) & (time < p.t_off))  # contiguous: time is increasing
    stim_start, stim_end = (int(stim[0]), int(stim[-1]) + 1) if stim.size else (0, 0)
    rest_end = _slice_bounds(0, p.i_on, steps)[1]
    tail_start, tail_end = _slice_bounds(int(0.9 * p.t_on / p.dt), int(p.t_on / p.dt), steps)
    return _Config(
        dt=p.dt, V0=p.V0, E_Na=p.E_Na, E_K=p.E_K, C=p.C, g_leak=p.g_leak, gbar_M=p.gbar_M, tau_max=p.tau_max,
        V_T=p.V_T, E_leak=p.E_leak, noise_scale=p.noise_scale, per_row=int(per_row),
        spike_threshold=SPIKE_THRESHOLD, min_isi=MIN_ISI,
        num_steps=steps, rest_end=rest_end, tail_start=tail_start, tail_end=tail_end,
        stim_start=stim_start, stim_end=stim_end,
    )


def kernel_rows(theta: np.ndarray, p: HHParams, inferred: tuple[str, ...]) -> np.ndarray:
    """One row per simulation (:data:`ROW_COLUMNS`): its constants and its gates at rest, C-contiguous.

    The gates at rest depend on V_T only; they are computed once per distinct V_T,
    with the NumPy kinetics of :func:`gate_rates`.
    """
    constants = row_constants(theta, p, inferred)
    V_T = constants[:, INFERABLE.index("V_T")]
    unique, index = np.unique(V_T, return_inverse=True)
    rest = gate_rates(np.full(unique.shape, p.V0), unique, p.tau_max)
    gates = np.stack([rest[q][0] for q in ("m", "h", "n", "p")], axis=1)[index.reshape(-1)]
    return np.ascontiguousarray(np.concatenate([constants, gates], axis=1))


def _finish_features(raw: np.ndarray, cfg: _Config) -> np.ndarray:
    """The 7 statistics from the kernel's accumulators (same formulas as hh_feature_array)."""
    n_rest = cfg.rest_end
    n_tail = cfg.tail_end - cfg.tail_start
    n_stim = cfg.stim_end - cfg.stim_start
    with np.errstate(divide="ignore", invalid="ignore"):
        rest_mean = raw[:, 1] / n_rest if n_rest else np.full(len(raw), np.nan)
        rest_std = np.sqrt(raw[:, 2] / n_tail) if n_tail else np.full(len(raw), np.nan)
        if n_stim:
            mean, var = raw[:, 3], raw[:, 4] / n_stim
            std = np.sqrt(var)
            skew = (raw[:, 5] / n_stim) / std**3
            kurt = (raw[:, 6] / n_stim) / std**4
        else:
            mean = var = skew = kurt = np.full(len(raw), np.nan)
    return np.stack([raw[:, 0], rest_mean, rest_std, mean, var, skew, kurt], axis=1)


def run(
    theta: np.ndarray,
    seeds: np.ndarray,
    params: HHParams,
    *,
    traces: bool,
    features: bool,
    inferred: tuple[str, ...] = TUTORIAL_INFERRED,
    num_threads: int = 1,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Simulate HH neurons for theta [B, len(inferred)] with per-row seeds [B].

    ``inferred`` names θ's columns (default: the tutorial's gbar_Na, gbar_K); the
    other constants come from ``params``. Returns ``(V [B, T] float64 or None,
    features [B, 7] float64 or None)``; the features are the 7 statistics of
    ``hh_features.hh_feature_array``, computed in the same pass. Memory beyond the
    outputs is O(1) per thread (the time axis and current, [T], are shared), so
    features of 72,500-step traces cost no more memory than of short ones.
    ``num_threads`` splits the batch over threads (default 1: worker processes stay
    single-threaded).
    """
    lib = _library()
    theta = np.ascontiguousarray(theta, dtype=np.float64)
    seeds = np.ascontiguousarray(seeds, dtype=np.uint64)
    rows = kernel_rows(theta, params, inferred)
    if seeds.shape != (theta.shape[0],):
        raise ValueError(f"seeds must be [B] = [{theta.shape[0]}], got shape {seeds.shape}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")

    batch, steps = theta.shape[0], params.num_steps
    cfg = _config(params, per_row=not set(inferred) <= set(TUTORIAL_INFERRED))
    current = np.ascontiguousarray(params.input_current(), dtype=np.float64)
    time = np.ascontiguousarray(params.time(), dtype=np.float64)
    V = np.empty((batch, steps)) if traces else None
    raw = np.empty((batch, 7)) if features else None

    # Chunks of whole SIMD blocks, small enough that every thread gets work.
    block = int(lib.hh_lanes())
    per_thread = -(-batch // num_threads)
    chunk = max(block, min(CHUNK_ROWS, -(-per_thread // block) * block))

    def simulate(start: int) -> None:
        stop = min(start + chunk, batch)
        status = lib.hh_simulate(
            ctypes.byref(cfg), stop - start,
            rows[start:stop].ctypes.data, seeds[start:stop].ctypes.data,
            current.ctypes.data, time.ctypes.data,
            None if V is None else V[start:stop].ctypes.data,
            None if raw is None else raw[start:stop].ctypes.data,
        )
        if status != 0:
            raise RuntimeError(f"hh_simulate failed with status {status}")

    starts = range(0, batch, chunk)
    if num_threads == 1 or len(starts) == 1:
        for start in starts:
            simulate(start)
    else:
        with ThreadPoolExecutor(max_workers=num_threads) as pool:
            list(pool.map(simulate, starts))
    return V, None if raw is None else _finish_features(raw, cfg)
