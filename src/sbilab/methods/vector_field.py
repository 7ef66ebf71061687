"""FMPE (flow matching) and NPSE (score matching): vector-field networks, validated on a fixed time grid."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Callable, Mapping, Optional

from sbi.neural_nets import posterior_flow_nn, posterior_score_nn
from torch import Tensor, nn
from torch.distributions import Distribution

from sbilab.errors import ConfigError
from sbilab.methods.base import Method
from sbilab.methods.estimators import VECTOR_FIELD_MODELS


class _VectorFieldMethod(Method):
    """Shared by FMPE and NPSE: per-sample loss = estimator.loss; validation on a fixed time grid."""

    family = "vector_field"
    models = VECTOR_FIELD_MODELS

    def __init__(self, sample_with: Optional[str] = None, sampling: Optional[Mapping[str, Any]] = None,
                 validation_times: int = 10, validation_times_nugget: float = 0.05) -> None:
        super().__init__(sample_with=sample_with, sampling=sampling)
        if not isinstance(validation_times, int) or validation_times < 1:
            raise ConfigError(f"method.validation_times={validation_times!r} is invalid: expected an integer >= 1")
        self.validation_times = validation_times
        self.validation_times_nugget = float(validation_times_nugget)

    @abstractmethod
    def _builder(self, **kwargs: Any) -> Callable[[Tensor, Tensor], nn.Module]: ...

    def build_estimator(self, estimator_cfg: Mapping[str, Any], theta: Tensor, x: Tensor,
                        embedding_net: Optional[nn.Module] = None,
                        prior: Optional[Distribution] = None) -> nn.Module:
        return self._builder(**self._builder_kwargs(estimator_cfg, embedding_net))(theta, x)

    def loss(self, estimator: nn.Module, theta: Tensor, x: Tensor) -> Tensor:
        return estimator.loss(theta, x)

    def validation_loss(self, estimator: nn.Module, theta: Tensor, x: Tensor) -> Tensor:
        """sbi's fixed validation grid: every row at each of ``validation_times`` times; mean per row."""
        nugget = self.validation_times_nugget
        times = estimator.solve_schedule(self.validation_times, t_min=estimator.t_min + nugget,
                                         t_max=estimator.t_max - nugget).to(theta.device)
        num_times, batch_size = times.shape[0], theta.shape[0]
        losses = estimator.loss(
            theta.repeat(num_times, *([1] * (theta.ndim - 1))),
            x.repeat(num_times, *([1] * (x.ndim - 1))),
            times=times.repeat_interleave(batch_size, dim=0),
        )
        return losses.reshape(num_times, batch_size).mean(dim=0)


class FMPE(_VectorFieldMethod):
    """Flow-matching posterior estimation (sbi's FMPE, ``posterior_flow_nn``)."""

    name = "fmpe"
    sample_with_choices = ("ode", "sde")

    def _builder(self, **kwargs: Any) -> Callable[[Tensor, Tensor], nn.Module]:
        return posterior_flow_nn(**kwargs)


class NPSE(_VectorFieldMethod):
    """Neural posterior score estimation (sbi's NPSE, ``posterior_score_nn``); ``sde_type``: ve, vp, subvp."""

    name = "npse"
    sample_with_choices = ("sde", "ode")
    SDE_TYPES = ("ve", "vp", "subvp")

    def __init__(self, sde_type: str = "ve", sample_with: Optional[str] = None,
                 sampling: Optional[Mapping[str, Any]] = None, validation_times: int = 10,
                 validation_times_nugget: float = 0.05) -> None:
        super().__init__(sample_with=sample_with, sampling=sampling, validation_times=validation_times,
                         validation_times_nugget=validation_times_nugget)
        if sde_type not in self.SDE_TYPES:
            raise ConfigError(f"method.sde_type={sde_type!r} is invalid: allowed: {', '.join(self.SDE_TYPES)}")
        self.sde_type = sde_type

    def _builder(self, **kwargs: Any) -> Callable[[Tensor, Tensor], nn.Module]:
        return posterior_score_nn(sde_type=self.sde_type, **kwargs)
