"""The sbibm benchmark (``make benchmark``): C2ST against sbibm's published reference posteriors.

Amortised: per task × method the network is trained once, with the config that
``scripts/train.py experiment=<task> method=<method> <overrides>`` composes (the
pipeline's cached simulation stage and trainer). Then, for each of the preset's
sbibm observations (``benchmark.observations``: 1-3), it is conditioned on sbibm's
*published* x_o, draws ``diagnostics.num_observation_samples`` seeded posterior
samples (10,000 in the presets) and scores them with C2ST against the 10,000
published reference samples (sbi's c2st, MLP classifier, as sbibm did).

MLflow: one parent run per benchmark (``sbilab.role=benchmark``), one child per
task × method (``c2st/obs_<k>``, ``c2st/mean``, ``time/*_s``, samples per
observation); the parent holds the table (``benchmark/results.md``, ``.csv``) and is
FINISHED only when every child is. The table is also written to the output folder.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from omegaconf import OmegaConf

from sbilab.errors import ConfigError
from sbilab.simulators.sbibm_reference import TASKS

if TYPE_CHECKING:
    from sbilab.spec import RunSpec

#: estimator for a method whose family differs from the presets' density estimator
FAMILY_ESTIMATOR = {"classifier": "classifier_resnet", "vector_field": "vf_mlp"}
#: MLflow experiment of the parent and child runs (``tracking.experiment=...`` overrides it)
EXPERIMENT = "sbibm-benchmark"
#: metrics shown per task × method, besides c2st
TIME_METRICS = ("time/simulate_s", "time/train_s", "time/sample_s", "time/c2st_s", "time/total_s")


@dataclass
class Job:
    """One task × method: its run specification, the preset's ``benchmark`` block and the overrides."""

    task: str
    method: str
    spec: "RunSpec"
    benchmark: dict[str, Any]  # the preset's ``benchmark`` block (observations, target)
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
        """sbibm's ``num_observation`` values of the preset (``benchmark.observations``)."""
        return sorted(int(k) for k in self.benchmark["observations"])


@dataclass
class JobResult:
    """What one task × method reached: C2ST per observation, times, its run, or its error."""

    task: str
    method: str
    estimator: str
    target: Optional[float]
    run_id: Optional[str] = None
    c2st: dict[int, float] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    error: Optional[str] = None

    @property
    def mean(self) -> Optional[float]:
        return sum(self.c2st.values()) / len(self.c2st) if self.c2st and self.error is None else None

    @property
    def verdict(self) -> str:
        """``yes``/``no``: mean C2ST within the target; ``-`` without one; ``FAILED`` when the run failed."""
        if self.error is not None:
            return "FAILED"
        if self.target is None or self.mean is None:
            return "-"
        return "yes" if self.mean <= self.target else "no"


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


def allowed_methods(conf_dir: Path) -> list[str]:
    """The ``method`` options that train an amortised network (sequential ones train at one x_o)."""
    options = (p.stem for p in (Path(conf_dir) / "method").glob("*.yaml"))
    return sorted(option for option in options if method_class(conf_dir, option).amortised)


def check_selection(tasks: Sequence[str], methods: Sequence[str], conf_dir: Path) -> None:
    """One line naming the key and the allowed values for an unknown task or method."""
    allowed = allowed_methods(conf_dir)  # reads every method config: once
    if not tasks:
        raise ConfigError(f"tasks: none given; allowed: {', '.join(TASKS)}")
    if not methods:
        raise ConfigError(f"methods: none given; allowed: {', '.join(allowed)}")
    for task in tasks:
        if task not in TASKS:
            raise ConfigError(f"tasks: {task!r} is not a benchmark task; allowed: {', '.join(TASKS)}")
    for method in methods:
        if method not in allowed:
            raise ConfigError(f"methods: {method!r} is not an amortised method; allowed: {', '.join(allowed)}")


def method_estimator(conf_dir: Path, method: str) -> Optional[str]:
    """The estimator override a method needs when the presets' density estimator cannot be its network."""
    return FAMILY_ESTIMATOR.get(method_class(conf_dir, method).family)


