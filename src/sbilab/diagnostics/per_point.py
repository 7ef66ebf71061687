"""Test-set samples from a sampler that is not amortised, sized to a time budget.

An amortised posterior (NPE's flow, a vector field) samples every test point in one batched
call. MCMC, rejection, importance and VI posteriors run their sampler anew for each x. sbi's
batched versions of those break in several ways (MCMC assumes one chain count per x and fails
its batch-size assertion for ``slice_np``, ``slice_vectorized`` and likelihood potentials; the
rejection sampler's bound search needs gradients; VI fits one x), and 1,000 test points × the
preset's 500 chains held 25,000 chains in memory at once. So the test set is sampled through
the very call that samples x_o, one x at a time: it works wherever sampling at x_o works, and
its memory is that of one x, with at most ``max_samples`` chains.

Its cost is then ``test points × seconds per point``. A pilot on the first two points measures
the seconds; the number of test points is cut to what ``diagnostics.sampler_budget.seconds``
allows (on a coarse ladder, so that repeated runs on one machine pick the same number), or
pinned with ``diagnostics.sampler_budget.test_points``; the time bound wins over
``min_test_points``, and a note says when the gates then have little power. What was cut is reported as a note.
Points are drawn in order under one seed, so point i gets the same samples whatever the cut.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import torch
from sbi.inference.posteriors import ImportanceSamplingPosterior, MCMCPosterior, RejectionPosterior, VIPosterior
from torch import Tensor

from sbilab.ensemble import ensemble_members
from sbilab.interrupts import raise_if_interrupted

#: test-point counts a timed pilot may choose (coarse, so machine noise rarely changes the choice)
TEST_POINT_LADDER = (10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000)
#: sbi's posteriors that run their sampler anew for each x
PER_X_SAMPLERS = (MCMCPosterior, RejectionPosterior, ImportanceSamplingPosterior, VIPosterior)
#: points sampled (and timed) before the number of test points is chosen
PILOT_POINTS = 2


def is_amortised(posterior: Any) -> bool:
    """Whether the posterior samples many x in one batched call: anything but sbi's per-x samplers (MCMC,
    rejection, importance, VI), for every member of an ensemble. Duck-typed posteriors with their own
    ``sample_batched`` count as amortised."""
    members = ensemble_members(posterior) or [posterior]
    return not any(isinstance(member, PER_X_SAMPLERS) for member in members)


def sampler_name(posterior: Any) -> str:
    """A short name of the per-x sampler (``MCMCPosterior`` → ``mcmc``) for messages."""
    member = (ensemble_members(posterior) or [posterior])[0]
    name = type(member).__name__.replace("Posterior", "").replace("VectorizedSlice", "")
    return {"MCMC": "mcmc", "Rejection": "rejection", "ImportanceSampling": "importance",
            "FittedVI": "vi", "VI": "vi"}.get(name, name.lower())


@dataclass(frozen=True)
class PerPointPlan:
    """What the per-x sampler was asked for, and why."""

    sampler: str
    requested_points: int
    num_points: int
    requested_samples: int
    num_samples: int
    seconds_per_point: float
    pinned: bool
    amortised: bool = False  # a batched sampler, cut by time all the same
    hint: str = ""  # for a batched sampler: why it may be slow and what helps

    @property
    def reduced(self) -> bool:
        return self.num_points < self.requested_points or self.num_samples < self.requested_samples

    def note(self, budget_seconds: float, min_points: int) -> str:
        """One sentence: what was sampled, what was cut and by which setting."""
        why = ("diagnostics.sampler_budget.test_points" if self.pinned
               else f"diagnostics.sampler_budget.seconds={budget_seconds:g}")
        if self.amortised:
            text = (f"batched sampling of the test set took {self.seconds_per_point:.2f} s per point: calibration on "
                    f"{self.num_points} of {self.requested_points} test points ({why})")
            if self.hint:
                text += f"; {self.hint}"
        else:
            text = (f"the {self.sampler} sampler is not amortised: calibration on {self.num_points} of "
                    f"{self.requested_points} test points × {self.num_samples} of {self.requested_samples} samples "
                    f"({self.seconds_per_point:.2f} s per point; {why}, diagnostics.sampler_budget.max_samples)")
        if self.num_points < min_points:
            text += (f"; fewer than diagnostics.sampler_budget.min_test_points={min_points}: the gates have little "
                     "power (a faster sampler, e.g. method.sampling.mcmc.method=slice_vectorized, or more seconds)")
        return text

    def metrics(self) -> dict[str, float]:
        return {"diagnostics/sampler_seconds_per_point": self.seconds_per_point,
                "diagnostics/samples_per_point": float(self.num_samples)}


def points_for_budget(seconds_per_point: float, budget_seconds: float, requested: int, minimum: int,
                      pilot: int = PILOT_POINTS) -> int:
    """Test points that fit the budget: all of them, else the largest ladder step that fits (never below
    ``minimum`` while that fits). The time bound wins over ``minimum``: a sampler too slow for it gets
    as many points as fit, and at least the ``pilot`` points already drawn."""
    affordable = int(budget_seconds / max(seconds_per_point, 1e-9))
    if affordable >= requested:
        return requested
    fitting = [n for n in TEST_POINT_LADDER if n <= affordable]
    chosen = max(fitting[-1] if fitting else affordable, min(minimum, affordable), pilot)
    return int(min(requested, chosen))


def sample_one(posterior: Any, x: Tensor, num_samples: int) -> Tensor:
    """``[S, D]`` samples at one x through the posterior's own ``sample`` (the x_o path), chains capped at S."""
    options: dict[str, Any] = {"show_progress_bars": False}
    members = ensemble_members(posterior) or [posterior]
    if all(isinstance(member, MCMCPosterior) for member in members):
        # more chains than samples only adds warm-up cost; the chains' memory stays bounded whatever the config
        options["num_chains"] = max(1, min(int(members[0].num_chains), num_samples))
    samples = posterior.sample((num_samples,), x=x[None], **options)
    raise_if_interrupted()  # sbi's gradient ascent (rejection's bound) swallows Ctrl-C: do not start the next x
    return samples.reshape(num_samples, -1).detach().to(device="cpu", dtype=torch.float32)


