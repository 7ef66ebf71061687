"""The typed ``diagnostics`` config group and the named seeds the diagnostics draw from.

:class:`DiagnosticsSettings` mirrors ``conf/diagnostics/*.yaml`` key for key and checks
every value on construction: a bad one raises :class:`~sbilab.errors.ConfigError` with one
line naming ``diagnostics.<key>`` and what is allowed. :class:`DiagnosticsSeeds` names each
random purpose; the caller derives the values (``sbilab.rng``), the diagnostics never add
offsets to a seed.

Light on purpose (no torch, no sbi): config checks import it before any heavy work.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Optional

from sbilab.diagnostics.gates import GateThresholds
from sbilab.errors import ConfigError

#: the calibration gates a threshold may be given for (null switches a gate off)
THRESHOLD_KEYS = tuple(f.name for f in fields(GateThresholds))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value > 0


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_value(key: str, value: Any, valid: Callable[[Any], bool], allowed: str) -> None:
    """Raise ``ConfigError("<key>=<value> is invalid: expected <allowed>")`` unless ``valid(value)``."""
    if not valid(value):
        raise ConfigError(f"{key}={value!r} is invalid: expected {allowed}")


def thresholds_from_mapping(values: Optional[Mapping[str, Any]],
                            prefix: str = "diagnostics.thresholds") -> GateThresholds:
    """Gate thresholds from a config mapping: unknown gates and non-numbers raise ``ConfigError``."""
    if values is None:
        return GateThresholds()
    values = dict(values)
    for key, value in values.items():
        if key not in THRESHOLD_KEYS:
            raise ConfigError(f"{prefix}.{key} is not a gate; allowed: {', '.join(THRESHOLD_KEYS)}")
        check_value(f"{prefix}.{key}", value, lambda v: v is None or _is_number(v), "a number or null")
    return GateThresholds(**{k: (None if v is None else float(v)) for k, v in values.items()})


#: key → (predicate, what is allowed); the messages are the ones the config checks always gave
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "enabled": (_is_bool, "true or false"),
    "num_test": (_positive_int, "an integer >= 1"),
    "num_posterior_samples": (_positive_int, "an integer >= 1"),
    "num_ppc": (_positive_int, "an integer >= 1"),
    "num_observation_samples": (_positive_int, "an integer >= 1"),
    "strict": (_is_bool, "true or false"),
}


@dataclass(frozen=True)
class DiagnosticsSettings:
    """What the diagnostics compute and how much (``conf/diagnostics/*.yaml``, typed)."""

    enabled: bool = True
    num_test: int = 1000  # held-out simulations (SBC, coverage, TARP, ...)
    num_posterior_samples: int = 1000  # per test point, shared by every set-level diagnostic
    num_ppc: int = 100  # posterior-predictive simulations at the observation
    num_observation_samples: int = 10000  # posterior samples at the observation (and C2ST's cap)
    strict: bool = False  # exit non-zero when a gate fails (CI)
    thresholds: GateThresholds = field(default_factory=GateThresholds)

    def __post_init__(self) -> None:
        for key, (valid, allowed) in _RULES.items():
            check_value(f"diagnostics.{key}", getattr(self, key), valid, allowed)
        if not isinstance(self.thresholds, GateThresholds):
            raise ConfigError(f"diagnostics.thresholds={self.thresholds!r} is invalid: expected a mapping of gates")
        for key in THRESHOLD_KEYS:
            check_value(f"diagnostics.thresholds.{key}", getattr(self.thresholds, key),
                        lambda v: v is None or _is_number(v), "a number or null")
        if self.num_ppc > self.num_observation_samples:
            raise ConfigError(
                f"diagnostics.num_ppc={self.num_ppc} is larger than the posterior samples it is drawn from "
                f"(diagnostics.num_observation_samples={self.num_observation_samples})"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "DiagnosticsSettings":
        """Build from the composed ``diagnostics`` group (OmegaConf or plain mapping); missing keys keep
        their defaults, unknown keys raise ``ConfigError``."""
        values = dict(values)
        known = [f.name for f in fields(cls)]
        for key in values:
            if key not in known:
                raise ConfigError(f"diagnostics.{key} is not a diagnostics setting; allowed: {', '.join(known)}")
        if "thresholds" in values:
            thresholds = values["thresholds"]
            if thresholds is not None and not hasattr(thresholds, "items"):
                raise ConfigError(f"diagnostics.thresholds={thresholds!r} is invalid: expected a mapping of gates")
            values["thresholds"] = thresholds_from_mapping(thresholds)
        return cls(**values)


@dataclass(frozen=True)
class DiagnosticsSeeds:
    """One seed per random purpose of the diagnostics (derived by the caller, used as given).

    ``sampling``: posterior samples (and log-probs) for the test set; ``c2st``: the C2ST
    subsampling and classifier; ``tarp``: TARP's reference points; ``observation_log_prob``:
    ``log q(θ*|x_o)`` where it needs sampling; ``observation_samples``: samples at x_o when the
    caller did not pass them.
    """

    sampling: int
    c2st: int
    tarp: int
    observation_log_prob: int
    observation_samples: int

    def __post_init__(self) -> None:
        for f in fields(self):
            if not _is_int(getattr(self, f.name)):
                raise TypeError(f"DiagnosticsSeeds.{f.name} must be an int, got {getattr(self, f.name)!r}")
