"""Posterior samplers: sbi's parameter dataclass per ``method.sample_with``, and a VI posterior
that fits itself to each new x."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from sbi.inference.posteriors import DirectPosterior, VIPosterior
from sbi.inference.posteriors.posterior_parameters import (
    DirectPosteriorParameters,
    ImportanceSamplingPosteriorParameters,
    MCMCPosteriorParameters,
    RejectionPosteriorParameters,
    VectorFieldPosteriorParameters,
    VIPosteriorParameters,
)
from sbi.utils.sbiutils import within_support
from torch import Tensor

from sbilab.errors import SamplingError

#: ``method.sample_with`` → sbi's parameters dataclass for that posterior
POSTERIOR_PARAMETERS = {
    "direct": DirectPosteriorParameters,
    "mcmc": MCMCPosteriorParameters,
    "rejection": RejectionPosteriorParameters,
    "vi": VIPosteriorParameters,
    "importance": ImportanceSamplingPosteriorParameters,
    "ode": VectorFieldPosteriorParameters,
    "sde": VectorFieldPosteriorParameters,
}


def plain_container(value: Any) -> Any:
    """OmegaConf containers (specs rebuilt without ``_convert_``) as plain dicts/lists."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    return value


class FittedVIPosterior(VIPosterior):
    """sbi's single-x ``VIPosterior`` that fits q to each new x before sampling or log_prob.

    ``train_kwargs`` go to ``VIPosterior.train`` (e.g. ``max_num_iters``, ``n_particles``).
    A diagnostic over many test x therefore fits one q per x (slow, but correct).
    """

    def __init__(self, *args: Any, train_kwargs: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._train_kwargs = {"show_progress_bar": False, **dict(train_kwargs or {})}

    def _fit_to(self, x: Optional[Tensor]) -> None:
        x = self._x_else_default_x(x)
        if x is None:
            raise RuntimeError("VI posterior: pass x (or set a default x) to sample or evaluate it")
        x = torch.as_tensor(x, dtype=torch.float32).reshape(1, -1)
        trained = self._trained_on
        if trained is None or trained.shape != x.shape or bool((trained != x).any()):
            self.set_default_x(x)
            with torch.enable_grad():  # fitting q needs gradients, also when the caller evaluates under no_grad
                self.train(x=x, **self._train_kwargs)

    def sample(self, sample_shape: Any = torch.Size(), x: Optional[Tensor] = None,
               show_progress_bars: bool = True) -> Tensor:
        self._fit_to(x)
        return super().sample(sample_shape, x=self._x_else_default_x(x), show_progress_bars=show_progress_bars)

    def log_prob(self, theta: Tensor, x: Optional[Tensor] = None, track_gradients: bool = False) -> Tensor:
        self._fit_to(x)
        return super().log_prob(theta, x=self._x_else_default_x(x), track_gradients=track_gradients)




#: the smallest share of the flow's mass inside the prior that direct sampling accepts (10k samples then
#: cost at most 10 million flow draws, about a minute); below it sbi's rejection loop would run for hours
MIN_DIRECT_ACCEPTANCE = 1e-3
#: flow draws of the acceptance probe (enough to see MIN_DIRECT_ACCEPTANCE: 50 expected acceptances)
ACCEPTANCE_PROBE_DRAWS = 50_000


class ProbedDirectPosterior(DirectPosterior):
    """sbi's ``DirectPosterior`` that refuses, in one line, to sample a flow whose mass lies outside the prior.

    sbi's rejection of samples outside the prior has no draw limit: an undertrained flow on a
    bounded prior of ten or more dimensions can put one draw in 10⁶ inside it, and sampling then
    runs for hours. Before each ``sample`` call this one draws ``ACCEPTANCE_PROBE_DRAWS`` from the
    flow with torch's generator forked (the samples that follow are sbi's own, bit for bit) and
    raises ``SamplingError`` when fewer than ``MIN_DIRECT_ACCEPTANCE`` of them land in the prior.
    """

    def sample(self, sample_shape: Any = torch.Size(), x: Optional[Tensor] = None, **kwargs: Any) -> Tensor:
        if kwargs.get("reject_outside_prior", True):
            self._check_acceptance(self._x_else_default_x(x))
        return super().sample(sample_shape, x=x, **kwargs)

    @torch.no_grad()
    def _check_acceptance(self, x: Optional[Tensor]) -> None:
        if x is None:
            return
        condition = torch.as_tensor(x, dtype=torch.float32).reshape(1, *self.posterior_estimator.condition_shape)
        with torch.random.fork_rng(devices=[]):
            draws = self.posterior_estimator.sample(torch.Size([ACCEPTANCE_PROBE_DRAWS]), condition=condition)
            draws = draws.reshape(ACCEPTANCE_PROBE_DRAWS, -1)
            inside = within_support(self.prior, draws) & torch.isfinite(draws).all(-1)
        acceptance = float(inside.float().mean())
        if acceptance < MIN_DIRECT_ACCEPTANCE:
            raise SamplingError(
                f"method.sample_with=direct: the trained posterior puts {acceptance:.3%} of its mass inside the "
                f"prior at this x (below {MIN_DIRECT_ACCEPTANCE:.1%}; rejecting the rest would take hours): train "
                f"on more simulations, use a flow on the prior's unbounded space (estimator=zuko_maf_unconstrained), "
                f"or method.sample_with=mcmc"
            )