def sample_per_point(posterior: Any, x: Tensor, num_samples: int, *, budget_seconds: float, max_samples: int,
                     min_points: int, pinned_points: Optional[int] = None) -> tuple[Tensor, PerPointPlan]:
    """``[S', N', D]`` samples for the first N' rows of ``x``, one sampler call per row, and the plan.

    S' = min(``num_samples``, ``max_samples``); N' is ``pinned_points`` or what the budget allows
    after a timed pilot. The caller seeds (rows are drawn in order from torch's global generator).
    """
    requested = int(x.shape[0])
    samples_each = max(1, min(int(num_samples), int(max_samples)))
    pilot = min(PILOT_POINTS, requested)
    started = time.perf_counter()
    drawn = [sample_one(posterior, x[i], samples_each) for i in range(pilot)]
    per_point = (time.perf_counter() - started) / max(pilot, 1)
    if pinned_points is not None:
        num_points = min(requested, int(pinned_points))
    else:
        # the budget covers every point, the pilot's included
        num_points = points_for_budget(per_point, budget_seconds, requested, min_points)
    drawn += [sample_one(posterior, x[i], samples_each) for i in range(pilot, num_points)]
    plan = PerPointPlan(sampler=sampler_name(posterior), requested_points=requested, num_points=num_points,
                        requested_samples=int(num_samples), num_samples=samples_each,
                        seconds_per_point=per_point, pinned=pinned_points is not None)
    return torch.stack(drawn[:num_points], dim=1), plan

