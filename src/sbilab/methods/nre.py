"""NRE-B (SRE) and NRE-C: a classifier of joint vs marginal (θ, x) pairs, its logit the log-ratio."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from sbi.inference.potentials import ratio_estimator_based_potential
from sbi.neural_nets import classifier_nn
from sbi.utils.torchutils import repeat_rows
from torch import Tensor, nn
from torch.distributions import Distribution

from sbilab.errors import ConfigError
from sbilab.methods.base import Method
from sbilab.methods.estimators import CLASSIFIER_MODELS


def classifier_logits(classifier: nn.Module, theta: Tensor, x: Tensor, num_atoms: int) -> Tensor:
    """sbi's ``_classifier_logits``: each x against its θ and ``num_atoms − 1`` θ from the batch.

    Returns [B, num_atoms]; column 0 is the jointly drawn pair.
    """
    batch_size = theta.shape[0]
    repeated_x = repeat_rows(x, num_atoms)
    probs = torch.ones(batch_size, batch_size) * (1 - torch.eye(batch_size)) / (batch_size - 1)
    choices = torch.multinomial(probs, num_samples=num_atoms - 1, replacement=False)
    atomic_theta = torch.cat((theta[:, None, :], theta[choices]), dim=1).reshape(batch_size * num_atoms, -1)
    return classifier(atomic_theta, repeated_x).reshape(batch_size, num_atoms)


def nre_b_loss(classifier: nn.Module, theta: Tensor, x: Tensor, num_atoms: int) -> Tensor:
    """NRE-B (SRE) per row: 1-of-``num_atoms`` softmax cross-entropy (sbi ``nre_b.py`` ``_loss``)."""
    logits = classifier_logits(classifier, theta, x, num_atoms)
    return -(logits[:, 0] - torch.logsumexp(logits, dim=-1))


def nre_c_loss(classifier: nn.Module, theta: Tensor, x: Tensor, num_classes: int, gamma: float) -> Tensor:
    """NRE-C (contrastive NRE) per row; its mean is sbi ``nre_c.py`` ``_loss``.

    K = ``num_classes`` dependently drawn θ plus one marginal class; ``gamma`` weighs the
    joint against the marginal class (p_joint = γ/(1+γ), p_marginal = 1/(1+γ)).
    """
    batch_size = theta.shape[0]
    logits_marginal = classifier_logits(classifier, theta, x, num_classes + 1)[:, 1:]
    logits_joint = classifier_logits(classifier, theta, x, num_classes)
    dtype = logits_marginal.dtype
    log_gamma = torch.tensor(gamma, dtype=dtype).log()
    log_k = torch.tensor(num_classes, dtype=dtype).log()
    denominator_marginal = torch.concat([log_gamma + logits_marginal, log_k.expand((batch_size, 1))], dim=-1)
    denominator_joint = torch.concat([log_gamma + logits_joint, log_k.expand((batch_size, 1))], dim=-1)
    log_prob_marginal = log_k - torch.logsumexp(denominator_marginal, dim=-1)
    log_prob_joint = log_gamma + logits_joint[:, 0] - torch.logsumexp(denominator_joint, dim=-1)
    p_joint, p_marginal = gamma / (1 + gamma), 1 / (1 + gamma)
    return -(p_marginal * log_prob_marginal + p_joint * log_prob_joint)


class NRE(Method):
    """Neural ratio estimation: sbi's NRE-B (``variant: b``, SRE) or NRE-C (``variant: c``).

    The contrastive losses couple the rows of a batch (atoms are drawn from the batch);
    ``loss`` returns per-row terms whose mean is sbi's batch loss. ``num_atoms`` (B) and
    ``num_classes`` (C: the number of atoms is ``num_classes + 1``) are capped at the
    batch size of each batch (sbi caps them once, at the smaller of the two loaders'
    batch sizes: the same unless the validation split is smaller than the atoms).
    """

    name = "nre"
    family = "classifier"
    models = CLASSIFIER_MODELS
    sample_with_choices = ("mcmc", "rejection", "vi", "importance")
    VARIANTS = ("b", "c")

    def __init__(self, variant: str = "b", num_atoms: int = 10, num_classes: int = 5, gamma: float = 1.0,
                 sample_with: Optional[str] = None, sampling: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(sample_with=sample_with, sampling=sampling)
        variant = str(variant).lower()
        if variant not in self.VARIANTS:
            raise ConfigError(f"method.variant={variant!r} is invalid: allowed: {', '.join(self.VARIANTS)}")
        if variant == "b" and (not isinstance(num_atoms, int) or num_atoms < 2):
            raise ConfigError(f"method.num_atoms={num_atoms!r} is invalid: expected an integer >= 2")
        if variant == "c" and (not isinstance(num_classes, int) or num_classes < 1):
            raise ConfigError(f"method.num_classes={num_classes!r} is invalid: expected an integer >= 1")
        if variant == "c" and not (isinstance(gamma, (int, float)) and gamma > 0):
            raise ConfigError(f"method.gamma={gamma!r} is invalid: expected a number > 0")
        self.variant = variant
        self.num_atoms = num_atoms
        self.num_classes = num_classes
        self.gamma = float(gamma)

    def build_estimator(self, estimator_cfg: Mapping[str, Any], theta: Tensor, x: Tensor,
                        embedding_net: Optional[nn.Module] = None,
                        prior: Optional[Distribution] = None) -> nn.Module:
        return classifier_nn(**self._builder_kwargs(estimator_cfg, embedding_net, key="embedding_net_x"))(theta, x)

    def loss(self, estimator: nn.Module, theta: Tensor, x: Tensor) -> Tensor:
        batch_size = theta.shape[0]
        if self.variant == "b":
            return nre_b_loss(estimator, theta, x, int(min(max(self.num_atoms, 2), batch_size)))
        num_atoms = int(min(max(self.num_classes + 1, 2), batch_size))
        return nre_c_loss(estimator, theta, x, num_atoms - 1, self.gamma)

    def _potential(self, estimator: nn.Module, prior: Distribution) -> tuple[Any, Any]:
        return ratio_estimator_based_potential(estimator, prior, x_o=None)
