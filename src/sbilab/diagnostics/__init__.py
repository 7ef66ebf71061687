"""Posterior diagnostics: pure computation and figures (no MLflow, no Hydra).

Entry point: :func:`run_diagnostics` draws posterior samples once for a held-out test
set and computes SBC, expected HPD coverage, TARP, recovery/contraction, and — at an
observation — PPC distance, C2ST against reference samples and the log-prob of the
true parameters; then evaluates pass/fail gates.

Metric names: ``sbc/ks_pvalue/<param>``, ``coverage/error``, ``tarp/atc``,
``tarp/ks_pvalue``, ``ppc/distance``, ``c2st``, ``posterior/logprob_true_theta``.
"""

from sbilab.diagnostics.c2st import DEFAULT_C2ST_CLASSIFIER, c2st_score
from sbilab.diagnostics.coverage import (
    CoverageResult,
    coverage_band,
    coverage_from_ranks,
    expected_coverage,
    hpd_ranks,
)
from sbilab.diagnostics.gates import GateCheck, GateReport, GateThresholds, evaluate_gates
from sbilab.diagnostics.ppc import PPCResult, ppc_distance
from sbilab.diagnostics.recovery import (
    RecoveryResult,
    posterior_moments,
    recovery_and_contraction,
    resolve_prior_variance,
)
from sbilab.diagnostics.sampling import (
    CleanTestSet,
    drop_nonfinite_rows,
    posterior_log_prob_batched,
    sample_posterior_batched,
)
from sbilab.diagnostics.sbc import (
    EcdfBand,
    SBCResult,
    discrete_uniform_ks,
    ecdf_simultaneous_band,
    run_sbc_on_samples,
    sbc_ranks,
)
from sbilab.diagnostics.suite import FIGURE_KEYS, PPC_FIGURE_KEY, DiagnosticsResult, run_diagnostics
from sbilab.diagnostics.tarp import TarpResult, run_tarp_on_samples

__all__ = [
    "DEFAULT_C2ST_CLASSIFIER",
    "FIGURE_KEYS",
    "PPC_FIGURE_KEY",
    "CleanTestSet",
    "CoverageResult",
    "DiagnosticsResult",
    "EcdfBand",
    "GateCheck",
    "GateReport",
    "GateThresholds",
    "PPCResult",
    "RecoveryResult",
    "SBCResult",
    "TarpResult",
    "c2st_score",
    "coverage_band",
    "coverage_from_ranks",
    "discrete_uniform_ks",
    "drop_nonfinite_rows",
    "ecdf_simultaneous_band",
    "evaluate_gates",
    "expected_coverage",
    "hpd_ranks",
    "posterior_log_prob_batched",
    "posterior_moments",
    "ppc_distance",
    "recovery_and_contraction",
    "resolve_prior_variance",
    "run_diagnostics",
    "run_sbc_on_samples",
    "run_tarp_on_samples",
    "sample_posterior_batched",
    "sbc_ranks",
]
