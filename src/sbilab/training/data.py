"""Train/validation split and loaders, following sbi's own conventions exactly.

sbi splits with ``torch.randperm`` from the global generator, z-scores on the
training split only, and uses ``drop_last=True`` loaders with random subset
samplers for both splits; copying this makes the Lightning path reproduce
``NPE(...).train()`` bit for bit. The loaders draw sbi's index batches (the same
global-generator calls) but gather each batch with one tensor index instead of
``batch_size`` item look-ups and a collate: identical batches, less time per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, TensorDataset

from sbilab.errors import ConfigError


@dataclass
class Split:
    """Indices of the training and validation rows."""

    train: Tensor
    val: Tensor


def split_indices(num: int, validation_fraction: float) -> Split:
    """sbi's split: ``n_train = int((1 - f) * N)`` rows of ``torch.randperm(N)``."""
    num_train = int((1 - validation_fraction) * num)
    if num_train < 1 or num - num_train < 1:
        raise ConfigError(
            f"trainer.validation_fraction={validation_fraction} leaves {num_train} training and "
            f"{num - num_train} validation rows out of {num}; need at least one of each"
        )
    permutation = torch.randperm(num)
    return Split(train=permutation[:num_train], val=permutation[num_train:])


def make_loaders(theta: Tensor, x: Tensor, split: Split, batch_size: int,
                 weights: Optional[Tensor] = None) -> tuple[DataLoader, DataLoader]:
    """Training and validation loaders over (θ, x) with sbi's batch sizes and samplers; batches of
    (θ, x, weight) where the rows carry loss weights (a truncated sequential round's)."""
    dataset = TensorDataset(theta, x) if weights is None else TensorDataset(theta, x, weights)
    return batch_loader(dataset, split.train, batch_size), batch_loader(dataset, split.val, batch_size)


class RandomBatches(Sampler[Tensor]):
    """sbi's ``SubsetRandomSampler`` order (one ``torch.randperm`` from the global generator per
    epoch) cut into full batches of row indices, the last partial one dropped."""

    def __init__(self, indices: Tensor, batch_size: int) -> None:
        self.indices = indices
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.indices) // self.batch_size

    def __iter__(self) -> Iterator[Tensor]:
        order = self.indices[torch.randperm(len(self.indices))]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start:start + self.batch_size]


def batch_loader(dataset: TensorDataset, indices: Tensor, batch_size: int) -> DataLoader:
    """Batches of ``min(batch_size, len(indices))`` rows in sbi's order, each one tensor gather
    (``batch_size=None``: no per-row look-up and collate)."""
    return DataLoader(dataset, sampler=RandomBatches(indices, min(batch_size, len(indices))), batch_size=None)
