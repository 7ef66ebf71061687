"""Compare the child runs of a sweep (or an HPO study): table, metric-vs-budget curves, heatmap.

Pure data wrangling on the plain dicts of ``tracking.child_runs``; the results are
written to the parent run through ``tracking.recorder_for``:

- ``comparison/runs.csv`` and ``comparison/runs.md``: one row per child (run id, status,
  the swept factors, key metrics)
- ``comparison/vs_budget.png``: metrics against ``simulation.num_simulations``, one line per
  estimator (and per combination of the other swept factors)
- ``comparison/heatmap.png``: when two or more factors were swept, a grid of one metric
  over the first two (mean over the others)
- ``comparison/summary.json``: factors, counts, best run
- ``comparison/posterior_c2st.md`` / ``.csv``: for small sweeps whose runs share one observation
  (e.g. ``summary=hh_features,hh_cnn``), C2ST between every two runs' posterior samples at x_o
  (0.5: the same posterior; 1.0: disjoint; ``experiments.posterior_pairs``)

Swept factors are detected, not configured: the keys of each job's overrides
(``sbilab.overrides`` tag) whose values differ across children; without that tag, the
config groups (``choice.<group>`` tags) and params that differ.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from sbilab.experiments.tables import as_number, to_csv, to_markdown

BUDGET_KEY = "simulation.num_simulations"

#: metrics of the table, in this order; `*` matches one path segment or more
KEY_METRICS = ("val/loss_best", "c2st", "ppc/standardized_distance", "ppc/standardized_distance_median",
               "sbc/ks_pvalue/*", "tarp/atc", "coverage/error", "time/*_s", "train/epochs")

#: a run fitted to a recording draws its posterior predictive over the recording here (``pipeline.record``)
RECORDING_OVERLAY = "plots/ppc_traces.png"

#: the usual order of the time metrics (others follow alphabetically)
TIME_ORDER = ("time/simulate_s", "time/train_s", "time/diagnose_s", "time/total_s")

#: keys that are never factors: where things are, not what was run
_NOT_FACTORS = ("hydra.", "paths.", "tracking.")


@dataclass
class Comparison:
    """The comparison table of a parent run and what was logged to it."""

    parent_run_id: str
    factors: list[str]
    metrics: list[str]
    columns: list[str]
    rows: list[dict[str, Any]]
    heatmap_metric: Optional[str] = None
    best: Optional[dict[str, Any]] = None
    artifacts: list[str] = field(default_factory=list)

    def csv(self) -> str:
        return to_csv(self.columns, self.rows)

    def markdown(self) -> str:
        return to_markdown(self.columns, self.rows)


# ---------------------------------------------------------------------------------------------
# factors


def parse_overrides(text: str) -> dict[str, str]:
    """``"estimator=maf +x.y=3"`` → ``{"estimator": "maf", "x.y": "3"}`` (Hydra task overrides)."""
    found: dict[str, str] = {}
    for token in (text or "").split():
        if "=" not in token:
            continue
        key, value = token.split("=", 1)
        key = key.lstrip("+~")
        if key:
            found[key] = value
    return found


def _distinct(values: Iterable[Optional[str]]) -> int:
    """How many different values, a missing value (None) not counting as one."""
    return len({v for v in values if v is not None})


def factor_value(child: Mapping[str, Any], key: str) -> Optional[str]:
    """A child's value of a factor: the config group's choice, else the param, else the override."""
    tags, params = child.get("tags", {}), child.get("params", {})
    if f"choice.{key}" in tags:
        return str(tags[f"choice.{key}"])
    if key in params:
        return str(params[key])
    return parse_overrides(tags.get("sbilab.overrides", "")).get(key)


def swept_factors(children: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys whose values vary across the children, in the order they were given on the command line."""
    if len(children) < 2:
        return []
    ordered: list[str] = []
    for child in children:
        for key in parse_overrides(child.get("tags", {}).get("sbilab.overrides", "")):
            if key not in ordered and not key.startswith(_NOT_FACTORS):
                ordered.append(key)
    if ordered:
        return [key for key in ordered if _distinct(factor_value(c, key) for c in children) > 1]
    # no override tags (runs made outside a multirun): choices and params that differ
    groups = sorted({tag[len("choice."):] for c in children for tag in c.get("tags", {}) if tag.startswith("choice.")})
    varying_groups = [g for g in groups if _distinct(c.get("tags", {}).get(f"choice.{g}") for c in children) > 1]
    params = sorted({key for c in children for key in c.get("params", {})})
    varying_params = [
        key for key in params
        if not key.startswith(_NOT_FACTORS)
        and not any(key.startswith(f"{g}.") for g in varying_groups)
        and _distinct(c.get("params", {}).get(key) for c in children) > 1
    ]
    return varying_groups + varying_params


