"""The sbibm benchmark (``make benchmark``): C2ST against sbibm's published reference posteriors.

Per task × method the run config is what ``scripts/train.py experiment=<task> [method=<method>]
<overrides>`` composes (``method=preset``: the preset's own choice). The posterior is scored at
each of the preset's sbibm observations (``benchmark.score``: 1-10, sbibm's published x_o): it
draws ``diagnostics.num_observation_samples`` seeded posterior samples (10,000 in the presets)
and compares them with the 10,000 published reference samples by C2ST (sbi's c2st, MLP
classifier, as sbibm did).

- Amortised methods train one network per task × method, once, and condition it on every x_o.
- Sequential methods (``snpe``) fit once per observation, at its x_o, with the whole simulation
  budget spent over their rounds.

MLflow: one parent run per benchmark (``sbilab.role=benchmark``); one child per fit (per task ×
method, or per task × method × observation for sequential methods) with ``c2st/obs_<k>``,
``time/*_s`` (wall; ``time/cpu_s``: CPU) and the samples per observation; the parent holds the table
(``benchmark/results.md``, ``.csv``) and is FINISHED only when every child is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from omegaconf import OmegaConf

from sbilab.errors import ConfigError
from sbilab.experiments.benchmark_results import JobResult, result_line, write_tables
from sbilab.simulators.sbibm_reference import TASKS

if TYPE_CHECKING:
    from sbilab.spec import RunSpec

#: estimator for a method whose family differs from the presets' density estimator
FAMILY_ESTIMATOR = {"classifier": "classifier_resnet", "vector_field": "vf_mlp"}
#: MLflow experiment of the parent and child runs (``tracking.experiment=...`` overrides it)
EXPERIMENT = "sbibm-benchmark"
#: the ``methods`` value that keeps each preset's own method
PRESET = "preset"


@dataclass
class Job:
    """One task × method: its run specification, the preset's ``benchmark`` block and the overrides."""

    task: str
    method: str
    spec: "RunSpec"
    benchmark: dict[str, Any]  # the preset's ``benchmark`` block (target, observations scored)
    overrides: list[str]
    choices: dict[str, str]

    @property
    def name(self) -> str:
        return f"{self.task}-{self.method}"

    @property
    def target(self) -> Optional[float]:
        value = self.benchmark.get("c2st_target")
        return None if value is None else float(value)

    @property
    def observations(self) -> list[int]:
        """sbibm's ``num_observation`` values scored (``benchmark.score``)."""
        return [int(k) for k in self.benchmark["score"]]

    @property
    def amortised(self) -> bool:
        return bool(self.spec.parts.method.amortised)


@dataclass
class BenchmarkResult:
    """The parent run, the results per task × method, the table and where it was written."""

    parent_run_id: str
    benchmark_id: str
    results: list[JobResult]
    table: str
    output_dir: Path
    parent_summary: str = ""

    @property
    def ok(self) -> bool:
        return all(r.error is None for r in self.results)


# ---------------------------------------------------------------------------------------------
# input


def method_class(conf_dir: Path, method: str) -> type:
    """The ``Method`` class a ``method`` option builds (read from its ``_target_``, nothing instantiated)."""
    from hydra.utils import get_class

    return get_class(str(OmegaConf.load(Path(conf_dir) / "method" / f"{method}.yaml")._target_))


def method_options(conf_dir: Path) -> list[str]:
    """``preset`` and every ``method`` option."""
    return [PRESET, *sorted(p.stem for p in (Path(conf_dir) / "method").glob("*.yaml"))]


def check_selection(tasks: Sequence[str], methods: Sequence[str], conf_dir: Path) -> None:
    """One line naming the key and the allowed values for an unknown task or method."""
    allowed = method_options(conf_dir)
    if not tasks:
        raise ConfigError(f"tasks: none given; allowed: {', '.join(TASKS)}")
    if not methods:
        raise ConfigError(f"methods: none given; allowed: {', '.join(allowed)}")
    for task in tasks:
        if task not in TASKS:
            raise ConfigError(f"tasks: {task!r} is not a benchmark task; allowed: {', '.join(TASKS)}")
    for method in methods:
        if method not in allowed:
            raise ConfigError(f"methods: {method!r} is not a method option; allowed: {', '.join(allowed)}")


