"""What ``make benchmark`` reached per task × method, and its tables (printed, on the parent run, on disk)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from sbilab.experiments.tables import to_csv, to_markdown

#: time metrics per task × method, besides C2ST (wall seconds; ``time/cpu_s``: the process's CPU seconds,
#: which on a shared machine say what the wall time would be on a quiet one)
TIME_METRICS = ("time/simulate_s", "time/train_s", "time/sample_s", "time/c2st_s", "time/total_s", "time/cpu_s")


@dataclass
class JobResult:
    """One task × method: C2ST per observation, summed times, its run(s), or its error."""

    task: str
    method: str
    estimator: str
    target: Optional[float]
    run_ids: list[str] = field(default_factory=list)
    c2st: dict[int, float] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIME_METRICS, 0.0))
    error: Optional[str] = None

    @property
    def mean(self) -> Optional[float]:
        return sum(self.c2st.values()) / len(self.c2st) if self.c2st and self.error is None else None

    @property
    def verdict(self) -> str:
        """``yes``/``no``: mean C2ST within the target; ``-`` without one; ``FAILED`` when a run failed."""
        if self.error is not None:
            return "FAILED"
        if self.target is None or self.mean is None:
            return "-"
        return "yes" if self.mean <= self.target else "no"


def _rounded(value: Optional[float], digits: int) -> Optional[str]:
    if value is None or not math.isfinite(value):
        return None
    return f"{value:.{digits}f}"


def table_rows(results: Sequence[JobResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the results table (one row per task × method), wall time per row."""
    numbers = sorted({k for r in results for k in r.c2st})
    columns = ["task", "method", "estimator", *[f"c2st obs{k}" for k in numbers], "mean", "target", "pass",
               "train s", "total s", "cpu s"]
    rows = [{"task": r.task, "method": r.method, "estimator": r.estimator,
             **{f"c2st obs{k}": _rounded(r.c2st.get(k), 3) for k in numbers}, "mean": _rounded(r.mean, 3),
             "target": "-" if r.target is None else f"{r.target:.2f}", "pass": r.verdict,
             "train s": _rounded(r.times["time/train_s"], 0), "total s": _rounded(r.times["time/total_s"], 0),
             "cpu s": _rounded(r.times["time/cpu_s"], 0)}
            for r in results]
    return columns, rows


def csv_table(results: Sequence[JobResult]) -> str:
    """The table with full-precision numbers, every time metric, run ids and error."""
    numbers = sorted({k for r in results for k in r.c2st})
    columns = ["task", "method", "estimator", *[f"c2st/obs_{k}" for k in numbers], "c2st/mean", "target", "pass",
               *TIME_METRICS, "run_ids", "error"]
    rows = [{"task": r.task, "method": r.method, "estimator": r.estimator,
             **{f"c2st/obs_{k}": v for k, v in r.c2st.items()}, "c2st/mean": r.mean, "target": r.target,
             "pass": r.verdict, **r.times, "run_ids": " ".join(r.run_ids), "error": r.error} for r in results]
    return to_csv(columns, rows)


def write_tables(results: Sequence[JobResult], output_dir: Path, recorder: Any) -> str:
    """``results.md`` / ``results.csv`` in ``output_dir`` and on the parent run; return the markdown."""
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
    return (f"sbilab: benchmark {r.task}/{r.method}: c2st {scores}, mean {r.mean:.4f}{target}; "
            f"train {r.times['time/train_s']:.0f}s, total {r.times['time/total_s']:.0f}s "
            f"(cpu {r.times['time/cpu_s']:.0f}s)")
