"""Fitting one sbi network with a Lightning Trainer, exactly as sbi's ``train()`` would.

Adam, gradient-norm clipping, early stopping on the validation loss with the best
weights restored: the two paths agree bit for bit (tested for NPE, NRE-B/C and
sequential NPE). Validation uses the method's ``validation_loss`` (its training loss,
except for FMPE/NPSE, which evaluate sbi's fixed grid of times). The same early-stopping
rule (patience on the validation loss, strict improvement) applies to every method;
sbi's FMPE/NPSE trainers use an EMA and a 2-σ rule instead (see ``sbilab.methods``).

The network trains on ``trainer.accelerator`` (Lightning moves it and each batch there) and
comes back to the CPU: the posterior, its diagnostics and the saved weights never depend on
the device it was trained on.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import lightning as L
import torch
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import Tensor, nn
from torch.distributions import Distribution

from sbilab.config import TrainerSettings
from sbilab.methods import Method
from sbilab.training.data import make_loaders, split_indices
from sbilab.training.module import EpochEnd, EstimatorModule, rate_floor_stop, weight_averaging


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
    settings: TrainerSettings,
    seed: Optional[int],
    callbacks: Sequence[Callback] = (),
    *,
    embedding_net: Optional[Callable[[], nn.Module]] = None,
    estimator: Optional[nn.Module] = None,
    prior: Optional[Distribution] = None,
    split_seed: Optional[int] = None,
    weights: Optional[Tensor] = None,
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
    ``split_seed``: draw the train/validation split from this seed instead, then seed with ``seed``: networks
    that differ in initialisation and batch order but share one validation set (``recipe=auto`` compares them).
    ``weights``: a loss weight per row [N] (training and validation losses alike; ``None``: all 1).
    """
    started = time.perf_counter()
    if split_seed is not None:
        torch.manual_seed(split_seed)
    elif seed is not None:
        torch.manual_seed(seed)
    split = split_indices(theta.shape[0], settings.validation_fraction)
    if split_seed is not None and seed is not None:
        torch.manual_seed(seed)
    if estimator is None:
        embedding = embedding_net() if embedding_net is not None else None
        estimator = method.build_estimator(estimator_cfg, theta[split.train], x[split.train],
                                           embedding_net=embedding, prior=prior)
    # training mode from the start (a network trained before was left in eval mode; sbi's shared default
    # nn.Identity embedding may be in eval mode from another network): no effect on sbi's layers' outputs
    estimator.train()
    train_loader, val_loader = make_loaders(theta, x, split, settings.batch_size, weights)
    module = EstimatorModule(estimator, method, settings.learning_rate, settings.lr_decay)
    patience = settings.stop_after_epochs
    early_stopping = EarlyStopping(
        monitor="val/loss", mode="min", patience=patience, min_delta=0.0,
        check_finite=True,
    )
    trainer = L.Trainer(
        accelerator=settings.accelerator,
        devices=settings.devices,
        # never SLURM's environment, even inside a SLURM job (a sweep on the cluster): one process trains,
        # and Lightning's SLURM requeue handler would fight submitit's
        plugins=[LightningEnvironment()],
        max_epochs=settings.max_epochs,
        gradient_clip_val=settings.clip_max_norm,
        gradient_clip_algorithm="norm",
        # EpochEnd first: it must see the averaged weights before the EMA callback swaps them back
        callbacks=[EpochEnd(), early_stopping, *rate_floor_stop(settings.lr_decay, patience),
                   *weight_averaging(settings.weight_averaging), *callbacks],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=settings.progress_bar,
        num_sanity_val_steps=0,
        default_root_dir=settings.root_dir,
    )
    try:
        with warnings.catch_warnings():  # Lightning asks on every machine where SLURM is installed
            warnings.filterwarnings("ignore", message="The `srun` command is available on your system")
            trainer.fit(module, train_loader, val_loader)
    except SystemExit:
        # Lightning turns Ctrl-C/SIGTERM into sys.exit(1); keep it an interruption for the run record
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted") from None
        raise
    return TrainingResult(
        estimator=module.estimator.cpu(),  # trained on any device, used on the CPU: posterior, diagnostics, saving
        train_losses=module.train_losses,
        val_losses=module.val_losses,
        best_val_loss=module.best_val_loss,
        epochs=len(module.val_losses),
        seconds=time.perf_counter() - started,
        extra={"split": split},
    )