def compose_job(conf_dir: Path, task: str, method: str, overrides: Sequence[str], output_dir: Path) -> Job:
    """Compose, check and prepare one task × method (bad input fails here, before any run exists)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sbilab.experiments.compose import compose_run_config, dedupe_overrides
    from sbilab.spec import prepare

    for item in overrides:
        if item.lstrip("+~").split("=", 1)[0] in ("experiment", "method"):
            raise ConfigError(f"{item}: the benchmark sets experiment= and method= per job; choose them with "
                              "TASKS=/--tasks and METHODS=/--methods")
    estimator = method_estimator(conf_dir, method)
    user_picks_estimator = any(o.lstrip("+~").startswith("estimator=") for o in overrides)
    job_overrides = dedupe_overrides([
        f"experiment={task}", f"method={method}",
        *([f"estimator={estimator}"] if estimator and not user_picks_estimator else []),
        f"tracking.experiment={EXPERIMENT}", f"tracking.run_name={task}-{method}", *overrides,
    ])
    output = f"paths.output_dir={output_dir / f'{task}-{method}'}"
    try:
        cfg, choices = compose_run_config(conf_dir, [*job_overrides, output])
    except HydraException as error:
        raise ConfigError(str(error).strip().splitlines()[0]) from None
    if OmegaConf.select(cfg, "benchmark.task", default=None) != task:
        raise ConfigError(f"experiment={task}: the preset has no benchmark.task={task} block")
    try:
        spec = prepare(cfg)
    except OmegaConfBaseException as error:  # e.g. a summary that interpolates keys these simulators lack
        raise ConfigError(str(error).strip().splitlines()[0]) from None
    benchmark = OmegaConf.to_container(cfg.benchmark, resolve=True)
    x_dim = len(benchmark["observations"][str(min(int(k) for k in benchmark["observations"]))]["x"])
    if spec.parts.x_dim != x_dim:
        raise ConfigError(f"summary={cfg.summary.name}: x has {spec.parts.x_dim} entries but sbibm's x_o of {task} "
                          f"has {x_dim}; the benchmark conditions on sbibm's x_o as published (summary=identity)")
    return Job(task, method, spec, benchmark, shown_overrides(job_overrides), choices)


def shown_overrides(overrides: Sequence[str]) -> list[str]:
    """Overrides without the machine's paths and store URIs (not recorded, as in ``loggable_params``)."""
    return [o for o in overrides if not o.lstrip("+~").startswith(("tracking.", "paths."))]


# ---------------------------------------------------------------------------------------------
# one task × method


def score_observation(job: Job, posterior: Any, k: int, recorder: Any) -> tuple[float, float, float]:
    """Samples at sbibm's published x_o of observation ``k`` and their C2ST; (c2st, sample s, c2st s)."""
    import torch
    from threadpoolctl import threadpool_limits

    from sbilab.diagnostics.c2st import c2st_score
    from sbilab.rng import seeded
    from sbilab.simulators.sbibm_reference import published_observation

    spec = job.spec
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


def run_job(job: Job, parent_run_id: str, benchmark_id: str) -> JobResult:
    """Train once, score every observation, record the child run; a failure comes back as the error."""
    import torch

    from sbilab import pipeline

    spec = job.spec
    result = JobResult(job.task, job.method, str(spec.part_configs["estimator"]["name"]), job.target)
    torch.set_num_threads(spec.num_threads)
    tags = {**{f"choice.{group}": option for group, option in job.choices.items()},
            "sbilab.benchmark_id": benchmark_id, "sbilab.task": job.task, "sbilab.overrides": " ".join(job.overrides)}
    try:
        with pipeline.open_run(spec, parent_run_id=parent_run_id, extra_tags=tags) as recorder:
            result.run_id = recorder.run_id
            started = time.perf_counter()
            fitted = pipeline.train(spec, pipeline.RecordingObserver(recorder))
            result.times["time/simulate_s"] = fitted.data.seconds
            result.times["time/train_s"] = fitted.networks.seconds
            recorder.log_metrics(fitted.networks.metrics())
            posterior = pipeline.build_posterior(spec, fitted)
            pipeline.record(recorder, spec, fitted, None)
            result.times["time/sample_s"] = result.times["time/c2st_s"] = 0.0
            for k in job.observations:
                result.c2st[k], sample_s, c2st_s = score_observation(job, posterior, k, recorder)
                result.times["time/sample_s"] += sample_s
                result.times["time/c2st_s"] += c2st_s
                recorder.log_metrics({f"c2st/obs_{k}": result.c2st[k]})
            result.times["time/total_s"] = time.perf_counter() - started
            recorder.log_metrics({"c2st/mean": result.mean, **{k: v for k, v in result.times.items()
                                                               if k not in ("time/simulate_s", "time/train_s")}})
    except Exception as error:  # the run is FAILED already; the other jobs still run
        result.error = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    return result


