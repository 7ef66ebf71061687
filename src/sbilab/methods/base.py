"""The ``Method`` interface: network family, per-sample loss and posterior construction."""

from __future__ import annotations

import importlib.util
import typing
from abc import ABC, abstractmethod
from dataclasses import asdict, fields
from typing import Any, Mapping, Optional, Sequence

from sbi.inference.posteriors import (
    ImportanceSamplingPosterior,
    MCMCPosterior,
    RejectionPosterior,
    VectorFieldPosterior,
)
from sbi.inference.posteriors.base_posterior import NeuralPosterior
from torch import Tensor, nn
from torch.distributions import Distribution

from sbilab.errors import ConfigError
from sbilab.methods.estimators import FAMILY_EXAMPLE, UNCONSTRAINED, estimator_family, estimator_kwargs
from sbilab.methods.samplers import (
    POSTERIOR_PARAMETERS,
    FittedVIPosterior,
    ProbedDirectPosterior,
    plain_container,
)
from sbilab.methods.slice_sampler import SLICE_VECTORIZED, VectorizedSliceMCMCPosterior

#: sbi's MCMC methods (``MCMCPosteriorParameters.method``); sbilab adds ``slice_vectorized``
MCMC_METHODS = typing.get_args(next(f.type for f in fields(POSTERIOR_PARAMETERS["mcmc"]) if f.name == "method"))


