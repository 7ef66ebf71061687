"""Training an sbi network inside a Lightning loop.

The LightningModule minimises the method's per-sample loss with Adam, gradient
norm clipping and early stopping on the validation loss, and restores the best
weights at the end — exactly what sbi's ``train()`` does, so the two paths agree
(tested for NPE, NRE-B/C and sequential NPE). Per-epoch losses are kept on the
module and handed to callbacks.

Two optional refinements that sbi's trainer lacks (both off in ``trainer=sbi``):
``lr_decay`` lowers the learning rate when the validation loss stops improving
(``ReduceLROnPlateau``), and ``weight_averaging`` validates, keeps and returns an
exponential moving average of the weights (Lightning's ``EMAWeightAveraging``).
Both damp the epoch-to-epoch noise of Adam at a fixed rate, which otherwise
decides which noisy snapshot early stopping keeps. Measured on the default HH run
(README): the decay is what makes it pass SBC; averaging did not help there, so
sbilab's default trainer decays and does not average.

``train_ensemble`` fits ``trainer.ensemble_size`` such networks to the same data, each
from its own seed (see :mod:`sbilab.ensemble`); member 0 is the single network.

Validation uses the method's ``validation_loss`` (its training loss, except for
FMPE/NPSE, which evaluate sbi's fixed grid of times). The same early-stopping rule
(patience on the validation loss, strict improvement) applies to every method; sbi's
FMPE/NPSE trainers use an EMA and a 2-σ rule instead (see ``sbilab.methods``).
"""

from __future__ import annotations

import time
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, EMAWeightAveraging
from torch import Tensor, nn
from torch.distributions import Distribution

from sbilab.data import make_loaders, split_indices
from sbilab.ensemble import member_seed
from sbilab.methods import Method


class EstimatorModule(L.LightningModule):
    """LightningModule around an sbi network and a method's loss."""

    def __init__(self, estimator: nn.Module, method: Method, learning_rate: float,
                 lr_decay: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        self.estimator = estimator
        self.method = method
        self.learning_rate = learning_rate
        self.lr_decay = dict(lr_decay) if lr_decay else None
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
        losses = self.method.loss(self.estimator, batch[0], batch[1])
        self._accumulate("train", losses)
        return losses.mean()

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._accumulate("val", self.method.validation_loss(self.estimator, batch[0], batch[1]))

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
        optimizer = torch.optim.Adam(list(self.estimator.parameters()), lr=self.learning_rate)
        if not self.lr_decay:
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=float(self.lr_decay["factor"]),
            patience=int(self.lr_decay["patience"]), min_lr=float(self.lr_decay["min_lr"]), threshold=0.0,
        )
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss", "interval": "epoch"}}


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


def rate_floor_stop(lr_decay: Optional[Mapping[str, Any]], patience: int) -> list[Callback]:
    """:class:`StopAtMinimumRate` when the rate decays (``trainer.lr_decay``), else nothing."""
    return [StopAtMinimumRate(float(lr_decay["min_lr"]), patience)] if lr_decay else []


def weight_averaging(config: Optional[Mapping[str, Any]]) -> list[Callback]:
    """Lightning's EMA callback for ``trainer.weight_averaging`` (``None``: no averaging)."""
    if not config:
        return []
    return [EMAWeightAveraging(decay=float(config["decay"]), use_buffers=False,
                               update_starting_at_epoch=int(config.get("start_epoch", 0)))]