# ---------------------------------------------------------------------------------------------
# metrics and rows


def _matches(pattern: str, name: str) -> bool:
    """``*`` stands for one path segment: ``time/*_s`` leaves out the per-step ``time/diagnose/*_s``."""
    regex = "^" + re.escape(pattern).replace(r"\*", "[^/]+") + "$"
    return re.match(regex, name) is not None


def metric_columns(children: Sequence[Mapping[str, Any]], patterns: Sequence[str] = KEY_METRICS) -> list[str]:
    """The key metrics present in at least one child, in ``patterns`` order."""
    present = {name for c in children for name in c.get("metrics", {})}
    columns: list[str] = []
    for pattern in patterns:
        found = [name for name in present if _matches(pattern, name) and name not in columns]
        if pattern == "time/*_s":
            found.sort(key=lambda n: (TIME_ORDER.index(n) if n in TIME_ORDER else len(TIME_ORDER), n))
        else:
            found.sort()
        columns.extend(found)
    return columns


def _sort_key(value: Any) -> tuple:
    number = as_number(value)
    return (0, number, "") if number is not None else (1, 0.0, "" if value is None else str(value))


def estimator_of(child: Mapping[str, Any]) -> str:
    tags, params = child.get("tags", {}), child.get("params", {})
    return str(tags.get("choice.estimator") or tags.get("sbilab.estimator") or params.get("estimator.name") or "?")


def wall_seconds(child: Mapping[str, Any]) -> Optional[float]:
    """``time/total_s``, else the run's own start/end times."""
    metrics = child.get("metrics", {})
    if "time/total_s" in metrics:
        return float(metrics["time/total_s"])
    start, end = child.get("start_time"), child.get("end_time")
    if start and end:
        return (end - start) / 1000.0
    return None


