"""Pass/fail gates over the diagnostic metrics.

The verdict has a stated false-alarm level (``family_level``, 0.05): the statistical gates (every SBC
p-value, the L-C2ST p-values, the coverage errors as Kolmogorov–Smirnov statistics) are tested together
by a weighted Holm step-down (half of the weight on L-C2ST at x_o), so a calibrated posterior fails any
of them with probability at most 0.05 however many parameters it has (:func:`evaluate_gates`). With
``family_level: null`` each gate applies its own threshold below, as it did before the family level existed.

Defaults: every ``sbc/ks_pvalue/*`` ≥ 0.01, ``|tarp/atc|`` ≤ 0.05,
``coverage/error`` ≤ 0.05, ``c2st`` ≤ 0.6, every ``coverage/central_error/*`` ≤ 0.05 and
the L-C2ST p-values at the observation (``lc2st/pvalue``, ``lc2st/nf_pvalue``) ≥ 0.01
(only when the metric exists). Optional gates (off by default): ``tarp/ks_pvalue`` ≥ x,
``ppc/distance`` ≤ x, every ``sbc/log_gamma/*`` ≥ x. A threshold set to ``None`` disables
its gate. A gated metric that is missing is skipped (c2st, ppc and L-C2ST only apply with a
reference / an observation), but one that is present and NaN fails.

The L-C2ST p-value is ``(1 + #null >= statistic) / (T + 1)`` over ``diagnostics.lc2st.num_trials_null``
= T null classifiers: never 0, so its level holds; at the default T = 100 it reaches 0.0099, below its
level in the family (0.05 × 1/4 for two variants).

With ``family_level: null`` the coverage gates' thresholds are raised to the 99 % Kolmogorov–Smirnov
critical value for ``diagnostics/num_test_points`` points (0.052 at 1,000, 0.16 at 100), the deviation an
exactly calibrated posterior still reaches in 1 % of test sets; in the family they are raised to the
critical value at their Holm level. ``gates.json`` records the threshold applied.

``GateReport.to_dict()`` is the JSON form written to ``diagnostics/gates.json``;
non-finite values are stored as ``null``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional, Union

from sbilab.settings import setting

NUMBER_OR_NULL = "a number, or null to switch the gate off"

SBC_PREFIX = "sbc/ks_pvalue/"


@dataclass
class GateThresholds:
    sbc_ks_pvalue_min: Optional[float] = setting(0.01, NUMBER_OR_NULL)
    tarp_atc_abs_max: Optional[float] = setting(0.05, NUMBER_OR_NULL)
    coverage_error_max: Optional[float] = setting(0.05, NUMBER_OR_NULL)
    c2st_max: Optional[float] = setting(0.6, NUMBER_OR_NULL)
    tarp_ks_pvalue_min: Optional[float] = setting(None, NUMBER_OR_NULL)
    ppc_distance_max: Optional[float] = setting(None, NUMBER_OR_NULL)
    lc2st_pvalue_min: Optional[float] = setting(0.01, NUMBER_OR_NULL)
    coverage_central_error_max: Optional[float] = setting(0.05, NUMBER_OR_NULL)
    sbc_log_gamma_min: Optional[float] = setting(None, NUMBER_OR_NULL)
    #: the verdict's false-alarm level for a calibrated posterior, over all statistical gates together (Holm)
    family_level: Optional[float] = setting(0.05, "a level in (0, 0.5], or null: each gate at its own threshold")

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
        level = values.get("family_level")
        if level is not None and not 0 < float(level) <= 0.5:
            raise ValueError(f"diagnostics.thresholds.family_level={level}: allowed: a level in (0, 0.5], or null")
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
    #: what the verdict's false-alarm rate is (shown in the run's description)
    level: str = ""

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
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "checks": [c.to_dict() for c in self.checks],
            "thresholds": self.thresholds.to_dict(),
        }
        if self.level:
            out["level"] = self.level
        return out

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GateReport":
        return cls(
            checks=[GateCheck.from_dict(c) for c in d.get("checks", [])],
            thresholds=GateThresholds.from_mapping(d.get("thresholds")),
            level=str(d.get("level", "")),
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


#: (metric name, or a prefix ending in "/" for one metric per parameter; threshold field; comparison),
#: in the order the checks are reported
RULES: tuple[tuple[str, str, str], ...] = (
    (SBC_PREFIX, "sbc_ks_pvalue_min", ">="),
    ("tarp/atc", "tarp_atc_abs_max", "abs<="),
    ("coverage/error", "coverage_error_max", "<="),
    ("c2st", "c2st_max", "<="),
    ("tarp/ks_pvalue", "tarp_ks_pvalue_min", ">="),
    ("ppc/distance", "ppc_distance_max", "<="),
    ("lc2st/pvalue", "lc2st_pvalue_min", ">="),
    ("lc2st/nf_pvalue", "lc2st_pvalue_min", ">="),
    ("coverage/central_error/", "coverage_central_error_max", "<="),
    ("sbc/log_gamma/", "sbc_log_gamma_min", ">="),
)
#: gates whose threshold is raised to what the number of test points can resolve
COVERAGE_GATES = ("coverage/error", "coverage/central_error/")


#: gates whose metric is a p-value under "the posterior is calibrated"
PVALUE_GATES = (SBC_PREFIX, "lc2st/pvalue", "lc2st/nf_pvalue", "tarp/ks_pvalue")


def evaluate_gates(
    metrics: Mapping[str, float],
    thresholds: Union[GateThresholds, Mapping[str, Any], None] = None,
) -> GateReport:
    """Check ``metrics`` (names as produced by ``compute_diagnostics``) against thresholds.

    With ``family_level`` α (the default, 0.05) the statistical gates are one family: the p-value gates
    and the coverage gates (whose error is a Kolmogorov–Smirnov statistic over the test points, so it has
    a p-value) are tested together by Holm's step-down at α. A calibrated posterior then fails any of them
    with probability at most α, however many there are. A p-value gate fails when Holm rejects it; a
    coverage gate fails when Holm rejects it *and* its error exceeds its threshold (a tolerance for
    errors too small to matter). The other gates (c2st, TARP's ATC, ppc) are quality thresholds and
    keep their own. ``family_level: null``: every gate at its own threshold, as before.
    """
    th = thresholds if isinstance(thresholds, GateThresholds) else GateThresholds.from_mapping(thresholds)
    checks: list[GateCheck] = []
    num_points = metrics.get("diagnostics/num_test_points")
    for name, field_name, comparison in RULES:
        threshold = getattr(th, field_name)
        if threshold is None:
            continue
        if name in COVERAGE_GATES and num_points:
            threshold = max(threshold, coverage_noise_floor(int(num_points)))
        names = sorted(k for k in metrics if k.startswith(name)) if name.endswith("/") else [name]
        checks.extend(_check(k, metrics[k], threshold, comparison) for k in names if k in metrics)
    if th.family_level is None:
        return GateReport(checks=checks, thresholds=th, level="each gate at its own threshold (no family-wise level)")
    return _holm_family(checks, th, int(num_points) if num_points else None)


def _family_pvalue(check: GateCheck, num_points: Optional[int]) -> Optional[float]:
    """The p-value a statistical gate tests (None: not in the family)."""
    if check.name.startswith(PVALUE_GATES):
        return check.value
    if check.name.startswith(COVERAGE_GATES) and num_points and math.isfinite(check.value):
        from scipy.stats import kstwo

        return float(kstwo.sf(abs(check.value), num_points))
    return None


#: the local gates at x_o (L-C2ST): half of the family's weight, so that their coarse permutation p-values
#: (multiples of 1/(T + 1)) can reach their level; the gates over the prior share the other half
LOCAL_GATES = ("lc2st/",)


def _weights(checks: list[GateCheck], family: list[int]) -> dict[int, float]:
    """Weights summing to 1: the local gates share 1/2 when there are any, the others the rest, equally."""
    local = [i for i in family if checks[i].name.startswith(LOCAL_GATES)]
    others = [i for i in family if i not in local]
    local_share = 0.5 if local and others else (1.0 if local else 0.0)
    weights = {i: local_share / len(local) for i in local}
    weights.update({i: (1.0 - local_share) / len(others) for i in others})
    return weights


def _holm_family(checks: list[GateCheck], th: GateThresholds, num_points: Optional[int]) -> GateReport:
    """Re-decide the statistical checks by weighted Holm at ``th.family_level``; keep the others.

    Weighted Holm (Holm 1979): order the hypotheses by p/w; while rejecting, the next is rejected when
    p <= α · w / (the weight not yet rejected). The family-wise error stays <= α for any weights.
    """
    alpha = float(th.family_level)
    p_values = {i: p for i, c in enumerate(checks) if (p := _family_pvalue(c, num_points)) is not None}
    weights = _weights(checks, list(p_values))
    order = sorted(p_values, key=lambda i: (p_values[i] / weights[i]) if math.isfinite(p_values[i]) else -1.0)
    remaining, rejecting, ratio = 1.0, True, 0.0
    for index in order:
        p_value, weight = p_values[index], weights[index]
        if rejecting:
            ratio = alpha / remaining  # level per unit weight at this step
            rejecting = not math.isfinite(p_value) or p_value <= ratio * weight
            remaining -= weight if rejecting else 0.0
        # after the first acceptance every later check is judged at that step's ratio: its margin agrees
        level = ratio * weight
        check = checks[index]
        if check.name.startswith(COVERAGE_GATES):
            from scipy.stats import kstwo

            tolerance = th.coverage_error_max if check.name == "coverage/error" else th.coverage_central_error_max
            critical = float(kstwo.isf(level, num_points))
            checks[index] = GateCheck(check.name, check.value, max(tolerance, critical), check.comparison,
                                      passed=not (rejecting and check.value > tolerance))
        else:
            checks[index] = GateCheck(check.name, check.value, level, check.comparison, passed=not rejecting)
    local = sum(checks[i].name.startswith(LOCAL_GATES) for i in p_values)
    weighting = ", half the weight on L-C2ST at x_o" if local else ""
    described = (f"family-wise {alpha:g}: a calibrated posterior fails any of the {len(p_values)} statistical gates "
                 f"with probability <= {alpha:g} (weighted Holm{weighting}); "
                 "c2st, TARP's ATC and ppc are quality thresholds")
    return GateReport(checks=checks, thresholds=th, level=described)


def coverage_noise_floor(num_test_points: int, confidence: float = 0.99) -> float:
    """Largest coverage error a calibrated posterior shows with probability ``confidence`` (KS critical value)."""
    from scipy.stats import kstwo

    return float(kstwo.ppf(confidence, max(int(num_test_points), 1)))


@dataclass(frozen=True)
class InUse:
    """What a run already uses, so that the advice after failed gates does not suggest it again."""

    model: str = ""  # the estimator's sbi model (``estimator.model``: an nsf_wide is an nsf too)
    ensemble_size: int = 1
    stops_on_validation: bool = False  # trains until its held-out loss stops falling (no epoch cap)
    hidden_features: Optional[int] = None  # the estimator's width, where it has one
    #: ``recipe=auto`` chose the estimators, the mixture and the training (its own next step is printed instead)
    recipe: bool = False


#: what the posterior got wrong, by the kind of gate that failed (the first kind among the worst failures speaks)
SYMPTOM = {
    "c2st": "the posterior is far from the reference",
    "lc2st": "the posterior is off at this observation",
    "calibration": "the posterior is miscalibrated over {domain}",
}


def remedies(kind: str, in_use: InUse) -> list[str]:
    """What usually helps a failed gate of ``kind``, leaving out what the run already does."""
    more = ("more simulations near it (simulation.num_simulations=...)" if kind == "lc2st"
            else "more simulations (simulation.num_simulations=...)")
    found = [more]
    if in_use.recipe:  # trainer.* and estimator=... are not what a recipe run trains with
        return found
    if kind != "c2st" and in_use.ensemble_size < 5:
        found.append("a posterior ensemble (trainer.ensemble_size=5, wider where members disagree)")
    if in_use.model == "nsf":
        found.append(f"a wider network (estimator.hidden_features={2 * (in_use.hidden_features or 50)})")
    else:
        found.append("another estimator (estimator=nsf)")
    if kind != "lc2st" and not in_use.stops_on_validation:
        found.append("a training that stops on the validation loss (trainer=default)")
    return found


def margin(check: GateCheck) -> float:
    """How far a check is on the wrong side of its threshold, relative to it (NaN: infinitely far)."""
    if not math.isfinite(check.value):
        return math.inf
    value = abs(check.value) if check.comparison == "abs<=" else check.value
    gap = check.threshold - value if check.comparison == ">=" else value - check.threshold
    return gap / max(abs(check.threshold), 1e-12)


def rule_text(check: GateCheck) -> str:
    """``needs |value| <= 0.05`` style: the rule a check applies."""
    value = "|value|" if check.comparison == "abs<=" else "value"
    return f"needs {value} {'>=' if check.comparison == '>=' else '<='} {check.threshold:.3g}"


def worst_failures(report: GateReport, limit: int = 3) -> list[GateCheck]:
    """The failed checks furthest from their thresholds, worst first."""
    return sorted(report.failed, key=margin, reverse=True)[:limit]


def explain_failures(report: GateReport, limit: int = 3, domain: str = "the prior",
                     in_use: InUse = InUse()) -> list[str]:
    """Lines for the terminal: the worst failed gates (value, rule, margin), then what usually helps.

    ``domain``: where the test set was drawn (a truncated sequential run is calibrated on its region).
    ``in_use``: what the run already does (left out of the advice)."""
    failed = worst_failures(report, limit)
    if not failed:
        return []
    lines = [f"{len(report.failed)} of {len(report.checks)} gates failed; worst:"]
    for check in failed:
        beyond = "value is NaN" if not math.isfinite(check.value) else f"{margin(check):.0%} beyond"
        lines.append(f"  {check.name} = {check.value:.3g} ({rule_text(check)}; {beyond})")
    kind = failed[0].name.split("/")[0]
    kind = kind if kind in SYMPTOM else "calibration"  # SBC, coverage, TARP, ppc: the posterior's calibration
    found = remedies(kind, in_use)
    helps = f"{', '.join(found[:-1])} or {found[-1]}" if len(found) > 1 else found[0]
    lines.append(f"what usually helps: {SYMPTOM[kind].format(domain=domain)}: {helps}")
    if report.level:
        lines.append(f"the verdict's level: {report.level}")
    return lines
