"""Posterior diagnostics: pure computation (no figures, no MLflow, no Hydra).

Entry point: :func:`compute_diagnostics` (``DiagnosticsInputs``, ``DiagnosticsSettings``,
``DiagnosticsSeeds``) draws posterior samples once for a held-out test set and computes SBC
(KS, log-gamma), HPD and central-interval coverage, TARP (with a bootstrap interval),
recovery/contraction, and — at an observation — misspecification of x_o, L-C2ST, PPC distance,
C2ST against reference samples and the log-prob of the true parameters; then evaluates
pass/fail gates. Figures: ``sbilab.plots.diagnostics.diagnostic_figures(result)``; the
report: ``sbilab.plots.report.diagnostics_report(result, figures)``.

Metric groups: ``sbc/*``, ``coverage/*``, ``tarp/*``, ``posterior/*``, ``lc2st/*``,
``misspecification/*``, ``ppc/distance``, ``c2st``, ``diagnostics/*``.

Names are imported on first use, so ``sbilab.diagnostics.settings`` (read by the config
checks) stays free of torch and sbi.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name → the module that defines it
_EXPORTS: dict[str, str] = {
    "DEFAULT_C2ST_CLASSIFIER": "c2st",
    "c2st_score": "c2st",
    "CoverageResult": "coverage",
    "coverage_band": "coverage",
    "coverage_from_ranks": "coverage",
    "expected_coverage": "coverage",
    "hpd_ranks": "coverage",
    "TestSetDraws": "draws",
    "draw_test_set": "draws",
    "GateCheck": "gates",
    "GateReport": "gates",
    "GateThresholds": "gates",
    "evaluate_gates": "gates",
    "PPCResult": "ppc",
    "ppc_distance": "ppc",
    "StandardizedDistanceResult": "predictive_distance",
    "standardized_distance": "predictive_distance",
    "RecoveryResult": "recovery",
    "posterior_moments": "recovery",
    "recovery_and_contraction": "recovery",
    "resolve_prior_variance": "recovery",
    "DiagnosticsResult": "result",
    "CleanTestSet": "sampling",
    "drop_nonfinite_rows": "sampling",
    "posterior_log_prob_batched": "sampling",
    "sample_posterior_batched": "sampling",
    "EcdfBand": "sbc",
    "SBCResult": "sbc",
    "discrete_uniform_ks": "sbc",
    "ecdf_simultaneous_band": "sbc",
    "run_sbc_on_samples": "sbc",
    "sbc_ranks": "sbc",
    "DiagnosticsSeeds": "settings",
    "DiagnosticsSettings": "settings",
    "DiagnosticsInputs": "inputs",
    "LC2STResult": "lc2st",
    "MisspecificationResult": "misspecification",
    "check_misspecification": "misspecification",
    "run_lc2st": "lc2st",
    "run_lc2st_nf": "lc2st",
    "CentralCoverageResult": "coverage",
    "central_coverage": "coverage",
    "sbc_log_gamma": "sbc",
    "LC2STSettings": "settings",
    "MisspecificationSettings": "settings",
    "PredictiveDistanceSettings": "settings",
    "compute_diagnostics": "suite",
    "TarpResult": "tarp",
    "run_tarp_on_samples": "tarp",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
