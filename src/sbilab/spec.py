"""``prepare(cfg)``: the one place a composed config is checked and turned into a typed run specification.

Everything here is cheap (one pilot simulation at most), so bad input fails in
seconds, before any simulation or MLflow run; MLflow and Lightning are not imported.
Below this module no function sees the config: stages and drivers take the
:class:`RunSpec` and the plain values it holds.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError

from sbilab.config import (
    RECIPE_TRAININGS,
    DiagnosticsSettings,
    RecipeSettings,
    SimulationSettings,
    TrackingSettings,
    TrainerSettings,
    preflight,
)
from sbilab.errors import ConfigError, ObservationError
from sbilab.methods import Method
from sbilab.observation import Observation, make_observation, read_observed_recording
from sbilab.priors import build_prior, sample_prior
from sbilab.recordings import Recording, protocol_keys
from sbilab.rng import RunSeeds, per_index_seeds
from sbilab.simulators.base import Simulator

#: config groups whose chosen option becomes an ``sbilab.<group>`` tag
PART_GROUPS = ("simulator", "prior", "summary", "estimator", "method")


#: joins the parts of a run's name (``hodgkin_huxley·npe·maf·10k·s0``)
NAME_SEPARATOR = "·"
#: config keys whose values a run's name already shows
NAMED_KEYS = ("simulator", "method", "estimator", "simulation.num_simulations", "seed")


def budget_label(num: int) -> str:
    """A simulation budget as a name shows it: ``10k``, ``2.5k``, ``1M``, ``300``."""
    for unit, size in (("M", 1_000_000), ("k", 1000)):
        if num >= size and (num * 10) % size == 0:  # at most one decimal
            return f"{num / size:g}{unit}"
    return str(num)


@dataclass
class Parts:
    """The instantiated parts of a run."""

    simulator: Simulator
    prior: torch.distributions.Distribution
    summary: Any
    method: Method
    parameter_names: list[str]
    x_dim: int


@dataclass
class Paths:
    """Where a run reads and writes on this machine (never recorded as params)."""

    root: Path
    cache_dir: Path
    output_dir: Path


@dataclass
class RunSpec:
    """A checked, resolved run: its parts, settings, observation and seeds, as plain typed values."""

    config: dict[str, Any]  # the composed config, resolved: what the run records
    part_configs: dict[str, dict[str, Any]]  # each part group's config (cache keys, posterior spec)
    parts: Parts
    observation: Observation
    simulation: SimulationSettings
    trainer: TrainerSettings
    diagnostics: DiagnosticsSettings
    tracking: TrackingSettings
    seeds: RunSeeds
    num_threads: int
    paths: Paths
    #: the generic recipe when it applies (``recipe=auto``, or ``when_unnamed`` decided so), else None
    recipe: Optional[RecipeSettings] = None

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment: ``tracking.experiment``, else the simulator's name."""
        return self.tracking.experiment or str(self.part_configs["simulator"]["name"])

    @property
    def choices(self) -> dict[str, str]:
        """The chosen option of each part group (``sbilab.<group>`` tags)."""
        return {group: str(self.part_configs[group].get("name")) for group in PART_GROUPS}

    def run_name(self, swept: Optional[Mapping[str, str]] = None) -> str:
        """``tracking.run_name`` when set, else the parts: ``simulator·method·estimator·budget·s<seed>``,
        then each swept ``key=value`` (a sweep job's) that the parts do not already show."""
        if self.tracking.run_name:
            return self.tracking.run_name
        choices = self.choices
        parts = [choices["simulator"], choices["method"], choices["estimator"],
                 budget_label(self.simulation.num_simulations), f"s{self.seeds.run}"]
        for key, value in (swept or {}).items():
            key = key.lstrip("+~")
            if key not in NAMED_KEYS:
                parts.append(f"{key.rsplit('.', 1)[-1]}={value}")
        return NAME_SEPARATOR.join(parts)

    def with_tracking(self, **changes: Any) -> "RunSpec":
        """A copy with some tracking settings changed (drivers name their runs and experiments)."""
        config = {**self.config, "tracking": {**self.config["tracking"], **changes}}
        return replace(self, config=config, tracking=replace(self.tracking, **changes))

    def at_observation(self, x: Any, run_name: Optional[str] = None) -> "RunSpec":
        """A copy conditioned on a given summary vector ``x`` (as ``observation=summary observation.x=...``)."""
        x_o = torch.as_tensor(x, dtype=torch.float32).reshape(-1)
        if x_o.numel() != self.parts.x_dim:
            raise ObservationError(
                f"observation.x gives {x_o.numel()} values but the summary produces {self.parts.x_dim}")
        config = {**self.config, "observation": {"name": "summary", "x": x_o.tolist()}}
        spec = replace(self, config=config, observation=Observation(x=x_o, source="x"))
        return spec.with_tracking(run_name=run_name) if run_name else spec


