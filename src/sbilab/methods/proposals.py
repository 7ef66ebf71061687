"""Where a sequential round draws its θ: the last posterior at x_o (SNPE) or the prior truncated to
that posterior's highest-density region (TSNPE, Deistler et al. 2022).

Both sample like a prior (``sample((n,))``, no x, no progress bar), so the simulation stage,
its per-index seeds and its cache treat every round alike.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from sbi.utils import RestrictedPrior, get_density_thresholder
from sbi.utils.sbiutils import within_support
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from sbilab.priors import sample_prior


class PosteriorAtObservation:
    """A round's proposal: the previous posterior at x_o, sampled like a prior (no x, no progress bar).

    ``sample`` delegates to the posterior's ``sample(shape, x=x_o)`` (same random stream as
    sbi's ``posterior.set_default_x(x_o).sample``); ``posterior`` is the sbi object itself.
    """

    def __init__(self, posterior: Any, x_o: Tensor) -> None:
        self.posterior = posterior
        self.x_o = x_o

    def sample(self, sample_shape: Any = torch.Size(), **kwargs: Any) -> Tensor:
        kwargs.setdefault("show_progress_bars", False)
        return self.posterior.sample(sample_shape, x=self.x_o, **kwargs)

    def log_prob(self, theta: Tensor, **kwargs: Any) -> Tensor:
        return self.posterior.log_prob(theta, x=self.x_o, **kwargs)


#: below this prior mass of the region, rejection from the prior is too slow (1,000 prior draws and
#: network evaluations per accepted θ): the region is sampled by importance resampling instead
MIN_REJECTION_MASS = 1e-3
#: candidates drawn per θ kept, when resampling
RESAMPLING_CANDIDATES = 64
#: the resampling proposal's wide half: a Gaussian at the posterior's mean with this many of its standard deviations
WIDE_SCALE = 3.0


class TruncatedPrior(RestrictedPrior):
    """The prior restricted to the posterior's ``1 − quantile`` highest-density region at x_o.

    The region is sbi's :func:`~sbi.utils.get_density_thresholder` on the posterior at x_o; its
    prior mass is measured once on ``num_mass_samples`` prior draws (:attr:`prior_mass`, which the
    run records per round). Sampling:

    - by rejection from the prior (sbi's :class:`~sbi.utils.RestrictedPrior`, what Deistler et al.
      use) while the mass is at least :data:`MIN_REJECTION_MASS`, quietly (sbi prints the rejected
      fraction on every draw);
    - below it, by importance resampling: candidates from an even mixture g of the posterior at
      x_o and a Gaussian at its mean :data:`WIDE_SCALE` times as wide (the region reaches far
      into the posterior's tails, where the posterior alone proposes too rarely: on a 2-D
      Gaussian the mean distance from the centre came out 0.51 of the region's radius instead of
      a uniform disc's 0.67; with the wide half, 0.67), weights p(θ)/g(θ) inside the region and
      zero outside, one θ kept of :data:`RESAMPLING_CANDIDATES`. Written here because sbi's
      ``sample_with="sir"`` passes its 0/1 region indicator as a *log* weight, so draws outside
      the region keep weight e⁻¹ of those inside, and it ignores ``oversampling_factor``.
    """

    def __init__(self, prior: Distribution, posterior: Any, x_o: Tensor, quantile: float,
                 num_samples_to_estimate_support: int, seed: int, num_mass_samples: int = 20_000) -> None:
        self.posterior_at_x_o = PosteriorAtObservation(posterior, x_o)
        with torch.random.fork_rng(devices=[]):  # the threshold is a function of the seed alone
            torch.manual_seed(seed)
            thresholder = get_density_thresholder(self.posterior_at_x_o, quantile=quantile,
                                                  num_samples_to_estimate_support=num_samples_to_estimate_support)
        super().__init__(prior, accept_reject_fn=thresholder, sample_with="rejection")
        self.quantile = quantile
        self.prior_mass = float(thresholder(sample_prior(prior, num_mass_samples, seed + 1)).float().mean())
        self.wide: Optional[Distribution] = None
        if self.resamples:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 2)
                draws = self.posterior_at_x_o.sample((10_000,))
            scale = WIDE_SCALE * draws.std(dim=0).clamp_min(1e-12)
            self.wide = Independent(Normal(draws.mean(dim=0), scale), 1)

    @property
    def resamples(self) -> bool:
        """Whether the region is too small for rejection from the prior (then: importance resampling)."""
        return self.prior_mass < MIN_REJECTION_MASS

    def sample(self, sample_shape: Any = torch.Size(), **kwargs: Any) -> Tensor:
        if self.resamples:
            return self._resample(torch.Size(sample_shape))
        kwargs.setdefault("print_rejected_frac", False)
        kwargs.setdefault("save_acceptance_rate", True)
        return super().sample(sample_shape, **kwargs)

    def _resample(self, sample_shape: torch.Size) -> Tensor:
        assert self.wide is not None
        num = sample_shape.numel()
        total = num * RESAMPLING_CANDIDATES
        from_wide = torch.rand(total) < 0.5
        dim = self.wide.event_shape[0]
        candidates = torch.empty(total, dim)
        candidates[from_wide] = self.wide.sample((int(from_wide.sum()),))
        candidates[~from_wide] = self.posterior_at_x_o.sample((int((~from_wide).sum()),)).reshape(-1, dim)
        log_g = torch.logsumexp(torch.stack([self.posterior_at_x_o.log_prob(candidates),
                                             self.wide.log_prob(candidates)]), dim=0) - math.log(2.0)
        inside = within_support(self._prior, candidates)
        inside[inside.clone()] = self.contains(candidates[inside])
        log_weights = torch.full((total,), -torch.inf)
        log_weights[inside] = self._prior.log_prob(candidates[inside]) - log_g[inside]
        log_weights = log_weights.reshape(num, RESAMPLING_CANDIDATES)
        empty = torch.isinf(log_weights).all(dim=1)
        log_weights[empty] = 0.0  # no candidate inside (rare: nearly all posterior draws are): keep any
        picked = torch.multinomial(log_weights.softmax(dim=1), 1).squeeze(1)
        chosen = candidates.reshape(num, RESAMPLING_CANDIDATES, -1)[torch.arange(num), picked]
        return chosen.reshape(*sample_shape, -1)

    def contains(self, theta: Tensor) -> Tensor:
        """Whether each θ [n, D] lies inside the region."""
        return self._accept_reject_fn(theta).bool()
