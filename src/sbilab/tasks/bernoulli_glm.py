"""sbibm's bernoulli_glm and bernoulli_glm_raw: a Bernoulli GLM neuron driven by a white-noise stimulus.

θ = (offset, 9 filter weights) has sbibm's smoothness prior N(0, B⁻¹) (``prior_precision``). Over
100 time bins the neuron spikes with probability σ(X θ), X the design matrix [100, 10] (a column of
ones, then the stimulus delayed by 0..8 bins). ``simulate_raw`` returns the spike train y [100]
(bernoulli_glm_raw); ``simulate`` its 10 summaries (bernoulli_glm): the spike count and the
stimulus correlated with the spikes at lags 0..8, sbibm's ``conv1d(y, stimulus, padding=8)[-9:]``.
Both are Xᵀ y, the sufficient statistics of the GLM.

X and the stimulus are sbibm's own numbers (``data/bernoulli_glm.npz``, see ``data/README.md``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

DATA = Path(__file__).with_name("data") / "bernoulli_glm.npz"
#: number of time bins and of parameters (offset + filter)
NUM_BINS = 100
DIM = 10


def _read_only(key: str) -> np.ndarray:
    """One array of the shipped sbibm data, as float64 of its float32 values, read-only."""
    with np.load(DATA) as data:
        values = data[key].astype(np.float64)
    values.setflags(write=False)
    return values


@lru_cache(maxsize=1)
def design_matrix() -> np.ndarray:
    """sbibm's design matrix X [100, 10] (float64 of its float32 values; read-only)."""
    return _read_only("design_matrix")


@lru_cache(maxsize=1)
def stimulus() -> np.ndarray:
    """sbibm's white-noise stimulus I [100] (seed 42; read-only)."""
    return _read_only("stimulus_I")


def prior_precision() -> np.ndarray:
    """sbibm's prior precision B⁻¹ [10, 10]: 0.5 for the offset; FᵀF for the filter, F = D² + diag(√(i/9))."""
    m = DIM - 1
    d = np.eye(m) - np.eye(m, k=-1)
    f = d @ d + np.diag(np.sqrt(np.arange(m) / m))
    precision = np.zeros((DIM, DIM))
    precision[0, 0] = 0.5
    precision[1:, 1:] = f.T @ f
    return precision


def spike_probability(theta: np.ndarray) -> np.ndarray:
    """σ(X θ) [B, 100] for θ [B, 10]."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(theta, dtype=np.float64) @ design_matrix().T)))


def summarise(spikes: np.ndarray) -> np.ndarray:
    """[spike count, Σ_t y[t+k] I[t] for k = 0..8] [B, 10] of spike trains [B, 100]: Xᵀ y."""
    return np.asarray(spikes, dtype=np.float64) @ design_matrix()


def simulate_raw(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The spike trains y [B, 100] (0.0 or 1.0) for θ [B, 10] (bernoulli_glm_raw)."""
    probability = spike_probability(theta)
    return (rng.random(probability.shape) < probability).astype(np.float64)


def simulate(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 10 summaries [B, 10] of the spike trains for θ [B, 10] (bernoulli_glm)."""
    return summarise(simulate_raw(theta, rng))


def log_likelihood_raw(theta: np.ndarray, spikes: np.ndarray) -> np.ndarray:
    """log p(y | θ) per row: Σ_t y_t ψ_t - log(1 + e^ψ_t), ψ = X θ (θ and y broadcast)."""
    psi = np.asarray(theta, dtype=np.float64) @ design_matrix().T
    return (np.asarray(spikes, dtype=np.float64) * psi - np.logaddexp(0.0, psi)).sum(-1)
