"""The typed settings of a run (structured configs) and the checks on the composed config.

Each run-level config group has a dataclass here: its fields are the group's keys,
typed; a field's metadata says what is allowed and how to check it. ``check_config``
merges each group into its dataclass with OmegaConf (which converts and type-checks
every value), checks every allowed range, then the rules that span groups. The first
problem is one ``ConfigError`` line naming the key, the value and what is allowed.

Validation runs here, after Hydra composed the config, rather than as a Hydra schema
at composition time: a schema error there is a multi-line Hydra trace with exit code
1, where sbilab promises one line and exit code 2. Nothing heavy is imported here, so
a typo costs a second, not a torch import.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar
from urllib.error import URLError
from urllib.parse import urlparse
from urllib.request import urlopen

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from sbilab.diagnostics.settings import DiagnosticsSettings
from sbilab.errors import ConfigError, TrackingError

T = TypeVar("T")

#: ``simulation.backend`` options
SIMULATION_BACKENDS = ("local", "serial")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def at_least(low: float) -> Callable[[Any], bool]:
    return lambda value: value >= low


def setting(default: Any, allowed: str, valid: Callable[[Any], bool] = lambda value: True) -> Any:
    """A dataclass field with what is allowed (for the message) and its check (beyond the type)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata={"allowed": allowed, "valid": valid})
    return field(default=default, metadata={"allowed": allowed, "valid": valid})


INT_GE_1 = "an integer >= 1"


@dataclass
class RunSettings:
    """Run-level keys of ``conf/config.yaml``."""

    seed: int = setting(0, "an integer >= 0", at_least(0))
    num_threads: int = setting(1, INT_GE_1, at_least(1))


@dataclass
class SimulationSettings:
    """``simulation.*``: how the simulation stage runs (never what it computes)."""

    num_simulations: int = setting(10_000, INT_GE_1, at_least(1))
    chunk_size: int = setting(2000, INT_GE_1, at_least(1))
    num_workers: int = setting(2, INT_GE_1, at_least(1))
    backend: str = setting("local", f"one of {', '.join(SIMULATION_BACKENDS)}", lambda v: v in SIMULATION_BACKENDS)
    cache: bool = setting(True, "true or false")
    invalid_warn_fraction: float = setting(0.05, "a number in [0, 1]", lambda v: 0 <= v <= 1)


@dataclass
class LrDecay:
    """``trainer.lr_decay``: ReduceLROnPlateau on the validation loss."""

    factor: float = setting(0.5, "a number strictly between 0 and 1", lambda v: 0 < v < 1)
    patience: int = setting(5, "an integer >= 0", at_least(0))
    min_lr: float = setting(1e-6, "a number >= 0", at_least(0))


@dataclass
class WeightAveraging:
    """``trainer.weight_averaging``: an exponential moving average of the weights."""

    decay: float = setting(0.99, "a number strictly between 0 and 1", lambda v: 0 < v < 1)
    start_epoch: int = setting(0, "an integer >= 0", at_least(0))


@dataclass
class TrainerSettings:
    """``trainer.*``: the Lightning loop (sbi's defaults unless the option says otherwise)."""

    batch_size: int = setting(200, INT_GE_1, at_least(1))
    learning_rate: float = setting(5e-4, "a number > 0", lambda v: v > 0)
    validation_fraction: float = setting(0.1, "a number strictly between 0 and 1", lambda v: 0 < v < 1)
    stop_after_epochs: int = setting(20, INT_GE_1, at_least(1))
    clip_max_norm: Optional[float] = setting(5.0, "null or a number > 0", lambda v: v is None or v > 0)
    max_epochs: int = setting(-1, "-1 (until early stopping) or an integer >= 1", lambda v: v == -1 or v > 0)
    progress_bar: bool = setting(False, "true or false")
    lr_decay: Optional[LrDecay] = setting(None, "null or {factor: 0 < f < 1, patience: integer >= 0, min_lr: >= 0}")
    weight_averaging: Optional[WeightAveraging] = setting(
        None, "null or {decay: 0 < d < 1, start_epoch: integer >= 0 (optional)}")
    ensemble_size: int = setting(1, INT_GE_1, at_least(1))
    #: Lightning's root folder (the run's output folder); not a config key
    root_dir: Optional[str] = None


