"""Parameter recovery and posterior contraction over the test set (BayesFlow style).

* recovery: posterior mean vs. true θ per parameter, with R² and the range-normalised
  RMSE (BayesFlow's NRMSE);
* contraction ``1 − Var_post / Var_prior`` and the *signed* z-score
  ``(mean_post − θ*) / std_post`` (Schad et al. 2021; BayesFlow ``z_score_contraction``).
  sbi's ``sbi.utils.metrics.posterior_zscore`` returns the absolute value and works on
  one posterior at a time, so it is not used.

The prior variance is passed in, estimated from prior samples, or — as a last resort —
estimated from the test θ (which are prior draws in the usual SBI test set).

Metrics per parameter (BayesFlow's aggregation, the median over test points):
``posterior/contraction/<param>`` (near 1: the data are informative) and
``posterior/z_score/<param>`` (near 0: no systematic bias), plus ``posterior/z_score_sd/<param>``,
the spread of the signed z-scores (about 1 when the widths are right, > 1 over-confident).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch

from sbilab.diagnostics.sampling import as_float_tensor, as_numpy


@dataclass
class RecoveryResult:
    true_theta: np.ndarray  # [N, D]
    posterior_means: np.ndarray  # [N, D]
    posterior_stds: np.ndarray  # [N, D]
    z_scores: np.ndarray  # [N, D] signed (mean − true) / std
    contraction: np.ndarray  # [N, D] 1 − var_post / var_prior
    prior_variance: np.ndarray  # [D]
    prior_variance_source: str  # "given" | "prior_samples" | "test_theta"
    r2: np.ndarray  # [D] coefficient of determination of means vs truth
    nrmse: np.ndarray  # [D] RMSE / (max θ* − min θ*)
    parameter_names: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Median contraction and z-score, and the z-scores' spread, per parameter (non-finite values left out)."""
        out: dict[str, float] = {}
        for j, name in enumerate(self.parameter_names):
            c, z = self.contraction[:, j], self.z_scores[:, j]
            c, z = c[np.isfinite(c)], z[np.isfinite(z)]
            out[f"posterior/contraction/{name}"] = float(np.median(c)) if c.size else float("nan")
            out[f"posterior/z_score/{name}"] = float(np.median(z)) if z.size else float("nan")
            out[f"posterior/z_score_sd/{name}"] = float(np.std(z, ddof=1)) if z.size > 1 else float("nan")
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """Raw arrays by artifact path."""
        return {
            "diagnostics/posterior_means.npy": self.posterior_means,
            "diagnostics/posterior_stds.npy": self.posterior_stds,
            "diagnostics/z_scores.npy": self.z_scores,
            "diagnostics/contraction.npy": self.contraction,
            "diagnostics/test_theta.npy": self.true_theta,
        }


def resolve_prior_variance(
    num_params: int,
    *,
    prior_variance: Optional[Any] = None,
    prior_samples: Optional[Any] = None,
    fallback_theta: Optional[Any] = None,
) -> tuple[np.ndarray, str]:
    """Per-parameter prior variance and where it came from."""
    if prior_variance is not None:
        var = as_numpy(prior_variance).reshape(-1)
        source = "given"
    elif prior_samples is not None:
        ps = as_numpy(prior_samples).reshape(-1, num_params)
        ps = ps[np.isfinite(ps).all(axis=1)]
        var = ps.var(axis=0, ddof=1)
        source = "prior_samples"
    elif fallback_theta is not None:
        var = as_numpy(fallback_theta).reshape(-1, num_params).var(axis=0, ddof=1)
        source = "test_theta"
    else:
        raise ValueError("need prior_variance, prior_samples or test theta to estimate the prior variance")
    if var.size == 1 and num_params > 1:
        var = np.full(num_params, float(var[0]))
    if var.shape != (num_params,):
        raise ValueError(f"prior variance has shape {var.shape}; expected ({num_params},)")
    return var, source


def posterior_moments(samples: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-test-point posterior mean and standard deviation of ``samples [S, N, D]``.

    Computed in float32 torch without a float64 copy of the samples; non-finite
    samples are ignored.
    """
    s = as_float_tensor(samples)
    finite = torch.isfinite(s)
    if bool(finite.all()):
        std, mean = torch.std_mean(s, dim=0, correction=1)
    else:
        cnt = finite.sum(dim=0).to(s.dtype)
        s0 = torch.where(finite, s, torch.zeros((), dtype=s.dtype))
        mean = s0.sum(dim=0) / cnt
        sq = torch.where(finite, (s - mean) ** 2, torch.zeros((), dtype=s.dtype)).sum(dim=0)
        std = torch.sqrt(sq / (cnt - 1))
    return mean.double().numpy(), std.double().numpy()


def recovery_and_contraction(
    samples: Any,
    theta: Any,
    *,
    prior_variance: np.ndarray,
    prior_variance_source: str = "given",
    parameter_names: Optional[Sequence[str]] = None,
) -> RecoveryResult:
    """Posterior moments of ``samples [S, N, D]`` compared with ``theta [N, D]``."""
    means, stds = posterior_moments(samples)
    t = as_numpy(theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (means - t) / stds
        contraction = 1.0 - stds**2 / np.asarray(prior_variance, dtype=np.float64)[None, :]
    resid = means - t
    ss_res = np.sum(resid**2, axis=0)
    ss_tot = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - ss_res / ss_tot
        nrmse = np.sqrt(ss_res / t.shape[0]) / (t.max(axis=0) - t.min(axis=0))
    names = list(parameter_names) if parameter_names is not None else [f"theta_{j}" for j in range(t.shape[1])]
    return RecoveryResult(
        true_theta=t,
        posterior_means=means,
        posterior_stds=stds,
        z_scores=z,
        contraction=contraction,
        prior_variance=np.asarray(prior_variance, dtype=np.float64),
        prior_variance_source=prior_variance_source,
        r2=r2,
        nrmse=nrmse,
        parameter_names=names,
    )
