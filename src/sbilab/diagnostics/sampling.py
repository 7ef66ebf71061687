"""Draw posterior samples ONCE for a whole test set and evaluate log-probs in chunks.

Every set-level diagnostic (SBC, expected coverage, TARP, recovery) reuses the one
``[S, N, D]`` sample tensor drawn here. Works with any posterior that offers
``sample_batched((S,), x=xs)`` (sbi's ``DirectPosterior`` and friends); posteriors
without it fall back to one ``sample((S,), x=x_i)`` call per test point.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from sbilab.ensemble import ensemble_members, mixture_log_prob

#: samples (S * chunk) drawn or evaluated per call; small chunks are faster on CPU
#: for nflows MAFs (cache friendly) and keep memory bounded.
DEFAULT_SAMPLES_PER_CHUNK = 50_000


def as_float_tensor(a: Any) -> Tensor:
    """A float32 CPU tensor view/copy of ``a`` (tensor or array-like)."""
    t = a.detach() if isinstance(a, Tensor) else torch.as_tensor(np.asarray(a))
    return t.to(device="cpu", dtype=torch.float32)


def as_numpy(a: Any) -> np.ndarray:
    """A float64 NumPy copy of a tensor or array-like."""
    if isinstance(a, Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def call_with_supported_kwargs(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` passing only the keyword arguments its signature accepts.

    Lets the diagnostics pass sbi-specific options (``show_progress_bars``,
    ``norm_posterior``, ``max_sampling_batch_size``) while still accepting minimal
    duck-typed posteriors that do not know them.
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins / C callables
        return fn(*args, **kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(*args, **kwargs)
    return fn(*args, **{k: v for k, v in kwargs.items() if k in params})


@dataclass
class CleanTestSet:
    """Test pairs with non-finite rows removed."""

    theta: Tensor  # [N, D] float32
    x: Tensor  # [N, d] float32
    indices: np.ndarray  # [N] row indices into the original test set
    num_dropped: int


def drop_nonfinite_rows(test_theta: Any, test_x: Any) -> CleanTestSet:
    """Remove rows whose θ or x contains NaN/Inf (failed simulations), with a warning."""
    theta = as_float_tensor(test_theta)
    x = as_float_tensor(test_x)
    if theta.ndim == 1:
        theta = theta[:, None]
    if x.ndim == 1:
        x = x[:, None]
    if theta.shape[0] != x.shape[0]:
        raise ValueError(f"test_theta has {theta.shape[0]} rows but test_x has {x.shape[0]}")
    ok = torch.isfinite(theta).all(dim=1) & torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    num_dropped = int((~ok).sum())
    if num_dropped:
        warnings.warn(
            f"diagnostics: dropped {num_dropped} of {len(ok)} test rows with non-finite "
            "theta or x",
            stacklevel=2,
        )
    idx = torch.nonzero(ok).flatten()
    if idx.numel() == 0:
        raise ValueError("no finite test rows left for diagnostics")
    return CleanTestSet(theta=theta[idx], x=x[idx], indices=idx.numpy(), num_dropped=num_dropped)


def default_chunk_size(num_samples: int, samples_per_chunk: int = DEFAULT_SAMPLES_PER_CHUNK) -> int:
    """Number of test points per chunk so that a chunk holds about ``samples_per_chunk`` draws."""
    return max(1, int(samples_per_chunk) // max(1, int(num_samples)))


def prior_support_mask(posterior: Any) -> Optional[Callable[[Tensor], Tensor]]:
    """``θ [..., D] -> bool [...]`` (inside the prior's support) for posteriors that truncate to it."""
    prior = getattr(posterior, "prior", None)
    if prior is None or not hasattr(posterior, "posterior_estimator"):
        return None
    from sbi.utils.sbiutils import within_support

    def inside(theta: Tensor) -> Tensor:
        flat = theta.reshape(-1, theta.shape[-1])
        return within_support(prior, flat).reshape(theta.shape[:-1])

    return inside


@torch.no_grad()
def truncated_sample_batched(
    posterior: Any, x: Tensor, num_samples: int, inside: Callable[[Tensor], Tensor],
    max_draws_per_point: int = 200_000, max_draws_per_call: int = 200_000,
) -> Tensor:
    """``[S, N, D]`` samples of the flow truncated to the prior, drawn adaptively per test point.

    Same distribution as sbi's rejection sampling, but each test point only draws
    until it has ``num_samples`` accepted samples, instead of every point drawing
    until the worst-accepted one is done. Points still short after
    ``max_draws_per_point`` proposals (a flow that leaks almost all its mass out of
    the prior) are returned as NaN columns for the caller to drop.
    """
    n = x.shape[0]
    counts = torch.zeros(n, dtype=torch.long)
    drawn = torch.zeros(n, dtype=torch.long)
    out: Optional[Tensor] = None
    todo = torch.arange(n)
    draw = num_samples
    while todo.numel():
        with warnings.catch_warnings():  # sbi warns about leakage and batch capping: handled here
            warnings.simplefilter("ignore", UserWarning)
            proposals = call_with_supported_kwargs(
                posterior.sample_batched, (draw,), x=x[todo], reject_outside_prior=False, show_progress_bars=False,
                max_sampling_batch_size=max(1, max_draws_per_call // max(1, todo.numel())),
            ).reshape(draw, todo.numel(), -1)
        if out is None:
            out = torch.full((num_samples, n, proposals.shape[-1]), float("nan"))
        ok = inside(proposals) & torch.isfinite(proposals).all(-1)
        for j, i in enumerate(todo.tolist()):
            good = proposals[ok[:, j], j]
            take = min(num_samples - int(counts[i]), good.shape[0])
            out[counts[i] : counts[i] + take, i] = good[:take]
            counts[i] += take
        drawn[todo] += draw
        todo = todo[(counts[todo] < num_samples) & (drawn[todo] < max_draws_per_point)]
        if todo.numel():
            worst = float((counts[todo].float() / drawn[todo].float()).clamp(min=1e-4).min())
            need = int((num_samples - counts[todo].min().item()) / worst * 1.2) + 1
            draw = max(1, min(need, max_draws_per_call // todo.numel(), max_draws_per_point))
    assert out is not None
    return out


def restricted(inside: Optional[Callable[[Tensor], Tensor]],
               region: Optional[Callable[[Tensor], Tensor]]) -> Optional[Callable[[Tensor], Tensor]]:
    """``θ [..., D] -> bool [...]``: inside the prior's support (``inside``) and the ``region`` (``[n, D] -> [n]``),
    the region asked only about the finite θ already inside the support."""
    if region is None:
        return inside

    def both(theta: Tensor) -> Tensor:
        flat = theta.reshape(-1, theta.shape[-1])
        ok = torch.isfinite(flat).all(-1)
        if inside is not None:
            ok &= inside(flat)
        if ok.any():
            ok[ok.clone()] = region(flat[ok]).bool()
        return ok.reshape(theta.shape[:-1])

    return both


@torch.no_grad()
def sample_posterior_batched(
    posterior: Any,
    x: Tensor,
    num_samples: int,
    *,
    chunk_size: Optional[int] = None,
    region: Optional[Callable[[Tensor], Tensor]] = None,
) -> Tensor:
    """Draw ``num_samples`` posterior samples for every row of ``x``: ``[S, N, D]``.

    Chunks over test points (``chunk_size`` rows per ``sample_batched`` call). Does
    not seed: the caller controls the RNG (see :func:`run_diagnostics`). An ensemble
    is sampled member by member, so each member gets the prior truncation below.
    ``region`` (``θ [n, D] -> bool [n]``): the samples are also truncated to it (a truncated
    sequential posterior is calibrated on its region: θ from the truncated prior, so the posterior
    it is compared with is the one under that prior, zero outside).
    """
    x = as_float_tensor(x)
    members = ensemble_members(posterior)
    if members is not None:
        counts = torch.multinomial(posterior.weights, num_samples, replacement=True).bincount(minlength=len(members))
        samples = torch.cat([sample_posterior_batched(member, x, int(count), chunk_size=chunk_size, region=region)
                             for member, count in zip(members, counts) if count > 0])
        return samples[torch.randperm(num_samples)]
    n = x.shape[0]
    chunk = chunk_size or default_chunk_size(num_samples)
    batched = getattr(posterior, "sample_batched", None)
    inside = restricted(prior_support_mask(posterior), region) if batched is not None else None
    out: list[Tensor] = []
    for start in range(0, n, chunk):
        xb = x[start : start + chunk]
        s = None
        if inside is not None:
            s = truncated_sample_batched(posterior, xb, num_samples, inside)
        elif batched is not None:
            try:
                s = call_with_supported_kwargs(
                    batched,
                    (num_samples,),
                    x=xb,
                    show_progress_bars=False,
                    # keep sbi from warning "Capping max_sampling_batch_size" per chunk
                    max_sampling_batch_size=max(1, 100_000 // xb.shape[0]),
                )
            except NotImplementedError:
                batched = None
        if s is None:  # no batched sampling: one call per test point
            s = torch.stack(
                [
                    call_with_supported_kwargs(
                        posterior.sample, (num_samples,), x=xi[None], show_progress_bars=False
                    ).reshape(num_samples, -1)
                    for xi in xb
                ],
                dim=1,
            )
        s = as_float_tensor(s)
        if s.ndim == 2:  # single parameter posteriors may drop the event dim
            s = s[..., None]
        if s.shape[:2] != (num_samples, xb.shape[0]):
            raise ValueError(
                f"sample_batched returned shape {tuple(s.shape)}; expected "
                f"({num_samples}, {xb.shape[0]}, D)"
            )
        out.append(s)
    return torch.cat(out, dim=1)


def unsampled_points(samples: Tensor) -> Tensor:
    """Bool ``[N]``: test points with any non-finite sample (e.g. prior acceptance too low)."""
    return (~torch.isfinite(samples)).any(dim=-1).any(dim=0)


@torch.no_grad()
def posterior_log_prob_batched(
    posterior: Any,
    theta: Tensor,
    x: Tensor,
    *,
    chunk_size: Optional[int] = None,
) -> Tensor:
    """Unnormalised ``log q(θ[s, i] | x[i])`` for ``theta [S, N, D]``: returns ``[S, N]``.

    Uses ``log_prob_batched(..., norm_posterior=False)``: the leakage correction of a
    ``DirectPosterior`` is a per-x constant, so it cancels in every rank computed
    from these values and would cost 10k rejection samples per x. An ensemble mixes
    its members' unnormalised values: members that leak different mass out of the
    prior are then weighted slightly off (none leak on unbounded priors).
    """
    theta = as_float_tensor(theta)
    x = as_float_tensor(x)
    members = ensemble_members(posterior)
    if members is not None:  # each member its own (batched where it can be) way
        return mixture_log_prob([posterior_log_prob_batched(member, theta, x, chunk_size=chunk_size)
                                 for member in members], posterior.weights)
    num_s, n = theta.shape[:2]
    chunk = chunk_size or default_chunk_size(num_s)
    if not hasattr(posterior, "log_prob_batched"):
        # MCMC/vector-field posteriors: one (unnormalised where supported) log_prob call per test point
        return torch.stack(
            [
                as_float_tensor(call_with_supported_kwargs(posterior.log_prob, theta[:, i], x=x[i],
                                                           norm_posterior=False)).reshape(num_s)
                for i in range(n)
            ],
            dim=1,
        )
    out: list[Tensor] = []
    for start in range(0, n, chunk):
        lp = call_with_supported_kwargs(
            posterior.log_prob_batched,
            theta[:, start : start + chunk],
            x=x[start : start + chunk],
            norm_posterior=False,
        )
        out.append(as_float_tensor(lp).reshape(num_s, -1))
    return torch.cat(out, dim=1)