class Method(ABC):
    """One inference method: network family, loss and posterior construction.

    ``sample_with`` picks the posterior's sampler (one of ``sample_with_choices``;
    None: the method's default) and ``sampling`` holds one dict of settings per
    sampler, e.g. ``{"mcmc": {"method": "slice_np_vectorized", "num_chains": 20}}``:
    the fields of sbi's ``<Sampler>PosteriorParameters`` dataclass (``vi`` also takes
    ``train:`` kwargs for ``VIPosterior.train``). Only the chosen sampler's dict is
    used; it is validated when the method is built, before any simulation.
    """

    name: str
    #: which estimator family this method trains
    family: str
    #: sbi builder names this method can train
    models: tuple[str, ...]
    #: samplers this method's posterior supports; the first is the default
    sample_with_choices: tuple[str, ...]
    #: whether a learned embedding of x (a summary's ``embedding_net()``) can be trained with it
    supports_embedding: bool = True
    #: whether the network is a density over θ (then θ can be mapped to the prior's unbounded space)
    models_theta_density: bool = False
    #: whether one network is trained on prior simulations (sequential methods train at one x_o, per round)
    amortised: bool = True
    #: whether the posterior holds on a truncated prior only (TSNPE), where calibration is then checked
    truncates: bool = False

    def __init__(self, sample_with: Optional[str] = None, sampling: Optional[Mapping[str, Any]] = None) -> None:
        sample_with = sample_with or self.sample_with_choices[0]
        if sample_with not in self.sample_with_choices:
            raise ConfigError(
                f"method.sample_with={sample_with!r} is not available for method={self.name!r}; "
                f"allowed: {', '.join(self.sample_with_choices)}"
            )
        self.sample_with = sample_with
        self.sampling = {str(k): dict(plain_container(v) or {}) for k, v in (plain_container(sampling) or {}).items()}
        self._posterior_parameters()  # fail fast on a bad sampler setting

    # -- validation -----------------------------------------------------------------------------

    def check_estimator(self, estimator_cfg: Mapping[str, Any]) -> None:
        """Fail fast when the estimator does not belong to this method's family."""
        model = estimator_cfg.get("model")
        family = estimator_family(estimator_cfg)
        if model not in self.models or family not in (None, self.family):
            given = f" (a {family} estimator)" if family and family != self.family else ""
            raise ConfigError(
                f"estimator.model={model!r}{given} cannot be trained by method={self.name!r}; "
                f"allowed estimator.model: {', '.join(self.models)} "
                f"(family {self.family}, e.g. estimator={FAMILY_EXAMPLE[self.family]})"
            )
        if not self.accepts_z_scoring(estimator_cfg):
            raise ConfigError(
                f"estimator.z_score_theta={UNCONSTRAINED} (a flow on the prior's unbounded space) needs "
                f"method=npe or snpe and a zuko_* model; got method={self.name!r}, estimator.model={model!r} "
                f"(other methods: a z-scored estimator, e.g. estimator={FAMILY_EXAMPLE[self.family]})"
            )

    @classmethod
    def accepts_z_scoring(cls, estimator_cfg: Mapping[str, Any]) -> bool:
        """Whether this method can train the estimator's z-scoring choice: θ on the prior's unbounded
        space needs a zuko flow that models θ (sbi supports it for no other builder or side)."""
        if UNCONSTRAINED not in (estimator_cfg.get("z_score_theta"), estimator_cfg.get("z_score_x")):
            return True
        return (cls.models_theta_density and estimator_cfg.get("z_score_x") != UNCONSTRAINED
                and str(estimator_cfg.get("model")).startswith("zuko_"))

    def check_parameters(self, names: Sequence[str]) -> None:
        """Fail fast when a setting refers to a parameter θ does not have (``names``: the prior's).

        No method but NLE (``sign_invariant``) has such a setting: nothing to check by default."""
        return None

    def check_summary(self, summary: Any) -> None:
        """Fail fast when the summary brings a learned embedding this method cannot use."""
        if hasattr(summary, "embedding_net") and not self.supports_embedding:
            raise ConfigError(
                f"summary={type(summary).__name__} has a learned embedding of x but method={self.name!r} "
                f"models x itself; use a fixed summary (e.g. summary=hh_features) or a method that conditions "
                f"on x: npe, snpe, nre, fmpe, npse"
            )

    # -- network and loss -----------------------------------------------------------------------

    @abstractmethod
    def build_estimator(self, estimator_cfg: Mapping[str, Any], theta: Tensor, x: Tensor,
                        embedding_net: Optional[nn.Module] = None,
                        prior: Optional[Distribution] = None) -> nn.Module:
        """A fresh network; z-scoring statistics come from (θ, x) of the training split.

        ``embedding_net`` (a fresh module) embeds x inside the network and is trained with it.
        ``prior``: its support bounds θ, for ``estimator.z_score_theta=transform_to_unconstrained``.
        """

    @abstractmethod
    def loss(self, estimator: nn.Module, theta: Tensor, x: Tensor) -> Tensor:
        """Per-sample training loss [B] (its mean is the batch loss)."""

    def validation_loss(self, estimator: nn.Module, theta: Tensor, x: Tensor) -> Tensor:
        """Per-sample validation loss [B]; the training loss unless a method needs less noise."""
        return self.loss(estimator, theta, x)

    def _builder_kwargs(self, estimator_cfg: Mapping[str, Any], embedding_net: Optional[nn.Module],
                        key: str = "embedding_net") -> dict[str, Any]:
        self.check_estimator(estimator_cfg)
        kwargs = estimator_kwargs(estimator_cfg)
        if embedding_net is not None:
            if not self.supports_embedding:
                raise ConfigError(f"method={self.name!r} cannot train an embedding net of x")
            kwargs[key] = embedding_net
        return kwargs

    # -- posterior ------------------------------------------------------------------------------

    def _sampler_settings(self) -> dict[str, Any]:
        return dict(self.sampling.get(self.sample_with, {}))

    def _fast_slice(self) -> bool:
        """Whether MCMC runs sbilab's array-vectorised slice sampler (``mcmc.method: slice_vectorized``)."""
        return self.sample_with == "mcmc" and self._sampler_settings().get("method") == SLICE_VECTORIZED

    def _posterior_parameters(self) -> tuple[Any, dict[str, Any]]:
        """sbi's parameters dataclass for the chosen sampler, and VI's training kwargs."""
        settings = self._sampler_settings()
        if self._fast_slice():  # sbi's algorithm and settings, sbilab's sampler (sbilab.methods.slice_sampler)
            settings["method"] = "slice_np_vectorized"
        train_kwargs = dict(settings.pop("train", None) or {}) if self.sample_with == "vi" else {}
        cls = POSTERIOR_PARAMETERS[self.sample_with]
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(settings) - set(allowed))
        key = f"method.sampling.{self.sample_with}"
        if unknown:
            raise ConfigError(f"{key} has unknown keys {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        if self.sample_with == "mcmc" and "method" in settings and settings["method"] not in MCMC_METHODS:
            raise ConfigError(f"{key}.method={settings['method']!r} is not an MCMC method; allowed: "
                              f"{', '.join((*MCMC_METHODS, SLICE_VECTORIZED))}")
        try:
            params = cls(**settings)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{key}: {str(error).splitlines()[0]}") from None
        if self.sample_with == "mcmc":
            backend = {"_pyro": "pyro", "_pymc": "pymc"}.get(params.method[-5:])
            if backend and importlib.util.find_spec(backend) is None:
                raise ConfigError(
                    f"{key}.method={params.method!r} needs the {backend} package, which is not installed; "
                    f"allowed without it: slice_np, slice_np_vectorized, {SLICE_VECTORIZED}"
                )
        return params, train_kwargs

    def _potential(self, estimator: nn.Module, prior: Distribution) -> tuple[Any, Any]:
        """(potential_fn, theta_transform) for potential-based samplers."""
        raise NotImplementedError(f"method={self.name!r} has no potential")  # pragma: no cover

    def build_posterior(self, estimator: nn.Module, prior: Distribution) -> NeuralPosterior:
        """The sbi posterior around a trained network, sampled with ``sample_with``."""
        estimator.eval()
        params, train_kwargs = self._posterior_parameters()
        options = asdict(params)
        if self.sample_with == "direct":
            return ProbedDirectPosterior(posterior_estimator=estimator, prior=prior, device="cpu", **options)
        if self.sample_with in ("ode", "sde"):
            return VectorFieldPosterior(vector_field_estimator=estimator, prior=prior, device="cpu",
                                        sample_with=self.sample_with, **options)
        potential_fn, theta_transform = self._potential(estimator, prior)
        if self.sample_with == "mcmc":
            posterior_class = VectorizedSliceMCMCPosterior if self._fast_slice() else MCMCPosterior
            return posterior_class(potential_fn=potential_fn, theta_transform=theta_transform, proposal=prior,
                                   device="cpu", **options)
        if self.sample_with == "rejection":
            return RejectionPosterior(potential_fn=potential_fn, theta_transform=theta_transform, proposal=prior,
                                      device="cpu", **options)
        if self.sample_with == "importance":
            return ImportanceSamplingPosterior(potential_fn=potential_fn, proposal=prior, device="cpu", **options)
        if self.sample_with == "vi":
            return FittedVIPosterior(potential_fn=potential_fn, theta_transform=theta_transform, prior=prior,
                                     device="cpu", train_kwargs=train_kwargs, **options)
        raise AssertionError(self.sample_with)  # pragma: no cover - checked in __init__
