"""The typed settings of a run's config groups (structured configs) and the checks on the composed config.

Each run-level group has a dataclass here (the diagnostics group's lives in
``sbilab.diagnostics.settings``); ``sbilab.settings`` turns a composed group into one,
one ``ConfigError`` line on the first bad value. ``check_config`` loads every group, then
checks the rules that span groups. Nothing heavy is imported here, so a typo costs a
second, not a torch import.
"""

from __future__ import annotations

import dataclasses
import os
from base64 import b64encode
from dataclasses import dataclass
from typing import Any, Optional
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

from omegaconf import DictConfig, OmegaConf

from sbilab.diagnostics.settings import DiagnosticsSettings
from sbilab.errors import ConfigError, TrackingError
from sbilab.settings import BOOL, FRACTION, INT_GE_0, INT_GE_1, at_least, fraction, load_settings, resolved, setting

#: ``trainer.lr_decay.schedule`` options
LR_SCHEDULES = ("plateau", "cosine")
#: ``simulation.backend`` options
SIMULATION_BACKENDS = ("local", "serial", "dask")
#: ``recipe.apply`` options: when the generic recipe replaces the estimator and trainer
RECIPE_APPLY = ("always", "when_unnamed", "never")
#: ``trainer.accelerator`` options (Lightning's names)
ACCELERATORS = ("cpu", "gpu", "auto")


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
    #: ``backend=dask``: the scheduler (``tcp://host:port``; empty: a local cluster of ``num_workers`` processes)
    address: str = setting("", "a Dask scheduler address (tcp://host:port) or empty (a local cluster)")
    #: ``backend=dask``: reruns of a chunk whose task raised (a lost worker's chunks are recomputed regardless)
    retries: int = setting(2, INT_GE_0, at_least(0))


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
    accelerator: str = setting("cpu", f"one of {', '.join(ACCELERATORS)}", lambda v: v in ACCELERATORS)
    devices: int = setting(1, "1 (one device; choose the GPU with CUDA_VISIBLE_DEVICES: several devices (DDP) are "
                              "not supported, the epoch bookkeeping and early stopping run in one process)",
                           lambda v: v == 1)
    #: Lightning's root folder (the run's output folder); not a config key
    root_dir: Optional[str] = None

    def __post_init__(self) -> None:
        if self.lr_decay is not None and self.lr_decay.schedule == "cosine" and self.max_epochs == -1:
            raise ConfigError("trainer.lr_decay.schedule=cosine runs over trainer.max_epochs, which is -1 "
                              "(until early stopping); set trainer.max_epochs to an integer >= 1")


@dataclass
class RecipeSettings:
    """``recipe.*``: the generic training a model nobody tuned for gets (``sbilab.training.recipe``).

    ``apply``: ``always`` (``recipe=auto``); ``when_unnamed`` (the default: for a simulator other
    than the HH tutorial's, when neither an estimator nor a trainer was named on the command line
    or by an experiment preset); ``never`` (``recipe=off``: the composed estimator and trainer).
    """

    name: str = "auto"
    apply: str = setting("when_unnamed", f"one of {', '.join(RECIPE_APPLY)}", lambda v: v in RECIPE_APPLY)
    #: estimator configs tried, in order, on one shared validation split (the first is always trained)
    candidates: list[Any] = setting([], "a non-empty list of estimator configs (model: ..., sbi builder keys)",
                                    lambda v: len(v) > 0 and all(isinstance(c, dict) and "model" in c for c in v))
    #: further networks of the best candidate (other initialisation and batch order, same split)
    extra_seeds: int = setting(2, INT_GE_0, at_least(0))
    #: the most networks in the mixture (greedy selection on the held-out loss)
    max_members: int = setting(4, INT_GE_1, at_least(1))
    #: a network joins the mixture only when it lowers the held-out -log q by more than this (nats per pair)
    min_gain: float = setting(0.005, "a number >= 0", at_least(0))
    #: training seconds for all networks: no further network starts once the next would likely pass it
    time_budget_s: float = setting(600.0, "a number > 0 (seconds)", lambda v: v > 0)
    #: simulations per training pair in a batch: batch size = N / batches_per_epoch, as a power of 2 in [32, 512]
    batches_per_epoch: int = setting(50, INT_GE_1, at_least(1))
    #: ``plateau``: halve the learning rate after 5 epochs without a better held-out loss; ``none``: sbi's constant rate
    lr_decay: str = setting("plateau", "one of plateau, none", lambda v: v in ("plateau", "none"))
    #: the run's simulator options that keep the composed estimator and trainer under ``when_unnamed``
    tuned_simulators: list[str] = setting(["hodgkin_huxley", "hodgkin_huxley_8p"], "a list of simulator options")
    #: why ``when_unnamed`` decided as it did (set by the command that composed the config)
    decided: str = ""