def part_config(cfg: DictConfig, group: str) -> dict[str, Any]:
    """A group's config as a plain dict (interpolations resolved).

    A part that interpolates a key the other chosen parts lack (``summary=hh_features``
    reads ``simulator.duration``) is bad input: one line naming the part and the key.
    """
    try:
        return OmegaConf.to_container(cfg[group], resolve=True)  # type: ignore[return-value]
    except InterpolationResolutionError as error:
        option = OmegaConf.select(cfg, f"{group}.name", default="?", throw_on_resolution_failure=False)
        raise ConfigError(f"{group}={option}: {str(error).strip().splitlines()[0]} (at {error.full_key}); "
                          f"this {group} does not fit the other parts chosen") from None


#: keys of a part's config that are not its target's arguments
_NOT_ARGUMENTS = ("name", "_target_", "_convert_", "_recursive_", "_partial_", "_args_")


def check_part_keys(group: str, cfg: Mapping[str, Any]) -> None:
    """A key the part's target does not take is bad input: one line naming it and the allowed ones.

    Hydra would raise a TypeError from deep inside ``instantiate``. The usual cause is a preset that
    sets a key of the part it chose (``experiment=allen_cell`` sets ``method.num_rounds``) and an
    override that swaps the part for one without that key (``method=npe``).
    """
    from hydra.utils import get_object

    try:
        parameters = inspect.signature(get_object(str(cfg.get("_target_", "")))).parameters
    except Exception:  # not resolvable or not introspectable here: instantiate reports what it can
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = [key for key in cfg if key not in _NOT_ARGUMENTS and key not in parameters]
    if unknown:
        key = unknown[0]
        allowed = [name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        raise ConfigError(f"{group}.{key} is not a setting of {group}={cfg.get('name')}; allowed: "
                          f"{', '.join(allowed) or 'none'} (set by a preset for another {group}? "
                          f"drop it with ~{group}.{key})")


def instantiate_part(cfg: Mapping[str, Any], group: str = "part") -> Any:
    """Build a part of ``group`` from its config with Hydra, ignoring the descriptive ``name`` key."""
    check_part_keys(group, cfg)
    return instantiate({k: v for k, v in cfg.items() if k != "name"}, _convert_="all")


def build_parts(part_configs: Mapping[str, Mapping[str, Any]], settings_seed: int, ensemble_size: int) -> Parts:
    """Instantiate simulator, prior, summary and method and check that they fit together."""
    simulator = instantiate_part(part_configs["simulator"], "simulator")
    prior = build_prior(part_configs["prior"])
    summary = instantiate_part(part_configs["summary"], "summary")
    method = instantiate_part(part_configs["method"], "method")
    names = list(part_configs["prior"]["names"])
    prior_dim = int(sample_prior(prior, 1, 0).shape[1])
    if len(names) != prior_dim:
        raise ConfigError(f"prior.names has {len(names)} entries but the prior has {prior_dim} parameters")
    if simulator.parameter_dim is None:  # a function simulator that did not say: it takes the prior's θ
        simulator.parameter_dim = prior_dim
    if prior_dim != simulator.parameter_dim:
        raise ConfigError(
            f"prior has {prior_dim} parameters ({', '.join(names)}) but simulator "
            f"{part_configs['simulator']['name']!r} takes {simulator.parameter_dim}"
        )
    expected = getattr(simulator, "parameter_names", None)  # simulators whose θ columns are named (HH: inferred)
    if expected is not None and tuple(names) != tuple(expected):
        raise ConfigError(f"prior.names={names} do not match the simulator's parameters {list(expected)} "
                          "(simulator.inferred): the prior's columns must be θ's, in the same order")
    method.check_estimator(part_configs["estimator"])
    method.check_parameters(names)
    method.check_summary(summary)  # a learned summary (embedding_net) needs a method that conditions on x
    if ensemble_size > 1 and not (method.amortised or method.truncates):
        raise ConfigError(f"trainer.ensemble_size={ensemble_size} is not available for "
                          f"method={method.name!r}, which trains one network round by round with a loss that "
                          "needs its proposals; allowed: 1 (ensembles: an amortised method, e.g. method=npe, "
                          "or method=tsnpe, whose last round trains the further members)")
    pilot_theta = sample_prior(prior, 1, RunSeeds(settings_seed).pilot)
    x_dim = int(simulator.simulate_summaries(pilot_theta, per_index_seeds(0, 0, 1), summary).reshape(1, -1).shape[1])
    return Parts(simulator, prior, summary, method, names, x_dim)


def check_inside_prior(theta: Optional[torch.Tensor], prior: torch.distributions.Distribution,
                       prior_config: Mapping[str, Any]) -> None:
    """θ* must lie where the prior has mass: else no posterior can contain it (and plots break)."""
    if theta is None:
        return
    with torch.no_grad():
        inside = bool(torch.isfinite(prior.log_prob(theta[None])).all())
    if not inside:
        bounds = {k: prior_config[k] for k in ("low", "high") if k in prior_config}
        support = ", ".join(f"prior.{k}={list(v)}" for k, v in bounds.items()) or "its support"
        raise ObservationError(
            f"observation.theta={theta.tolist()} lies outside the prior (prior={prior_config.get('name')}: "
            f"{support}); choose θ* inside it or widen the prior"
        )


def recording_folders(cfg: DictConfig) -> list[str]:
    """``paths.recordings``: one folder or a list of folders (searched for ``observation.cell``'s file)."""
    folders = OmegaConf.select(cfg, "paths.recordings", default=None)
    if folders is None:
        return []
    if isinstance(folders, str):
        return [folders]
    return [str(folder) for folder in folders]


def with_recording_protocol(cfg: DictConfig, recording: Recording) -> DictConfig:
    """A copy of ``cfg`` whose simulator runs the recording's protocol (``sbilab.recordings.protocol_keys``).

    Merged before any part is built, so the summary's ``${simulator.*}`` interpolations (its
    time axis and stimulus window) follow, and the run's params show the protocol it used.
    """
    keys = protocol_keys(recording)
    missing = [key for key in keys if key not in cfg.simulator]
    if missing:
        raise ConfigError(f"observation=recording needs a simulator that takes a stimulus protocol; "
                          f"simulator={cfg.simulator.get('name')} has no {', '.join(missing)} "
                          "(e.g. simulator=hodgkin_huxley_8p)")
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        for key, value in keys.items():
            cfg.simulator[key] = value
    return cfg


def check_recipe(recipe: RecipeSettings, method: Method) -> None:
    """The recipe trains NPE density estimators on prior simulations: the method must train one, and every
    candidate must be an estimator it can train (one line naming the candidate)."""
    if not method.amortised or method.family != "density" or not method.models_theta_density:
        raise ConfigError(f"recipe=auto chooses among NPE density estimators; method={method.name!r} is not "
                          "one (allowed: method=npe), or name an estimator and trainer yourself with recipe=off")
    for k, candidate in enumerate(recipe.candidates):
        training = candidate.get("training", "recipe")
        if training not in RECIPE_TRAININGS:
            raise ConfigError(f"recipe.candidates[{k}].training={training!r}; allowed: {', '.join(RECIPE_TRAININGS)}")
        try:
            method.check_estimator(candidate)
        except ConfigError as error:
            raise ConfigError(f"recipe.candidates[{k}]: {error}") from None


def check_accelerator(accelerator: str) -> None:
    """``trainer.accelerator=gpu`` needs a GPU that torch can use (Lightning's own error is a long trace)."""
    if accelerator != "gpu" or torch.cuda.is_available() or torch.backends.mps.is_available():
        return
    why = ("this torch build has no CUDA (install a CUDA build of torch)" if torch.version.cuda is None
           else "torch.cuda.is_available() is False (no GPU visible: CUDA_VISIBLE_DEVICES? the driver?)")
    raise ConfigError(f"trainer.accelerator=gpu: {why}; allowed on this machine: cpu, auto")


def prepare(cfg: DictConfig) -> RunSpec:
    """Check ``cfg`` completely and resolve it into a :class:`RunSpec` (one ``UserInputError`` line if bad)."""
    settings = preflight(cfg)
    recording = None
    if settings.observation.name == "recording":  # its protocol first: the parts are built on it
        recording = read_observed_recording(settings.observation, recording_folders(cfg))
        cfg = with_recording_protocol(cfg, recording)
    check_accelerator(settings.trainer.accelerator)
    part_configs = {group: part_config(cfg, group) for group in PART_GROUPS}
    parts = build_parts(part_configs, settings.run.seed, settings.trainer.ensemble_size)
    if settings.observation.name == "synthetic":
        theta_o = torch.as_tensor([float(v) for v in settings.observation.theta], dtype=torch.float32)
        if theta_o.numel() == parts.simulator.parameter_dim:
            check_inside_prior(theta_o, parts.prior, part_configs["prior"])
    observation = make_observation(parts.simulator, parts.summary, settings.observation, parts.x_dim, recording)
    config = OmegaConf.to_container(cfg, resolve=True)
    recipe = settings.recipe if settings.recipe.apply == "always" else None
    if recipe is not None:  # the recipe chooses the estimator: the run shows "auto" and its candidates
        check_recipe(recipe, parts.method)
        part_configs["estimator"] = config["estimator"] = {
            "name": "auto", "candidates": [str(c.get("name") or c["model"]) for c in recipe.candidates]}
    paths = Paths(Path(config["paths"]["root"]), Path(config["paths"]["cache_dir"]),
                  Path(config["paths"]["output_dir"]))
    trainer = replace(settings.trainer, root_dir=str(paths.output_dir))
    return RunSpec(config=config, part_configs=part_configs, parts=parts, observation=observation,
                   simulation=settings.simulation, trainer=trainer, diagnostics=settings.diagnostics,
                   tracking=settings.tracking, seeds=RunSeeds(settings.run.seed),
                   num_threads=settings.run.num_threads, paths=paths, recipe=recipe)
