"""Train/validation split and loaders, following sbi's own conventions exactly.

sbi splits with ``torch.randperm`` from the global generator, z-scores on the
training split only, and uses ``drop_last=True`` loaders with random subset
samplers for both splits; copying this makes the Lightning path reproduce
``NPE(...).train()`` bit for bit. The loaders draw sbi's index batches (the same
sampler, the same global-generator calls) but gather each batch with one tensor index
instead of ``batch_size`` item look-ups and a collate: identical batches, less time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, SubsetRandomSampler, TensorDataset

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


def make_loaders(theta: Tensor, x: Tensor, split: Split, batch_size: int) -> tuple[DataLoader, DataLoader]:
    """Training and validation loaders over (θ, x) with sbi's batch sizes and samplers."""
    dataset = TensorDataset(theta, x)
    return batch_loader(dataset, split.train, batch_size), batch_loader(dataset, split.val, batch_size)


def batch_loader(dataset: TensorDataset, indices: Tensor, batch_size: int) -> DataLoader:
    """Batches of ``min(batch_size, len(indices))`` rows in sbi's random order, the last partial one dropped.

    Each batch is one ``dataset[list_of_indices]`` gather (``batch_size=None``: no per-row collate).
    """
    sampler = BatchSampler(SubsetRandomSampler(indices.tolist()), batch_size=min(batch_size, len(indices)),
                           drop_last=True)
    return DataLoader(dataset, sampler=sampler, batch_size=None)