#: a recipe candidate's ``training``: the budget-sized one (``sbilab.training.recipe.recipe_settings``) or sbi's own
RECIPE_TRAININGS = ("recipe", "sbi")
#: ``method.name`` values whose training the recipe chooses (an amortised NPE density on prior simulations)
RECIPE_METHODS = ("npe",)


def recipe_decision(recipe: Any, choices: dict[str, Any], overrides: list[str],
                    defaults: dict[str, str], method: str = "npe") -> tuple[str, str]:
    """``recipe.apply=when_unnamed`` made concrete: (``always`` or ``never``, why in words).

    ``choices``: each group's chosen option (Hydra's ``runtime.choices``, experiment presets included);
    ``overrides``: the command line's; ``defaults``: the primary config's options for estimator and trainer;
    ``method``: the run's ``method.name`` (the recipe trains NPE only: another method keeps the named parts).
    """
    simulator = str(choices.get("simulator"))
    if simulator in list(recipe.get("tuned_simulators") or []):
        return "never", f"simulator={simulator} keeps its tuned estimator and trainer"
    if method not in RECIPE_METHODS:
        return "never", f"method={method} is not one the recipe trains ({', '.join(RECIPE_METHODS)})"
    for group in ("estimator", "trainer"):
        named = [o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] == group]
        if named:
            return "never", f"{named[0]} was given"
        if choices.get(group) != defaults.get(group):
            return "never", f"{group}={choices.get(group)} was named by experiment={choices.get('experiment')}"
    return "always", f"simulator={simulator} with no estimator or trainer named"


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
class StepStimulus:
    """``observation.step``: the current step of a recording whose file holds no current trace."""

    t_on: float = setting(0.0, "a time in ms > 0", lambda v: v > 0)
    t_off: float = setting(0.0, "a time in ms > 0", lambda v: v > 0)
    amplitude_pA: float = setting(0.0, "a current in pA, not 0", lambda v: v != 0)


@dataclass
class RecordingObservation:
    """``observation=recording``: x_o summarised from a recorded current-clamp trace (``sbilab.recordings``).

    Exactly one of ``file`` (a recording file) and ``cell`` (one of the ten Allen cells,
    shipped or found under ``paths.recordings``). The recording's stimulus protocol replaces
    the simulator's (``sbilab.spec.prepare``).
    """

    name: str = "recording"
    file: Optional[str] = setting(None, "null or the path of a recording (.npz, .csv, .nwb)")
    cell: Optional[int] = setting(None, "null or an Allen cell id (one of the ten cells)")
    #: added to the recorded voltages; null: -14 mV for an Allen cell (Gonçalves et al. 2020), 0 for a file
    junction_potential_mV: Optional[float] = setting(None, "null or a number (mV)")
    #: the cell's membrane area for the current density; null: the Allen table for a cell, else the simulator's
    soma_area_cm2: Optional[float] = setting(None, "null or a number > 0 (cm²)", lambda v: v > 0)
    dt_ms: Optional[float] = setting(None, "null or a sampling interval > 0 (ms)", lambda v: v > 0)
    step: Optional[StepStimulus] = setting(None, "null or {t_on: ms, t_off: ms, amplitude_pA: pA}")
    series: Optional[str] = setting(None, "null or the name of a CurrentClampSeries (NWB files)")

    def __post_init__(self) -> None:
        if (self.file is None) == (self.cell is None):
            given = "both" if self.file is not None else "neither"
            raise ConfigError(f"observation=recording takes one of observation.file (a recording file) and "
                              f"observation.cell (an Allen cell id); {given} given")


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
    recipe: RecipeSettings = dataclasses.field(default_factory=RecipeSettings)


