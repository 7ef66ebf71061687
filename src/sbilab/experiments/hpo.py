"""Hyperparameter search: Optuna (TPE) driven directly, every trial a child run of one parent run.

``scripts/hpo.py`` is a Hydra app: the study's settings are the ``hpo`` config group
(``conf/hpo/*.yaml``) and every other override applies to each trial's run config, so
Hydra parses both. Why not ``hydra-optuna-sweeper``: its last release (1.3.0) requires
``optuna<3`` and imports distributions that optuna 4/5 removed; the Optuna-4 port
upstream targets Hydra 1.4. Driving Optuna's ask/tell interface keeps optuna current,
runs each trial through the same stages as ``scripts/train.py`` (a trial's overrides
paste back as ``make train ARGS=...``) and gives one MLflow parent per study, like a sweep.

Trials run in worker processes (``n_jobs`` at a time, spawned, each reused for several
trials); the study lives in this process. TPE's ``constant_liar`` keeps parallel trials
apart. Every trial uses the run's ``seed``, hence the same simulations (cached after the
first trial) and the same train/validation split: the objective differs only by the
hyperparameters.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from sbilab.errors import ConfigError
from sbilab.experiments.compose import compose_run_config, dedupe_overrides
from sbilab.experiments.search_space import (
    C2ST_METRIC,
    HpoSettings,
    choose_metric,
    format_override,
    round_value,
    search_space,
    suggest,
)


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
# one trial (runs in a worker process)


def _worker_init() -> None:
    import logging

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
        from sbilab.spec import prepare

        cfg, choices = compose_run_config(Path(conf_dir), overrides)
        all_tags = {**{f"choice.{g}": o for g, o in choices.items()}, **tags}
        result = run(prepare(cfg), parent_run_id=parent_run_id, extra_tags=all_tags)
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


def run_study(settings: HpoSettings, run_overrides: Sequence[str], conf_dir: Path,
              echo: Any = print) -> StudyResult:
    """Run the study: parent run, trials as children, best configuration on the parent."""
    from hydra.errors import HydraException

    from sbilab import tracking
    from sbilab.experiments.compare import compare_sweep
    from sbilab.spec import prepare

    started = time.perf_counter()
    base = dedupe_overrides([*settings.base_overrides, *run_overrides])
    try:
        probe_cfg, _ = compose_run_config(conf_dir, [*base, "paths.output_dir=/dev/null"])
    except HydraException as error:
        raise ConfigError(str(error).strip().splitlines()[0]) from None
    probe = prepare(probe_cfg)  # the trials' config, checked once before any run exists
    space, skipped = search_space(settings.params, probe_cfg)
    if skipped:
        echo(f"sbilab: hpo: not searching {', '.join(skipped)} (not in the config of this estimator)")
    metric = choose_metric(settings.metric, probe_cfg)
    direction = settings.direction
    if metric == C2ST_METRIC and direction != "minimize":
        raise ConfigError("hpo.direction must be minimize for c2st (0.5 is best)")

    study_id = settings.study_name or f"hpo-{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}"
    output_root = probe.paths.root / "multirun" / "hpo" / study_id
    with tracking.parent_run(probe.tracking.uri, probe.experiment_name, probe.tracking.artifact_location,
                             sweep_id=study_id, role="hpo", run_name=study_id,
                             tags={"sbilab.sweep_overrides": " ".join(base), "hpo.metric": metric,
                                   "hpo.direction": direction}) as parent:
        parent.recorder.log_params({
            "hpo.n_trials": settings.n_trials, "hpo.n_jobs": settings.n_jobs, "hpo.metric": metric,
            "hpo.direction": direction, "hpo.sampler": "TPESampler", "hpo.seed": settings.seed,
            "hpo.n_startup_trials": settings.n_startup_trials, "hpo.space": json.dumps(space, sort_keys=True),
            "hpo.base_overrides": " ".join(base),
        })
        echo(f"sbilab: hpo {study_id}: parent run {parent.run_id}; {settings.n_trials} trials, "
             f"{settings.n_jobs} in parallel, objective {metric} ({direction})")
        result = StudyResult(parent.run_id, study_id, metric, direction, [], None)
        try:
            run_trials(settings, space, base, conf_dir, output_root, parent, result, echo)
        finally:
            result.trials.sort(key=lambda o: o.number)
            result.seconds = time.perf_counter() - started
            record_best(parent.recorder, result, space)
    result.parent_summary = parent.summary
    compare_sweep(parent.uri, parent.run_id, metric=metric, figures=False)
    return result


def run_trials(settings: HpoSettings, space: Mapping[str, Any], base: Sequence[str], conf_dir: Path,
               output_root: Path, parent: Any, result: StudyResult, echo: Any) -> None:
    """Ask Optuna for trials, run them ``n_jobs`` at a time in worker processes, tell it the outcomes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # constant_liar
    sampler = optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=settings.n_startup_trials,
                                         constant_liar=True)
    study = optuna.create_study(study_name=result.study_id, direction=result.direction, sampler=sampler,
                                storage=settings.storage or None, load_if_exists=bool(settings.storage))
    deadline = None if settings.timeout_s is None else time.perf_counter() + settings.timeout_s
    pending: dict[Future, tuple[Any, TrialOutcome]] = {}
    asked = 0
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=settings.n_jobs, mp_context=context, initializer=_worker_init) as pool:
        while asked < settings.n_trials or pending:
            while (len(pending) < settings.n_jobs and asked < settings.n_trials
                   and (deadline is None or time.perf_counter() < deadline)):
                trial = study.ask()
                outcome, overrides, tags = plan_trial(trial, space, base, result.study_id, output_root)
                pending[pool.submit(run_trial, str(conf_dir), overrides, parent.run_id, tags)] = (trial, outcome)
                asked += 1
            if not pending:
                break
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                trial, outcome = pending.pop(future)
                conclude_trial(study, trial, outcome, future.result(), parent, result)
                echo(trial_line(outcome, result))


