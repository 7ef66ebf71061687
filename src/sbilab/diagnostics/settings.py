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
from typing import Any, Callable, ClassVar, Mapping, Optional

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


def _non_negative_int(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _fraction(value: Any) -> bool:
    return _is_number(value) and 0 < value < 1


def _check_rules(settings: Any, prefix: str, rules: Mapping[str, tuple[Callable[[Any], bool], str]]) -> None:
    for key, (valid, allowed) in rules.items():
        check_value(f"{prefix}.{key}", getattr(settings, key), valid, allowed)


def _from_mapping(cls: type, values: Any, prefix: str) -> Any:
    """``cls(**values)`` for a settings dataclass: unknown keys and non-mappings raise ``ConfigError``;
    nested settings groups are built the same way."""
    if not hasattr(values, "items"):
        raise ConfigError(f"{prefix}={values!r} is invalid: expected a mapping of settings")
    values = dict(values)
    known = [f.name for f in fields(cls)]
    for key in values:
        if key not in known:
            raise ConfigError(f"{prefix}.{key} is not a setting of {prefix}; allowed: {', '.join(known)}")
    for key, group in cls.GROUPS.items():  # type: ignore[attr-defined]
        if key in values:
            values[key] = group(values[key], f"{prefix}.{key}")
    return cls(**values)


@dataclass(frozen=True)
class LC2STSettings:
    """Local calibration at x_o (sbi's ``LC2ST``, and ``LC2ST_NF`` when the estimator is a flow)."""

    enabled: bool = True
    num_trials_null: int = 50  # classifiers trained under the null; the p-value is a multiple of 1/this
    classifier_patience: int = 10  # MLP epochs without improvement before early stopping (sbi: 50)

    GROUPS: ClassVar[dict[str, Callable[[Any, str], Any]]] = {}
    RULES: ClassVar[dict[str, tuple[Callable[[Any], bool], str]]] = {
        "enabled": (_is_bool, "true or false"),
        "num_trials_null": (_positive_int, "an integer >= 1"),
        "classifier_patience": (_positive_int, "an integer >= 1"),
    }

    def __post_init__(self) -> None:
        _check_rules(self, "diagnostics.lc2st", self.RULES)


@dataclass(frozen=True)
class MisspecificationSettings:
    """Could the simulator have produced x_o? Tests against the prior predictive (the test set)."""

    enabled: bool = True
    alpha: float = 0.01  # x_o is misspecified when a test's p-value is below this
    mmd_num_shuffles: int = 1000  # draws of the MMD under the null
    mmd_max_samples: int = 300  # prior-predictive simulations per MMD (cost grows with its square)
    logprob: bool = True  # also sbi's marginal log-prob test (trains a flow on the test set's x)
    logprob_max_epochs: int = 200  # cap on that flow's training epochs

    GROUPS: ClassVar[dict[str, Callable[[Any, str], Any]]] = {}
    RULES: ClassVar[dict[str, tuple[Callable[[Any], bool], str]]] = {
        "enabled": (_is_bool, "true or false"),
        "alpha": (_fraction, "a number strictly between 0 and 1"),
        "mmd_num_shuffles": (_positive_int, "an integer >= 1"),
        "mmd_max_samples": (lambda v: _is_int(v) and v >= 2, "an integer >= 2"),
        "logprob": (_is_bool, "true or false"),
        "logprob_max_epochs": (_positive_int, "an integer >= 1"),
    }

    def __post_init__(self) -> None:
        _check_rules(self, "diagnostics.misspecification", self.RULES)


def _thresholds(values: Any, prefix: str) -> GateThresholds:
    if values is not None and not hasattr(values, "items"):
        raise ConfigError(f"{prefix}={values!r} is invalid: expected a mapping of gates")
    return thresholds_from_mapping(values, prefix)


@dataclass(frozen=True)
class DiagnosticsSettings:
    """What the diagnostics compute and how much (``conf/diagnostics/*.yaml``, typed)."""

    enabled: bool = True
    num_test: int = 1000  # held-out simulations (SBC, coverage, TARP, L-C2ST, prior predictive)
    num_posterior_samples: int = 1000  # per test point, shared by every set-level diagnostic
    num_ppc: int = 100  # posterior-predictive simulations at the observation
    num_observation_samples: int = 10000  # posterior samples at the observation (and C2ST's cap)
    strict: bool = False  # exit non-zero when a gate fails (CI)
    tarp_num_bootstrap: int = 200  # test-set resamples for the interval on TARP's ATC (0: none)
    lc2st: LC2STSettings = field(default_factory=LC2STSettings)
    misspecification: MisspecificationSettings = field(default_factory=MisspecificationSettings)
    thresholds: GateThresholds = field(default_factory=GateThresholds)

    GROUPS: ClassVar[dict[str, Callable[[Any, str], Any]]] = {
        "lc2st": lambda v, prefix: _from_mapping(LC2STSettings, v, prefix),
        "misspecification": lambda v, prefix: _from_mapping(MisspecificationSettings, v, prefix),
        "thresholds": _thresholds,
    }
    #: key → (predicate, what is allowed); the messages are the ones the config checks always gave
    RULES: ClassVar[dict[str, tuple[Callable[[Any], bool], str]]] = {
        "enabled": (_is_bool, "true or false"),
        "num_test": (_positive_int, "an integer >= 1"),
        "num_posterior_samples": (_positive_int, "an integer >= 1"),
        "num_ppc": (_positive_int, "an integer >= 1"),
        "num_observation_samples": (_positive_int, "an integer >= 1"),
        "strict": (_is_bool, "true or false"),
        "tarp_num_bootstrap": (_non_negative_int, "an integer >= 0"),
    }

    def __post_init__(self) -> None:
        _check_rules(self, "diagnostics", self.RULES)
        for key, cls in (("lc2st", LC2STSettings), ("misspecification", MisspecificationSettings),
                         ("thresholds", GateThresholds)):
            if not isinstance(getattr(self, key), cls):
                raise ConfigError(f"diagnostics.{key}={getattr(self, key)!r} is invalid: expected a mapping")
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
        return _from_mapping(cls, values, "diagnostics")


@dataclass(frozen=True)
class DiagnosticsSeeds:
    """One seed per random purpose of the diagnostics (derived by the caller, used as given).

    ``sampling``: posterior samples (and log-probs) for the test set; ``c2st``: the C2ST
    subsampling and classifier; ``tarp``: TARP's reference points; ``observation_log_prob``:
    ``log q(θ*|x_o)`` where it needs sampling; ``observation_samples``: samples at x_o when the
    caller did not pass them; ``tarp_bootstrap``: the test-set resamples of the ATC interval;
    ``lc2st``: the L-C2ST classifiers (and LC2ST_NF's base samples); ``misspecification``: the MMD
    shuffles and the marginal flow of the log-prob test.
    """

    sampling: int
    c2st: int
    tarp: int
    observation_log_prob: int
    observation_samples: int
    tarp_bootstrap: int
    lc2st: int
    misspecification: int

    def __post_init__(self) -> None:
        for f in fields(self):
            if not _is_int(getattr(self, f.name)):
                raise TypeError(f"DiagnosticsSeeds.{f.name} must be an int, got {getattr(self, f.name)!r}")