def check_config(cfg: DictConfig) -> Settings:
    """Check every run-level key of ``cfg`` and the rules across groups; return the typed settings.

    Raises ``ConfigError`` (one line) on the first problem. ``diagnostics`` checks itself
    (``sbilab.diagnostics.settings``, its own typed group). The parts (simulator,
    prior, summary, estimator, method) are checked when ``sbilab.spec.prepare`` builds them.
    """
    check_no_missing_values(cfg)
    run = load_settings(RunSettings, {"seed": cfg.get("seed"), "num_threads": cfg.get("num_threads")})
    settings = Settings(
        run=run,
        simulation=load_settings(SimulationSettings, cfg.get("simulation"), "simulation"),
        trainer=load_settings(TrainerSettings, cfg.get("trainer"), "trainer"),
        diagnostics=load_settings(DiagnosticsSettings, cfg.get("diagnostics"), "diagnostics"),
        tracking=load_settings(TrackingSettings, cfg.get("tracking"), "tracking"),
        observation=load_observation(cfg.get("observation")),
        recipe=load_settings(RecipeSettings, cfg.get("recipe"), "recipe") if cfg.get("recipe") is not None
        else RecipeSettings(apply="never"),
    )
    check_across_groups(settings)
    return settings


#: groups whose options may leave a value to the user (``???``): a generic prior's bounds, a function's name
_PART_GROUPS = ("simulator", "prior", "summary", "estimator", "method", "observation")


def check_no_missing_values(cfg: DictConfig) -> None:
    """A value the chosen option leaves to the user (``???``) and the user did not give: one line naming it."""
    for group in _PART_GROUPS:
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            continue
        try:
            missing = sorted(OmegaConf.missing_keys(node))
        except Exception:  # an interpolation the other parts lack: part_config names it in one line, later
            continue
        if missing:
            option = node.get("name", "?") if not OmegaConf.is_missing(node, "name") else "?"
            given = ", ".join(missing)  # full keys (prior.low)
            raise ConfigError(f"{missing[0]} is not set: {group}={option} needs {given} "
                              f"(conf/{group}/{option}.yaml shows an example)")


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
    """Fail in seconds, not after MLflow's retries, when a tracking server does not answer or refuses
    the credentials (which come from MLflow's variables MLFLOW_TRACKING_USERNAME / _PASSWORD or _TOKEN)."""
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        reason = server_down_reason(uri, timeout)
        if reason is not None:
            raise TrackingError(
                f"tracking.uri={uri!r}{_from_environment(uri)}: no MLflow server answers ({reason}); "
                "start one (make server, docs/scale-out.md) or use the default SQLite store"
            )
        _check_credentials(uri, timeout)
    elif scheme == "sqlite":
        if not uri.startswith("sqlite:////"):
            raise TrackingError(f"tracking.uri={uri!r}: use an absolute sqlite path (sqlite:////abs/path.db)")
    elif scheme not in ("postgresql", "mysql", "databricks"):
        raise TrackingError(f"tracking.uri={uri!r}: expected sqlite:////abs/path.db or http(s)://host:port")


def server_down_reason(uri: str, timeout: float = 3.0) -> Optional[str]:
    """Why the tracking server at ``uri`` does not answer ``/health`` now, or None when it does."""
    try:
        with urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):  # noqa: S310 (user-chosen URI)
            return None
    except (URLError, OSError) as error:
        return str(getattr(error, "reason", error))


#: MLflow's client variables for a server's credentials
CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def _from_environment(uri: str) -> str:
    return " (from MLFLOW_TRACKING_URI)" if os.environ.get("MLFLOW_TRACKING_URI") == uri else ""


def _check_credentials(uri: str, timeout: float) -> None:
    """One authenticated read, as MLflow's client would make it: a 401/403 becomes one line naming the variables."""
    request = Request(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1")
    user, password, token = (os.environ.get(name) for name in CREDENTIAL_VARIABLES)
    if user and password:
        request.add_header("Authorization", "Basic " + b64encode(f"{user}:{password}".encode()).decode())
    elif token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urlopen(request, timeout=timeout):  # noqa: S310 (user-chosen URI)
            return
    except HTTPError as error:
        if error.code == 401:
            given = (f"refused the password of MLFLOW_TRACKING_USERNAME={user!r}" if user and password
                     else "refused MLFLOW_TRACKING_TOKEN" if token else "requires credentials")
            raise TrackingError(f"tracking.uri={uri!r}: the server {given} (HTTP 401); set MLFLOW_TRACKING_USERNAME "
                                "and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment") from None
        if error.code == 403:
            raise TrackingError(f"tracking.uri={uri!r}: user {user!r} may not read experiments on this server "
                                "(HTTP 403); ask its admin for READ or EDIT permission") from None
    except (URLError, OSError):
        return  # it answered /health a moment ago: MLflow's own client reports what follows