def plan_trial(trial: Any, space: Mapping[str, Any], base: Sequence[str], study_id: str,
               output_root: Path) -> tuple[TrialOutcome, list[str], dict[str, str]]:
    """A trial's values, the run overrides that apply them, and its tags."""
    values = {k: round_value(v) for k, v in suggest(trial, space).items()}
    number = trial.number
    overrides = dedupe_overrides([*base, *(format_override(k, v) for k, v in values.items()),
                                  f"tracking.run_name={study_id}-trial-{number}",
                                  f"paths.output_dir={output_root / f'trial-{number}'}"])
    shown = [o for o in overrides if not o.startswith(("tracking.run_name=", "paths.output_dir="))]
    tags = {"sbilab.sweep_id": study_id, "sbilab.job": str(number), "sbilab.hpo_trial": str(number),
            "sbilab.overrides": " ".join(shown)}
    return TrialOutcome(number, values, shown), overrides, tags


def conclude_trial(study: Any, trial: Any, outcome: TrialOutcome, reply: Mapping[str, Any], parent: Any,
                   result: StudyResult) -> None:
    """Record a finished trial: its outcome, Optuna's state, the parent's progress metrics."""
    import optuna

    outcome.run_id, outcome.metrics = reply["run_id"], reply["metrics"]
    outcome.error, outcome.seconds = reply["error"], reply["seconds"]
    outcome.value = _objective(outcome.metrics, result.metric)
    if outcome.error is None and outcome.value is None:
        outcome.error = f"the run has no finite {result.metric}"
    result.trials.append(outcome)
    if not outcome.ok:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        parent.jobs_failed = True
        return
    study.tell(trial, outcome.value)
    if result.best is None or _better(outcome.value, result.best.value, result.direction):  # type: ignore[arg-type]
        result.best = outcome
    parent.recorder.log_metrics({"hpo/value": outcome.value, "hpo/best_value": result.best.value},
                                step=outcome.number)


def trial_line(outcome: TrialOutcome, result: StudyResult) -> str:
    """The line printed when a trial ends."""
    params = " ".join(format_override(k, v) for k, v in outcome.params.items())
    if not outcome.ok:
        return f"sbilab: trial {outcome.number} FAILED: [{params}] {outcome.error} ({outcome.seconds:.0f}s)"
    mark = " (best so far)" if result.best is outcome else ""
    return (f"sbilab: trial {outcome.number} done: run {outcome.run_id} [{params}] "
            f"{result.metric}={outcome.value:.4g}{mark} ({outcome.seconds:.0f}s)")


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
    from sbilab.experiments.tables import to_csv
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

