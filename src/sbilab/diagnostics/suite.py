"""One entry for every diagnostic: :func:`compute_diagnostics`.

Sample once (:func:`~sbilab.diagnostics.draws.draw_test_set`), then one small step per
diagnostic on those draws (SBC with KS and log-gamma, HPD and central-interval coverage,
TARP with a bootstrap interval, recovery/contraction), then the checks at the observation
(log-prob of θ*, C2ST, PPC, misspecification, L-C2ST: ``at_observation``), then the gates.
Every random step takes its own seed from :class:`DiagnosticsSeeds`; nothing is derived here.

Misspecification is a finding about x_o, not a gate; when x_o is judged misspecified the
L-C2ST p-values are reported but not gated (a local test at an x_o outside the simulations
says nothing about the estimator).

Pure computation: no MLflow, no Hydra, no files, no figures (``sbilab.plots`` draws them
from the returned :class:`DiagnosticsResult`).
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import numpy as np

from sbilab.diagnostics.at_observation import ObservationChecks, check_observation
from sbilab.diagnostics.coverage import central_coverage, expected_coverage
from sbilab.diagnostics.draws import TestSetDraws, draw_test_set
from sbilab.diagnostics.gates import evaluate_gates
from sbilab.diagnostics.inputs import DiagnosticsInputs
from sbilab.diagnostics.laps import Laps
from sbilab.diagnostics.recovery import RecoveryResult, recovery_and_contraction, resolve_prior_variance
from sbilab.diagnostics.result import DiagnosticsResult
from sbilab.diagnostics.sampling import as_float_tensor
from sbilab.diagnostics.sbc import run_sbc_on_samples
from sbilab.diagnostics.settings import DiagnosticsSeeds, DiagnosticsSettings
from sbilab.diagnostics.tarp import run_tarp_on_samples

#: nominal levels of the saved coverage curve
COVERAGE_LEVELS = 101


def parameter_names(names: Optional[Sequence[str]], num_params: int) -> list[str]:
    """The given names (checked against D) or ``theta_0..theta_{D-1}``."""
    out = list(names) if names is not None else [f"theta_{j}" for j in range(num_params)]
    if len(out) != num_params:
        raise ValueError(f"{len(out)} parameter names for {num_params} parameters")
    return out


def recovery_step(draws: TestSetDraws, names: list[str], inputs: DiagnosticsInputs,
                  notes: list[str]) -> RecoveryResult:
    """Recovery and contraction; notes when the prior variance had to come from the test θ."""
    prior_var, source = resolve_prior_variance(len(names), prior_variance=inputs.prior_variance,
                                               prior_samples=inputs.prior_samples, fallback_theta=draws.theta)
    if source == "test_theta":
        notes.append("prior variance estimated from the test theta (no prior_variance/prior_samples)")
    return recovery_and_contraction(draws.samples, draws.theta, prior_variance=prior_var,
                                    prior_variance_source=source, parameter_names=names)


def compute_diagnostics(
    inputs: DiagnosticsInputs,
    settings: DiagnosticsSettings,
    seeds: DiagnosticsSeeds,
    *,
    chunk_size: Optional[int] = None,
) -> DiagnosticsResult:
    """Every diagnostic that applies to ``inputs``, with ``settings`` and ``seeds``; gates included.

    ``chunk_size``: test points per batched sampling / log-prob call (default about 50k samples).
    """
    laps = Laps()
    num_params = as_float_tensor(inputs.test_theta).reshape(len(inputs.test_theta), -1).shape[1]
    names = parameter_names(inputs.parameter_names, num_params)
    draws = draw_test_set(inputs.posterior, inputs.test_theta, inputs.test_x, settings.num_posterior_samples,
                          seed=seeds.sampling, chunk_size=chunk_size, sampler_budget=settings.sampler_budget,
                          region=inputs.region)
    laps.timings.update(draws.timings)  # "sampling" and "log_prob"
    laps.skip()
    notes = list(draws.notes)

    sbc = run_sbc_on_samples(draws.samples, draws.theta, names)
    laps("sbc")
    coverage = expected_coverage(draws.log_prob_samples, draws.log_prob_true, num_levels=COVERAGE_LEVELS)
    central = central_coverage(sbc.ranks, draws.num_samples, names, num_levels=COVERAGE_LEVELS)
    laps("coverage")
    tarp = run_tarp_on_samples(draws.samples, draws.theta, seed=seeds.tarp, num_bootstrap=settings.tarp_num_bootstrap,
                               bootstrap_seed=seeds.tarp_bootstrap)
    laps("tarp")
    recovery = recovery_step(draws, names, inputs, notes)
    laps("recovery")

    metrics: dict[str, float] = {**sbc.metrics(), **coverage.metrics(), **tarp.metrics(),
                                 "diagnostics/num_test_points": float(draws.num_points),
                                 "diagnostics/dropped_test_points": float(draws.num_dropped),
                                 **central.metrics(), **recovery.metrics(),
                                 **(draws.plan.metrics() if draws.plan is not None else {})}
    arrays: dict[str, np.ndarray] = {
        **sbc.arrays(), **coverage.arrays(), **tarp.arrays(), **recovery.arrays(),
        "diagnostics/test_indices.npy": draws.indices.astype(np.int64),
        "diagnostics/logprob_test_theta.npy": draws.log_prob_true.double().numpy(),
        **central.arrays(),
    }

    observation = ObservationChecks()
    if inputs.x_o is not None:
        observation = check_observation(inputs, settings, seeds, draws, laps, notes)
        metrics.update(observation.metrics)
        arrays.update(observation.arrays)
    else:
        if any(v is not None for v in (inputs.theta_o, inputs.predictive_x, inputs.reference_samples)):
            warnings.warn("diagnostics: theta_o/predictive_x/reference_samples need x_o; ignored", stacklevel=2)
            notes.append("theta_o/predictive_x/reference_samples ignored: no x_o")
        laps("observation")

    gated = metrics
    if observation.misspecification is not None and observation.misspecification.misspecified:
        gated = {k: v for k, v in metrics.items() if not k.startswith("lc2st/")}
        if len(gated) < len(metrics):
            notes.append("x_o is misspecified: the L-C2ST p-values are reported, not gated")
    gates = evaluate_gates(gated, settings.thresholds)
    laps.timings["total"] = laps.total()
    return DiagnosticsResult(
        metrics=metrics, arrays=arrays, gates=gates, timings=laps.timings, parameter_names=names,
        num_test_points=draws.num_points, num_dropped=draws.num_dropped,
        num_posterior_samples=draws.num_samples, seeds=seeds, sbc=sbc, coverage=coverage,
        central_coverage=central, tarp=tarp, recovery=recovery, ppc=observation.ppc, c2st=observation.c2st,
        observed_samples=observation.observed_samples, lc2st=observation.lc2st, lc2st_nf=observation.lc2st_nf,
        misspecification=observation.misspecification, notes=notes,
        cuts=[draws.cut] if draws.cut else [],
    )