@dataclass
class TrainingResult:
    """The trained network (best weights) and its loss curves."""

    estimator: nn.Module
    train_losses: list[float]
    val_losses: list[float]
    best_val_loss: float
    epochs: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def train_estimator(
    method: Method,
    estimator_cfg: Mapping[str, Any],
    theta: Tensor,
    x: Tensor,
    trainer_cfg: Mapping[str, Any],
    seed: Optional[int],
    callbacks: Sequence[Callback] = (),
    *,
    embedding_net: Optional[Callable[[], nn.Module]] = None,
    estimator: Optional[nn.Module] = None,
    prior: Optional[Distribution] = None,
) -> TrainingResult:
    """Split, build the network on the training split, and fit it with Lightning.

    Seeds the global torch generator with ``seed`` first (``None``: continue the
    current stream): split, network initialisation and batch order follow from
    it, in the same order as in sbi.

    ``embedding_net``: a factory of a fresh x-embedding module (a learned summary's
    ``embedding_net``), called after the split so that its initialisation follows
    from ``seed``; it becomes part of the network and is trained with it.
    ``estimator``: continue training this network instead of building one (later
    rounds of sequential methods; its z-scoring stays that of its first data).
    ``prior``: handed to the network builder (``z_score_theta=transform_to_unconstrained`` needs its support).
    """
    started = time.perf_counter()
    if seed is not None:
        torch.manual_seed(seed)
    split = split_indices(theta.shape[0], float(trainer_cfg["validation_fraction"]))
    if estimator is None:
        embedding = embedding_net() if embedding_net is not None else None
        estimator = method.build_estimator(estimator_cfg, theta[split.train], x[split.train],
                                           embedding_net=embedding, prior=prior)
    # training mode from the start (a network trained before was left in eval mode; sbi's shared default
    # nn.Identity embedding may be in eval mode from another network): no effect on sbi's layers' outputs
    estimator.train()
    train_loader, val_loader = make_loaders(theta, x, split, int(trainer_cfg["batch_size"]))
    module = EstimatorModule(estimator, method, float(trainer_cfg["learning_rate"]), trainer_cfg.get("lr_decay"))
    patience = int(trainer_cfg["stop_after_epochs"])
    early_stopping = EarlyStopping(
        monitor="val/loss", mode="min", patience=patience, min_delta=0.0,
        check_finite=True,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=int(trainer_cfg["max_epochs"]),
        gradient_clip_val=trainer_cfg["clip_max_norm"],
        gradient_clip_algorithm="norm",
        # EpochEnd first: it must see the averaged weights before the EMA callback swaps them back
        callbacks=[EpochEnd(), early_stopping, *rate_floor_stop(trainer_cfg.get("lr_decay"), patience),
                   *weight_averaging(trainer_cfg.get("weight_averaging")), *callbacks],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=bool(trainer_cfg.get("progress_bar", False)),
        num_sanity_val_steps=0,
        default_root_dir=trainer_cfg.get("root_dir"),
    )
    try:
        trainer.fit(module, train_loader, val_loader)
    except SystemExit:
        # Lightning turns Ctrl-C/SIGTERM into sys.exit(1); keep it an interruption for the run record
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted") from None
        raise
    return TrainingResult(
        estimator=module.estimator,
        train_losses=module.train_losses,
        val_losses=module.val_losses,
        best_val_loss=module.best_val_loss,
        epochs=len(module.val_losses),
        seconds=time.perf_counter() - started,
    )


@dataclass
class EnsembleTraining:
    """The networks of one run: ``trainer.ensemble_size`` members (usually one) fitted to the same data."""

    members: list[TrainingResult]

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
        return metrics


def member_prefix(member: int) -> str:
    """Metric prefix of an ensemble member's per-epoch losses (member 0 logs plain ``train/``, ``val/``)."""
    return "" if member == 0 else f"member_{member}/"


def train_ensemble(
    method: Method,
    estimator_cfg: Mapping[str, Any],
    theta: Tensor,
    x: Tensor,
    trainer_cfg: Mapping[str, Any],
    seed: int,
    callbacks_for_member: Callable[[int], Sequence[Callback]] = lambda member: (),
    *,
    embedding_net: Optional[Callable[[], nn.Module]] = None,
    prior: Optional[Distribution] = None,
) -> EnsembleTraining:
    """Train ``trainer_cfg["ensemble_size"]`` networks on (θ, x), member k from :func:`member_seed`.

    Members differ in initialisation, validation split and batch order only; member 0
    is bit for bit the network of a single-network run with the same seed.
    """
    size = int(trainer_cfg.get("ensemble_size", 1))
    return EnsembleTraining([
        train_estimator(method, estimator_cfg, theta, x, trainer_cfg, member_seed(seed, k),
                        callbacks_for_member(k), embedding_net=embedding_net, prior=prior)
        for k in range(size)
    ])