def job_overrides(conf_dir: Path, task: str, method: str, overrides: Sequence[str]) -> list[str]:
    """The run overrides of one task × method (an estimator of the method's family when it needs one)."""
    from sbilab.experiments.compose import dedupe_overrides

    for item in overrides:
        if item.lstrip("+~").split("=", 1)[0] in ("experiment", "method"):
            raise ConfigError(f"{item}: the benchmark sets experiment= and method= per job; choose them with "
                              "TASKS=/--tasks and METHODS=/--methods")
    chosen: list[str] = [f"experiment={task}"]
    if method != PRESET:
        chosen.append(f"method={method}")
        estimator = FAMILY_ESTIMATOR.get(method_class(conf_dir, method).family)
        if estimator and not any(o.lstrip("+~").startswith("estimator=") for o in overrides):
            chosen.append(f"estimator={estimator}")
    return dedupe_overrides([*chosen, f"tracking.experiment={EXPERIMENT}", *overrides])


def compose_job(conf_dir: Path, task: str, method: str, overrides: Sequence[str], output_dir: Path) -> Job:
    """Compose, check and prepare one task × method (bad input fails here, before any run exists)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sbilab.experiments.compose import compose_run_config
    from sbilab.spec import prepare

    chosen = job_overrides(conf_dir, task, method, overrides)
    try:
        cfg, choices = compose_run_config(conf_dir, [*chosen, f"paths.output_dir={output_dir / f'{task}-{method}'}"])
    except HydraException as error:
        raise ConfigError(str(error).strip().splitlines()[0]) from None
    if OmegaConf.select(cfg, "benchmark.task", default=None) != task:
        raise ConfigError(f"experiment={task}: the preset has no benchmark.task={task} block")
    try:
        spec = prepare(cfg)
    except OmegaConfBaseException as error:  # e.g. a summary that interpolates keys these simulators lack
        raise ConfigError(str(error).strip().splitlines()[0]) from None
    benchmark = OmegaConf.to_container(cfg.benchmark, resolve=True)
    x_dim = len(next(iter(benchmark["observations"].values()))["x"])
    if spec.parts.x_dim != x_dim:
        raise ConfigError(f"summary={cfg.summary.name}: x has {spec.parts.x_dim} entries but sbibm's x_o of {task} "
                          f"has {x_dim}; the benchmark conditions on sbibm's x_o as published (summary=identity)")
    name = spec.choices["method"] if method == PRESET else method
    spec = spec.with_tracking(run_name=f"{task}-{name}")
    return Job(task, name, spec, benchmark, shown_overrides(chosen), choices)


def shown_overrides(overrides: Sequence[str]) -> list[str]:
    """Overrides without the machine's paths and store URIs (not recorded, as in ``loggable_params``)."""
    return [o for o in overrides if not o.lstrip("+~").startswith(("tracking.", "paths."))]


# ---------------------------------------------------------------------------------------------
# one task × method


@dataclass
class Fit:
    """One trained posterior of a job: the spec it trains with and the observations it is scored on."""

    spec: "RunSpec"
    observations: list[int]


def fits(job: Job) -> list[Fit]:
    """Amortised: one fit scored everywhere. Sequential: one fit per observation, at its published x_o."""
    if job.amortised:
        return [Fit(job.spec, job.observations)]
    from sbilab.simulators.sbibm_reference import published_observation

    return [Fit(job.spec.at_observation(published_observation(job.task, k).x,
                                        run_name=f"{job.spec.tracking.run_name}-obs{k}"), [k])
            for k in job.observations]


def score_observation(job: Job, spec: "RunSpec", posterior: Any, k: int, recorder: Any) -> tuple[float, float, float]:
    """Samples at sbibm's published x_o of observation ``k`` and their C2ST; (c2st, sample s, c2st s)."""
    import torch
    from threadpoolctl import threadpool_limits

    from sbilab.diagnostics.c2st import c2st_score
    from sbilab.rng import seeded
    from sbilab.simulators.sbibm_reference import published_observation

    published = published_observation(job.task, k)
    x_o = torch.as_tensor(published.x, dtype=torch.float32)
    num = spec.diagnostics.num_observation_samples
    started = time.perf_counter()
    with seeded(spec.seeds.benchmark_samples(k)):
        samples = posterior.sample((num,), x=x_o, show_progress_bars=False)
    sampled = time.perf_counter()
    recorder.log_array(samples.numpy(), f"samples/obs_{k}.npy")
    with threadpool_limits(limits=spec.num_threads):  # sklearn's MLP: as many BLAS threads as torch's
        score = c2st_score(samples, published.samples, seed=spec.seeds.benchmark_c2st(k), max_samples=num)
    return score, sampled - started, time.perf_counter() - sampled