@dataclass
class TrackingSettings:
    """``tracking.*``: the MLflow store and how the run is named there."""

    uri: str = setting("", "sqlite:////abs/path.db or http(s)://host:port")
    artifact_location: Optional[str] = None
    experiment: Optional[str] = None
    run_name: Optional[str] = None
    log_model: bool = setting(True, "true or false")


@dataclass
class SyntheticObservation:
    """``observation=synthetic``: x_o simulated once from θ* with its own seed."""

    name: str = "synthetic"
    theta: list[float] = setting([50.0, 5.0], "a list of numbers (θ*)")
    seed: int = setting(2026, "an integer >= 0", at_least(0))


@dataclass
class SummaryObservation:
    """``observation=summary``: x_o given as a summary vector."""

    name: str = "summary"
    x: list[float] = setting([], "a list of numbers (the summary statistics)")


@dataclass
class RecordingObservation:
    """``observation=recording``: x_o summarised from a recorded trace."""

    name: str = "recording"
    file: str = setting("", "the path of a recording")


OBSERVATIONS: dict[str, type] = {"synthetic": SyntheticObservation, "summary": SummaryObservation,
                                 "recording": RecordingObservation}


def load_settings(schema: type[T], node: Any, prefix: str = "") -> T:
    """``node`` (a config group) as a ``schema`` instance; one ``ConfigError`` line on the first bad value.

    ``prefix`` is the group's key (``""`` for run-level keys), used in messages.
    """
    if node is None:
        raise ConfigError(f"{prefix} is missing from the config")
    node = OmegaConf.create(resolved(node, prefix) if isinstance(node, DictConfig) else node)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
    except ConfigKeyError as error:
        known = ", ".join(f.name for f in dataclasses.fields(schema) if f.metadata)
        raise ConfigError(f"{_key(prefix, str(error.full_key))} is not a key of {prefix}; allowed: {known}") from None
    except ValidationError as error:
        key = str(error.full_key)
        value = OmegaConf.select(node, key, default=None, throw_on_resolution_failure=False)
        raise ConfigError(f"{_key(prefix, key)}={value!r} is invalid: expected {_allowed(schema, key)}") from None
    settings = OmegaConf.to_object(merged)
    _check_ranges(settings, prefix)
    return settings  # type: ignore[return-value]


def resolved(node: DictConfig, prefix: str) -> Any:
    """A config node as plain values, its interpolations resolved against the whole config."""
    try:
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as error:  # full_key is the path from the config's root
        key = str(error.full_key) or prefix
        raise ConfigError(f"{key} has no value; give one on the command line ({key}=...)") from None
    except OmegaConfBaseException as error:
        key = str(getattr(error, "full_key", "") or "") or prefix
        raise ConfigError(f"{key}: {str(error).strip().splitlines()[0]}") from None


