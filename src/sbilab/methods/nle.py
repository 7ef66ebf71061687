"""NLE (sbi's NLE-A): a conditional density of x given θ, sampled by MCMC on its potential."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from sbi.inference.potentials import likelihood_estimator_based_potential
from sbi.neural_nets import likelihood_nn
from torch import Tensor, nn
from torch.distributions import Distribution

from sbilab.methods.base import Method
from sbilab.methods.estimators import DENSITY_MODELS


class NLE(Method):
    """Neural likelihood estimation (sbi's NLE-A): minimise −log q(x | θ); posterior by MCMC."""

    name = "nle"
    family = "density"
    models = DENSITY_MODELS
    sample_with_choices = ("mcmc", "rejection", "vi", "importance")
    supports_embedding = False  # x is what the network models; likelihood_nn's embedding is for θ

    def build_estimator(self, estimator_cfg: Mapping[str, Any], theta: Tensor, x: Tensor,
                        embedding_net: Optional[nn.Module] = None,
                        prior: Optional[Distribution] = None) -> nn.Module:
        return likelihood_nn(**self._builder_kwargs(estimator_cfg, embedding_net))(theta, x)

    def loss(self, estimator: nn.Module, theta: Tensor, x: Tensor) -> Tensor:
        return estimator.loss(x, condition=theta)

    def _potential(self, estimator: nn.Module, prior: Distribution) -> tuple[Any, Any]:
        return likelihood_estimator_based_potential(estimator, prior, x_o=None)
