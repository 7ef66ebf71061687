"""Every seed of a run, derived from the run seed by named purpose, and seeded blocks of work.

Two kinds of derivation, both pure functions of their inputs:

- :func:`purpose_seed`: one 63-bit seed per (seed, purpose) from SHA-256, e.g. the
  training split, the test set, the samples at x_o. A new purpose never shifts the
  numbers of an existing one.
- :func:`per_index_seeds`: one seed per simulation index (SplitMix64 of (seed, index)),
  so simulation ``i`` gets the same noise whatever chunk, worker or backend runs it.

:class:`RunSeeds` names every purpose a run uses, so no module computes ``seed + k``
itself. A few derivations are arithmetic on another seed (sequential rounds,
diagnostics' helpers): they are kept exactly as they were first recorded, so runs
recorded before this module existed reproduce digit for digit.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

_MASK64 = (1 << 64) - 1
#: multiplier of the sequential-round seed (a prime, so rounds of nearby seeds never collide)
_ROUND_STRIDE = 7919


def purpose_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one purpose (``"train"``, ``"test"``, ...) of ``seed``."""
    digest = hashlib.sha256(f"{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def per_index_seeds(seed: int, start: int, count: int) -> np.ndarray:
    """Seeds ``splitmix64(seed, start + i)`` for ``i < count`` (uint64).

    Simulation ``j`` of a dataset always gets the same seed, whatever chunk or worker
    simulates it: seeds come from (dataset seed, global index), not from a stream.
    """
    index = np.arange(start, start + count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64((int(seed) * 0x9E3779B97F4A7C15) & _MASK64) + (index + np.uint64(1)) * np.uint64(
            0xBF58476D1CE4E5B9
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def member_seed(train_seed: int, member: int) -> int:
    """Training seed of ensemble member ``member``; member 0 trains exactly as a single network would."""
    return int(train_seed) if member == 0 else purpose_seed(int(train_seed), f"ensemble-member-{member}")


def round_seed(train_seed: int, round_: int) -> int:
    """Seed of round ``round_`` of a sequential method (its split, initialisation and batch order)."""
    return int(train_seed) + _ROUND_STRIDE * int(round_)


@dataclass(frozen=True)
class RunSeeds:
    """Every seed of one run, by purpose (all derived from ``run``, the config's ``seed``)."""

    run: int

    def dataset(self, purpose: str) -> int:
        """θ draws and per-simulation seeds of a dataset (``"train"``, ``"test"``, ``"train-round-1"``)."""
        return purpose_seed(self.run, purpose)

    @property
    def train(self) -> int:
        """Split, network initialisation and batch order of (the first network of) training."""
        return purpose_seed(self.run, "train")

    @property
    def pilot(self) -> int:
        """The one prior draw that measures the summary's dimension before any real work."""
        return purpose_seed(self.run, "pilot")

    @property
    def observation_samples(self) -> int:
        """The posterior samples at x_o that the run logs and diagnoses."""
        return purpose_seed(self.run, "observation-samples")

    @property
    def ppc(self) -> int:
        """Simulations from posterior draws at x_o (posterior predictive check)."""
        return purpose_seed(self.run, "ppc")

    @property
    def ppc_traces(self) -> int:
        """The few raw traces drawn for the predictive figure."""
        return purpose_seed(self.run, "ppc-traces")

    @property
    def reference(self) -> int:
        """Reference posterior samples at x_o (benchmark tasks)."""
        return purpose_seed(self.run, "reference")

    @property
    def prior_moments(self) -> int:
        """Prior draws whose variance the contraction is measured against."""
        return purpose_seed(self.run, "prior-moments")

    @property
    def diagnostics(self) -> dict[str, int]:
        """The diagnostics' seeds by what they randomise (``sbilab.diagnostics.DiagnosticsSeeds`` fields).

        The offsets are the ones the diagnostics used when runs were first recorded, kept so
        that those runs reproduce digit for digit.
        """
        seed = purpose_seed(self.run, "diagnostics")
        return {"sampling": seed, "c2st": seed, "tarp": seed + 1, "observation_log_prob": seed + 2,
                "observation_samples": seed + 3, "tarp_bootstrap": purpose_seed(self.run, "tarp-bootstrap"),
                "lc2st": purpose_seed(self.run, "lc2st"),
                "misspecification": purpose_seed(self.run, "misspecification")}

    def benchmark_samples(self, observation: int) -> int:
        """Samples at sbibm's observation ``observation``."""
        return purpose_seed(self.run, f"benchmark-samples/{observation}")

    def benchmark_c2st(self, observation: int) -> int:
        """C2ST classifier of sbibm's observation ``observation``."""
        return purpose_seed(self.run, f"benchmark-c2st/{observation}")


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
