"""Training sbi networks in a Lightning loop: one network, an ensemble, or the rounds of a sequential method."""

from sbilab.methods.proposals import PosteriorAtObservation
from sbilab.training.data import Split, make_loaders, split_indices
from sbilab.training.ensemble import EnsembleTraining, member_prefix, train_ensemble
from sbilab.training.fit import TrainingResult, train_estimator
from sbilab.training.module import EpochEnd, EstimatorModule, StopAtMinimumRate
from sbilab.training.progress import EpochProgress, on_terminal
from sbilab.training.sequential import train_sequential
from sbilab.training.strategy import (
    AmortisedTraining,
    Fitted,
    SequentialTraining,
    SilentObserver,
    SimulateFn,
    TrainingObserver,
    TrainingProblem,
    strategy_for,
)

__all__ = [
    "AmortisedTraining", "EnsembleTraining", "EpochEnd", "EpochProgress", "EstimatorModule", "Fitted",
    "PosteriorAtObservation", "SequentialTraining", "SilentObserver", "SimulateFn", "Split", "StopAtMinimumRate",
    "TrainingObserver", "TrainingProblem", "TrainingResult", "make_loaders", "member_prefix", "on_terminal",
    "split_indices", "strategy_for", "train_ensemble", "train_estimator", "train_sequential",
]