def run_fit(job: Job, fit: Fit, result: JobResult, parent_run_id: str, tags: dict[str, str]) -> None:
    """Train one posterior, score it on its observations, record it as a child run; add to ``result``."""
    from sbilab import pipeline

    spec = fit.spec
    with pipeline.open_run(spec, parent_run_id=parent_run_id, extra_tags=tags) as recorder:
        result.run_ids.append(recorder.run_id)
        started, cpu_started = time.perf_counter(), time.process_time()
        fitted = pipeline.train(spec, pipeline.RecordingObserver(recorder, spec))
        posterior = pipeline.build_posterior(spec, fitted)
        pipeline.record(recorder, spec, fitted, None)
        times = {"time/simulate_s": fitted.data.seconds, "time/train_s": fitted.networks.seconds,
                 "time/sample_s": 0.0, "time/c2st_s": 0.0}
        for k in fit.observations:
            result.c2st[k], sample_s, c2st_s = score_observation(job, spec, posterior, k, recorder)
            times["time/sample_s"] += sample_s
            times["time/c2st_s"] += c2st_s
            recorder.log_metrics({f"c2st/obs_{k}": result.c2st[k]})
        times["time/total_s"] = time.perf_counter() - started
        times["time/cpu_s"] = time.process_time() - cpu_started
        mean = sum(result.c2st[k] for k in fit.observations) / len(fit.observations)
        recorder.log_metrics({"c2st/mean": mean,
                              **{k: v for k, v in times.items() if k not in ("time/simulate_s", "time/train_s")}})
        for key, value in times.items():
            result.times[key] += value


def run_job(job: Job, parent_run_id: str, benchmark_id: str) -> JobResult:
    """Every fit of one task × method; a failure comes back as the error (its run is FAILED already)."""
    import torch

    spec = job.spec
    result = JobResult(job.task, job.method, str(spec.part_configs["estimator"]["name"]), job.target)
    torch.set_num_threads(spec.num_threads)
    tags = {**{f"choice.{group}": option for group, option in job.choices.items()},
            "sbilab.benchmark_id": benchmark_id, "sbilab.task": job.task, "sbilab.overrides": " ".join(job.overrides)}
    try:
        for fit in fits(job):
            run_fit(job, fit, result, parent_run_id, tags)
    except Exception as error:  # the other jobs still run
        result.error = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    return result


# ---------------------------------------------------------------------------------------------
# the benchmark


def default_output_dir(root: Path) -> Path:
    """A new folder ``outputs/benchmark/<date_time>`` (``-2``, ``-3``, ... when a benchmark started in the
    same second already took it: two at once would otherwise write one table over the other)."""
    base = Path(root) / "outputs" / "benchmark" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    base.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        folder = base if attempt == 1 else base.with_name(f"{base.name}-{attempt}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"no free output folder next to {base}")


def run_benchmark(tasks: Sequence[str], methods: Sequence[str], overrides: Sequence[str], *, conf_dir: Path,
                  output_dir: Path, echo: Callable[[str], Any] = print) -> BenchmarkResult:
    """Check and build every job, fetch sbibm's files, then run the jobs under one parent run."""
    from sbilab import tracking
    from sbilab.simulators.sbibm_reference import fetch

    check_selection(tasks, methods, conf_dir)
    jobs = [compose_job(conf_dir, task, method, overrides, output_dir) for task in tasks for method in methods]
    fetch()  # SbibmDataUnavailable (one line) before any run exists
    first, shown = jobs[0].spec, " ".join(shown_overrides(overrides))
    benchmark_id = f"benchmark-{output_dir.name}"
    results: list[JobResult] = []
    with tracking.parent_run(first.tracking.uri, first.experiment_name, first.tracking.artifact_location,
                             sweep_id=benchmark_id, role="benchmark", run_name=benchmark_id,
                             tags={"sbilab.sweep_overrides": shown,
                                   "sbilab.git_commit": tracking.git_commit(first.paths.root)}) as parent:
        parent.recorder.log_params({"benchmark.tasks": " ".join(tasks), "benchmark.methods": " ".join(methods),
                                    "benchmark.overrides": shown, "seed": first.seeds.run})
        echo(f"sbilab: {benchmark_id}: parent run {parent.run_id}; {len(jobs)} task x method, output {output_dir}")
        try:
            for job in jobs:
                results.append(run_job(job, parent.run_id, benchmark_id))
                echo(result_line(results[-1]))
                if results[-1].mean is not None:
                    parent.recorder.log_metrics({f"c2st/{job.task}/{job.method}": results[-1].mean})
        finally:
            table = write_tables(results, output_dir, parent.recorder)
    return BenchmarkResult(parent.run_id, benchmark_id, results, table, output_dir, parent.summary)
