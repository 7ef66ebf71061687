"""Ensembles of networks fitted to the same simulations (``trainer.ensemble_size``).

K networks differ only in their seed (initialisation, validation split, batch order);
member 0 is bit for bit the network a single-network run trains. Their posteriors are
mixed by :mod:`sbilab.ensemble`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.distributions import Distribution

from sbilab.config import TrainerSettings
from sbilab.methods import Method
from sbilab.rng import member_seed
from sbilab.training.fit import TrainingResult, train_estimator


@dataclass
class EnsembleTraining:
    """The networks of one run: ``trainer.ensemble_size`` members (usually one) fitted to the same data."""

    members: list[TrainingResult]
    #: each member's estimator config when they differ (``recipe=auto``'s mixtures); None: the run's estimator
    configs: Optional[list[dict[str, Any]]] = None
    #: what ``recipe=auto`` tried and chose (``sbilab.training.recipe.RecipeChoice``), else None
    choice: Any = None

    @property
    def first(self) -> TrainingResult:
        """Member 0: the network a run with ``ensemble_size=1`` trains (its curves are ``train/``, ``val/``)."""
        return self.members[0]

    @property
    def estimators(self) -> list[nn.Module]:
        return [member.estimator for member in self.members]

    @property
    def seconds(self) -> float:
        return sum(member.seconds for member in self.members)

    def metrics(self) -> dict[str, float]:
        """Member 0's best validation loss and epochs (as for one network), the whole stage's time,
        and for ensembles each further member's under ``member_<k>/`` and the members' mean."""
        metrics = {"val/loss_best": self.first.best_val_loss, "train/epochs": self.first.epochs,
                   "time/train_s": self.seconds}
        if len(self.members) > 1:
            for k, member in enumerate(self.members[1:], start=1):
                metrics[f"member_{k}/val/loss_best"] = member.best_val_loss
                metrics[f"member_{k}/train/epochs"] = member.epochs
            metrics["ensemble/size"] = len(self.members)
            metrics["ensemble/val_loss_best_mean"] = sum(m.best_val_loss for m in self.members) / len(self.members)
        if self.choice is not None:
            metrics.update(self.choice.metrics())
        return metrics


def member_prefix(member: int) -> str:
    """Metric prefix of an ensemble member's per-epoch losses (member 0 logs plain ``train/``, ``val/``)."""
    return "" if member == 0 else f"member_{member}/"


def train_ensemble(
    method: Method,
    estimator_cfg: Mapping[str, Any],
    theta: Tensor,
    x: Tensor,
    settings: TrainerSettings,
    seed: int,
    callbacks_for_member: Callable[[int], Sequence[Callback]] = lambda member: (),
    *,
    embedding_net: Optional[Callable[[], nn.Module]] = None,
    prior: Optional[Distribution] = None,
) -> EnsembleTraining:
    """Train ``settings.ensemble_size`` networks on (θ, x), member k from :func:`member_seed`.

    Members differ in initialisation, validation split and batch order only; member 0
    is bit for bit the network of a single-network run with the same seed.
    """
    return EnsembleTraining(train_members(method, estimator_cfg, theta, x, settings, seed,
                                          range(settings.ensemble_size), callbacks_for_member,
                                          embedding_net=embedding_net, prior=prior))


def train_members(
    method: Method,
    estimator_cfg: Mapping[str, Any],
    theta: Tensor,
    x: Tensor,
    settings: TrainerSettings,
    seed: int,
    members: Iterable[int],
    callbacks_for_member: Callable[[int], Sequence[Callback]] = lambda member: (),
    *,
    embedding_net: Optional[Callable[[], nn.Module]] = None,
    prior: Optional[Distribution] = None,
    weights: Optional[Tensor] = None,
) -> list[TrainingResult]:
    """Train the ensemble members numbered ``members``, each a fresh network from :func:`member_seed`
    (``weights``: per-pair loss weights, as the training set's round had them)."""
    return [train_estimator(method, estimator_cfg, theta, x, settings, member_seed(seed, k), callbacks_for_member(k),
                            embedding_net=embedding_net, prior=prior, weights=weights)
            for k in members]
