"""NPE (sbi's NPE-C, single round), sequential NPE with the atomic (APT) loss, and truncated sequential NPE."""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

import torch
from sbi.inference.potentials import posterior_estimator_based_potential
from sbi.neural_nets import posterior_nn
from sbi.utils.torchutils import repeat_rows
from torch import Tensor, nn
from torch.distributions import Distribution

from sbilab.errors import ConfigError
from sbilab.methods.base import Method
from sbilab.methods.estimators import POSTERIOR_MODELS, UNCONSTRAINED
from sbilab.methods.proposals import PosteriorAtObservation, TruncatedPrior


class NPE(Method):
    """Neural posterior estimation (sbi's NPE-C, first round): minimise −log q(θ | x)."""

    name = "npe"
    family = "density"
    models = POSTERIOR_MODELS
    models_theta_density = True
    sample_with_choices = ("direct", "rejection", "mcmc", "vi", "importance")

    def build_estimator(self, estimator_cfg: Mapping[str, Any], theta: Tensor, x: Tensor,
                        embedding_net: Optional[nn.Module] = None,
                        prior: Optional[Distribution] = None) -> nn.Module:
        kwargs = self._builder_kwargs(estimator_cfg, embedding_net)
        if kwargs.get("z_score_theta") == UNCONSTRAINED:
            if prior is None:
                raise ValueError("estimator.z_score_theta=transform_to_unconstrained needs the prior (its support)")
            kwargs["x_dist"] = prior  # sbi's name for the distribution of the flow's variable, here θ
        return posterior_nn(**kwargs)(theta, x)

    def loss(self, estimator: nn.Module, theta: Tensor, x: Tensor) -> Tensor:
        return estimator.loss(theta, condition=x)

    def _potential(self, estimator: nn.Module, prior: Distribution) -> tuple[Any, Any]:
        return posterior_estimator_based_potential(estimator, prior, x_o=None)


def atomic_npe_loss(estimator: nn.Module, prior: Distribution, theta: Tensor, x: Tensor, num_atoms: int) -> Tensor:
    """sbi NPE-C's atomic (APT) loss per row: −log of the proposal posterior over atoms [B].

    For each row, ``num_atoms − 1`` contrasting θ are drawn without replacement from the
    rest of the batch (``torch.multinomial``, global RNG, as sbi); the logits are
    log q(θ_atom | x) − log p(θ_atom) and the loss is the softmax −log-probability of the
    row's own θ (``_log_prob_proposal_posterior_atomic``, sbi 0.27 ``npe_c.py``).
    """
    batch_size = theta.shape[0]
    num_atoms = int(min(max(num_atoms, 2), batch_size))
    repeated_x = repeat_rows(x, num_atoms)
    probs = torch.ones(batch_size, batch_size) * (1 - torch.eye(batch_size)) / (batch_size - 1)
    choices = torch.multinomial(probs, num_samples=num_atoms - 1, replacement=False)
    atomic_theta = torch.cat((theta[:, None, :], theta[choices]), dim=1).reshape(batch_size * num_atoms, -1)
    log_prob_prior = prior.log_prob(atomic_theta).reshape(batch_size, num_atoms)
    log_prob_posterior = estimator.log_prob(
        atomic_theta.reshape(1, batch_size * num_atoms, -1),
        repeated_x.reshape(batch_size * num_atoms, *estimator.condition_shape),
    ).reshape(batch_size, num_atoms)
    logits = log_prob_posterior - log_prob_prior
    return -(logits[:, 0] - torch.logsumexp(logits, dim=-1))


