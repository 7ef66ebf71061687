"""sbibm's sir: an SIR epidemic observed as binomial counts of the infected at ten days.

θ = (β, γ), the contact rate and the mean recovery rate (1/days), with sbibm's log-normal prior
(log β ~ N(log 0.4, 0.5²), log γ ~ N(log 0.125, 0.2²)). In a population N = 10⁶ starting from
(S, I, R) = (N - 1, 1, 0):

    dS/dt = -β S I / N,    dI/dt = β S I / N - γ I,    dR/dt = γ I.

sbibm solves this in Julia (Tsit5, rtol = atol = 1e-8, saved daily over 160 days), keeps I at every
17th saved day (days 0, 17, ..., 153) and draws x_k ~ Binomial(1000, clamp(I(t_k) / N, 0, 1)).
Here the same ODE is integrated by classical fourth-order Runge-Kutta with a fixed step of
1/STEPS_PER_DAY day, vectorised over the batch (the fractions s = S/N, i = I/N; R is not needed);
scripts/check_sbibm_tasks.py measures its error against an adaptive solver.
"""

from __future__ import annotations

import numpy as np

POPULATION = 1_000_000.0
INITIAL_INFECTED = 1.0
#: days at which I is observed: sbibm keeps u[:, 1, ::17] of daily saves over days 0..160
OBSERVED_DAYS = np.arange(0, 161, 17)
#: binomial trials per observed day
TOTAL_COUNT = 1000
#: Runge-Kutta steps per day
STEPS_PER_DAY = 20


def _rates(beta: np.ndarray, gamma: np.ndarray, s: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    infection = beta * s * i
    return -infection, infection - gamma * i


def infected_fraction(theta: np.ndarray, steps_per_day: int = STEPS_PER_DAY) -> np.ndarray:
    """I(t) / N [B, 10] at the observed days for θ = (β, γ) [B, 2]."""
    theta = np.asarray(theta, dtype=np.float64)
    beta, gamma = theta[:, 0], theta[:, 1]
    i = np.full(len(theta), INITIAL_INFECTED / POPULATION)
    s = 1.0 - i
    dt = 1.0 / steps_per_day
    out = np.empty((len(theta), len(OBSERVED_DAYS)))
    out[:, 0] = i
    step = 0
    for k, day in enumerate(OBSERVED_DAYS[1:], start=1):
        while step < day * steps_per_day:
            ds1, di1 = _rates(beta, gamma, s, i)
            ds2, di2 = _rates(beta, gamma, s + 0.5 * dt * ds1, i + 0.5 * dt * di1)
            ds3, di3 = _rates(beta, gamma, s + 0.5 * dt * ds2, i + 0.5 * dt * di2)
            ds4, di4 = _rates(beta, gamma, s + dt * ds3, i + dt * di3)
            s = s + dt / 6.0 * (ds1 + 2.0 * ds2 + 2.0 * ds3 + ds4)
            i = i + dt / 6.0 * (di1 + 2.0 * di2 + 2.0 * di3 + di4)
            step += 1
        out[:, k] = i
    return out


def simulate(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Infected counts out of 1000 [B, 10] at days 0, 17, ..., 153 for θ = (β, γ) [B, 2]."""
    probability = infected_fraction(theta)
    finite = np.isfinite(probability).all(axis=1)
    probability = np.where(finite[:, None], np.clip(probability, 0.0, 1.0), 0.0)
    counts = rng.binomial(TOTAL_COUNT, probability).astype(np.float64)
    counts[~finite] = np.nan  # a solution that blew up: the row is invalid, as in sbibm
    return counts


def log_likelihood(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log p(x | θ) per row: the sum of the ten binomial log-probabilities (θ [B, 2], x [B or 1, 10])."""
    from scipy.stats import binom

    probability = np.clip(infected_fraction(theta), 0.0, 1.0)
    return binom.logpmf(np.asarray(x, dtype=np.float64), TOTAL_COUNT, probability).sum(-1)
