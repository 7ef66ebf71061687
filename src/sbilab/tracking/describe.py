"""What a run says about itself in the UI: its description, and its gates as plain numbers.

The description (MLflow's ``mlflow.note.content`` tag, rendered as markdown on the run
page) leads with the verdict and a table of the gate checks; ``gates/pass`` (1 or 0) and
``gates/margin/<gate>`` (positive: passed by that much) let the UI's charts group, colour
and sort runs by calibration. Both are built from the JSON form of the gates
(``diagnostics/gates.json``: ``verdict``, ``checks`` of name/value/threshold/comparison/
passed) without knowing which gates exist, so new gates and flags need no change here.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from sbilab.tracking.runs import RunRecorder

#: MLflow's tag for the markdown description of a run or an experiment
DESCRIPTION_TAG = "mlflow.note.content"
#: metrics a description shows under the verdict, when the run has them
HEADLINE_METRICS = ("val/loss_best", "c2st", "tarp/atc", "coverage/error", "posterior/true_theta_hpd_level",
                    "train/epochs")
#: keys of the gates JSON that are not extra flags
_GATE_KEYS = ("verdict", "checks", "thresholds")
#: how each comparison of a gate check reads, and its margin (positive when the check passes)
_RULES = {
    ">=": ("≥", lambda value, threshold: value - threshold),
    "<=": ("≤", lambda value, threshold: threshold - value),
    "abs<=": ("abs ≤", lambda value, threshold: threshold - abs(value)),
}


def gate_margin(check: Mapping[str, Any]) -> Optional[float]:
    """How far a check's value lies on the passing side of its threshold (None: not a number)."""
    rule = _RULES.get(str(check.get("comparison")))
    value, threshold = _number(check.get("value")), _number(check.get("threshold"))
    if rule is None or value is None or threshold is None:
        return None
    return float(rule[1](value, threshold))


def gate_metrics(gates: Mapping[str, Any]) -> dict[str, float]:
    """``gates/pass`` (1/0), ``gates/failed`` (how many checks failed) and ``gates/margin/<gate>`` per check."""
    checks = list(gates.get("checks", []))
    metrics = {"gates/pass": 1.0 if gates.get("verdict") == "pass" else 0.0,
               "gates/failed": float(sum(not check.get("passed") for check in checks))}
    for check in checks:
        margin = gate_margin(check)
        if margin is not None:
            metrics[f"gates/margin/{check['name']}"] = margin
    return metrics


def gates_markdown(gates: Mapping[str, Any]) -> str:
    """The verdict in bold, what failed, one table row per check, then any other flags of the gates."""
    checks = list(gates.get("checks", []))
    failed = [str(check.get("name")) for check in checks if not check.get("passed")]
    verdict = str(gates.get("verdict", "?")).upper()
    lines = [f"**Calibration gates: {verdict}**"
             + (f" ({len(failed)} of {len(checks)} checks failed: {', '.join(failed)})" if failed
                else f" (all {len(checks)} checks passed)")]
    if checks:
        lines += ["", "| gate | value | rule | margin | result |", "|---|---:|---|---:|---|"]
        for check in checks:
            rule = _RULES.get(str(check.get("comparison")), (str(check.get("comparison")), None))[0]
            cells = [str(check.get("name")), _format(check.get("value")), f"{rule} {_format(check.get('threshold'))}",
                     _format(gate_margin(check)), "pass" if check.get("passed") else "**fail**"]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    flags = {key: value for key, value in gates.items()
             if key not in _GATE_KEYS and not isinstance(value, (dict, list))}
    if flags:
        lines += [""] + [f"- {key}: **{_format(value)}**" for key, value in flags.items()]
    return "\n".join(lines) + "\n"


def run_description(gates: Optional[Mapping[str, Any]], metrics: Mapping[str, float],
                    notes: Sequence[str] = (), warnings: Sequence[str] = ()) -> str:
    """A run's markdown description: the gates (or that none ran), warnings (e.g. a misspecified
    observation), the headline metrics it has, notes."""
    parts = [gates_markdown(gates) if gates is not None else
             "**Calibration gates: not run** (no calibration diagnostics in this run)\n"]
    parts += [f"**WARNING:** {warning}\n" for warning in warnings]
    shown = [f"{name} **{_format(metrics[name])}**" for name in HEADLINE_METRICS if name in metrics]
    if shown:
        parts.append(" · ".join(shown) + "\n")
    if notes:
        parts.append("\n".join(f"> {note}" for note in notes) + "\n")
    parts.append("Figures under `plots/`, raw diagnostics under `diagnostics/` (Artifacts tab).\n")
    return "\n".join(parts)


def set_description(recorder: RunRecorder, markdown: str) -> None:
    """Show ``markdown`` as the run's description (the Overview tab, and the runs table's tooltip)."""
    recorder.set_tags({DESCRIPTION_TAG: markdown})


def _number(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value).lower()
    number = _number(value)
    if number is None:
        return "nan" if isinstance(value, float) else str(value)
    return f"{number:.4g}"
