"""Sample once: posterior samples and log-probs for the whole test set, drawn one time.

Every set-level diagnostic (SBC, coverage, TARP, recovery, L-C2ST) reads the one
:class:`TestSetDraws` made here instead of sampling again. An amortised posterior samples the
test set in batches; any other sampler one x at a time within a time budget
(:mod:`sbilab.diagnostics.per_point`), with fewer test points when the budget says so.
Sampling and log-probs run inside ``sbilab.rng.seeded(seed)``, so the caller's random streams
are left untouched.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from sbilab.diagnostics.per_point import PerPointPlan, is_amortised, points_for_budget, sample_per_point
from sbilab.diagnostics.sampling import (
    default_chunk_size,
    drop_nonfinite_rows,
    posterior_log_prob_batched,
    prior_support_mask,
    sample_posterior_batched,
    unsampled_points,
)
from sbilab.diagnostics.settings import SamplerBudgetSettings
from sbilab.ensemble import ensemble_members
from sbilab.rng import seeded

#: why a flow truncated to its prior samples slowly, and what helps
LEAKAGE_HINT = ("a flow truncated to a bounded prior is slow where most of its mass lies outside it: more "
                "simulations or an estimator on the prior's unbounded space (estimator=zuko_maf_unconstrained) "
                "leak less")


@dataclass
class TestSetDraws:
    """The finite test pairs and what the posterior says about each of them."""

    theta: Tensor  # [N, D] true parameters
    x: Tensor  # [N, d] simulated data
    samples: Tensor  # [S, N, D] posterior samples given each x
    log_prob_samples: Tensor  # [S, N] unnormalised log q(samples | x)
    log_prob_true: Tensor  # [N] unnormalised log q(theta | x)
    indices: np.ndarray  # [N] rows of the original test set that were kept
    num_dropped: int  # rows dropped (non-finite, or no sample inside the prior)
    finite_x: Tensor  # [N', d] every finite test x (also the points dropped for leakage): the prior predictive
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    plan: Optional[PerPointPlan] = None  # how the test set was sized (None: batched, every point)
    cut: Optional[str] = None  # what its budget cut, in words (also in notes)

    @property
    def num_points(self) -> int:
        return int(self.theta.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[0])


def draw_test_set(
    posterior: Any,
    test_theta: Any,
    test_x: Any,
    num_samples: int,
    *,
    seed: int,
    chunk_size: Optional[int] = None,
    sampler_budget: SamplerBudgetSettings = SamplerBudgetSettings(),
    region: Optional[Callable[[Tensor], Tensor]] = None,
) -> TestSetDraws:
    """Drop non-finite test rows, draw ``num_samples`` posterior samples per row and evaluate
    the log-probs of the samples and of the true θ, all under one seed.

    Test points where the flow leaks (almost) all its mass out of the prior get no samples
    and are dropped with a warning and a note. A posterior that is not amortised is sampled
    one x at a time, on as many test points as ``sampler_budget`` allows (noted when cut).
    ``region`` (``θ [n, D] -> bool [n]``, where the test θ were drawn: a truncated prior): the
    samples are truncated to it too, so they come from the posterior under that prior.
    """
    notes: list[str] = []
    timings: dict[str, float] = {}
    clean = drop_nonfinite_rows(test_theta, test_x)
    theta, x, indices, num_dropped = clean.theta, clean.x, clean.indices, clean.num_dropped
    if num_dropped:
        notes.append(f"dropped {num_dropped} non-finite test rows")
    t = time.perf_counter()
    plan, cut = None, None
    with seeded(seed):
        budget = sampler_budget
        if is_amortised(posterior):
            samples, plan = sample_batched_within_budget(posterior, x, num_samples, budget, chunk_size=chunk_size,
                                                         region=region)
        else:
            if region is not None:
                notes.append("a per-x sampler's test-set samples are not truncated to the region the test θ "
                             "came from: coverage and SBC read them as if it were (method.sample_with=direct is)")
            samples, plan = sample_per_point(posterior, x, num_samples, budget_seconds=budget.seconds,
                                             max_samples=budget.max_samples, min_points=budget.min_test_points,
                                             pinned_points=budget.test_points)
        if plan is not None:
            theta, x, indices = theta[: plan.num_points], x[: plan.num_points], indices[: plan.num_points]
            if plan.reduced:
                cut = plan.note(budget.seconds, budget.min_test_points)
                notes.append(cut)
        missing = unsampled_points(samples)
        if missing.any():  # the flow leaks (almost) all its mass out of the prior there
            keep = ~missing
            notes.append(f"{int(missing.sum())} test points dropped: too few posterior samples inside the prior")
            warnings.warn(f"diagnostics: {notes[-1]}", stacklevel=2)
            samples, theta, x = samples[:, keep], theta[keep], x[keep]
            indices = indices[keep.numpy()]
            num_dropped += int(missing.sum())
        timings["sampling"] = time.perf_counter() - t
        t = time.perf_counter()
        lp_samples = posterior_log_prob_batched(posterior, samples, x, chunk_size=chunk_size)
        lp_true = posterior_log_prob_batched(posterior, theta[None], x, chunk_size=chunk_size)[0]
    timings["log_prob"] = time.perf_counter() - t
    if theta.shape[0] < 100:
        notes.append(f"only {theta.shape[0]} test points: calibration diagnostics are noisy")
    return TestSetDraws(theta=theta, x=x, samples=samples, log_prob_samples=lp_samples, log_prob_true=lp_true,
                        indices=indices, num_dropped=num_dropped, finite_x=clean.x, timings=timings, notes=notes,
                        plan=plan, cut=cut)


def sample_batched_within_budget(posterior: Any, x: Any, num_samples: int, budget: SamplerBudgetSettings, *,
                                 chunk_size: Optional[int] = None,
                                 region: Optional[Callable[[Tensor], Tensor]] = None,
                                 ) -> tuple[Any, Optional[PerPointPlan]]:
    """``[S, N', D]`` batched samples for the first N' rows of ``x``, and the plan when N' < N.

    A flow samples a thousand test points in seconds, unless it must be truncated to a bounded prior it
    mostly leaks out of (sbi's maf on a 10-d box at a small budget: eight minutes). So the first chunk
    is a timed pilot, and the rest is cut to what ``budget.seconds`` allows (or to ``budget.test_points``), as
    for a per-x sampler. Rows are drawn in the same chunks whatever the cut, so the points kept get the
    numbers an uncut run gives them.
    """
    n = int(x.shape[0])
    pilot = min(n, chunk_size or default_chunk_size(num_samples))
    started = time.perf_counter()
    head = sample_posterior_batched(posterior, x[:pilot], num_samples, chunk_size=chunk_size, region=region)
    per_point = (time.perf_counter() - started) / max(pilot, 1)
    if budget.test_points is not None:
        num_points = min(n, int(budget.test_points))
    else:
        num_points = points_for_budget(per_point, budget.seconds, n, budget.min_test_points, pilot=pilot)
    samples = head
    if num_points > pilot:  # whole chunks, as an uncut run draws them; the surplus of the last one is dropped
        end = min(n, -(-num_points // pilot) * pilot)
        rest = sample_posterior_batched(posterior, x[pilot:end], num_samples, chunk_size=chunk_size, region=region)
        samples = torch.cat([head, rest], dim=1)
    samples = samples[:, :num_points]
    if num_points == n:
        return samples, None
    hint = (LEAKAGE_HINT if region is None and (prior_support_mask(posterior) is not None
                                                or ensemble_members(posterior) is not None) else "")
    plan = PerPointPlan(sampler=type(posterior).__name__, requested_points=n, num_points=num_points,
                        requested_samples=int(num_samples), num_samples=int(num_samples),
                        seconds_per_point=per_point, pinned=budget.test_points is not None, amortised=True,
                        hint=hint)
    return samples, plan
