"""Learned summaries: a fixed downsampling of the raw trace + an embedding net trained with the estimator.

The hook (used by ``sbilab.training.train_estimator`` and ``sbilab.posterior_io``): a
summary that has a learned part exposes ``embedding_net() -> nn.Module``, which returns
a *fresh* module each call. The summary itself (``__call__``) stays fixed and
parameter-free, so simulations are cached small (here: block means of the trace) and
the learned part lives in the estimator — sbi puts it after the estimator's x
z-scoring, trains it jointly, and its weights are part of the estimator's state dict.
The posterior artifact therefore records the summary config and rebuilds the module
on load.

For raw traces, ``estimator.z_score_x=structured`` (one mean and std for the whole
trace) keeps the trace's shape; the default ``independent`` standardises each time
bin separately, which also trains but amplifies the near-constant resting bins.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from sbi.neural_nets.embedding_nets import CNNEmbedding
from torch import Tensor, nn

from sbilab.errors import ConfigError


def block_mean(traces: Tensor, factor: int) -> Tensor:
    """Means of consecutive blocks of ``factor`` samples [B, T // factor]; the last T % factor samples are dropped."""
    batch, length = traces.shape[0], traces.reshape(traces.shape[0], -1).shape[1]
    usable = (length // factor) * factor
    return traces.reshape(batch, -1)[:, :usable].reshape(batch, length // factor, factor).mean(dim=2)


class DownsampledTraceCNN:
    """Summary: raw trace [B, T] → block means [B, T // factor] (float32); learned part: a 1-D CNN.

    ``factor`` samples are averaged per bin (an anti-aliasing, parameter-free
    downsampling: with dt = 0.01 ms and factor 40, one bin is 0.4 ms and a 120 ms HH
    trace becomes 300 values). ``embedding_net()`` is sbi's ``CNNEmbedding`` on that
    length: ``num_conv_layers`` × [Conv1d(kernel_size, padding 1), ReLU,
    MaxPool(pool_kernel_size)] then ``num_linear_layers`` fully connected layers of
    ``num_linear_units`` to ``output_dim`` features.
    """

    def __init__(self, duration: float = 120.0, dt: float = 0.01, factor: int = 40,
                 out_channels_per_layer: Sequence[int] = (6, 12), kernel_size: int = 5, pool_kernel_size: int = 2,
                 num_linear_layers: int = 2, num_linear_units: int = 50, output_dim: int = 20,
                 length: Optional[int] = None) -> None:
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
            raise ConfigError(f"summary.factor={factor!r} is invalid: expected an integer >= 1")
        num_samples = int(length) if length is not None else int(round(duration / dt)) + 1
        self.factor = factor
        self.length = num_samples // factor
        if self.length < 1:
            raise ConfigError(f"summary.factor={factor} is longer than the trace ({num_samples} samples)")
        self.cnn = {
            "out_channels_per_layer": [int(c) for c in out_channels_per_layer],
            "num_conv_layers": len(out_channels_per_layer),
            "kernel_size": int(kernel_size),
            "pool_kernel_size": int(pool_kernel_size),
            "num_linear_layers": int(num_linear_layers),
            "num_linear_units": int(num_linear_units),
            "output_dim": int(output_dim),
        }
        try:
            with torch.random.fork_rng(devices=[]):  # a trial build must not move the global RNG
                self.embedding_net()  # fail fast on sizes that shrink the trace to nothing
        except AssertionError as error:
            raise ConfigError(f"summary: CNN sizes do not fit a trace of {self.length} bins ({error})") from None

    @property
    def dim(self) -> int:
        """Length of the summary vector (the number of bins)."""
        return self.length

    def __call__(self, traces: Tensor) -> Tensor:
        traces = traces.reshape(traces.shape[0], -1)
        if traces.shape[1] // self.factor != self.length:
            raise ConfigError(
                f"summary: traces have {traces.shape[1]} samples, expected {self.length * self.factor}"
                f"..{self.length * self.factor + self.factor - 1} (check simulator.duration/dt)"
            )
        return block_mean(traces.double(), self.factor).float()

    def embedding_net(self) -> nn.Module:
        """A fresh CNN embedding of the binned trace (initialised from the global torch RNG)."""
        return CNNEmbedding(input_shape=(self.length,), in_channels=1, **self.cnn)
