"""Hyperparameter search: Optuna (TPE) driven directly, every trial a child run of one parent run.

Why not ``hydra-optuna-sweeper``: its last release (1.3.0) requires ``optuna<3`` and imports
distributions that optuna 4/5 removed; the Optuna-4 port upstream targets Hydra 1.4. Driving
Optuna's ask/tell interface from a script keeps optuna current, runs each trial through the same
``pipeline.run`` as ``scripts/train.py`` (a trial's overrides paste back as ``make train ARGS=...``)
and gives one MLflow parent per study, like a sweep.

Trials run in worker processes (``n_jobs`` at a time, spawned, each reused for several trials);
the study lives in this process. TPE's ``constant_liar`` keeps parallel trials apart. Every trial
uses the run's ``seed``, hence the same simulations (cached after the first trial) and the same
train/validation split: the objective differs only by the hyperparameters.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

#: objective when no reference posterior exists: the held-out negative log-likelihood
NLL_METRIC = "val/loss_best"
C2ST_METRIC = "c2st"
DISTRIBUTION_TYPES = ("int", "float", "categorical")


class HpoError(ValueError):
    """Bad HPO settings (one line naming the key)."""


@dataclass
class TrialOutcome:
    """What one trial produced."""

    number: int
    params: dict[str, Any]
    overrides: list[str]
    run_id: Optional[str] = None
    value: Optional[float] = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: Optional[str] = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None and math.isfinite(self.value)


@dataclass
class StudyResult:
    """The study's parent run, objective, trials and best trial."""

    parent_run_id: str
    study_id: str
    metric: str
    direction: str
    trials: list[TrialOutcome]
    best: Optional[TrialOutcome]
    parent_summary: str = ""
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# settings and search space


