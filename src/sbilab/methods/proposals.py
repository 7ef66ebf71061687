"""Where a sequential round draws its θ: the last posterior at x_o (SNPE) or the prior truncated to
that posterior's highest-density region (TSNPE, Deistler et al. 2022).

Both sample like a prior (``sample((n,))``, no x, no progress bar), so the simulation stage,
its per-index seeds and its cache treat every round alike.
"""

from __future__ import annotations

from typing import Any

import torch
from sbi.utils import RestrictedPrior, get_density_thresholder
from torch import Tensor
from torch.distributions import Distribution

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


class TruncatedPrior(RestrictedPrior):
    """The prior restricted to the posterior's ``1 − quantile`` highest-density region at x_o.

    sbi's :class:`~sbi.utils.RestrictedPrior` with :func:`~sbi.utils.get_density_thresholder`,
    sampled by rejection from the prior (what Deistler et al. use), quietly: sbi prints the
    rejected fraction on every draw; here it is kept as :attr:`acceptance_rate` and
    :attr:`prior_mass` (the prior mass of the region, measured once on ``num_mass_samples``
    prior draws), which the run records per round.
    """

    def __init__(self, prior: Distribution, posterior: Any, x_o: Tensor, quantile: float,
                 num_samples_to_estimate_support: int, seed: int, num_mass_samples: int = 20_000) -> None:
        with torch.random.fork_rng(devices=[]):  # the threshold is a function of the seed alone
            torch.manual_seed(seed)
            thresholder = get_density_thresholder(PosteriorAtObservation(posterior, x_o), quantile=quantile,
                                                  num_samples_to_estimate_support=num_samples_to_estimate_support)
        super().__init__(prior, accept_reject_fn=thresholder, sample_with="rejection")
        self.quantile = quantile
        self.prior_mass = float(thresholder(sample_prior(prior, num_mass_samples, seed + 1)).float().mean())

    def sample(self, sample_shape: Any = torch.Size(), **kwargs: Any) -> Tensor:
        kwargs.setdefault("print_rejected_frac", False)
        kwargs.setdefault("save_acceptance_rate", True)
        return super().sample(sample_shape, **kwargs)

    def contains(self, theta: Tensor) -> Tensor:
        """Whether each θ [n, D] lies inside the region."""
        return self._accept_reject_fn(theta).bool()
