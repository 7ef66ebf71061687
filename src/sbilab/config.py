"""Checks on the composed config that run before any work.

Every problem is reported as one line naming the key, the bad value and what is
allowed (``ConfigError``); the entry script turns it into a non-zero exit.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.error import URLError
from urllib.parse import urlparse
from urllib.request import urlopen

from omegaconf import DictConfig

from sbilab.diagnostics.settings import THRESHOLD_KEYS as DIAGNOSTICS_THRESHOLD_KEYS
from sbilab.diagnostics.settings import DiagnosticsSettings
from sbilab.errors import ConfigError, TrackingError

SIMULATION_BACKENDS = ("local", "serial")


def _get(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value > 0


def _non_negative_int(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1


def _lr_decay(value: Any) -> bool:
    return (hasattr(value, "keys") and set(value.keys()) == {"factor", "patience", "min_lr"}
            and _fraction(value["factor"]) and _non_negative_int(value["patience"])
            and isinstance(value["min_lr"], (int, float)) and value["min_lr"] >= 0)


def _weight_averaging(value: Any) -> bool:
    return (hasattr(value, "keys") and "decay" in value and set(value.keys()) <= {"decay", "start_epoch"}
            and _fraction(value["decay"]) and _non_negative_int(value.get("start_epoch", 0)))


#: key → (predicate, what is allowed)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_non_negative_int, "an integer >= 0"),
    "num_threads": (_positive_int, "an integer >= 1"),
    "simulation.num_simulations": (_positive_int, "an integer >= 1"),
    "simulation.chunk_size": (_positive_int, "an integer >= 1"),
    "simulation.num_workers": (_positive_int, "an integer >= 1"),
    "simulation.backend": (lambda v: v in SIMULATION_BACKENDS, f"one of {', '.join(SIMULATION_BACKENDS)}"),
    "simulation.invalid_warn_fraction": (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1, "a number in [0, 1]"),
    "trainer.batch_size": (_positive_int, "an integer >= 1"),
    "trainer.learning_rate": (_positive_number, "a number > 0"),
    "trainer.validation_fraction": (_fraction, "a number strictly between 0 and 1"),
    "trainer.stop_after_epochs": (_positive_int, "an integer >= 1"),
    "trainer.max_epochs": (lambda v: _is_int(v) and (v == -1 or v > 0), "-1 (until early stopping) or an integer >= 1"),
    "trainer.clip_max_norm": (lambda v: v is None or _positive_number(v), "null or a number > 0"),
    "trainer.lr_decay": (lambda v: v is None or _lr_decay(v),
                         "null or {factor: 0 < f < 1, patience: integer >= 0, min_lr: number >= 0}"),
    "trainer.weight_averaging": (lambda v: v is None or _weight_averaging(v),
                                 "null or {decay: 0 < d < 1, start_epoch: integer >= 0 (optional)}"),
    "trainer.ensemble_size": (_positive_int, "an integer >= 1"),
    "diagnostics.num_test": (_positive_int, "an integer >= 1"),
    "diagnostics.num_posterior_samples": (_positive_int, "an integer >= 1"),
    "diagnostics.num_ppc": (_positive_int, "an integer >= 1"),
    "diagnostics.num_observation_samples": (_positive_int, "an integer >= 1"),
    "diagnostics.enabled": (lambda v: isinstance(v, bool), "true or false"),
    "diagnostics.strict": (lambda v: isinstance(v, bool), "true or false"),
    "observation.seed": (_non_negative_int, "an integer >= 0"),
}

#: the calibration gates a threshold may be given for (null switches a gate off)
THRESHOLD_KEYS = DIAGNOSTICS_THRESHOLD_KEYS


def check_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` on the first invalid value."""
    for key, (valid, allowed) in RULES.items():
        try:
            value = _get(cfg, key)
        except Exception:
            raise ConfigError(f"{key} is missing from the config; expected {allowed}") from None
        if not valid(value):
            raise ConfigError(f"{key}={value!r} is invalid: expected {allowed}")
    for key, value in cfg.diagnostics.thresholds.items():
        if key not in THRESHOLD_KEYS:
            raise ConfigError(f"diagnostics.thresholds.{key} is not a gate; allowed: {', '.join(THRESHOLD_KEYS)}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"diagnostics.thresholds.{key}={value!r} is invalid: expected a number or null")
    if cfg.diagnostics.num_ppc > cfg.diagnostics.num_observation_samples:
        raise ConfigError(
            f"diagnostics.num_ppc={cfg.diagnostics.num_ppc} is larger than the posterior samples it is drawn from "
            f"(diagnostics.num_observation_samples={cfg.diagnostics.num_observation_samples})"
        )
    DiagnosticsSettings.from_mapping(cfg.diagnostics)  # the diagnostics group's other keys (lc2st, ...)
    num_train = int((1 - cfg.trainer.validation_fraction) * cfg.simulation.num_simulations)
    if num_train < 1 or cfg.simulation.num_simulations - num_train < 1:
        raise ConfigError(
            f"simulation.num_simulations={cfg.simulation.num_simulations} leaves no training or validation data "
            f"with trainer.validation_fraction={cfg.trainer.validation_fraction}"
        )
    observation_keys = [k for k in ("theta", "x", "file") if cfg.observation.get(k) is not None]
    if len(observation_keys) != 1:
        raise ConfigError(
            "observation: set exactly one of observation.theta, observation.x, observation.file "
            f"(got {', '.join(observation_keys) or 'none'}); e.g. observation.theta=null observation.x=[...]"
        )


def check_tracking_uri(uri: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not after MLflow's retries, when a tracking server does not answer."""
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        try:
            with urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):  # noqa: S310 (user-chosen URI)
                return
        except (URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise TrackingError(
                f"tracking.uri={uri!r}: no MLflow server answers ({reason}); start one (see README) "
                "or use the default SQLite store"
            ) from None
    elif scheme == "sqlite":
        if not uri.startswith("sqlite:////"):
            raise TrackingError(f"tracking.uri={uri!r}: use an absolute sqlite path (sqlite:////abs/path.db)")
    elif scheme not in ("postgresql", "mysql", "databricks"):
        raise TrackingError(f"tracking.uri={uri!r}: expected sqlite:////abs/path.db or http(s)://host:port")