def _key(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _allowed(schema: type, key: str) -> str:
    """What a (possibly nested, dotted) key of ``schema`` allows, from its field metadata."""
    head, _, rest = key.partition(".")
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if f.name == head:
            inner = _dataclass_in(hints[f.name])
            if rest and inner is not None:
                return _allowed(inner, rest)
            return f.metadata.get("allowed", "a valid value")
    return "a valid value"


def _dataclass_in(annotation: Any) -> Optional[type]:
    """The dataclass an annotation holds (``Optional[LrDecay]`` → ``LrDecay``), if any."""
    candidates = [annotation, *typing.get_args(annotation)]
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


def _check_ranges(settings: Any, prefix: str) -> None:
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            _check_ranges(value, _key(prefix, f.name))
        elif value is not None and "valid" in f.metadata and not f.metadata["valid"](value):
            raise ConfigError(f"{_key(prefix, f.name)}={value!r} is invalid: expected {f.metadata['allowed']}")


@dataclass
class Settings:
    """Every run-level group of a composed config, typed and checked."""

    run: RunSettings
    simulation: SimulationSettings
    trainer: TrainerSettings
    diagnostics: DiagnosticsSettings
    tracking: TrackingSettings
    observation: Any  # one of OBSERVATIONS' values


def check_config(cfg: DictConfig) -> Settings:
    """Check every run-level key of ``cfg`` and the rules across groups; return the typed settings.

    Raises ``ConfigError`` (one line) on the first problem. ``diagnostics`` checks itself
    (``sbilab.diagnostics.settings``, its own typed group). The parts (simulator,
    prior, summary, estimator, method) are checked when ``sbilab.spec.prepare`` builds them.
    """
    run = load_settings(RunSettings, {"seed": cfg.get("seed"), "num_threads": cfg.get("num_threads")})
    settings = Settings(
        run=run,
        simulation=load_settings(SimulationSettings, cfg.get("simulation"), "simulation"),
        trainer=load_settings(TrainerSettings, cfg.get("trainer"), "trainer"),
        diagnostics=DiagnosticsSettings.from_mapping(resolved(cfg.diagnostics, "diagnostics")),
        tracking=load_settings(TrackingSettings, cfg.get("tracking"), "tracking"),
        observation=load_observation(cfg.get("observation")),
    )
    check_across_groups(settings)
    return settings


def load_observation(node: Any) -> Any:
    """The ``observation`` group as the dataclass of its option (``observation.name``).

    Keys of the other options are ignored: an experiment preset sets ``observation.theta``
    (its θ*), which stays harmless when the user chooses ``observation=summary``.
    """
    values = resolved(node, "observation") if isinstance(node, DictConfig) else dict(node or {})
    name = values.get("name")
    if name not in OBSERVATIONS:
        raise ConfigError(f"observation.name={name!r}: choose observation={'|'.join(OBSERVATIONS)}")
    own = {f.name for f in dataclasses.fields(OBSERVATIONS[name])}
    known = {f.name for option in OBSERVATIONS.values() for f in dataclasses.fields(option)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"observation.{unknown[0]} is not a key of any observation option; "
                          f"observation={name} takes {', '.join(sorted(own - {'name'}))}")
    return load_settings(OBSERVATIONS[name], {key: values[key] for key in values if key in own}, "observation")


def check_across_groups(settings: Settings) -> None:
    """Rules that involve keys of more than one group."""
    simulation = settings.simulation
    fraction = settings.trainer.validation_fraction
    num_train = int((1 - fraction) * simulation.num_simulations)
    if num_train < 1 or simulation.num_simulations - num_train < 1:
        raise ConfigError(
            f"simulation.num_simulations={simulation.num_simulations} leaves no training or validation data "
            f"with trainer.validation_fraction={fraction}"
        )


def preflight(cfg: DictConfig) -> Settings:
    """Everything checkable before the heavy imports: the settings and whether the store answers."""
    settings = check_config(cfg)
    check_tracking_uri(settings.tracking.uri)
    return settings


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
                f"tracking.uri={uri!r}: no MLflow server answers ({reason}); start one (docs/scale-out.md) "
                "or use the default SQLite store"
            ) from None
    elif scheme == "sqlite":
        if not uri.startswith("sqlite:////"):
            raise TrackingError(f"tracking.uri={uri!r}: use an absolute sqlite path (sqlite:////abs/path.db)")
    elif scheme not in ("postgresql", "mysql", "databricks"):
        raise TrackingError(f"tracking.uri={uri!r}: expected sqlite:////abs/path.db or http(s)://host:port")