# ---------------------------------------------------------------------------------------------
# the table


def table_rows(results: Sequence[JobResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the results table (one row per task × method)."""
    numbers = sorted({k for r in results for k in r.c2st})
    columns = ["task", "method", "estimator", *[f"c2st obs{k}" for k in numbers], "mean", "target", "pass",
               "train s", "total s"]
    rows = [{"task": r.task, "method": r.method, "estimator": r.estimator,
             **{f"c2st obs{k}": _rounded(r.c2st.get(k), 3) for k in numbers}, "mean": _rounded(r.mean, 3),
             "target": "-" if r.target is None else f"{r.target:.2f}", "pass": r.verdict,
             "train s": _rounded(r.times.get("time/train_s"), 0), "total s": _rounded(r.times.get("time/total_s"), 0)}
            for r in results]
    return columns, rows


def _rounded(value: Optional[float], digits: int) -> Optional[str]:
    if value is None or not math.isfinite(value):
        return None
    return f"{value:.{digits}f}"


def csv_table(results: Sequence[JobResult]) -> str:
    """The table with full-precision numbers, every time metric, run id and error."""
    from sbilab.experiments.tables import to_csv

    numbers = sorted({k for r in results for k in r.c2st})
    columns = ["task", "method", "estimator", *[f"c2st/obs_{k}" for k in numbers], "c2st/mean", "target", "pass",
               *TIME_METRICS, "run_id", "error"]
    rows = [{"task": r.task, "method": r.method, "estimator": r.estimator,
             **{f"c2st/obs_{k}": v for k, v in r.c2st.items()}, "c2st/mean": r.mean, "target": r.target,
             "pass": r.verdict, **r.times, "run_id": r.run_id, "error": r.error} for r in results]
    return to_csv(columns, rows)


def write_tables(results: Sequence[JobResult], output_dir: Path, recorder: Any) -> str:
    """``results.md`` / ``results.csv`` in ``output_dir`` and on the parent run; return the markdown."""
    from sbilab.experiments.tables import to_markdown

    markdown = to_markdown(*table_rows(results))
    csv_text = csv_table(results)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.md").write_text(markdown)
    (output_dir / "results.csv").write_text(csv_text)
    recorder.log_text(markdown, "benchmark/results.md")
    recorder.log_text(csv_text, "benchmark/results.csv")
    return markdown


def result_line(r: JobResult) -> str:
    """One progress line per finished task × method."""
    if r.error is not None:
        return f"sbilab: benchmark {r.task}/{r.method} FAILED: {r.error}"
    scores = " ".join(f"{v:.3f}" for _, v in sorted(r.c2st.items()))
    target = "" if r.target is None else f" (target {r.target:.2f}: {'met' if r.verdict == 'yes' else 'missed'})"
    return (f"sbilab: benchmark {r.task}/{r.method}: c2st {scores}, mean {r.mean:.3f}{target}; "
            f"train {r.times['time/train_s']:.0f}s, total {r.times['time/total_s']:.0f}s; run {r.run_id}")


# ---------------------------------------------------------------------------------------------
# the benchmark


def default_output_dir(root: Path) -> Path:
    return Path(root) / "outputs" / "benchmark" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


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
