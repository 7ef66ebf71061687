"""Result tables as CSV (full precision) and markdown (rounded, numbers right-aligned)."""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Mapping, Optional, Sequence


def as_number(value: Any) -> Optional[float]:
    """A float for numeric strings and numbers, None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def to_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else (repr(row[c]) if isinstance(row[c], float) else row[c])
                         for c in columns])
    return out.getvalue()


def to_markdown(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    def numeric(column: str) -> bool:
        values = [row.get(column) for row in rows if row.get(column) is not None]
        return bool(values) and all(as_number(v) is not None for v in values)

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |",
             "|" + "|".join("---:" if numeric(c) else "---" for c in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell(_format(row.get(c))) for c in columns) + " |")
    return "\n".join(lines) + "\n"
