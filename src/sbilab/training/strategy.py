"""How a method spends its simulation budget on training: amortised (once, from the prior) or in rounds.

A strategy gets a :class:`TrainingProblem` (plain values), a function that simulates
a dataset from the prior or from a proposal, and an observer that sees each epoch,
dataset and round (the pipeline logs them). It returns the fitted networks and the
data they were trained on; the posterior is built from them afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.distributions import Distribution

from sbilab.config import RecipeSettings, TrainerSettings
from sbilab.methods import Method
from sbilab.rng import round_seed
from sbilab.simulation import Dataset
from sbilab.training.ensemble import EnsembleTraining, member_prefix, train_ensemble, train_members
from sbilab.training.recipe import fit_recipe
from sbilab.training.sequential import train_sequential

#: (proposal, round, number of simulations) → dataset; proposal ``None`` means the prior (round 0)
SimulateFn = Callable[[Optional[Any], int, int], Dataset]


class TrainingObserver(Protocol):
    """What a strategy reports while it runs (the pipeline records it)."""

    def epoch_callbacks(self, prefix: str) -> Sequence[Callback]:
        """Lightning callbacks for one network's epochs; ``prefix`` names the member or round."""

    def dataset_simulated(self, data: Dataset, round_: int) -> None:
        """A dataset was simulated for round ``round_`` (0: from the prior)."""

    def round_finished(self, round_: int, metrics: Mapping[str, float]) -> None:
        """Round ``round_`` of a sequential method trained (its ``round/*`` metrics)."""

    def networks_trained(self, networks: EnsembleTraining) -> None:
        """Training ended: the networks with their best validation losses."""


class SilentObserver:
    """An observer that records nothing (drivers and tests that only want the networks)."""

    def epoch_callbacks(self, prefix: str) -> Sequence[Callback]:
        return ()

    def dataset_simulated(self, data: Dataset, round_: int) -> None:
        pass

    def round_finished(self, round_: int, metrics: Mapping[str, float]) -> None:
        pass

    def networks_trained(self, networks: EnsembleTraining) -> None:
        pass


@dataclass
class TrainingProblem:
    """Everything training needs, as plain values."""

    method: Method
    estimator: Mapping[str, Any]  # the estimator config (sbi builder keys)
    prior: Distribution
    settings: TrainerSettings
    seed: int  # the run's training seed
    num_simulations: int  # the whole budget (sequential methods split it over rounds)
    x_o: Tensor  # the observation sequential methods train at
    embedding_net: Optional[Callable[[], nn.Module]] = None  # a learned summary's x-embedding factory
    recipe: Optional[RecipeSettings] = None  # recipe=auto: candidates chosen by held-out loss (sbilab.training.recipe)


@dataclass
class Fitted:
    """The trained networks and the prior simulations they started from."""

    networks: EnsembleTraining
    data: Dataset  # round 0: simulations from the prior
    rounds: list[dict[str, float]] = field(default_factory=list)  # per-round metrics (sequential methods)
    #: where the posterior claims to hold when not on the whole prior (TSNPE: its last truncated prior)
    region: Optional[Any] = None


class AmortisedTraining:
    """Simulate the whole budget from the prior once; train ``trainer.ensemble_size`` networks on it."""

    def fit(self, problem: TrainingProblem, simulate: SimulateFn, observer: TrainingObserver) -> Fitted:
        data = simulate(None, 0, problem.num_simulations)
        observer.dataset_simulated(data, 0)
        networks = train_ensemble(problem.method, problem.estimator, data.theta, data.x, problem.settings,
                                  problem.seed, lambda k: observer.epoch_callbacks(member_prefix(k)),
                                  embedding_net=problem.embedding_net, prior=problem.prior)
        return Fitted(networks, data)


class RecipeTraining:
    """Simulate the whole budget from the prior once; ``recipe=auto`` trains its candidates and keeps the
    mixture that scores best on held-out pairs. Network k's epochs are logged under ``candidate_<k>/``
    (network 0's as ``train/``, ``val/``)."""

    def fit(self, problem: TrainingProblem, simulate: SimulateFn, observer: TrainingObserver) -> Fitted:
        assert problem.recipe is not None
        data = simulate(None, 0, problem.num_simulations)
        observer.dataset_simulated(data, 0)
        networks, _ = fit_recipe(problem.method, data.theta, data.x, problem.settings, problem.recipe, problem.seed,
                                 lambda k: observer.epoch_callbacks("" if k == 0 else f"candidate_{k}/"),
                                 prior=problem.prior, embedding_net=problem.embedding_net)
        return Fitted(networks, data)


class SequentialTraining:
    """Rounds at x_o: round 0 from the prior, each later round from the last posterior (one network).

    With ``trainer.ensemble_size`` K > 1 (truncating methods only) the last round's network is member 0,
    and K − 1 further networks train from scratch on every round's simulations with the same loss and
    weights (:func:`sbilab.training.ensemble.train_members`). That is allowed where the loss needs no
    proposal (TSNPE's NPE loss); the posterior is the members' mixture, on the last region as before.
    """

    def fit(self, problem: TrainingProblem, simulate: SimulateFn, observer: TrainingObserver) -> Fitted:
        prior_data: list[Dataset] = []

        def simulate_round(proposal: Any, round_: int, num: int) -> tuple[Tensor, Tensor]:
            data = simulate(None if round_ == 0 else proposal, round_, num)
            observer.dataset_simulated(data, round_)
            if round_ == 0:
                prior_data.append(data)
            return data.theta, data.x

        last = problem.method.num_rounds - 1  # type: ignore[attr-defined]
        result, rounds = train_sequential(
            problem.method, problem.estimator, simulate_round, problem.x_o, problem.prior,  # type: ignore[arg-type]
            problem.settings, problem.seed, problem.num_simulations,
            callbacks_for_round=lambda r: observer.epoch_callbacks("" if r == last else f"round_{r}/"),
            on_round_end=observer.round_finished, embedding_net=problem.embedding_net,
        )
        region = result.extra["last_proposal"] if problem.method.truncates and last > 0 else None
        theta, x, weights, last_method = result.extra["last_round_data"]
        further = train_members(last_method, problem.estimator, theta, x, problem.settings,
                                round_seed(problem.seed, last), range(1, problem.settings.ensemble_size),
                                lambda k: observer.epoch_callbacks(member_prefix(k)),
                                embedding_net=problem.embedding_net, prior=problem.prior, weights=weights)
        return Fitted(EnsembleTraining([result, *further]), prior_data[0], rounds, region)


def strategy_for(method: Method, recipe: Optional[RecipeSettings] = None) -> \
        AmortisedTraining | RecipeTraining | SequentialTraining:
    """Amortised methods train once on prior simulations (``recipe``: the generic recipe's candidates);
    the others train in rounds at x_o."""
    if not method.amortised:
        return SequentialTraining()
    return AmortisedTraining() if recipe is None else RecipeTraining()
