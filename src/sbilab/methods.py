"""Inference methods: which sbi estimator to build, its training loss, and the posterior.

A method is what differs between NPE, NLE, NRE, FMPE, NPSE and sequential NPE: the
network family, the per-sample loss the Lightning loop minimises, and how the
trained network becomes an sbi posterior (and how that posterior is sampled).
Everything else (data, loop, diagnostics, records) is shared.

Families and the sbi builder each one uses:

==========  ==============  =========================  ===================================
method      family          builder                    posterior (default ``sample_with``)
==========  ==============  =========================  ===================================
npe, snpe   density         ``posterior_nn``           DirectPosterior (``direct``)
nle         density         ``likelihood_nn``          MCMCPosterior (``mcmc``, slice)
nre         classifier      ``classifier_nn``          MCMCPosterior (``mcmc``, slice)
fmpe        vector_field    ``posterior_flow_nn``      VectorFieldPosterior (``ode``)
npse        vector_field    ``posterior_score_nn``     VectorFieldPosterior (``sde``)
==========  ==============  =========================  ===================================

An ``estimator`` config names its sbi ``model`` and may state its ``family``
(``density`` / ``classifier`` / ``vector_field``); without ``family`` the family is
inferred from the model name (``mlp`` is both a classifier and a vector field).

Losses that differ from sbi's trainers (all tested against sbi in tests/test_methods.py):

- NRE-B / NRE-C: sbi computes the contrastive loss of a batch as one scalar inside
  its trainer; here the method returns the per-row terms whose mean is that scalar,
  so the gradient step is identical. sbi then divides its *logged* epoch losses by
  the batch size a second time (its ``_loss`` is already a mean); ``val/loss`` here
  is the plain mean (sbi's value × batch size). Early stopping decisions are the same.
- FMPE / NPSE: sbi logs an EMA of the losses and stops on a statistical rule (an
  epoch counts as "no improvement" only when its loss is > 2 std above the best).
  sbilab trains the same per-sample loss, evaluates the validation loss on sbi's
  fixed grid of diffusion/flow times (``validation_times``, nugget 0.05; the mean
  over the grid per row) and uses the same Lightning early stopping on the raw
  validation loss as for every other method, with the best weights restored. Why:
  one stopping rule and one loss-curve meaning across methods, so runs compare in
  MLflow; the fixed time grid already removes the time-sampling variance that the
  2-σ rule was designed for, and best-weight restore makes a noisy late epoch harmless.
- SNPE: round 0 is NPE's loss; later rounds use sbi NPE-C's atomic (APT) loss,
  ``num_atoms`` contrasting θ drawn from the rest of the batch. sbi switches to its
  closed-form MoG loss when proposal, network and prior are all MoG/Gaussian/uniform;
  sbilab always uses the atomic loss (also for ``mdn``).
"""

from __future__ import annotations

import copy
import importlib.util
from abc import ABC, abstractmethod
from dataclasses import asdict, fields
from typing import Any, Callable, Mapping, Optional

import torch
from sbi.inference.posteriors import (
    DirectPosterior,
    ImportanceSamplingPosterior,
    MCMCPosterior,
    RejectionPosterior,
    VectorFieldPosterior,
    VIPosterior,
)
from sbi.inference.posteriors.base_posterior import NeuralPosterior
from sbi.inference.posteriors.posterior_parameters import (
    DirectPosteriorParameters,
    ImportanceSamplingPosteriorParameters,
    MCMCPosteriorParameters,
    RejectionPosteriorParameters,
    VectorFieldPosteriorParameters,
    VIPosteriorParameters,
)
from sbi.inference.potentials import (
    likelihood_estimator_based_potential,
    posterior_estimator_based_potential,
    ratio_estimator_based_potential,
)
from sbi.neural_nets import classifier_nn, likelihood_nn, posterior_flow_nn, posterior_nn, posterior_score_nn
from sbi.utils.torchutils import repeat_rows
from torch import Tensor, nn
from torch.distributions import Distribution

from sbilab.errors import ConfigError

#: estimator config keys that describe the config itself, not the network
_META_KEYS = ("name", "family")
#: sbi's z-scoring option that maps θ through the prior's support to an unbounded space (zuko flows only)
UNCONSTRAINED = "transform_to_unconstrained"

#: sbi builders (``model_builders`` names) that give a conditional density (NPE, SNPE, NLE)
POSTERIOR_MODELS = ("maf", "nsf", "mdn", "made", "maf_rqs", "zuko_maf", "zuko_nsf", "zuko_ncsf", "zuko_sospf",
                    "zuko_naf", "zuko_unaf", "zuko_gf", "zuko_bpf", "zuko_nice")
DENSITY_MODELS = POSTERIOR_MODELS
#: ``classifier_nn`` models (NRE)
CLASSIFIER_MODELS = ("mlp", "resnet", "linear")
#: ``posterior_flow_nn`` / ``posterior_score_nn`` networks (FMPE, NPSE); sbi 0.27 documents
#: ``transformer_cross_attn`` too but its builder raises "Unknown architecture"
VECTOR_FIELD_MODELS = ("mlp", "ada_mlp", "transformer")

FAMILY_MODELS = {"density": DENSITY_MODELS, "classifier": CLASSIFIER_MODELS, "vector_field": VECTOR_FIELD_MODELS}

#: the config file of each family to suggest in error messages
_FAMILY_EXAMPLE = {"density": "maf", "classifier": "classifier_resnet", "vector_field": "vf_mlp"}

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


