"""The identity summary: the simulator's output, flattened to [B, d] float32."""

from __future__ import annotations

from torch import Tensor


class Identity:
    """Callable summary that keeps the raw output (for low-dimensional simulators)."""

    def __call__(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1).float()