def comparison_rows(children: Sequence[Mapping[str, Any]], factors: Sequence[str],
                    metrics: Sequence[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and one row per child, sorted by the factors."""
    budget_extra = [] if BUDGET_KEY in factors else [BUDGET_KEY]
    overlay = ["overlay"] if any(fitted_to_recording(child) for child in children) else []
    columns = ["run_id", "run_name", "status", "gates", *factors, *budget_extra, *metrics, *overlay]
    rows = []
    for child in children:
        row: dict[str, Any] = {
            "run_id": child["run_id"],
            "run_name": child.get("run_name"),
            "status": child.get("status"),
            "gates": child.get("tags", {}).get("sbilab.gates"),
        }
        for key in [*factors, *budget_extra]:
            row[key] = factor_value(child, key)
        for name in metrics:
            value = child.get("metrics", {}).get(name)
            row[name] = None if value is None else float(value)
        if overlay:
            row["overlay"] = RECORDING_OVERLAY if fitted_to_recording(child) and child.get("status") == "FINISHED" \
                else None
        rows.append(row)
    rows.sort(key=lambda r: (*(_sort_key(r[k]) for k in factors), _sort_key(r.get(BUDGET_KEY)), str(r["run_name"])))
    return columns, rows


def fitted_to_recording(child: Mapping[str, Any]) -> bool:
    """Whether the child's x_o is a recorded trace (``observation=recording``): its figure overlays the recording."""
    return child.get("params", {}).get("observation.name") == "recording"


def default_metric(children: Sequence[Mapping[str, Any]]) -> str:
    """c2st when any run has it (a reference posterior exists), else the held-out loss."""
    if any("c2st" in c.get("metrics", {}) for c in children):
        return "c2st"
    return "val/loss_best"


#: one panel of metric-vs-budget curves: (metric, {line label: [(budget, value), ...]})
Panel = tuple[str, dict[str, list[tuple[float, float]]]]


def budget_panels(children: Sequence[Mapping[str, Any]], factors: Sequence[str]) -> list[Panel]:
    """Panels of the metric-vs-budget figure: val/loss_best, c2st or tarp/atc, wall time."""
    finished = [c for c in children if c.get("status") == "FINISHED"]
    others = [f for f in factors if f not in (BUDGET_KEY, "estimator", "estimator.name", "estimator.model")]

    def label(child: Mapping[str, Any]) -> str:
        parts = [estimator_of(child)] + [f"{key}={factor_value(child, key)}" for key in others]
        return " · ".join(parts)

    def panel(metric: str, value_of: Any) -> tuple[str, dict[str, list[tuple[float, float]]]]:
        series: dict[str, list[tuple[float, float]]] = {}
        for child in finished:
            x = as_number(factor_value(child, BUDGET_KEY))
            y = value_of(child)
            if x is None or y is None or not math.isfinite(y):
                continue
            series.setdefault(label(child), []).append((x, float(y)))
        return metric, series

    second = "c2st" if any("c2st" in c.get("metrics", {}) for c in finished) else "tarp/atc"
    return [
        panel("val/loss_best", lambda c: c.get("metrics", {}).get("val/loss_best")),
        panel(second, lambda c: c.get("metrics", {}).get(second)),
        panel("wall time (s)", wall_seconds),
    ]


def heatmap_grid(children: Sequence[Mapping[str, Any]], row_key: str, col_key: str,
                 metric: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Mean of ``metric`` per (row value, column value) over finished children."""
    finished = [c for c in children if c.get("status") == "FINISHED"]
    row_values = sorted({factor_value(c, row_key) for c in children}, key=_sort_key)
    col_values = sorted({factor_value(c, col_key) for c in children}, key=_sort_key)
    cells: dict[tuple[int, int], list[float]] = {}
    for child in finished:
        value = wall_seconds(child) if metric == "wall time (s)" else child.get("metrics", {}).get(metric)
        if value is None or not math.isfinite(value):
            continue
        i = row_values.index(factor_value(child, row_key))
        j = col_values.index(factor_value(child, col_key))
        cells.setdefault((i, j), []).append(float(value))
    grid = np.full((len(row_values), len(col_values)), np.nan)
    for (i, j), values in cells.items():
        grid[i, j] = float(np.mean(values))
    return grid, [str(v) for v in row_values], [str(v) for v in col_values]


def best_run(rows: Sequence[Mapping[str, Any]], metric: str, direction: str = "minimize") -> Optional[dict[str, Any]]:
    """The finished row with the best value of ``metric``."""
    candidates = [r for r in rows if r.get("status") == "FINISHED" and r.get(metric) is not None
                  and math.isfinite(r[metric])]
    if not candidates:
        return None
    chosen = (min if direction == "minimize" else max)(candidates, key=lambda r: r[metric])
    return dict(chosen)


#: config groups that change what the validation loss measures: the loss itself (method) or the
#: distribution of (θ, x) it averages over (simulator, prior, summary; experiment presets set them all;
#: observation: a recording brings its own protocol, and sequential rounds simulate near their x_o)
LOSS_DEFINING_GROUPS = ("method", "simulator", "prior", "summary", "experiment", "observation")


def loss_comparable(factors: Sequence[str]) -> bool:
    """Whether the runs' best validation losses rank them: no swept factor changes the loss's meaning."""
    return not any(factor.lstrip("+~").split(".")[0] in LOSS_DEFINING_GROUPS for factor in factors)


def build_comparison(parent_run_id: str, children: Sequence[Mapping[str, Any]],
                     metric: Optional[str] = None) -> Comparison:
    """The table of a parent's children (no I/O); ``best`` by validation loss where the losses compare."""
    factors = swept_factors(children)
    metrics = metric_columns(children)
    columns, rows = comparison_rows(children, factors, metrics)
    chosen = metric or default_metric(children)
    best = None
    if loss_comparable(factors):
        best = best_run(rows, "val/loss_best" if "val/loss_best" in metrics else chosen)
    return Comparison(parent_run_id, factors, metrics, columns, rows, chosen, best)


def heatmap_axes(factors: Sequence[str]) -> tuple[str, str]:
    """(rows, columns) of the heatmap: the first two factors, the simulation budget on the columns."""
    row_key, col_key = factors[0], factors[1]
    if row_key == BUDGET_KEY or (BUDGET_KEY in factors and col_key != BUDGET_KEY):
        other = next(f for f in factors if f != BUDGET_KEY)
        return other, BUDGET_KEY
    return row_key, col_key


# ---------------------------------------------------------------------------------------------
# the whole thing, logged to the parent run


def compare_sweep(uri: str, parent_run_id: str, metric: Optional[str] = None, figures: bool = True) -> Comparison:
    """Query the children of ``parent_run_id`` and log the comparison artifacts to the parent.

    ``metric``: the heatmap's metric (default: c2st when present, else val/loss_best).
    ``figures=False``: only the table and summary (HPO studies draw their own figures).
    """
    from sbilab import tracking
    from sbilab.experiments.overview import overview_markdown
    from sbilab.experiments.posterior_pairs import log_posterior_c2st
    from sbilab.plots.comparison import heatmap, metric_vs_budget

    children = tracking.child_runs(uri, parent_run_id)
    comparison = build_comparison(parent_run_id, children, metric)
    recorder = tracking.recorder_for(uri, parent_run_id)
    recorder.log_text(comparison.csv(), "comparison/runs.csv")
    header = (f"# Child runs of {parent_run_id}\n\n{len(children)} child runs; swept: "
              f"{', '.join(comparison.factors) or 'nothing varies'}\n\n")
    recorder.log_text(header + (comparison.markdown() if children else "no child runs\n"), "comparison/runs.md")
    comparison.artifacts += ["comparison/runs.csv", "comparison/runs.md"]
    if children and figures:
        recorder.log_figure(metric_vs_budget(budget_panels(children, comparison.factors), BUDGET_KEY),
                            "comparison/vs_budget.png")
        comparison.artifacts.append("comparison/vs_budget.png")
    if figures and len(comparison.factors) >= 2 and comparison.heatmap_metric:
        row_key, col_key = heatmap_axes(comparison.factors)
        grid, rows, cols = heatmap_grid(children, row_key, col_key, comparison.heatmap_metric)
        rest = [f for f in comparison.factors if f not in (row_key, col_key)]
        note = f"mean over {', '.join(rest)}" if rest else None
        recorder.log_figure(heatmap(grid, rows, cols, row_key, col_key, comparison.heatmap_metric, note),
                            "comparison/heatmap.png")
        comparison.artifacts.append("comparison/heatmap.png")
    comparison.artifacts += log_posterior_c2st(uri, recorder, children, comparison.factors)
    counts: dict[str, int] = {}
    for child in children:
        counts[child["status"]] = counts.get(child["status"], 0) + 1
    summary = {
        "parent_run_id": parent_run_id,
        "children": counts,
        "factors": comparison.factors,
        "metrics": comparison.metrics,
        "heatmap_metric": comparison.heatmap_metric if "comparison/heatmap.png" in comparison.artifacts else None,
        "best_by_val_loss": comparison.best,
        "best_skipped_because": None if loss_comparable(comparison.factors) else
        f"the swept factors change what the validation loss measures ({', '.join(comparison.factors)})",
    }
    recorder.log_dict(json.loads(json.dumps(summary, default=str)), "comparison/summary.json")
    comparison.artifacts.append("comparison/summary.json")
    tags = {"sbilab.swept": ", ".join(comparison.factors) or "-"}
    if comparison.best is not None:
        tags["sbilab.best_run"] = comparison.best["run_id"]
    recorder.set_tags(tags)
    tracking.set_description(recorder, overview_markdown(comparison, recorder.experiment_id, counts))
    return comparison
