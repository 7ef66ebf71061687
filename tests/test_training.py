"""The Lightning path trains exactly like sbi's own `NPE(...).train()`."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import NullTracker
from lightning.pytorch.callbacks import Callback
from sbi.inference import NPE as SbiNPE
from sbi.utils import BoxUniform

from sbilab.config import LrDecay, TrainerSettings, WeightAveraging
from sbilab.methods import NPE
from sbilab.training import train_estimator

TRAINER = {"batch_size": 50, "learning_rate": 5e-4, "validation_fraction": 0.1, "stop_after_epochs": 5,
           "clip_max_norm": 5.0, "max_epochs": 15}


def _toy(num: int = 600) -> tuple[BoxUniform, torch.Tensor, torch.Tensor]:
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    generator = torch.Generator().manual_seed(0)
    theta = prior.low + (prior.high - prior.low) * torch.rand(num, 2, generator=generator)
    x = theta + 0.3 * torch.randn(num, 2, generator=generator)
    return prior, theta, x


def test_lightning_matches_sbi_train_bit_for_bit():
    prior, theta, x = _toy()
    seed = 123

    torch.manual_seed(seed)
    inference = SbiNPE(prior=prior, density_estimator="maf", tracker=NullTracker(), show_progress_bars=False)
    inference.append_simulations(theta, x)
    sbi_net = inference.train(training_batch_size=50, stop_after_epochs=5, max_num_epochs=TRAINER["max_epochs"] - 1)
    sbi_val = inference.summary["validation_loss"]

    # sbi's constructor draws once from the prior (device check); replay that draw
    torch.manual_seed(seed)
    prior.sample((1,))
    estimator_cfg = {"model": "maf", "hidden_features": 50, "num_transforms": 5}
    result = train_estimator(NPE(), estimator_cfg, theta, x, TrainerSettings(**TRAINER), seed=None)  # type: ignore[arg-type]

    assert len(result.val_losses) == len(sbi_val)
    torch.testing.assert_close(torch.tensor(result.val_losses), torch.tensor(sbi_val), rtol=0, atol=1e-6)
    for (name, ours), (_, theirs) in zip(result.estimator.state_dict().items(), sbi_net.state_dict().items()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6, msg=name)
    x_o = torch.zeros(1, 2)
    torch.manual_seed(7)
    ours = NPE().build_posterior(result.estimator, prior).sample((200,), x=x_o, show_progress_bars=False)
    torch.manual_seed(7)
    theirs = inference.build_posterior(sbi_net).sample((200,), x=x_o, show_progress_bars=False)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_best_weights_are_restored_and_early_stopping_applies():
    prior, theta, x = _toy(400)
    config = {**TRAINER, "max_epochs": -1, "stop_after_epochs": 3}
    mdn = {"model": "mdn", "hidden_features": 20, "num_components": 2}
    result = train_estimator(NPE(), mdn, theta, x, TrainerSettings(**config), seed=1)
    best = min(result.val_losses)
    assert result.best_val_loss == best
    assert result.epochs == result.val_losses.index(best) + 1 + 3  # stopped 3 epochs after the best
    assert len(result.train_losses) == result.epochs


def _val_loss(estimator: torch.nn.Module, theta: torch.Tensor, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(estimator.loss(theta, condition=x).mean())


def test_weight_averaging_keeps_and_returns_the_averaged_weights():
    """With EMA the kept weights are the averaged ones that validation scored, not the raw Adam iterate."""
    from sbilab.training import split_indices

    prior, theta, x = _toy(400)
    estimator_cfg = {"model": "maf", "hidden_features": 20, "num_transforms": 2}
    config = {**TRAINER, "max_epochs": 8, "stop_after_epochs": 8, "weight_averaging": WeightAveraging(decay=0.9)}
    averaged = train_estimator(NPE(), estimator_cfg, theta, x, TrainerSettings(**config), seed=3)
    plain_settings = TrainerSettings(**{**config, "weight_averaging": None})
    plain = train_estimator(NPE(), estimator_cfg, theta, x, plain_settings, seed=3)

    assert averaged.train_losses == plain.train_losses  # averaging never changes the optimisation itself
    assert averaged.val_losses != plain.val_losses  # validation scores the averaged weights
    torch.manual_seed(3)
    val = split_indices(theta.shape[0], 0.1).val
    # the returned network is the one whose validation loss was best (sbi's mean over the validation rows)
    assert abs(_val_loss(averaged.estimator, theta[val], x[val]) - averaged.best_val_loss) < 1e-5


class LearningRates(Callback):
    """The optimiser's rate at the start and at the end of every training epoch."""

    def __init__(self) -> None:
        self.at_start: list[float] = []
        self.at_end: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.at_start.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_epoch_end(self, trainer, module) -> None:
        self.at_end.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_lr_decay_lowers_the_learning_rate_on_a_plateau():
    prior, theta, x = _toy(300)
    rates = LearningRates()
    # a rate far too high for this net: the validation loss stops improving within a few epochs
    config = {**TRAINER, "learning_rate": 0.1, "max_epochs": 30, "stop_after_epochs": 30,
              "lr_decay": LrDecay(factor=0.5, patience=0, min_lr=0.0125)}
    result = train_estimator(NPE(), {"model": "mdn", "hidden_features": 10, "num_components": 1}, theta, x,
                             TrainerSettings(**config), seed=0, callbacks=[rates])
    seen = rates.at_end
    assert seen[0] == 0.1
    assert all(later <= earlier for earlier, later in zip(seen, seen[1:]))
    assert min(seen) == 0.0125  # halved after each non-improving epoch, never below min_lr
    assert len(result.val_losses) == 30


