"""Prior builders: torch distributions with ``sample`` and ``log_prob`` over [D] parameters.

Each builder checks its own arguments and raises ``ValueError`` naming the config
key, so that a bad prior fails before any simulation.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping, Optional, Sequence

import torch
from sbi.utils import BoxUniform, MultipleIndependent
from torch.distributions import (
    Beta,
    Distribution,
    Gamma,
    Independent,
    LogNormal,
    MultivariateNormal,
    Normal,
    TransformedDistribution,
    Uniform,
)
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


def _positive(values: torch.Tensor, key: str) -> None:
    if (values <= 0).any():
        raise ConfigError(f"prior.{key}={values.tolist()}: every value must be > 0")


def _same_length(first: torch.Tensor, second: torch.Tensor, keys: tuple[str, str]) -> None:
    if first.shape != second.shape:
        raise ConfigError(f"prior.{keys[0]} has {first.numel()} entries but prior.{keys[1]} has {second.numel()}")


def _independent_pair(family: type, first: Sequence[float], second: Sequence[float], keys: tuple[str, str],
                      positive: tuple[str, ...], names: Sequence[str]) -> Distribution:
    """Independent ``family(first[i], second[i])`` per parameter: two same-length lists, some of them > 0."""
    values = {keys[0]: _vector(first, keys[0]), keys[1]: _vector(second, keys[1])}
    _same_length(values[keys[0]], values[keys[1]], keys)
    for key in positive:
        _positive(values[key], key)
    _check_names(names, values[keys[0]].numel())
    return Independent(family(values[keys[0]], values[keys[1]]), 1)


def log_normal(loc: Sequence[float], scale: Sequence[float], names: Sequence[str]) -> Distribution:
    """Independent log-normals: log θ ~ N(loc, scale²) (positive parameters; a rate, a conductance)."""
    return _independent_pair(LogNormal, loc, scale, ("loc", "scale"), ("scale",), names)


def gamma(concentration: Sequence[float], rate: Sequence[float], names: Sequence[str]) -> Distribution:
    """Independent gammas with shape ``concentration`` and ``rate`` (mean concentration / rate)."""
    return _independent_pair(Gamma, concentration, rate, ("concentration", "rate"), ("concentration", "rate"), names)


def beta(alpha: Sequence[float], beta: Sequence[float], names: Sequence[str]) -> Distribution:
    """Independent Beta(alpha, beta) on (0, 1) per parameter (a probability, a fraction)."""
    return _independent_pair(Beta, alpha, beta, ("alpha", "beta"), ("alpha", "beta"), names)


def multivariate_normal(loc: Sequence[float], names: Sequence[str],
                        covariance: Optional[Sequence[Sequence[float]]] = None,
                        precision: Optional[Sequence[Sequence[float]]] = None) -> Distribution:
    """A correlated normal N(loc, Σ), given the covariance Σ *or* the precision Σ⁻¹ (a smoothness prior)."""
    mu = _vector(loc, "loc")
    if (covariance is None) == (precision is None):
        raise ConfigError("prior: give exactly one of prior.covariance and prior.precision (a D x D matrix)")
    key = "covariance" if covariance is not None else "precision"
    matrix = _matrix(covariance if covariance is not None else precision, key, mu.numel())
    _check_names(names, mu.numel())
    try:
        torch.linalg.cholesky(matrix)
    except RuntimeError:
        raise ConfigError(f"prior.{key}: the matrix is not symmetric positive definite") from None
    if key == "covariance":
        return MultivariateNormal(mu, covariance_matrix=matrix)
    return MultivariateNormal(mu, precision_matrix=matrix)


def _matrix(rows: Any, key: str, dim: int) -> torch.Tensor:
    try:
        matrix = torch.as_tensor([[float(v) for v in row] for row in rows], dtype=torch.float32)
    except (TypeError, ValueError):
        raise ConfigError(f"prior.{key}: expected a list of {dim} rows of {dim} numbers") from None
    if matrix.shape != (dim, dim) or not torch.isfinite(matrix).all():
        raise ConfigError(f"prior.{key}: expected a finite {dim} x {dim} matrix (prior.loc has {dim} entries), "
                          f"got shape {list(matrix.shape)}")
    if not torch.allclose(matrix, matrix.T, atol=1e-6 * float(matrix.abs().max())):
        raise ConfigError(f"prior.{key}: the matrix is not symmetric")
    return (matrix + matrix.T) / 2


#: where ``prior.distribution`` may name a class (a stored spec rebuilt on load must not run other code)
DISTRIBUTION_MODULES = ("torch.distributions.", "sbi.utils.")


def distribution(distribution: str, names: Sequence[str], **parameters: Any) -> Distribution:
    """Any torch (or sbi) distribution by name, its list parameters as tensors, batch dimensions made θ's.

    ``distribution: torch.distributions.StudentT`` with ``df: [3, 3]``, ``loc: [0, 0]``, ``scale: [1, 1]``
    is a 2-parameter prior. Only classes from ``torch.distributions`` and ``sbi.utils`` are allowed here;
    a class of your own is a ``_target_`` of its own (docs/your-model.md).
    """
    if not isinstance(distribution, str) or not distribution.startswith(DISTRIBUTION_MODULES):
        allowed = " or ".join(m.rstrip(".") for m in DISTRIBUTION_MODULES)
        raise ConfigError(f"prior.distribution={distribution!r}: expected a class from {allowed} "
                          "(e.g. torch.distributions.Gamma); "
                          "your own class: prior._target_=mypkg.module.MyPrior")
    module_name, _, class_name = distribution.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Distribution)):
        raise ConfigError(f"prior.distribution={distribution!r}: not a torch Distribution class")
    tensors = {k: torch.as_tensor(v, dtype=torch.float32) if isinstance(v, (list, tuple, int, float)) else v
               for k, v in parameters.items()}
    try:
        built = cls(**tensors)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"prior.distribution={distribution}: {error}") from None
    if len(built.batch_shape) > 0:
        built = Independent(built, len(built.batch_shape))
    dim = int(built.sample().reshape(-1).numel())
    _check_names(names, dim)
    return built


def independent(parts: Sequence[Mapping[str, Any]], names: Sequence[str]) -> Distribution:
    """Independent blocks side by side (θ = [block 1, block 2, ...]), each block a prior config of its own.

    A block is a mapping with a ``_target_`` (any of this module's builders, with its own ``names``);
    e.g. a box-uniform rate beside a log-normal conductance.
    """
    from hydra.utils import get_method

    if not parts:
        raise ConfigError("prior.parts: expected a non-empty list of prior configs")
    blocks = []
    for index, part in enumerate(parts):
        if isinstance(part, Distribution):  # Hydra's recursive instantiation built the block already
            blocks.append(part)
            continue
        if not isinstance(part, Mapping) or "_target_" not in part:
            raise ConfigError(f"prior.parts[{index}]: expected a prior config with a _target_")
        try:
            build = get_method(str(part["_target_"]))
        except Exception:
            raise ConfigError(f"prior.parts[{index}]._target_={part['_target_']!r}: "
                              "not an importable function") from None
        blocks.append(build(**{k: v for k, v in part.items() if k not in ("_target_", "name")}))
    # sbi's MultipleIndependent concatenates blocks of event shape [d]; it does not nest, so flatten
    flat = [d for b in blocks for d in (b.dists if isinstance(b, MultipleIndependent) else [b])]
    combined = flat[0] if len(flat) == 1 else MultipleIndependent(flat, validate_args=False)
    _check_names(names, int(combined.sample().reshape(-1).numel()))
    return combined


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
    return parts[0] if len(parts) == 1 else MultipleIndependent(parts, validate_args=False)


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


def build_prior(cfg: Mapping[str, Any]) -> Distribution:
    """The prior a config describes (``_target_`` and its arguments; ``name`` is descriptive).

    ``names`` labels θ's columns for sbilab; a function of your own that does not take it is called
    without it, so ``_target_: mypkg.priors.my_prior`` needs no argument it has no use for.
    """
    from hydra.utils import get_method, instantiate

    arguments = {k: v for k, v in cfg.items() if k != "name"}
    target = str(arguments.get("_target_", ""))
    if "names" in arguments and not target.startswith("sbilab."):
        try:
            parameters = inspect.signature(get_method(target)).parameters
        except Exception:  # not resolvable here: instantiate reports it
            parameters = None
        if parameters is not None and "names" not in parameters and \
                not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
            arguments.pop("names")
    return instantiate(arguments, _convert_="all")


def sample_prior(prior: Distribution, num: int, seed: int) -> torch.Tensor:
    """``num`` prior draws [num, D] (float32), reproducible from ``seed``, global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return prior.sample((num,)).reshape(num, -1).float()
