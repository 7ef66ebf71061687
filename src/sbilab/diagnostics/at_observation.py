"""The posterior at one observation x_o: samples there and the log-probability of θ*."""

from __future__ import annotations

from typing import Any

import torch

from sbilab.diagnostics.sampling import as_float_tensor, call_with_supported_kwargs
from sbilab.rng import seeded


def log_prob_at_observation(posterior: Any, theta_o: Any, x_o: Any, *, seed: int) -> tuple[float, str]:
    """``log q(θ_o | x_o)`` and how it was computed: the normalised ``log_prob`` when the posterior
    has one, else the unnormalised batched one. Seeded: a leakage correction may sample."""
    theta = as_float_tensor(theta_o).reshape(-1)
    x = as_float_tensor(x_o)
    with seeded(seed):
        if hasattr(posterior, "log_prob"):
            lp = call_with_supported_kwargs(posterior.log_prob, theta[None], x=x)
            return float(as_float_tensor(lp).reshape(-1)[0]), "log_prob"
        lp = call_with_supported_kwargs(posterior.log_prob_batched, theta[None, None], x=x[None], norm_posterior=False)
    return float(as_float_tensor(lp).reshape(-1)[0]), "log_prob_batched(norm_posterior=False)"


def sample_at_observation(posterior: Any, x_o: Any, num_samples: int, *, seed: int) -> torch.Tensor:
    """``[num_samples, D]`` posterior samples at ``x_o``, seeded, the caller's RNG untouched."""
    with seeded(seed):
        samples = call_with_supported_kwargs(posterior.sample, (num_samples,), x=as_float_tensor(x_o),
                                             show_progress_bars=False)
    return as_float_tensor(samples).reshape(num_samples, -1)
