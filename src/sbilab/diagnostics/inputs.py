"""What the diagnostics read: plain values, nothing from the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from torch import Tensor


@dataclass
class DiagnosticsInputs:
    """The values the diagnostics read (tensors or arrays; nothing from the config).

    ``posterior``: an sbi posterior, or a duck type with ``sample_batched((S,), x=xs)``,
    ``log_prob_batched(theta[S, N, D], x=xs, norm_posterior=False)`` and, at x_o,
    ``sample((n,), x=x_o)`` / ``log_prob(theta, x=x_o)``. ``test_theta [N, D]`` /
    ``test_x [N, d]``: held-out simulations from the prior (non-finite rows are dropped).
    At the observation ``x_o [d]``: ``theta_o`` (true θ, when known), ``observed_samples``
    (posterior samples already drawn there), ``predictive_x [M, d]`` (summaries simulated
    from posterior draws, for the PPC), ``reference_samples`` (a reference posterior, C2ST).
    ``prior_samples`` / ``prior_variance``: for the contraction (fallback: the test θ).
    ``embedding_net``: the trained learned summary (``x -> embedding``) when the summary has one
    (``summary=hh_cnn``): misspecification is then also tested in its space. The test set's x
    serve as the prior predictive; the flow for ``LC2ST_NF`` is read from the posterior.
    ``region``: where the test θ were drawn when not from the whole prior (``θ [n, D] -> bool [n]``,
    TSNPE's truncated prior); the test set's posterior samples are truncated to it.
    """

    posterior: Any
    test_theta: Any
    test_x: Any
    parameter_names: Optional[Sequence[str]] = None
    prior_samples: Optional[Any] = None
    prior_variance: Optional[Any] = None
    x_o: Optional[Any] = None
    theta_o: Optional[Any] = None
    observed_samples: Optional[Any] = None
    predictive_x: Optional[Any] = None
    statistic_names: Optional[Sequence[str]] = None
    reference_samples: Optional[Any] = None
    embedding_net: Optional[Callable[[Tensor], Tensor]] = None
    region: Optional[Callable[[Tensor], Tensor]] = None