class SNPE(NPE):
    """Sequential NPE (sbi's NPE-C with the atomic loss), ``num_rounds`` rounds at one observation.

    Round 0 trains on prior simulations with NPE's loss; each later round simulates from
    the previous posterior at x_o, appends to all earlier data and continues training the
    same network with the atomic APT loss (see :func:`sbilab.training.train_sequential`).
    ``simulation.num_simulations`` is the total budget, split evenly over the rounds.
    """

    name = "snpe"
    amortised = False

    def __init__(self, num_rounds: int = 2, num_atoms: int = 10, sample_with: Optional[str] = None,
                 sampling: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(sample_with=sample_with, sampling=sampling)
        if not isinstance(num_rounds, int) or isinstance(num_rounds, bool) or num_rounds < 1:
            raise ConfigError(f"method.num_rounds={num_rounds!r} is invalid: expected an integer >= 1")
        if not isinstance(num_atoms, int) or isinstance(num_atoms, bool) or num_atoms < 2:
            raise ConfigError(f"method.num_atoms={num_atoms!r} is invalid: expected an integer >= 2")
        self.num_rounds = num_rounds
        self.num_atoms = num_atoms
        self.round = 0
        self.prior: Optional[Distribution] = None

    def at_round(self, round_: int, prior: Distribution) -> "SNPE":
        """A copy of this method that trains round ``round_`` (the prior enters the atomic loss)."""
        method = copy.copy(self)
        method.round = int(round_)
        method.prior = prior
        return method

    def round_sizes(self, total: int) -> list[int]:
        """Simulations per round: ``total`` split evenly, the remainder in round 0."""
        if total < self.num_rounds:
            raise ConfigError(f"simulation.num_simulations={total} is less than method.num_rounds={self.num_rounds}")
        base = total // self.num_rounds
        return [base + total - base * self.num_rounds] + [base] * (self.num_rounds - 1)

    def loss(self, estimator: nn.Module, theta: Tensor, x: Tensor) -> Tensor:
        if self.round == 0:
            return estimator.loss(theta, condition=x)
        if self.prior is None:
            raise RuntimeError("SNPE: call at_round(round, prior) before training a round > 0")
        return atomic_npe_loss(estimator, self.prior, theta, x, self.num_atoms)

    def next_proposal(self, posterior: Any, x_o: Tensor, prior: Distribution, seed: int) -> Any:
        """The next round's proposal: this round's posterior at x_o."""
        return PosteriorAtObservation(posterior, x_o)

    def proposal_metrics(self, proposal: Any) -> dict[str, float]:
        """What a round records about the proposal it built (nothing for the posterior itself)."""
        return {}


class TSNPE(SNPE):
    """Truncated sequential NPE (Deistler et al. 2022): each later round simulates from the prior
    truncated to the ``1 − quantile`` highest-density region of the last posterior at x_o.

    Every round trains with NPE's own loss on all simulations so far: inside the region the
    truncated prior is the prior up to a constant, so the posterior at x_o stays unbiased without
    the atomic loss's correction (and without its leakage). The region is sbi's density
    thresholder on ``num_samples_to_estimate_support`` posterior draws (:class:`TruncatedPrior`).
    Calibration then holds on the region, not on the whole prior: the run's test set is drawn
    from the last round's region. That argument needs the last region inside every earlier one;
    ``nesting_correction`` weights the loss so that it need not be (:mod:`sbilab.training.truncation`).
    """

    name = "tsnpe"
    truncates = True

    def __init__(self, num_rounds: int = 4, quantile: float = 1e-4, num_samples_to_estimate_support: int = 100_000,
                 sample_with: Optional[str] = None, sampling: Optional[Mapping[str, Any]] = None,
                 nesting_correction: bool = False) -> None:
        super().__init__(num_rounds=num_rounds, sample_with=sample_with, sampling=sampling)
        if not isinstance(nesting_correction, bool):
            raise ConfigError(f"method.nesting_correction={nesting_correction!r} is invalid: expected true or false")
        self.nesting_correction = nesting_correction
        if not isinstance(quantile, (int, float)) or isinstance(quantile, bool) or not 0 < quantile < 0.5:
            raise ConfigError(f"method.quantile={quantile!r} is invalid: expected a number in (0, 0.5), "
                              "the posterior mass left outside the region (Deistler et al.: 1e-4)")
        n_support = num_samples_to_estimate_support
        if not isinstance(n_support, int) or isinstance(n_support, bool) or n_support * quantile < 1:
            raise ConfigError(f"method.num_samples_to_estimate_support={n_support!r} is invalid: expected an "
                              f"integer >= 1/method.quantile ({1 / quantile:.0f}), so the threshold is a sample")
        self.quantile = float(quantile)
        self.num_samples_to_estimate_support = n_support

    def loss(self, estimator: nn.Module, theta: Tensor, x: Tensor) -> Tensor:
        return estimator.loss(theta, condition=x)

    def next_proposal(self, posterior: Any, x_o: Tensor, prior: Distribution, seed: int) -> TruncatedPrior:
        """The prior truncated to this round's posterior's highest-density region at x_o."""
        return TruncatedPrior(prior, posterior, x_o, self.quantile, self.num_samples_to_estimate_support, seed)

    def proposal_metrics(self, proposal: Any) -> dict[str, float]:
        return {"round/region_prior_mass": proposal.prior_mass}

