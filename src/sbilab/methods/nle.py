"""NLE (sbi's NLE-A): a conditional density of x given θ, sampled by MCMC on its potential."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from sbi.inference.potentials import likelihood_estimator_based_potential
from sbi.neural_nets import likelihood_nn
from torch import Tensor, nn
from torch.distributions import Distribution

from sbilab.errors import ConfigError
from sbilab.methods.base import Method
from sbilab.methods.estimators import DENSITY_MODELS
from sbilab.methods.symmetry import SignSymmetrizedLikelihood


class NLE(Method):
    """Neural likelihood estimation (sbi's NLE-A): minimise −log q(x | θ); posterior by MCMC."""

    name = "nle"
    family = "density"
    models = DENSITY_MODELS
    sample_with_choices = ("mcmc", "rejection", "vi", "importance")
    supports_embedding = False  # x is what the network models; likelihood_nn's embedding is for θ

    def __init__(self, sample_with: Optional[str] = None, sampling: Optional[Mapping[str, Any]] = None,
                 sign_invariant: Sequence[int] = ()) -> None:
        """``sign_invariant``: indices of θ whose sign the simulator ignores; the learned likelihood is
        averaged over their flips (:mod:`sbilab.methods.symmetry`)."""
        super().__init__(sample_with=sample_with, sampling=sampling)
        indices = list(sign_invariant or ())
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices) \
                or len(set(indices)) != len(indices):
            raise ConfigError(f"method.sign_invariant={indices!r} is invalid: expected distinct θ indices "
                              "(0-based integers), e.g. [2, 3]")
        self.sign_invariant = tuple(indices)

    def check_parameters(self, names: Sequence[str]) -> None:
        outside = [i for i in self.sign_invariant if i >= len(names)]
        if outside:
            raise ConfigError(f"method.sign_invariant={list(self.sign_invariant)}: θ has {len(names)} entries "
                              f"({', '.join(names)}); allowed indices: 0 to {len(names) - 1}")

    def build_estimator(self, estimator_cfg: Mapping[str, Any], theta: Tensor, x: Tensor,
                        embedding_net: Optional[nn.Module] = None,
                        prior: Optional[Distribution] = None) -> nn.Module:
        return likelihood_nn(**self._builder_kwargs(estimator_cfg, embedding_net))(theta, x)

    def loss(self, estimator: nn.Module, theta: Tensor, x: Tensor) -> Tensor:
        return estimator.loss(x, condition=theta)

    def _potential(self, estimator: nn.Module, prior: Distribution) -> tuple[Any, Any]:
        if self.sign_invariant:
            estimator = SignSymmetrizedLikelihood(estimator, self.sign_invariant)
        return likelihood_estimator_based_potential(estimator, prior, x_o=None)
