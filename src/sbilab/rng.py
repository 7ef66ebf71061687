"""Seeding a block of work without disturbing the caller's random streams."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's and NumPy's global generators for the block, then restore both.

    NumPy matters too: sbi's vectorised slice sampler (NLE/NRE posteriors) draws
    from ``np.random``.
    """
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
