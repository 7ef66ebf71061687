"""Prior builders: torch distributions with ``sample`` and ``log_prob`` over [D] parameters.

Each builder checks its own arguments and raises ``ValueError`` naming the config
key, so that a bad prior fails before any simulation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from sbi.utils import BoxUniform, MultipleIndependent
from torch.distributions import Distribution, Independent, Normal, TransformedDistribution, Uniform
from torch.distributions.transforms import ExpTransform

from sbilab.errors import ConfigError


def _vector(values: Sequence[float], key: str) -> torch.Tensor:
    try:
        out = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    except (TypeError, ValueError):
        raise ConfigError(f"prior.{key}={list(values)!r}: expected a list of numbers") from None
    if out.ndim != 1 or out.numel() == 0:
        raise ConfigError(f"prior.{key}: expected a non-empty list of numbers")
    if not torch.isfinite(out).all():
        raise ConfigError(f"prior.{key}={out.tolist()}: values must be finite")
    return out


def _check_names(names: Sequence[str], dim: int) -> None:
    if len(names) != dim:
        raise ConfigError(f"prior.names has {len(names)} entries but the prior has {dim} parameters")


def _check_bounds(low: torch.Tensor, high: torch.Tensor) -> None:
    if low.shape != high.shape:
        raise ConfigError(f"prior.low has {low.numel()} entries but prior.high has {high.numel()}")
    bad = (low >= high).nonzero().flatten().tolist()
    if bad:
        raise ConfigError(f"prior.low must be < prior.high for every parameter; violated at index {bad}")


def box_uniform(low: Sequence[float], high: Sequence[float], names: Sequence[str]) -> Distribution:
    """Independent uniform on [low, high] per parameter (sbi's BoxUniform)."""
    lo, hi = _vector(low, "low"), _vector(high, "high")
    _check_bounds(lo, hi)
    _check_names(names, lo.numel())
    return BoxUniform(low=lo, high=hi)


def log_uniform(low: Sequence[float], high: Sequence[float], names: Sequence[str]) -> Distribution:
    """log θ uniform on [log low, log high]: for positive parameters spanning decades."""
    lo, hi = _vector(low, "low"), _vector(high, "high")
    _check_bounds(lo, hi)
    if (lo <= 0).any():
        raise ConfigError(f"prior.low={lo.tolist()}: a log-uniform prior needs low > 0")
    _check_names(names, lo.numel())
    return _LogUniform(lo, hi)


def gaussian(loc: Sequence[float], scale: Sequence[float], names: Sequence[str]) -> Distribution:
    """Independent normal N(loc, scale²) per parameter."""
    mu, sd = _vector(loc, "loc"), _vector(scale, "scale")
    if mu.shape != sd.shape:
        raise ConfigError(f"prior.loc has {mu.numel()} entries but prior.scale has {sd.numel()}")
    if (sd <= 0).any():
        raise ConfigError(f"prior.scale={sd.tolist()}: every scale must be > 0")
    _check_names(names, mu.numel())
    return Independent(Normal(mu, sd), 1)


def truncated_gaussian(
    loc: Sequence[float], scale: Sequence[float], low: Sequence[float], high: Sequence[float], names: Sequence[str]
) -> Distribution:
    """Independent normals truncated to [low, high] (sbi's MultipleIndependent of 1-D truncations)."""
    mu, sd = _vector(loc, "loc"), _vector(scale, "scale")
    lo, hi = _vector(low, "low"), _vector(high, "high")
    _check_bounds(lo, hi)
    if not (mu.shape == sd.shape == lo.shape):
        raise ConfigError("prior.loc, prior.scale, prior.low and prior.high must have the same length")
    if (sd <= 0).any():
        raise ConfigError(f"prior.scale={sd.tolist()}: every scale must be > 0")
    _check_names(names, mu.numel())
    parts = [_TruncatedNormal(mu[i : i + 1], sd[i : i + 1], lo[i : i + 1], hi[i : i + 1]) for i in range(mu.numel())]
    return MultipleIndependent(parts, validate_args=False)


class _LogUniform(TransformedDistribution):
    """exp of a box-uniform; its support is the box [low, high] (so posteriors are truncated to it)."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor) -> None:
        self.low, self.high = low, high
        super().__init__(Independent(Uniform(low.log(), high.log()), 1), [ExpTransform()], validate_args=False)

    @property
    def support(self):  # type: ignore[override]
        return torch.distributions.constraints.independent(
            torch.distributions.constraints.interval(self.low, self.high), 1
        )


class _TruncatedNormal(Distribution):
    """1-D normal truncated to [low, high], sampled by inverse CDF."""

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> None:
        self.normal = Normal(loc, scale)
        self.low, self.high = low, high
        self.cdf_low, self.cdf_high = self.normal.cdf(low), self.normal.cdf(high)
        self.log_mass = torch.log(self.cdf_high - self.cdf_low)
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([1]), validate_args=False)

    @property
    def support(self):  # type: ignore[override]
        return torch.distributions.constraints.independent(
            torch.distributions.constraints.interval(self.low, self.high), 1
        )

    def _standardised(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        loc, scale = self.normal.loc, self.normal.scale
        a, b = (self.low - loc) / scale, (self.high - loc) / scale
        pdf = lambda z: torch.exp(-0.5 * z**2) / (2 * torch.pi) ** 0.5  # noqa: E731
        return a, b, pdf(a), pdf(b), self.cdf_high - self.cdf_low

    @property
    def mean(self) -> torch.Tensor:
        _, _, pa, pb, mass = self._standardised()
        return self.normal.loc + self.normal.scale * (pa - pb) / mass

    @property
    def variance(self) -> torch.Tensor:
        a, b, pa, pb, mass = self._standardised()
        ratio = (pa - pb) / mass
        return self.normal.scale**2 * (1 + (a * pa - b * pb) / mass - ratio**2)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        u = torch.rand(torch.Size(sample_shape) + (1,))
        p = self.cdf_low + u * (self.cdf_high - self.cdf_low)
        return self.normal.icdf(p.clamp(1e-7, 1 - 1e-7)).clamp(self.low, self.high)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        inside = (value >= self.low) & (value <= self.high)
        lp = self.normal.log_prob(value) - self.log_mass
        return torch.where(inside, lp, torch.full_like(lp, -float("inf"))).sum(-1)


def sample_prior(prior: Distribution, num: int, seed: int) -> torch.Tensor:
    """``num`` prior draws [num, D] (float32), reproducible from ``seed``, global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return prior.sample((num,)).reshape(num, -1).float()
