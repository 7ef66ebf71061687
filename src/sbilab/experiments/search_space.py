"""The settings of an HPO study (``conf/hpo/*.yaml``, parsed by Hydra) and its search space.

``hpo.params`` mirrors the run config: ``params.estimator.hidden_features`` searches
``estimator.hidden_features``. A node with a ``type`` key is one searched parameter, so
Hydra's own override grammar edits the space (``hpo.params.estimator.hidden_features.high=64``,
``~hpo.params.estimator.num_transforms``, ``+hpo.params.trainer.batch_size={type: categorical,
choices: [100, 200]}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from omegaconf import DictConfig, OmegaConf

from sbilab.config import INT_GE_1, at_least, load_settings, setting
from sbilab.errors import ConfigError

#: the kinds of searched parameter
DISTRIBUTION_TYPES = ("int", "float", "categorical")
#: objective when no reference posterior exists: the held-out negative log-likelihood
NLL_METRIC = "val/loss_best"
C2ST_METRIC = "c2st"


@dataclass
class HpoSettings:
    """``hpo.*``: how the study runs (the search space is ``params``, checked by :func:`search_space`)."""

    n_trials: int = setting(8, INT_GE_1, at_least(1))
    n_jobs: int = setting(2, INT_GE_1, at_least(1))
    timeout_s: Optional[float] = setting(None, "null or a number of seconds > 0", lambda v: v > 0)
    metric: str = setting("auto", "auto, or a metric name such as val/loss_best or c2st")
    direction: str = setting("minimize", "minimize or maximize", lambda v: v in ("minimize", "maximize"))
    seed: int = setting(0, "an integer >= 0", at_least(0))
    n_startup_trials: int = setting(4, "an integer >= 0", at_least(0))
    storage: Optional[str] = None
    study_name: Optional[str] = None
    base_overrides: list[str] = setting([], "a list of run overrides (key=value)")
    params: dict[str, Any] = setting({}, "the search space: config keys → {type, low, high, log, step, choices}")


def load_hpo_settings(node: Any) -> HpoSettings:
    """The ``hpo`` group, typed and checked (one line naming the key on the first problem)."""
    if node is None:
        raise ConfigError("hpo: no study settings; choose one with hpo=<name> (e.g. hpo=default)")
    settings = load_settings(HpoSettings, node, "hpo")
    settings.params = flat_space(settings.params)
    check_space(settings.params)
    return settings


def flat_space(params: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """``{estimator: {hidden_features: {type: ...}}}`` → ``{"estimator.hidden_features": {type: ...}}``."""
    flat: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and "type" in value:
            flat[name] = dict(value)
        elif isinstance(value, Mapping):
            flat.update(flat_space(value, f"{name}."))
        elif value is not None:
            raise ConfigError(f"hpo.params.{name}={value!r}: expected {{type: ..., low: ..., high: ...}} or null")
    return flat


def check_space(space: Mapping[str, Mapping[str, Any]]) -> None:
    """Fail fast on a bad search space, before any parent run exists."""
    if not space:
        raise ConfigError("hpo.params is empty: nothing to search")
    for key, spec in space.items():
        kind = spec.get("type")
        if kind not in DISTRIBUTION_TYPES:
            raise ConfigError(f"hpo.params.{key}.type={kind!r} is invalid: expected one of "
                              f"{', '.join(DISTRIBUTION_TYPES)}")
        if kind == "categorical":
            if not spec.get("choices"):
                raise ConfigError(f"hpo.params.{key}.choices: a categorical parameter needs a non-empty list")
            continue
        low, high = spec.get("low"), spec.get("high")
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or low >= high:
            raise ConfigError(f"hpo.params.{key}: needs numbers low < high (got low={low!r}, high={high!r})")
        if spec.get("log") and low <= 0:
            raise ConfigError(f"hpo.params.{key}: a log-scaled range needs low > 0")


def search_space(space: Mapping[str, Mapping[str, Any]], run_cfg: DictConfig) -> tuple[dict[str, Any], list[str]]:
    """The searched keys that exist in the composed run config, and the skipped ones."""
    kept, skipped = {}, []
    for key, spec in space.items():
        if OmegaConf.select(run_cfg, key, default="__missing__") == "__missing__":
            skipped.append(key)
        else:
            kept[key] = dict(spec)
    if not kept:
        raise ConfigError(f"none of the searched keys ({', '.join(skipped)}) exists in the composed config")
    return kept, skipped


def suggest(trial: Any, space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One value per searched key from an Optuna trial."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        kind = spec["type"]
        if kind == "int":
            values[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), step=int(spec.get("step") or 1),
                                            log=bool(spec.get("log", False)))
        elif kind == "float":
            values[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), step=spec.get("step"),
                                              log=bool(spec.get("log", False)))
        else:
            values[key] = trial.suggest_categorical(key, list(spec["choices"]))
    return values


def round_value(value: Any) -> Any:
    """Floats to 6 significant digits: what the override says is what the run uses and records."""
    return float(f"{value:.6g}") if isinstance(value, float) else value


def format_override(key: str, value: Any) -> str:
    """``key=value`` that Hydra parses back to the same value (floats stay floats)."""
    if isinstance(value, float):
        text = f"{value:.6g}"
        return f"{key}={text if any(c in text for c in '.en') else text + '.0'}"
    return f"{key}={value}"


def choose_metric(setting_value: str, run_cfg: DictConfig) -> str:
    """``auto``: c2st when the simulator defines a reference posterior and diagnostics run at a known θ."""
    if setting_value != "auto":
        return setting_value
    from hydra.utils import get_class

    from sbilab.simulators.base import Simulator

    try:
        simulator_class = get_class(str(run_cfg.simulator._target_))
    except Exception:
        return NLL_METRIC
    has_reference = getattr(simulator_class, "reference_posterior", None) is not Simulator.reference_posterior
    if has_reference and run_cfg.diagnostics.enabled and run_cfg.observation.get("name") == "synthetic":
        return C2ST_METRIC
    return NLL_METRIC
