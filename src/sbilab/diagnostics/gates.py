"""Pass/fail gates over the diagnostic metrics.

Defaults: every ``sbc/ks_pvalue/*`` ≥ 0.01, ``|tarp/atc|`` ≤ 0.05,
``coverage/error`` ≤ 0.05, ``c2st`` ≤ 0.6 (only when the metric exists). Optional
gates (off by default): ``tarp/ks_pvalue`` ≥ x, ``ppc/distance`` ≤ x. A threshold set
to ``None`` disables its gate. A gated metric that is missing is skipped (c2st and ppc
only apply with a reference / observation), but one that is present and NaN fails.

The coverage gate never asks for more than the test set can show: its threshold is
raised to the 99 % Kolmogorov–Smirnov critical value for ``diagnostics/num_test_points``
points (0.052 at 1,000, 0.16 at 100), the deviation an exactly calibrated posterior
still reaches in 1 % of test sets. ``gates.json`` records the threshold applied.

``GateReport.to_dict()`` is the JSON form written to ``diagnostics/gates.json``;
non-finite values are stored as ``null``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional, Union

SBC_PREFIX = "sbc/ks_pvalue/"


@dataclass
class GateThresholds:
    sbc_ks_pvalue_min: Optional[float] = 0.01
    tarp_atc_abs_max: Optional[float] = 0.05
    coverage_error_max: Optional[float] = 0.05
    c2st_max: Optional[float] = 0.6
    tarp_ks_pvalue_min: Optional[float] = None
    ppc_distance_max: Optional[float] = None

    @classmethod
    def from_mapping(cls, values: Optional[Mapping[str, Any]]) -> "GateThresholds":
        """Build from a (Hydra/OmegaConf or plain) mapping; unknown keys raise."""
        if values is None:
            return cls()
        values = dict(values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown gate thresholds {unknown}; known: {sorted(known)}")
        return cls(**{k: (None if v is None else float(v)) for k, v in values.items()})

    def to_dict(self) -> dict[str, Optional[float]]:
        return asdict(self)


@dataclass
class GateCheck:
    name: str  # the metric name
    value: float
    threshold: float
    comparison: str  # ">=", "<=" or "abs<="
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _json_float(self.value),
            "threshold": _json_float(self.threshold),
            "comparison": self.comparison,
            "passed": bool(self.passed),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GateCheck":
        return cls(
            name=str(d["name"]),
            value=_from_json_float(d["value"]),
            threshold=_from_json_float(d["threshold"]),
            comparison=str(d["comparison"]),
            passed=bool(d["passed"]),
        )


@dataclass
class GateReport:
    checks: list[GateCheck] = field(default_factory=list)
    thresholds: GateThresholds = field(default_factory=GateThresholds)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def verdict(self) -> str:
        """``"pass"`` when every check passed, else ``"fail"``."""
        return "pass" if self.passed else "fail"

    @property
    def failed(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "checks": [c.to_dict() for c in self.checks],
            "thresholds": self.thresholds.to_dict(),
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GateReport":
        return cls(
            checks=[GateCheck.from_dict(c) for c in d.get("checks", [])],
            thresholds=GateThresholds.from_mapping(d.get("thresholds")),
        )

    @classmethod
    def from_json(cls, text: str) -> "GateReport":
        return cls.from_dict(json.loads(text))


def _json_float(v: float) -> Optional[float]:
    v = float(v)
    return v if math.isfinite(v) else None


def _from_json_float(v: Optional[float]) -> float:
    return float("nan") if v is None else float(v)


def _check(name: str, value: float, threshold: float, comparison: str) -> GateCheck:
    value = float(value)
    if not math.isfinite(value):
        ok = False
    elif comparison == ">=":
        ok = value >= threshold
    elif comparison == "<=":
        ok = value <= threshold
    elif comparison == "abs<=":
        ok = abs(value) <= threshold
    else:  # pragma: no cover - internal
        raise ValueError(comparison)
    return GateCheck(name=name, value=value, threshold=float(threshold), comparison=comparison, passed=bool(ok))


def evaluate_gates(
    metrics: Mapping[str, float],
    thresholds: Union[GateThresholds, Mapping[str, Any], None] = None,
) -> GateReport:
    """Check ``metrics`` (names as produced by :func:`run_diagnostics`) against thresholds."""
    th = thresholds if isinstance(thresholds, GateThresholds) else GateThresholds.from_mapping(thresholds)
    checks: list[GateCheck] = []
    if th.sbc_ks_pvalue_min is not None:
        for name in sorted(k for k in metrics if k.startswith(SBC_PREFIX)):
            checks.append(_check(name, metrics[name], th.sbc_ks_pvalue_min, ">="))
    rules = [
        ("tarp/atc", th.tarp_atc_abs_max, "abs<="),
        ("coverage/error", th.coverage_error_max, "<="),
        ("c2st", th.c2st_max, "<="),
        ("tarp/ks_pvalue", th.tarp_ks_pvalue_min, ">="),
        ("ppc/distance", th.ppc_distance_max, "<="),
    ]
    num_points = metrics.get("diagnostics/num_test_points")
    for name, threshold, comparison in rules:
        if name == "coverage/error" and threshold is not None and num_points:
            threshold = max(threshold, coverage_noise_floor(int(num_points)))
        if threshold is not None and name in metrics:
            checks.append(_check(name, metrics[name], threshold, comparison))
    return GateReport(checks=checks, thresholds=th)


def coverage_noise_floor(num_test_points: int, confidence: float = 0.99) -> float:
    """Largest coverage error a calibrated posterior shows with probability ``confidence`` (KS critical value)."""
    from scipy.stats import kstwo

    return float(kstwo.ppf(confidence, max(int(num_test_points), 1)))
