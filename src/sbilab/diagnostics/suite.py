"""One entry for every diagnostic: :func:`compute_diagnostics`.

Sample once (:func:`~sbilab.diagnostics.draws.draw_test_set`), then one small step per
diagnostic on those draws (SBC, expected coverage, TARP, recovery/contraction), then the
checks at the observation (log-prob of θ*, C2ST against reference samples, PPC), then the
gates. Every random step takes its own seed from :class:`DiagnosticsSeeds`; nothing is
derived here.

Pure computation: no MLflow, no Hydra, no files, no figures (``sbilab.plots`` draws them
from the returned :class:`DiagnosticsResult`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from sbilab.diagnostics.at_observation import log_prob_at_observation, sample_at_observation
from sbilab.diagnostics.c2st import DEFAULT_C2ST_CLASSIFIER, c2st_score
from sbilab.diagnostics.coverage import expected_coverage
from sbilab.diagnostics.draws import TestSetDraws, draw_test_set
from sbilab.diagnostics.gates import evaluate_gates
from sbilab.diagnostics.ppc import ppc_distance
from sbilab.diagnostics.recovery import RecoveryResult, recovery_and_contraction, resolve_prior_variance
from sbilab.diagnostics.result import DiagnosticsResult
from sbilab.diagnostics.sampling import as_float_tensor
from sbilab.diagnostics.sbc import run_sbc_on_samples
from sbilab.diagnostics.settings import DiagnosticsSeeds, DiagnosticsSettings
from sbilab.diagnostics.tarp import run_tarp_on_samples

#: nominal levels of the saved coverage curve
COVERAGE_LEVELS = 101


@dataclass
class DiagnosticsInputs:
    """The values the diagnostics read (tensors or arrays; nothing from the config).

    ``posterior``: an sbi posterior, or a duck type with ``sample_batched((S,), x=xs)``,
    ``log_prob_batched(theta[S, N, D], x=xs, norm_posterior=False)`` and, at x_o,
    ``sample((n,), x=x_o)`` / ``log_prob(theta, x=x_o)``. ``test_theta [N, D]`` /
    ``test_x [N, d]``: held-out simulations from the prior (non-finite rows are dropped).
    At the observation ``x_o [d]``: ``theta_o`` (true θ, when known), ``observed_samples``
    (posterior samples already drawn there), ``predictive_x [M, d]`` (summaries simulated
    from posterior draws, for the PPC), ``reference_samples`` (a reference posterior, C2ST).
    ``prior_samples`` / ``prior_variance``: for the contraction (fallback: the test θ).
    """

    posterior: Any
    test_theta: Any
    test_x: Any
    parameter_names: Optional[Sequence[str]] = None
    prior_samples: Optional[Any] = None
    prior_variance: Optional[Any] = None
    x_o: Optional[Any] = None
    theta_o: Optional[Any] = None
    observed_samples: Optional[Any] = None
    predictive_x: Optional[Any] = None
    statistic_names: Optional[Sequence[str]] = None
    reference_samples: Optional[Any] = None


class _Laps:
    """Seconds spent in each named step."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self._last
        self._last = now

    def skip(self) -> None:
        """Start the next step now (time already accounted for elsewhere)."""
        self._last = time.perf_counter()

    def total(self) -> float:
        return time.perf_counter() - self._start


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
    laps = _Laps()
    num_params = as_float_tensor(inputs.test_theta).reshape(len(inputs.test_theta), -1).shape[1]
    names = parameter_names(inputs.parameter_names, num_params)
    draws = draw_test_set(inputs.posterior, inputs.test_theta, inputs.test_x, settings.num_posterior_samples,
                          seed=seeds.sampling, chunk_size=chunk_size)
    laps.timings.update(draws.timings)  # "sampling" and "log_prob"
    laps.skip()
    notes = list(draws.notes)

    sbc = run_sbc_on_samples(draws.samples, draws.theta, names)
    laps("sbc")
    coverage = expected_coverage(draws.log_prob_samples, draws.log_prob_true, num_levels=COVERAGE_LEVELS)
    laps("coverage")
    tarp = run_tarp_on_samples(draws.samples, draws.theta, seed=seeds.tarp)
    laps("tarp")
    recovery = recovery_step(draws, names, inputs, notes)
    laps("recovery")

    metrics: dict[str, float] = {**sbc.metrics(), **coverage.metrics(), **tarp.metrics(),
                                 "diagnostics/num_test_points": float(draws.num_points),
                                 "diagnostics/dropped_test_points": float(draws.num_dropped)}
    arrays: dict[str, np.ndarray] = {
        **sbc.arrays(), **coverage.arrays(), **tarp.arrays(), **recovery.arrays(),
        "diagnostics/test_indices.npy": draws.indices.astype(np.int64),
        "diagnostics/logprob_test_theta.npy": draws.log_prob_true.double().numpy(),
    }

    # ---- at the observation ----------------------------------------------------------
    ppc, c2st, observed = None, None, None
    if inputs.x_o is not None:
        if inputs.theta_o is not None:
            lp_o, how = log_prob_at_observation(inputs.posterior, inputs.theta_o, inputs.x_o,
                                                seed=seeds.observation_log_prob)
            metrics["posterior/logprob_true_theta"] = lp_o
            if how != "log_prob":
                notes.append(f"posterior/logprob_true_theta is unnormalised ({how})")
        if inputs.reference_samples is not None:
            reference = as_float_tensor(inputs.reference_samples)
            if inputs.observed_samples is not None:
                samples = as_float_tensor(inputs.observed_samples)
            else:
                samples = sample_at_observation(inputs.posterior, inputs.x_o,
                                                min(len(reference), settings.num_observation_samples),
                                                seed=seeds.observation_samples)
            observed = samples.double().numpy()
            c2st = c2st_score(samples, reference, seed=seeds.c2st, classifier=DEFAULT_C2ST_CLASSIFIER,
                              max_samples=settings.num_observation_samples)
            metrics["c2st"] = c2st
            arrays["diagnostics/observed_posterior_samples.npy"] = observed
        if inputs.predictive_x is not None:
            ppc = ppc_distance(inputs.predictive_x, as_float_tensor(inputs.x_o),
                               statistic_names=inputs.statistic_names)
            metrics.update(ppc.metrics())
            arrays.update(ppc.arrays())
    elif any(v is not None for v in (inputs.theta_o, inputs.predictive_x, inputs.reference_samples)):
        warnings.warn("diagnostics: theta_o/predictive_x/reference_samples need x_o; ignored", stacklevel=2)
        notes.append("theta_o/predictive_x/reference_samples ignored: no x_o")
    laps("observation")

    gates = evaluate_gates(metrics, settings.thresholds)
    laps.timings["total"] = laps.total()
    return DiagnosticsResult(
        metrics=metrics, arrays=arrays, gates=gates, timings=laps.timings, parameter_names=names,
        num_test_points=draws.num_points, num_dropped=draws.num_dropped,
        num_posterior_samples=settings.num_posterior_samples, seeds=seeds, sbc=sbc, coverage=coverage,
        tarp=tarp, recovery=recovery, ppc=ppc, c2st=c2st, observed_samples=observed, notes=notes,
    )