def test_training_ends_patience_epochs_after_the_rate_reaches_its_floor():
    """At the floor rate the validation loss may improve by crumbs for ever: stop after the patience anyway."""
    prior, theta, x = _toy(300)
    config = {**TRAINER, "max_epochs": 60, "stop_after_epochs": 10,
              "lr_decay": LrDecay(factor=0.5, patience=5, min_lr=5e-4)}  # the rate starts at its floor
    result = train_estimator(NPE(), {"model": "mdn", "hidden_features": 10, "num_components": 1}, theta, x,
                             TrainerSettings(**config), seed=0)
    assert result.epochs == 10
    assert all(b < a for a, b in zip(result.val_losses, result.val_losses[1:]))  # still improving every epoch


def test_cosine_schedule_runs_a_half_cosine_over_max_epochs_whatever_the_validation_loss():
    """``lr_decay.schedule=cosine``: rate_e = min + (lr - min)(1 + cos(pi e / E)) / 2, ending at min_lr."""
    prior, theta, x = _toy(300)
    rates = LearningRates()
    epochs, lr, floor = 8, 0.1, 0.01  # a rate far too high: a plateau schedule would halve it at once
    config = {**TRAINER, "learning_rate": lr, "max_epochs": epochs, "stop_after_epochs": epochs,
              "lr_decay": LrDecay(schedule="cosine", factor=0.5, patience=0, min_lr=floor)}
    result = train_estimator(NPE(), {"model": "mdn", "hidden_features": 10, "num_components": 1}, theta, x,
                             TrainerSettings(**config), seed=0, callbacks=[rates])
    expected = [floor + (lr - floor) * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    assert result.epochs == epochs
    assert rates.at_start == pytest.approx(expected, rel=1e-9)


def test_loaders_yield_the_batches_of_sbis_per_row_loaders():
    """One gather per batch: the same rows in the same order as a per-row DataLoader on sbi's sampler."""
    from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset

    from sbilab.training.data import make_loaders, split_indices

    _, theta, x = _toy(230)
    torch.manual_seed(5)
    split = split_indices(theta.shape[0], 0.1)
    torch.manual_seed(6)
    ours = [[torch.cat(batch, dim=1) for batch in loader] for loader in make_loaders(theta, x, split, 50)]
    torch.manual_seed(6)
    per_row = [DataLoader(TensorDataset(theta, x), batch_size=min(50, len(rows)), drop_last=True,
                          sampler=SubsetRandomSampler(rows.tolist())) for rows in (split.train, split.val)]
    theirs = [[torch.cat(batch, dim=1) for batch in loader] for loader in per_row]
    assert [len(batches) for batches in ours] == [4, 1]  # 207 training rows: 4 full batches; 23 validation rows
    for batches, expected in zip(ours, theirs):
        assert len(batches) == len(expected)
        for batch, other in zip(batches, expected):
            assert torch.equal(batch, other)
