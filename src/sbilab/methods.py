"""Inference methods: which sbi estimator to build, its training loss, and the posterior.

A method is what differs between NPE, NLE, NRE, ...: the network family, the
per-sample loss the Lightning loop minimises, and how the trained network becomes
an sbi posterior. Everything else (data, loop, diagnostics, records) is shared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping

import torch
from sbi.inference.posteriors import DirectPosterior
from sbi.inference.posteriors.base_posterior import NeuralPosterior
from sbi.neural_nets import posterior_nn
from torch import Tensor, nn
from torch.distributions import Distribution

#: estimator config keys that describe the config itself, not the network
_META_KEYS = ("name",)

#: sbi builders each method accepts (sbi's `model_builders` names)
POSTERIOR_MODELS = ("maf", "nsf", "mdn", "made", "maf_rqs", "zuko_maf", "zuko_nsf", "zuko_ncsf", "zuko_sospf",
                    "zuko_naf", "zuko_unaf", "zuko_gf", "zuko_bpf", "zuko_nice")


def estimator_kwargs(estimator_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The sbi builder kwargs of an ``estimator`` config (its ``model`` and sizes)."""
    return {k: v for k, v in estimator_cfg.items() if k not in _META_KEYS}


class Method(ABC):
    """One inference method: network family, loss and posterior construction."""

    name: str
    #: sbi builder names this method can train
    models: tuple[str, ...]

    def check_estimator(self, estimator_cfg: Mapping[str, Any]) -> None:
        """Fail fast when the estimator does not belong to this method's family."""
        model = estimator_cfg.get("model")
        if model not in self.models:
            raise ValueError(
                f"estimator.model={model!r} cannot be trained by method={self.name!r}; "
                f"allowed: {', '.join(self.models)}"
            )

    @abstractmethod
    def build_estimator(self, estimator_cfg: Mapping[str, Any], theta: Tensor, x: Tensor) -> nn.Module:
        """A fresh network; z-scoring statistics come from (θ, x) of the training split."""

    @abstractmethod
    def loss(self, estimator: nn.Module, theta: Tensor, x: Tensor) -> Tensor:
        """Per-sample training loss [B]."""

    @abstractmethod
    def build_posterior(self, estimator: nn.Module, prior: Distribution) -> NeuralPosterior:
        """The sbi posterior around a trained network."""


class NPE(Method):
    """Neural posterior estimation (sbi's NPE-C, first round): minimise −log q(θ | x)."""

    name = "npe"
    models = POSTERIOR_MODELS

    def __init__(self, sample_with: str = "direct") -> None:
        if sample_with != "direct":
            raise ValueError(f"method.sample_with={sample_with!r}: NPE supports 'direct'")
        self.sample_with = sample_with

    def build_estimator(self, estimator_cfg: Mapping[str, Any], theta: Tensor, x: Tensor) -> nn.Module:
        self.check_estimator(estimator_cfg)
        return posterior_nn(**estimator_kwargs(estimator_cfg))(theta, x)

    def loss(self, estimator: nn.Module, theta: Tensor, x: Tensor) -> Tensor:
        return estimator.loss(theta, condition=x)

    def build_posterior(self, estimator: nn.Module, prior: Distribution) -> NeuralPosterior:
        estimator.eval()
        return DirectPosterior(posterior_estimator=estimator, prior=prior, device="cpu")


def placeholder_batch(theta_dim: int, x_dim: int, num: int = 2) -> tuple[Tensor, Tensor]:
    """Distinct rows of the right shapes, to rebuild a network before loading its state."""
    grid = torch.arange(num, dtype=torch.float32)[:, None]
    return grid.expand(num, theta_dim).clone(), grid.expand(num, x_dim).clone()
