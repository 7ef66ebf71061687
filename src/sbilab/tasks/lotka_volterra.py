"""sbibm's lotka_volterra: predator-prey populations observed with log-normal noise at ten times.

θ = (α, β, γ, δ) with sbibm's log-normal prior (log α, log γ ~ N(-0.125, 0.5²); log β, log δ ~
N(-3, 0.5²)). Prey x and predators y start at (30, 1):

    dx/dt = α x - β x y,    dy/dt = -γ y + δ x y.

sbibm solves this in Julia (Tsit5, rtol = atol = 1e-8, saved every 0.1 over 20 time units), keeps
every 21st save (t = 0, 2.1, ..., 18.9) of both species, clamps them to [1e-10, 1e4] and draws
x ~ LogNormal(log u, 0.1) per entry: x = [prey at the ten times, predators at the ten times].
Here the ODE is integrated for (log x, log y) by classical fourth-order Runge-Kutta with a fixed step
(0.1 / SUBSTEPS), vectorised over the batch; on the log scale the populations stay positive however
small they get (sbibm's absolute tolerance of 1e-8 does not resolve populations far below 1e-8, so
the two can differ there, which only matters where the clamp at 1e-10 is reached).
scripts/check_sbibm_tasks.py measures the integrator's error against an adaptive solver.
"""

from __future__ import annotations

import numpy as np

INITIAL = (30.0, 1.0)
#: the observed times: every 21st of sbibm's saves every 0.1 (t = 0, 2.1, ..., 18.9)
SAVE_EVERY = 0.1
OBSERVED_SAVES = np.arange(0, 201, 21)
OBSERVED_TIMES = OBSERVED_SAVES * SAVE_EVERY
#: sbibm's clamp before the log-normal noise, and the noise's scale on the log axis
CLAMP = (1e-10, 1e4)
NOISE_SCALE = 0.1
#: Runge-Kutta steps per save interval of 0.1
SUBSTEPS = 10


def _rates(theta: tuple[np.ndarray, ...], log_x: np.ndarray, log_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    alpha, beta, gamma, delta = theta
    return alpha - beta * np.exp(log_y), delta * np.exp(log_x) - gamma


def log_populations(theta: np.ndarray, substeps: int = SUBSTEPS) -> np.ndarray:
    """(log prey, log predators) [B, 20] at the observed times for θ [B, 4], unclamped (inf/NaN if it blew up)."""
    theta = np.asarray(theta, dtype=np.float64)
    params = tuple(theta[:, j] for j in range(4))
    log_x = np.full(len(theta), np.log(INITIAL[0]))
    log_y = np.full(len(theta), np.log(INITIAL[1]))
    dt = SAVE_EVERY / substeps
    out = np.empty((len(theta), 2, len(OBSERVED_SAVES)))
    out[:, 0, 0], out[:, 1, 0] = log_x, log_y
    step = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for k, save in enumerate(OBSERVED_SAVES[1:], start=1):
            while step < save * substeps:
                a1, b1 = _rates(params, log_x, log_y)
                a2, b2 = _rates(params, log_x + 0.5 * dt * a1, log_y + 0.5 * dt * b1)
                a3, b3 = _rates(params, log_x + 0.5 * dt * a2, log_y + 0.5 * dt * b2)
                a4, b4 = _rates(params, log_x + dt * a3, log_y + dt * b3)
                log_x = log_x + dt / 6.0 * (a1 + 2.0 * a2 + 2.0 * a3 + a4)
                log_y = log_y + dt / 6.0 * (b1 + 2.0 * b2 + 2.0 * b3 + b4)
                step += 1
            out[:, 0, k], out[:, 1, k] = log_x, log_y
    return out.reshape(len(theta), -1)


def log_mean(theta: np.ndarray) -> np.ndarray:
    """The log-normal noise's location [B, 20]: log of the populations clamped to [1e-10, 1e4]."""
    return np.clip(log_populations(theta), np.log(CLAMP[0]), np.log(CLAMP[1]))


def simulate(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noisy populations [B, 20] (prey at t = 0, 2.1, ..., 18.9, then predators) for θ [B, 4]."""
    loc = log_mean(theta)
    with np.errstate(invalid="ignore"):
        return np.exp(loc + NOISE_SCALE * rng.standard_normal(loc.shape))  # NaN rows where the solution blew up


def log_likelihood(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log p(x | θ) per row: the sum of the 20 log-normal log-densities (θ [B, 4], x [B or 1, 20])."""
    log_x = np.log(np.asarray(x, dtype=np.float64))
    z = (log_x - log_mean(theta)) / NOISE_SCALE
    return (-0.5 * z**2 - np.log(NOISE_SCALE * np.sqrt(2 * np.pi)) - log_x).sum(-1)
