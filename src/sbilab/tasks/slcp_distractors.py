"""sbibm's slcp_distractors: SLCP's 8 numbers hidden among 92 distractors that do not depend on θ.

θ ~ U(-3, 3)⁵. SLCP draws four points of a 2-D Gaussian with mean (θ₁, θ₂), standard deviations
θ₃², θ₄² and correlation tanh(θ₅) (plus 1e-6 on the covariance's diagonal, as sbibm); the 92
distractors are one draw of a fixed mixture of 20 multivariate Student-t distributions (2 degrees of
freedom, equal weights; sbibm generated its locations and scale factors from NumPy seed 42). The
8 SLCP numbers and the 92 distractors are concatenated and shuffled by sbibm's fixed permutation:
x [100] = concat(slcp [8], distractors [92])[permutation]. The posterior is SLCP's.

The mixture and the permutation are sbibm's own numbers (``data/slcp_distractors.npz``, see
``data/README.md``). Only SLCP's part has a usable density here (``slcp_log_likelihood``): the
mixture's scale factors have condition numbers of 1e15-1e18, so the distractors' density cannot be
evaluated reliably at sbibm's float32 observations.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

DATA = Path(__file__).with_name("data") / "slcp_distractors.npz"
#: SLCP's 2-D points per x, and the number of distractors
NUM_POINTS = 4
NUM_DISTRACTORS = 92
#: added to the covariance's diagonal (sbibm: "to ensure PSD")
EPS = 1e-6


@lru_cache(maxsize=1)
def mixture() -> dict[str, np.ndarray]:
    """The distractors' mixture: ``loc`` [20, 92], ``scale_tril`` [20, 92, 92], ``df`` [20],
    ``mixture_probs`` [20]; and ``permutation`` [100] (read-only arrays)."""
    with np.load(DATA) as data:
        arrays = {key: data[key] for key in data.files}
    for value in arrays.values():
        value.setflags(write=False)
    return arrays


def slcp(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SLCP's x [B, 8] = four 2-D points (x₁₁, x₁₂, x₂₁, ...) for θ [B, 5]."""
    theta = np.asarray(theta, dtype=np.float64)
    s1, s2 = theta[:, 2] ** 2, theta[:, 3] ** 2
    rho = np.tanh(theta[:, 4])
    # Cholesky factor of [[s1² + eps, ρ s1 s2], [ρ s1 s2, s2² + eps]]
    l11 = np.sqrt(s1**2 + EPS)
    l21 = rho * s1 * s2 / l11
    l22 = np.sqrt(np.maximum(s2**2 + EPS - l21**2, 0.0))
    z = rng.standard_normal((len(theta), NUM_POINTS, 2))
    first = theta[:, None, 0] + l11[:, None] * z[..., 0]
    second = theta[:, None, 1] + l21[:, None] * z[..., 0] + l22[:, None] * z[..., 1]
    return np.stack([first, second], axis=-1).reshape(len(theta), 2 * NUM_POINTS)


def distractors(num: int, rng: np.random.Generator) -> np.ndarray:
    """``num`` draws [num, 92] of the Student-t mixture: loc + L z √(ν / χ²_ν) of a uniformly chosen component."""
    gmm = mixture()
    component = rng.choice(len(gmm["mixture_probs"]), size=num, p=gmm["mixture_probs"])
    df = gmm["df"][component]
    scaled = rng.standard_normal((num, NUM_DISTRACTORS)) * np.sqrt(df / rng.chisquare(df))[:, None]
    out = np.empty((num, NUM_DISTRACTORS))
    for c in np.unique(component):
        rows = component == c
        out[rows] = gmm["loc"][c] + scaled[rows] @ gmm["scale_tril"][c].T
    return out


def simulate(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x [B, 100]: SLCP's 8 numbers and 92 distractors in sbibm's permuted order, for θ [B, 5]."""
    data = np.concatenate([slcp(theta, rng), distractors(len(theta), rng)], axis=1)
    return data[:, mixture()["permutation"]]


def slcp_positions() -> np.ndarray:
    """Where SLCP's 8 numbers sit in x [100], in SLCP's order: x[:, slcp_positions()] is SLCP's x."""
    return np.argsort(mixture()["permutation"])[: 2 * NUM_POINTS]


def slcp_log_likelihood(theta: np.ndarray, x_slcp: np.ndarray) -> np.ndarray:
    """log p(SLCP's 8 numbers | θ) per row (θ [B, 5], x_slcp [B or 1, 8])."""
    theta = np.asarray(theta, dtype=np.float64)
    s1, s2 = theta[:, 2] ** 2, theta[:, 3] ** 2
    rho = np.tanh(theta[:, 4])
    v11, v22, v12 = s1**2 + EPS, s2**2 + EPS, rho * s1 * s2
    det = v11 * v22 - v12**2
    points = np.asarray(x_slcp, dtype=np.float64).reshape(-1, NUM_POINTS, 2)
    d1, d2 = points[..., 0] - theta[:, None, 0], points[..., 1] - theta[:, None, 1]
    quad = (v22[:, None] * d1**2 - 2 * v12[:, None] * d1 * d2 + v11[:, None] * d2**2) / det[:, None]
    return (-0.5 * quad - 0.5 * np.log(det)[:, None] - np.log(2 * np.pi)).sum(-1)