def estimator_kwargs(estimator_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The sbi builder kwargs of an ``estimator`` config (its ``model`` and sizes)."""
    return {k: v for k, v in estimator_cfg.items() if k not in _META_KEYS}


def estimator_family(estimator_cfg: Mapping[str, Any]) -> Optional[str]:
    """``estimator.family`` when set, else the family implied by ``estimator.model`` (None: ambiguous)."""
    family = estimator_cfg.get("family")
    if family is not None:
        return str(family)
    model = estimator_cfg.get("model")
    owners = [f for f, models in FAMILY_MODELS.items() if model in models]
    return owners[0] if len(owners) == 1 else None


def _plain(value: Any) -> Any:
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
            self.train(x=x, **self._train_kwargs)

    def sample(self, sample_shape: Any = torch.Size(), x: Optional[Tensor] = None, show_progress_bars: bool = True) -> Tensor:
        self._fit_to(x)
        return super().sample(sample_shape, x=self._x_else_default_x(x), show_progress_bars=show_progress_bars)

    def log_prob(self, theta: Tensor, x: Optional[Tensor] = None, track_gradients: bool = False) -> Tensor:
        self._fit_to(x)
        return super().log_prob(theta, x=self._x_else_default_x(x), track_gradients=track_gradients)


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

    def __init__(self, sample_with: Optional[str] = None, sampling: Optional[Mapping[str, Any]] = None) -> None:
        sample_with = sample_with or self.sample_with_choices[0]
        if sample_with not in self.sample_with_choices:
            raise ConfigError(
                f"method.sample_with={sample_with!r} is not available for method={self.name!r}; "
                f"allowed: {', '.join(self.sample_with_choices)}"
            )
        self.sample_with = sample_with
        self.sampling = {str(k): dict(_plain(v) or {}) for k, v in (_plain(sampling) or {}).items()}
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
                f"(family {self.family}, e.g. estimator={_FAMILY_EXAMPLE[self.family]})"
            )
        if not self.accepts_z_scoring(estimator_cfg):
            raise ConfigError(
                f"estimator.z_score_theta={UNCONSTRAINED} (a flow on the prior's unbounded space) needs "
                f"method=npe or snpe and a zuko_* model; got method={self.name!r}, estimator.model={model!r} "
                f"(other methods: a z-scored estimator, e.g. estimator={_FAMILY_EXAMPLE[self.family]})"
            )

    @classmethod
    def accepts_z_scoring(cls, estimator_cfg: Mapping[str, Any]) -> bool:
        """Whether this method can train the estimator's z-scoring choice: θ on the prior's unbounded
        space needs a zuko flow that models θ (sbi supports it for no other builder or side)."""
        if UNCONSTRAINED not in (estimator_cfg.get("z_score_theta"), estimator_cfg.get("z_score_x")):
            return True
        return (cls.models_theta_density and estimator_cfg.get("z_score_x") != UNCONSTRAINED
                and str(estimator_cfg.get("model")).startswith("zuko_"))

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

    def _posterior_parameters(self) -> tuple[Any, dict[str, Any]]:
        """sbi's parameters dataclass for the chosen sampler, and VI's training kwargs."""
        settings = self._sampler_settings()
        train_kwargs = dict(settings.pop("train", None) or {}) if self.sample_with == "vi" else {}
        cls = POSTERIOR_PARAMETERS[self.sample_with]
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(settings) - set(allowed))
        key = f"method.sampling.{self.sample_with}"
        if unknown:
            raise ConfigError(f"{key} has unknown keys {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        try:
            params = cls(**settings)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{key}: {str(error).splitlines()[0]}") from None
        if self.sample_with == "mcmc":
            backend = {"_pyro": "pyro", "_pymc": "pymc"}.get(params.method[-5:])
            if backend and importlib.util.find_spec(backend) is None:
                raise ConfigError(
                    f"{key}.method={params.method!r} needs the {backend} package, which is not installed; "
                    f"allowed without it: slice_np, slice_np_vectorized"
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
            return DirectPosterior(posterior_estimator=estimator, prior=prior, device="cpu", **options)
        if self.sample_with in ("ode", "sde"):
            return VectorFieldPosterior(vector_field_estimator=estimator, prior=prior, device="cpu",
                                        sample_with=self.sample_with, **options)
        potential_fn, theta_transform = self._potential(estimator, prior)
        if self.sample_with == "mcmc":
            return MCMCPosterior(potential_fn=potential_fn, theta_transform=theta_transform, proposal=prior,
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


# ---------------------------------------------------------------------------------------------
# NPE and sequential NPE


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
    same network with the atomic APT loss (see :func:`sbilab.rounds.train_sequential`).
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


# ---------------------------------------------------------------------------------------------
# NLE


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


# ---------------------------------------------------------------------------------------------
# NRE


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


# ---------------------------------------------------------------------------------------------
# FMPE and NPSE


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


#: ``method.name`` → class (each ``conf/method/*.yaml`` names its class with ``_target_``)
METHODS: dict[str, type[Method]] = {"npe": NPE, "snpe": SNPE, "nle": NLE, "nre": NRE, "fmpe": FMPE, "npse": NPSE}


def methods_for_estimator(estimator_cfg: Mapping[str, Any]) -> list[str]:
    """Names of the methods that can train this estimator config."""
    fits = []
    for name, cls in METHODS.items():
        if estimator_cfg.get("model") in cls.models and estimator_family(estimator_cfg) in (None, cls.family) \
                and cls.accepts_z_scoring(estimator_cfg):
            fits.append(name)
    return fits


def placeholder_batch(theta_dim: int, x_dim: int, num: int = 2) -> tuple[Tensor, Tensor]:
    """Distinct rows of the right shapes, to rebuild a network before loading its state."""
    grid = torch.arange(num, dtype=torch.float32)[:, None]
    return grid.expand(num, theta_dim).clone(), grid.expand(num, x_dim).clone()