def split_args(argv: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """Command line → (hpo config name, ``hpo.*`` overrides without the prefix, run overrides)."""
    name, hpo_overrides, run_overrides = "default", [], []
    for arg in argv:
        if arg.startswith("hpo="):
            name = arg[len("hpo="):]
        elif arg.startswith("hpo."):
            hpo_overrides.append(arg[len("hpo."):])
        else:
            run_overrides.append(arg)
    return name, hpo_overrides, run_overrides


def load_settings(conf_dir: Path, name: str = "default", overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/hpo/<name>.yaml`` with ``key=value`` overrides applied (values parsed as YAML)."""
    path = Path(conf_dir) / "hpo" / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (Path(conf_dir) / "hpo").glob("*.yaml"))
        raise HpoError(f"hpo={name!r}: no conf/hpo/{name}.yaml; available: {', '.join(available)}")
    settings = OmegaConf.load(path)
    for item in overrides:
        if "=" not in item:
            raise HpoError(f"hpo.{item}: expected hpo.<key>=<value>")
        key, text = item.split("=", 1)
        value = _yaml_value(text)
        if key.startswith("params."):
            _set_param(settings, key[len("params."):], value)
        elif key in settings:
            settings[key] = value
        else:
            raise HpoError(f"hpo.{key} is not an HPO setting; known: {', '.join(str(k) for k in settings.keys())}")
    check_settings(settings)
    return settings


#: fields of one searched parameter
SPEC_FIELDS = ("type", "low", "high", "log", "step", "choices")


def _set_param(settings: DictConfig, rest: str, value: Any) -> None:
    """``params.<config key>[.<field>]=value``; the config key itself contains dots; null removes it."""
    head, _, tail = rest.rpartition(".")
    if tail in SPEC_FIELDS and head in settings.params:
        settings.params[head][tail] = value
    elif value is None:
        if rest in settings.params:
            del settings.params[rest]
    elif isinstance(value, dict):
        settings.params[rest] = value
    else:
        raise HpoError(f"hpo.params.{rest}: expected {{type: ..., low: ..., high: ...}}, null, or a field "
                       f"({', '.join(SPEC_FIELDS)}) of a searched key")


def _yaml_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def check_settings(settings: DictConfig) -> None:
    """Fail fast on bad settings, before any parent run exists."""
    def positive_int(key: str) -> None:
        value = settings.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise HpoError(f"hpo.{key}={value!r} is invalid: expected an integer >= 1")

    positive_int("n_trials")
    positive_int("n_jobs")
    if settings.get("direction") not in ("minimize", "maximize"):
        raise HpoError(f"hpo.direction={settings.get('direction')!r} is invalid: expected minimize or maximize")
    if not settings.get("params"):
        raise HpoError("hpo.params is empty: nothing to search")
    for key, spec in settings.params.items():
        kind = spec.get("type")
        if kind not in DISTRIBUTION_TYPES:
            raise HpoError(f"hpo.params.{key}.type={kind!r} is invalid: expected one of {', '.join(DISTRIBUTION_TYPES)}")
        if kind == "categorical":
            if not spec.get("choices"):
                raise HpoError(f"hpo.params.{key}.choices: a categorical parameter needs a non-empty list")
        else:
            low, high = spec.get("low"), spec.get("high")
            if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or low >= high:
                raise HpoError(f"hpo.params.{key}: needs numbers low < high (got low={low!r}, high={high!r})")
            if spec.get("log") and low <= 0:
                raise HpoError(f"hpo.params.{key}: a log-scaled range needs low > 0")


def search_space(settings: DictConfig, run_cfg: DictConfig) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The searched keys that exist in the composed run config, and the skipped ones."""
    space, skipped = {}, []
    for key, spec in settings.params.items():
        if OmegaConf.select(run_cfg, str(key), default="__missing__") == "__missing__":
            skipped.append(str(key))
        else:
            space[str(key)] = OmegaConf.to_container(spec, resolve=True)
    if not space:
        raise HpoError(f"none of the searched keys ({', '.join(skipped)}) exists in the composed config")
    return space, skipped


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


def dedupe_overrides(overrides: Sequence[str]) -> list[str]:
    """Last override per key wins (Hydra's own rule), in first-seen order."""
    by_key: dict[str, str] = {}
    for item in overrides:
        by_key[item.split("=", 1)[0].lstrip("+~")] = item
    return list(by_key.values())


def choose_metric(setting: str, run_cfg: DictConfig) -> str:
    """``auto``: c2st when the simulator defines a reference posterior and diagnostics run at a known θ."""
    if setting != "auto":
        return setting
    from hydra.utils import get_class

    from sbilab.simulators.base import Simulator

    try:
        simulator_class = get_class(str(run_cfg.simulator._target_))
    except Exception:
        return NLL_METRIC
    has_reference = getattr(simulator_class, "reference_posterior", None) is not Simulator.reference_posterior
    if has_reference and run_cfg.diagnostics.enabled and run_cfg.observation.get("theta") is not None:
        return C2ST_METRIC
    return NLL_METRIC


# ---------------------------------------------------------------------------------------------
# one trial (runs in a worker process)


def compose_run_config(conf_dir: Path, overrides: Sequence[str]) -> tuple[DictConfig, dict[str, str]]:
    """The run config exactly as ``scripts/train.py <overrides>`` composes it, and the group choices."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    choices = {str(group): str(option) for group, option in cfg.hydra.runtime.choices.items()
               if not str(group).startswith("hydra") and option is not None}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def _worker_init() -> None:
    import logging
    import warnings

    for name in ("lightning", "lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")


def run_trial(conf_dir: str, overrides: list[str], parent_run_id: str, tags: dict[str, str]) -> dict[str, Any]:
    """Compose and run one trial as a child run; never raises (the error comes back as text)."""
    started = time.perf_counter()
    try:
        from sbilab.pipeline import run

        cfg, choices = compose_run_config(Path(conf_dir), overrides)
        all_tags = {**{f"choice.{g}": o for g, o in choices.items()}, **tags}
        result = run(cfg, parent_run_id=parent_run_id, extra_tags=all_tags)
        return {"run_id": result.run_id, "metrics": dict(result.metrics), "error": None,
                "seconds": time.perf_counter() - started}
    except BaseException as error:  # noqa: BLE001 - reported back to the study
        message = f"{type(error).__name__}: {error}".strip().splitlines()[0]
        return {"run_id": None, "metrics": {}, "error": message, "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------------------------------------
# the study


def _objective(metrics: Mapping[str, float], metric: str) -> Optional[float]:
    value = metrics.get(metric)
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "minimize" else a > b


def run_study(settings: DictConfig, run_overrides: Sequence[str], conf_dir: Path,
              echo: Any = print) -> StudyResult:
    """Run the study: parent run, trials as children, best configuration on the parent."""
    import optuna

    from sbilab import tracking
    from sbilab.compare import compare_sweep
    from sbilab.config import check_config

    started = time.perf_counter()
    base = dedupe_overrides([*settings.base_overrides, *run_overrides])
    from hydra.errors import HydraException

    try:
        probe_cfg, _ = compose_run_config(conf_dir, [*base, "paths.output_dir=/dev/null"])
    except HydraException as error:
        raise HpoError(str(error).strip().splitlines()[0]) from None
    check_config(probe_cfg)
    space, skipped = search_space(settings, probe_cfg)
    if skipped:
        echo(f"sbilab: hpo: not searching {', '.join(skipped)} (not in the config of this estimator)")
    metric = choose_metric(str(settings.metric), probe_cfg)
    direction = str(settings.direction)
    if metric == C2ST_METRIC and direction != "minimize":
        raise HpoError("hpo.direction must be minimize for c2st (0.5 is best)")

    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    study_id = str(settings.study_name or f"hpo-{stamp}")
    uri = str(probe_cfg.tracking.uri)
    experiment = str(probe_cfg.tracking.experiment or probe_cfg.simulator.name)
    output_root = Path(probe_cfg.paths.root) / "multirun" / "hpo" / study_id
    parent_run_id = tracking.create_parent_run(
        uri, experiment, probe_cfg.tracking.artifact_location, sweep_id=study_id,
        tags={"sbilab.role": "hpo", "sbilab.sweep_overrides": " ".join(base), "hpo.metric": metric,
              "hpo.direction": direction},
    )
    tracking.set_run_name(uri, parent_run_id, study_id)
    parent = tracking.recorder_for(uri, parent_run_id)
    parent.log_params({
        "hpo.n_trials": settings.n_trials, "hpo.n_jobs": settings.n_jobs, "hpo.metric": metric,
        "hpo.direction": direction, "hpo.sampler": "TPESampler", "hpo.seed": settings.seed,
        "hpo.n_startup_trials": settings.n_startup_trials, "hpo.space": json.dumps(space, sort_keys=True),
        "hpo.base_overrides": " ".join(base),
    })
    echo(f"sbilab: hpo {study_id}: parent run {parent_run_id}; {settings.n_trials} trials, "
         f"{settings.n_jobs} in parallel, objective {metric} ({direction})")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler = optuna.samplers.TPESampler(seed=int(settings.seed), n_startup_trials=int(settings.n_startup_trials),
                                         constant_liar=True)
    study = optuna.create_study(study_name=study_id, direction=direction, sampler=sampler,
                                storage=settings.storage or None, load_if_exists=bool(settings.storage))

    outcomes: list[TrialOutcome] = []
    best: Optional[TrialOutcome] = None
    pending: dict[Future, tuple[Any, TrialOutcome]] = {}
    deadline = None if settings.timeout_s is None else started + float(settings.timeout_s)
    asked = 0
    context = multiprocessing.get_context("spawn")
    interrupted = False
    try:
        with ProcessPoolExecutor(max_workers=int(settings.n_jobs), mp_context=context,
                                 initializer=_worker_init) as pool:
            while asked < int(settings.n_trials) or pending:
                while (len(pending) < int(settings.n_jobs) and asked < int(settings.n_trials)
                       and (deadline is None or time.perf_counter() < deadline)):
                    trial = study.ask()
                    values = {k: round_value(v) for k, v in suggest(trial, space).items()}
                    trial_overrides = [format_override(k, v) for k, v in values.items()]
                    number = trial.number
                    overrides = dedupe_overrides([*base, *trial_overrides,
                                                  f"tracking.run_name={study_id}-trial-{number}",
                                                  f"paths.output_dir={output_root / f'trial-{number}'}"])
                    shown = [o for o in overrides if not o.startswith(("tracking.run_name=", "paths.output_dir="))]
                    tags = {"sbilab.sweep_id": study_id, "sbilab.job": str(number), "sbilab.hpo_trial": str(number),
                            "sbilab.overrides": " ".join(shown)}
                    outcome = TrialOutcome(number, values, shown)
                    future = pool.submit(run_trial, str(conf_dir), overrides, parent_run_id, tags)
                    pending[future] = (trial, outcome)
                    asked += 1
                if not pending:
                    break
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in done:
                    trial, outcome = pending.pop(future)
                    reply = future.result()
                    outcome.run_id, outcome.metrics = reply["run_id"], reply["metrics"]
                    outcome.error, outcome.seconds = reply["error"], reply["seconds"]
                    outcome.value = _objective(outcome.metrics, metric)
                    if outcome.error is None and outcome.value is None:
                        outcome.error = f"the run has no finite {metric}"
                    if outcome.ok:
                        study.tell(trial, outcome.value)
                        if best is None or _better(outcome.value, best.value, direction):  # type: ignore[arg-type]
                            best = outcome
                        parent.log_metrics({"hpo/value": outcome.value, "hpo/best_value": best.value},
                                           step=outcome.number)
                    else:
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    outcomes.append(outcome)
                    _echo_trial(echo, outcome, metric, best)
    except KeyboardInterrupt:
        interrupted = True
        echo("sbilab: hpo interrupted: closing the parent run")
    finally:
        outcomes.sort(key=lambda o: o.number)
        result = StudyResult(parent_run_id, study_id, metric, direction, outcomes, best,
                             seconds=time.perf_counter() - started)
        try:
            record_best(parent, result, space)
        finally:
            result.parent_summary = tracking.finish_parent_run(uri, parent_run_id)
    if interrupted:
        raise KeyboardInterrupt
    compare_sweep(uri, parent_run_id, metric=metric, figures=False)
    return result


def _echo_trial(echo: Any, outcome: TrialOutcome, metric: str, best: Optional[TrialOutcome]) -> None:
    params = " ".join(format_override(k, v) for k, v in outcome.params.items())
    if outcome.ok:
        mark = " (best so far)" if best is outcome else ""
        echo(f"sbilab: trial {outcome.number} done: run {outcome.run_id} [{params}] "
             f"{metric}={outcome.value:.4g}{mark} ({outcome.seconds:.0f}s)")
    else:
        echo(f"sbilab: trial {outcome.number} FAILED: [{params}] {outcome.error} ({outcome.seconds:.0f}s)")


def best_record(result: StudyResult) -> dict[str, Any]:
    """``hpo/best.json``: the best trial, its value, params and how to rerun it."""
    best = result.best
    record: dict[str, Any] = {
        "study": result.study_id, "parent_run_id": result.parent_run_id, "metric": result.metric,
        "direction": result.direction, "n_trials": len(result.trials),
        "n_failed": sum(not t.ok for t in result.trials),
    }
    if best is None:
        record["best"] = None
        return record
    record["best"] = {
        "trial": best.number, "run_id": best.run_id, "value": best.value, "params": best.params,
        "overrides": best.overrides, "metrics": best.metrics,
        "rerun": "make train ARGS=\"" + " ".join(best.overrides) + "\"",
    }
    return record


def record_best(parent: Any, result: StudyResult, space: Mapping[str, Any]) -> None:
    """Best configuration on the parent: params ``best.<key>``, ``hpo.best_*`` tags, hpo/ artifacts."""
    from sbilab.compare import to_csv
    from sbilab.plots.comparison import optimization_history, param_slices

    record = best_record(result)
    parent.log_dict(record, "hpo/best.json")
    columns = ["trial", "run_id", "status", result.metric, "seconds", *space.keys(), "error"]
    rows = [{"trial": t.number, "run_id": t.run_id, "status": "ok" if t.ok else "failed", result.metric: t.value,
             "seconds": t.seconds, **t.params, "error": t.error} for t in result.trials]
    parent.log_text(to_csv(columns, rows), "hpo/trials.csv")
    if result.trials:
        parent.log_figure(optimization_history([t.value if t.ok else None for t in result.trials], result.metric,
                                               result.direction), "hpo/history.png")
        points = {key: [(t.params[key], t.value) for t in result.trials if t.ok and key in t.params] for key in space}
        parent.log_figure(param_slices(points, result.metric,
                                       log_keys=[k for k, s in space.items() if s.get("log")]), "hpo/slices.png")
    best = result.best
    if best is None:
        parent.set_tags({"hpo.best_value": "none", "hpo.n_trials": len(result.trials)})
        return
    parent.log_params({f"best.{key}": value for key, value in best.params.items()})
    parent.log_metrics({"hpo/best_value": best.value})  # type: ignore[dict-item]
    parent.set_tags({"hpo.best_trial": best.number, "hpo.best_run_id": best.run_id, "hpo.best_value": best.value,
                     "hpo.best_overrides": " ".join(best.overrides), "hpo.n_trials": len(result.trials)})


def summary_lines(result: StudyResult) -> list[str]:
    """What ``make hpo`` prints at the end."""
    lines = [f"sbilab: hpo {result.study_id}: {len(result.trials)} trials in {result.seconds:.0f}s "
             f"({result.parent_summary}); parent run {result.parent_run_id}"]
    if result.best is None:
        lines.append("sbilab: no trial produced a finite objective")
    else:
        best = result.best
        lines.append(f"sbilab: best {result.metric}={best.value:.4g} (trial {best.number}, run {best.run_id}): "
                     + " ".join(format_override(k, v) for k, v in best.params.items()))
        lines.append(f"sbilab: rerun it with: make train ARGS=\"{' '.join(best.overrides)}\"")
    return lines

