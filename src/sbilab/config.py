"""The typed settings of a run's config groups (structured configs) and the checks on the composed config.

Each run-level group has a dataclass here (the diagnostics group's lives in
``sbilab.diagnostics.settings``); ``sbilab.settings`` turns a composed group into one,
one ``ConfigError`` line on the first bad value. ``check_config`` loads every group, then
checks the rules that span groups. Nothing heavy is imported here, so a typo costs a
second, not a torch import.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional
from urllib.error import URLError
from urllib.parse import urlparse
from urllib.request import urlopen

from omegaconf import DictConfig

from sbilab.diagnostics.settings import DiagnosticsSettings
from sbilab.errors import ConfigError, TrackingError
from sbilab.settings import BOOL, FRACTION, INT_GE_0, INT_GE_1, at_least, fraction, load_settings, resolved, setting

#: ``trainer.lr_decay.schedule`` options
LR_SCHEDULES = ("plateau", "cosine")
#: ``simulation.backend`` options
SIMULATION_BACKENDS = ("local", "serial")


@dataclass
class RunSettings:
    """Run-level keys of ``conf/config.yaml``."""

    seed: int = setting(0, INT_GE_0, at_least(0))
    num_threads: int = setting(1, INT_GE_1, at_least(1))


@dataclass
class SimulationSettings:
    """``simulation.*``: how the simulation stage runs (never what it computes)."""

    num_simulations: int = setting(10_000, INT_GE_1, at_least(1))
    chunk_size: int = setting(2000, INT_GE_1, at_least(1))
    num_workers: int = setting(2, INT_GE_1, at_least(1))
    backend: str = setting("local", f"one of {', '.join(SIMULATION_BACKENDS)}", lambda v: v in SIMULATION_BACKENDS)
    cache: bool = setting(True, BOOL)
    invalid_warn_fraction: float = setting(0.05, "a number in [0, 1]", lambda v: 0 <= v <= 1)


@dataclass
class LrDecay:
    """``trainer.lr_decay``: how the learning rate falls during training.

    ``plateau``: ReduceLROnPlateau on the validation loss (``factor``, ``patience``, down to
    ``min_lr``). ``cosine``: a half cosine from the learning rate to ``min_lr`` over
    ``trainer.max_epochs`` (``factor`` and ``patience`` unused); it never reads the validation
    loss, whose mean a few badly fitted validation pairs can dominate.
    """

    schedule: str = setting("plateau", f"one of {', '.join(LR_SCHEDULES)}", lambda v: v in LR_SCHEDULES)
    factor: float = setting(0.5, FRACTION, fraction)
    patience: int = setting(5, INT_GE_0, at_least(0))
    min_lr: float = setting(1e-6, "a number >= 0", at_least(0))


@dataclass
class WeightAveraging:
    """``trainer.weight_averaging``: an exponential moving average of the weights."""

    decay: float = setting(0.99, FRACTION, fraction)
    start_epoch: int = setting(0, INT_GE_0, at_least(0))


@dataclass
class TrainerSettings:
    """``trainer.*``: the Lightning loop (sbi's defaults unless the option says otherwise)."""

    batch_size: int = setting(200, INT_GE_1, at_least(1))
    learning_rate: float = setting(5e-4, "a number > 0", lambda v: v > 0)
    validation_fraction: float = setting(0.1, FRACTION, fraction)
    stop_after_epochs: int = setting(20, INT_GE_1, at_least(1))
    clip_max_norm: Optional[float] = setting(5.0, "null or a number > 0", lambda v: v is None or v > 0)
    max_epochs: int = setting(-1, "-1 (until early stopping) or an integer >= 1", lambda v: v == -1 or v > 0)
    progress_bar: bool = setting(False, BOOL)
    lr_decay: Optional[LrDecay] = setting(
        None, "null or {schedule: plateau|cosine, factor: 0 < f < 1, patience: integer >= 0, min_lr: >= 0}")
    weight_averaging: Optional[WeightAveraging] = setting(
        None, "null or {decay: 0 < d < 1, start_epoch: integer >= 0 (optional)}")
    ensemble_size: int = setting(1, INT_GE_1, at_least(1))
    #: Lightning's root folder (the run's output folder); not a config key
    root_dir: Optional[str] = None

    def __post_init__(self) -> None:
        if self.lr_decay is not None and self.lr_decay.schedule == "cosine" and self.max_epochs == -1:
            raise ConfigError("trainer.lr_decay.schedule=cosine runs over trainer.max_epochs, which is -1 "
                              "(until early stopping); set trainer.max_epochs to an integer >= 1")


@dataclass
class TrackingSettings:
    """``tracking.*``: the MLflow store and how the run is named there."""

    uri: str = setting("", "sqlite:////abs/path.db or http(s)://host:port")
    artifact_location: Optional[str] = None
    experiment: Optional[str] = None
    run_name: Optional[str] = None
    log_model: bool = setting(True, BOOL)


@dataclass
class SyntheticObservation:
    """``observation=synthetic``: x_o simulated once from θ* with its own seed."""

    name: str = "synthetic"
    theta: list[float] = setting([50.0, 5.0], "a list of numbers (θ*)")
    seed: int = setting(2026, INT_GE_0, at_least(0))


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
        diagnostics=load_settings(DiagnosticsSettings, cfg.get("diagnostics"), "diagnostics"),
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
