"""The Lightning module around an sbi network and a method's loss, and the callbacks of its loop.

The module minimises the method's per-sample loss with Adam and keeps sbi's epoch
bookkeeping: the mean losses per epoch (sbi's reduction) and the best weights by
validation loss, restored at the end of fitting. Two optional refinements that
sbi's trainer lacks (both off in ``trainer=sbi``): ``lr_decay`` lowers the learning
rate when the validation loss stops improving (``ReduceLROnPlateau``, ended by
:class:`StopAtMinimumRate`) or along a half cosine over ``max_epochs``, and
``weight_averaging`` validates, keeps and returns an exponential moving average of the
weights (Lightning's ``EMAWeightAveraging``). Both damp the epoch-to-epoch noise of
Adam at a fixed rate, which otherwise decides which noisy snapshot early stopping keeps.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging
from torch import Tensor, nn

from sbilab.config import LrDecay, WeightAveraging
from sbilab.methods import Method


class EstimatorModule(L.LightningModule):
    """LightningModule around an sbi network and a method's loss."""

    def __init__(self, estimator: nn.Module, method: Method, learning_rate: float,
                 lr_decay: Optional[LrDecay] = None) -> None:
        super().__init__()
        self.estimator = estimator
        self.method = method
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.train_losses: list[float] = []
        self.val_losses: list[float] = []
        self.best_val_loss = float("inf")
        self.best_state: Optional[dict[str, Tensor]] = None
        self._sums = {"train": [0.0, 0], "val": [0.0, 0]}

    def _accumulate(self, stage: str, losses: Tensor) -> None:
        # sbi's reduction: sum of per-sample losses over (number of batches × batch size)
        self._sums[stage][0] += losses.detach().sum().item()
        self._sums[stage][1] += losses.shape[0]

    def _epoch_mean(self, stage: str) -> float:
        total, count = self._sums[stage]
        self._sums[stage] = [0.0, 0]
        return total / count if count else float("nan")

    def on_train_epoch_start(self) -> None:
        self.estimator.train()

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        losses = weighted(self.method.loss(self.estimator, batch[0], batch[1]), batch)
        self._accumulate("train", losses)
        return losses.mean()

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._accumulate("val", weighted(self.method.validation_loss(self.estimator, batch[0], batch[1]), batch))

    def close_epoch(self) -> None:
        """Record the epoch's mean losses and keep the weights if validation improved.

        Called by :class:`EpochEnd`, the first callback, so that with weight averaging
        the averaged weights (swapped in for validation) are the ones kept.
        """
        # the epoch's training batches are done when validation runs: close both means here
        self.train_losses.append(self._epoch_mean("train"))
        val = self._epoch_mean("val")
        self.val_losses.append(val)
        self.log("val/loss", torch.tensor(val, dtype=torch.float64), prog_bar=True)
        if val < self.best_val_loss:
            self.best_val_loss = val
            self.best_state = deepcopy(self.estimator.state_dict())

    def on_fit_end(self) -> None:
        if self.best_state is not None:
            self.estimator.load_state_dict(self.best_state)
        self.estimator.eval()

    def configure_optimizers(self) -> Any:
        # foreach: one call per update step for all parameters (same numbers as the per-parameter loop)
        optimizer = torch.optim.Adam(list(self.estimator.parameters()), lr=self.learning_rate, foreach=True)
        if not self.lr_decay:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler(optimizer, self.lr_decay, self.trainer.max_epochs)}


def weighted(losses: Tensor, batch: Sequence[Tensor]) -> Tensor:
    """Per-sample losses times the batch's loss weights, where it carries them (third element)."""
    return losses * batch[2] if len(batch) > 2 else losses


class EpochEnd(Callback):
    """Closes each epoch on the module (losses, best weights) before any other callback runs."""

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        module.close_epoch()


class StopAtMinimumRate(Callback):
    """Ends training ``patience`` epochs after the decayed rate reached ``min_lr``.

    At the floor rate the validation loss can keep improving by crumbs for a thousand
    epochs (measured: sbi's maf on HH), which strict-improvement early stopping alone
    would follow; the best weights are still the ones restored.
    """

    def __init__(self, min_lr: float, patience: int) -> None:
        self.min_lr = min_lr
        self.patience = patience
        self.epochs_at_minimum = 0

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.optimizers[0].param_groups[0]["lr"] <= self.min_lr * (1 + 1e-9):
            self.epochs_at_minimum += 1
            if self.epochs_at_minimum >= self.patience:
                trainer.should_stop = True


def lr_scheduler(optimizer: torch.optim.Optimizer, lr_decay: LrDecay, max_epochs: int) -> dict[str, Any]:
    """Lightning's scheduler entry for ``trainer.lr_decay``, stepped once per epoch.

    ``plateau``: multiply the rate by ``factor`` after ``patience`` epochs without a better
    validation loss, down to ``min_lr``. ``cosine``: a half cosine from the learning rate to
    ``min_lr`` over ``max_epochs``, whatever the validation loss does.
    """
    if lr_decay.schedule == "cosine":
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs, eta_min=lr_decay.min_lr)
        return {"scheduler": cosine, "interval": "epoch"}
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=lr_decay.factor, patience=lr_decay.patience, min_lr=lr_decay.min_lr,
        threshold=0.0,
    )
    return {"scheduler": plateau, "monitor": "val/loss", "interval": "epoch"}


def rate_floor_stop(lr_decay: Optional[LrDecay], patience: int) -> list[Callback]:
    """:class:`StopAtMinimumRate` when the rate decays on plateaus (``trainer.lr_decay``), else nothing.

    A cosine schedule reaches its floor at ``max_epochs``, where training ends anyway.
    """
    if lr_decay is None or lr_decay.schedule != "plateau":
        return []
    return [StopAtMinimumRate(lr_decay.min_lr, patience)]


def weight_averaging(settings: Optional[WeightAveraging]) -> list[Callback]:
    """Lightning's EMA callback for ``trainer.weight_averaging`` (``None``: no averaging)."""
    if settings is None:
        return []
    return [EMAWeightAveraging(decay=settings.decay, use_buffers=False,
                               update_starting_at_epoch=settings.start_epoch)]

