"""The description of a sweep's parent run: what was swept, how the children fared, one row per child.

Shown on the parent's page in the MLflow UI (markdown); the full table stays in the
``comparison/`` artifacts. Run names link to the child runs.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from sbilab.experiments.tables import to_markdown

#: metrics of the overview table, when any child has them
OVERVIEW_METRICS = ("val/loss_best", "c2st", "ppc/standardized_distance", "ppc/standardized_distance_median",
                    "tarp/atc", "coverage/error", "time/total_s")


def overview_markdown(comparison: Any, experiment_id: str, statuses: Mapping[str, int]) -> str:
    """Markdown: counts by status and verdict, the swept factors, the best run, and a compact table.

    ``comparison`` is a :class:`~sbilab.experiments.compare.Comparison` (its rows: one per child).
    """
    rows: Sequence[Mapping[str, Any]] = comparison.rows
    verdicts: dict[str, int] = {}
    for row in rows:
        verdict = str(row.get("gates") or "not run")
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    lines = [  # the UI shows the first lines of a description until "Show more": the counts go first
        f"**{len(rows)} child runs** ({', '.join(f'{n} {status}' for status, n in sorted(statuses.items()))}) · "
        f"calibration gates: {', '.join(f'{n} {verdict}' for verdict, n in sorted(verdicts.items()))} · "
        f"swept: {', '.join(comparison.factors) or 'nothing varies'}",
    ]
    if comparison.best is not None:
        lines += ["", f"Best by validation loss: {_link(comparison.best, experiment_id)}"]
    metrics = [name for name in OVERVIEW_METRICS if name in comparison.metrics]
    overlay = ["overlay"] if "overlay" in comparison.columns else []
    columns = ["run", "gates", *comparison.factors, *metrics, *overlay]
    table = [{**row, "run": _link(row, experiment_id), "overlay": _figure_link(row, experiment_id)} for row in rows]
    lines += ["", to_markdown(columns, table), "Full table, figures and the C2ST between the runs' posteriors: "
              "`comparison/` (Artifacts tab)."]
    return "\n".join(lines) + "\n"


def _link(row: Mapping[str, Any], experiment_id: str) -> str:
    """A markdown link to a child run's page in the UI (relative: works on any host)."""
    return f"[{row.get('run_name') or row['run_id']}](#/experiments/{experiment_id}/runs/{row['run_id']})"


def _figure_link(row: Mapping[str, Any], experiment_id: str) -> Optional[str]:
    """A link to the child's recording overlay in the UI's artifact viewer, when it has one."""
    path = row.get("overlay")
    if not path:
        return None
    return f"[traces](#/experiments/{experiment_id}/runs/{row['run_id']}/artifactPath/{path})"
