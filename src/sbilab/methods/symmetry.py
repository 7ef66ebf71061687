"""A learned likelihood made exactly invariant to sign flips of chosen parameters.

Some simulators ignore the sign of a parameter: x's distribution at θ and at θ with
θ_i → −θ_i is the same (sbibm's slcp uses θ3² and θ4² as variances). The true
likelihood is then symmetric and the posterior has one mode per sign pattern, each
with the same mass. A network fitted to 10,000 simulations is only roughly symmetric,
and a small asymmetry in log q(x | θ) moves whole modes' weights: on slcp observation 7
one network put 0.01 / 0.19 / 0.09 / 0.71 on four modes that each hold 0.25
(docs/benchmark.md). Averaging the likelihood over the group of flips,

    q_sym(x | θ) = (1 / 2^k) Σ_{s ∈ {±1}^k} q(x | θ with θ_i → s_i θ_i),

is a density in x for every θ, exactly invariant, and equal to q wherever q already was.
It is knowledge about the simulator the user states (``method.sign_invariant``);
nothing is inferred from data.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
from sbi.neural_nets.estimators.base import ConditionalDensityEstimator
from torch import Tensor


def sign_patterns(num: int) -> Tensor:
    """The 2^num sign patterns, ``[2^num, num]``, the identity first."""
    return torch.tensor(list(itertools.product((1.0, -1.0), repeat=num)))


class SignSymmetrizedLikelihood(ConditionalDensityEstimator):
    """``q(x | θ)`` averaged over the sign flips of ``θ[dims]`` (see the module docstring).

    Wraps a trained likelihood estimator (x is the input, θ the condition); costs
    2^len(dims) evaluations of it per density.
    """

    def __init__(self, likelihood: ConditionalDensityEstimator, dims: Sequence[int]) -> None:
        super().__init__(likelihood, likelihood.input_shape, likelihood.condition_shape)
        self.dims = [int(d) for d in dims]
        self.register_buffer("patterns", sign_patterns(len(self.dims)))

    def _flipped(self, condition: Tensor, pattern: Tensor) -> Tensor:
        flipped = condition.clone()
        flipped[..., self.dims] = condition[..., self.dims] * pattern
        return flipped

    def log_prob(self, input: Tensor, condition: Tensor, **kwargs) -> Tensor:
        log_probs = [self.net.log_prob(input, condition=self._flipped(condition, p), **kwargs) for p in self.patterns]
        return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(self.patterns))

    def loss(self, input: Tensor, condition: Tensor, **kwargs) -> Tensor:
        return -self.log_prob(input, condition, **kwargs)

    def sample(self, sample_shape: torch.Size, condition: Tensor, **kwargs) -> Tensor:
        """Draws from the mixture: for each draw a uniformly chosen sign pattern, then ``q(x | flipped θ)``."""
        per_pattern = torch.stack([self.net.sample(sample_shape, condition=self._flipped(condition, p), **kwargs)
                                   for p in self.patterns])  # [P, *sample_shape, batch, *input_shape]
        choice = torch.randint(len(self.patterns), per_pattern.shape[1:-len(self.input_shape)])
        index = choice.reshape(1, *choice.shape, *([1] * len(self.input_shape))).expand(1, *per_pattern.shape[1:])
        return per_pattern.gather(0, index).squeeze(0)
