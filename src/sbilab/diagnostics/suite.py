"""One call that runs every diagnostic: :func:`run_diagnostics`.

Posterior samples for the test set are drawn ONCE (``sample_batched``, chunked over
test points) and shared by SBC, expected coverage, TARP and recovery/contraction.
All randomness is seeded: sampling runs inside ``sbilab.rng.seeded(seed)`` (torch and NumPy)
(so the caller's global RNG stream is left untouched),
TARP reference points use their own generator, C2ST subsampling and classifiers
use ``seed``, and the ECDF band uses a fixed seed.

Pure computation: no MLflow, no Hydra, no files written. The caller logs
``result.metrics`` / ``result.figures`` (artifact path → Figure) /
``result.arrays`` (artifact path → array, save with ``np.save``) /
``result.gates.to_dict()`` (``diagnostics/gates.json``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from matplotlib.figure import Figure

from sbilab.diagnostics.c2st import DEFAULT_C2ST_CLASSIFIER, c2st_score
from sbilab.diagnostics.coverage import CoverageResult, expected_coverage
from sbilab.diagnostics.gates import GateReport, GateThresholds, evaluate_gates
from sbilab.diagnostics.ppc import PPCResult, ppc_distance
from sbilab.diagnostics.recovery import RecoveryResult, recovery_and_contraction, resolve_prior_variance
from sbilab.rng import seeded
from sbilab.diagnostics.sampling import (
    as_float_tensor,
    as_numpy,
    call_with_supported_kwargs,
    drop_nonfinite_rows,
    posterior_log_prob_batched,
    sample_posterior_batched,
    unsampled_points,
)
from sbilab.diagnostics.sbc import SBCResult, run_sbc_on_samples
from sbilab.diagnostics.tarp import TarpResult, run_tarp_on_samples

#: artifact paths of the figures
FIGURE_KEYS = (
    "plots/sbc_ranks.png",
    "plots/sbc_ecdf.png",
    "plots/coverage.png",
    "plots/tarp.png",
    "plots/recovery.png",
    "plots/contraction.png",
)
PPC_FIGURE_KEY = "plots/ppc_statistics.png"


@dataclass
class DiagnosticsResult:
    """Everything :func:`run_diagnostics` computed (plain objects, nothing logged)."""

    metrics: dict[str, float]
    figures: dict[str, Figure]
    arrays: dict[str, np.ndarray]
    gates: GateReport
    timings: dict[str, float]  # seconds per stage, plus "total"
    parameter_names: list[str]
    num_test_points: int  # rows used (after dropping non-finite rows)
    num_dropped: int
    num_posterior_samples: int
    seed: int
    sbc: SBCResult
    coverage: CoverageResult
    tarp: TarpResult
    recovery: RecoveryResult
    ppc: Optional[PPCResult] = None
    observed_samples: Optional[np.ndarray] = None  # [n, D] posterior samples at x_o
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return self.gates.verdict

    def gates_dict(self) -> dict[str, Any]:
        """JSON form of the gates, for ``diagnostics/gates.json``."""
        return self.gates.to_dict()

    def close_figures(self) -> None:
        """Drop the figures (pyplot-free Figures are freed once unreferenced)."""
        for fig in self.figures.values():
            fig.clear()
        self.figures.clear()

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable digest: metrics, gates, timings, counts, notes."""
        return {
            "metrics": {k: (v if np.isfinite(v) else None) for k, v in self.metrics.items()},
            "gates": self.gates.to_dict(),
            "timings": dict(self.timings),
            "num_test_points": self.num_test_points,
            "num_dropped": self.num_dropped,
            "num_posterior_samples": self.num_posterior_samples,
            "seed": self.seed,
            "notes": list(self.notes),
        }


def _log_prob_at_observation(posterior: Any, theta_o: torch.Tensor, x_o: torch.Tensor) -> tuple[float, str]:
    """``log q(θ_o | x_o)``: normalised ``log_prob`` when available, else unnormalised batched."""
    if hasattr(posterior, "log_prob"):
        lp = call_with_supported_kwargs(posterior.log_prob, theta_o[None], x=x_o)
        return float(as_float_tensor(lp).reshape(-1)[0]), "log_prob"
    lp = call_with_supported_kwargs(
        posterior.log_prob_batched, theta_o[None, None], x=x_o[None], norm_posterior=False
    )
    return float(as_float_tensor(lp).reshape(-1)[0]), "log_prob_batched(norm_posterior=False)"


def run_diagnostics(
    posterior: Any,
    test_theta: Any,
    test_x: Any,
    *,
    parameter_names: Optional[Sequence[str]] = None,
    prior_samples: Optional[Any] = None,
    prior_variance: Optional[Any] = None,
    num_posterior_samples: int = 1000,
    thresholds: Union[GateThresholds, Mapping[str, Any], None] = None,
    seed: int = 0,
    x_o: Optional[Any] = None,
    theta_o: Optional[Any] = None,
    predictive_x: Optional[Any] = None,
    statistic_names: Optional[Sequence[str]] = None,
    reference_samples: Optional[Any] = None,
    observed_samples: Optional[Any] = None,
    num_observed_samples: Optional[int] = None,
    c2st_classifier: str = DEFAULT_C2ST_CLASSIFIER,
    c2st_max_samples: int = 2000,
    confidence: float = 0.99,
    coverage_levels: int = 101,
    tarp_num_bins: Optional[int] = None,
    chunk_size: Optional[int] = None,
    make_figures: bool = True,
) -> DiagnosticsResult:
    """Run SBC, expected coverage, TARP, recovery/contraction (+ PPC, C2ST, log-prob at θ*).

    Args:
        posterior: sbi posterior or duck type with ``sample_batched((S,), x=xs)``,
            ``log_prob_batched(theta[S,N,D], x=xs, norm_posterior=False)`` and (for the
            observation) ``sample((n,), x=x_o)`` / ``log_prob(theta, x=x_o)``.
        test_theta, test_x: held-out pairs ``[N, D]`` / ``[N, d]``; rows with NaN/Inf are dropped.
        parameter_names: names used in metric keys (default ``theta_0..``).
        prior_samples / prior_variance: for the contraction (fallback: variance of test θ).
        num_posterior_samples: S, samples per test point (shared by every diagnostic).
        thresholds: gate thresholds (:class:`GateThresholds` or mapping).
        seed: seeds sampling, TARP references and C2ST.
        x_o, theta_o: observation and (if known) its true parameters.
        predictive_x: ``[M, d]`` summaries simulated from posterior draws at ``x_o`` (PPC).
        statistic_names: names of the ``d`` statistics (PPC figure).
        reference_samples: reference posterior samples at ``x_o`` (C2ST).
        observed_samples: posterior samples at ``x_o`` already drawn by the caller
            (reused for C2ST instead of drawing ``num_observed_samples``).
        chunk_size: test points per ``sample_batched`` / ``log_prob_batched`` call
            (default: about 50k samples per call).
        make_figures: set False to skip all figures (metrics/arrays/gates only).
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []

    def lap(name: str, t0: float) -> float:
        now = time.perf_counter()
        timings[name] = now - t0
        return now

    clean = drop_nonfinite_rows(test_theta, test_x)
    theta, x = clean.theta, clean.x
    n, d = theta.shape
    names = list(parameter_names) if parameter_names is not None else [f"theta_{j}" for j in range(d)]
    if len(names) != d:
        raise ValueError(f"{len(names)} parameter names for {d} parameters")
    if clean.num_dropped:
        notes.append(f"dropped {clean.num_dropped} non-finite test rows")
    if n < 100:
        notes.append(f"only {n} test points: calibration diagnostics are noisy")

    # ---- sample once, evaluate log-probs once ----------------------------------------
    t = time.perf_counter()
    with seeded(seed):
        samples = sample_posterior_batched(posterior, x, num_posterior_samples, chunk_size=chunk_size)
        missing = unsampled_points(samples)
        if missing.any():  # the flow leaks (almost) all its mass out of the prior there
            keep = ~missing
            notes.append(f"{int(missing.sum())} test points dropped: too few posterior samples inside the prior")
            warnings.warn(f"diagnostics: {notes[-1]}", stacklevel=2)
            samples, theta, x = samples[:, keep], theta[keep], x[keep]
            clean.indices = clean.indices[keep.numpy()]
            clean.num_dropped += int(missing.sum())
            n = theta.shape[0]
        t = lap("sampling", t)
        lp_samples = posterior_log_prob_batched(posterior, samples, x, chunk_size=chunk_size)
        lp_true = posterior_log_prob_batched(posterior, theta[None], x, chunk_size=chunk_size)[0]
    t = lap("log_prob", t)

    sbc = run_sbc_on_samples(samples, theta, names)
    t = lap("sbc", t)
    coverage = expected_coverage(lp_samples, lp_true, num_levels=coverage_levels)
    t = lap("coverage", t)
    tarp = run_tarp_on_samples(samples, theta, seed=seed + 1, num_bins=tarp_num_bins)
    t = lap("tarp", t)
    prior_var, var_source = resolve_prior_variance(
        d, prior_variance=prior_variance, prior_samples=prior_samples, fallback_theta=theta
    )
    if var_source == "test_theta":
        notes.append("prior variance estimated from the test theta (no prior_variance/prior_samples)")
    recovery = recovery_and_contraction(
        samples, theta, prior_variance=prior_var, prior_variance_source=var_source, parameter_names=names
    )
    t = lap("recovery", t)
    del samples, lp_samples

    metrics: dict[str, float] = {}
    metrics.update(sbc.metrics())
    metrics.update(coverage.metrics())
    metrics.update(tarp.metrics())
    metrics["diagnostics/num_test_points"] = float(n)
    metrics["diagnostics/dropped_test_points"] = float(clean.num_dropped)

    arrays: dict[str, np.ndarray] = {
        "diagnostics/sbc_ranks.npy": sbc.ranks,
        "diagnostics/coverage_curve.npy": coverage.curve,
        "diagnostics/coverage_credibility.npy": coverage.credibility,
        "diagnostics/tarp_ecp.npy": tarp.ecp,
        "diagnostics/tarp_alpha.npy": tarp.alpha,
        "diagnostics/posterior_means.npy": recovery.posterior_means,
        "diagnostics/posterior_stds.npy": recovery.posterior_stds,
        "diagnostics/z_scores.npy": recovery.z_scores,
        "diagnostics/contraction.npy": recovery.contraction,
        "diagnostics/test_theta.npy": recovery.true_theta,
        "diagnostics/test_indices.npy": clean.indices.astype(np.int64),
        "diagnostics/logprob_test_theta.npy": lp_true.double().numpy(),
    }

    # ---- at the observation ----------------------------------------------------------
    ppc: Optional[PPCResult] = None
    obs_samples: Optional[np.ndarray] = None
    if x_o is not None:
        x_o_t = as_float_tensor(x_o)
        if theta_o is not None:
            with seeded(seed + 2):
                lp_o, how = _log_prob_at_observation(posterior, as_float_tensor(theta_o).reshape(-1), x_o_t)
            metrics["posterior/logprob_true_theta"] = lp_o
            if how != "log_prob":
                notes.append(f"posterior/logprob_true_theta is unnormalised ({how})")
        if reference_samples is not None:
            ref = as_float_tensor(reference_samples)
            if observed_samples is not None:
                obs = as_float_tensor(observed_samples)
            else:
                n_obs = num_observed_samples or min(len(ref), c2st_max_samples)
                with seeded(seed + 3):
                    obs = call_with_supported_kwargs(
                        posterior.sample, (n_obs,), x=x_o_t, show_progress_bars=False
                    )
                obs = as_float_tensor(obs).reshape(n_obs, -1)
            obs_samples = obs.double().numpy()
            metrics["c2st"] = c2st_score(
                obs, ref, seed=seed, classifier=c2st_classifier, max_samples=c2st_max_samples
            )
            arrays["diagnostics/observed_posterior_samples.npy"] = obs_samples
        if predictive_x is not None:
            ppc = ppc_distance(predictive_x, x_o_t, statistic_names=statistic_names)
            metrics.update(ppc.metrics())
            arrays["diagnostics/ppc_scaled_deviation.npy"] = ppc.scaled_deviation
            arrays["diagnostics/ppc_tail_probability.npy"] = ppc.tail_probability
    elif any(v is not None for v in (theta_o, predictive_x, reference_samples)):
        warnings.warn("run_diagnostics: theta_o/predictive_x/reference_samples need x_o; ignored", stacklevel=2)
        notes.append("theta_o/predictive_x/reference_samples ignored: no x_o")
    t = lap("observation", t)

    gates = evaluate_gates(metrics, thresholds)

    figures: dict[str, Figure] = {}
    if make_figures:
        from sbilab.plots import diagnostics as dplots

        figures["plots/sbc_ranks.png"] = dplots.plot_sbc_ranks(
            sbc.ranks, num_posterior_samples, names, confidence=confidence
        )
        figures["plots/sbc_ecdf.png"] = dplots.plot_sbc_ecdf(
            sbc.ranks, num_posterior_samples, names, confidence=confidence
        )
        figures["plots/coverage.png"] = dplots.plot_coverage(
            coverage.nominal, coverage.empirical, n, error=coverage.error, confidence=confidence
        )
        figures["plots/tarp.png"] = dplots.plot_tarp(tarp.ecp, tarp.alpha, atc=tarp.atc, ks_pvalue=tarp.ks_pvalue)
        figures["plots/recovery.png"] = dplots.plot_recovery(
            recovery.true_theta,
            recovery.posterior_means,
            names,
            posterior_stds=recovery.posterior_stds,
            r2=recovery.r2,
            nrmse=recovery.nrmse,
        )
        figures["plots/contraction.png"] = dplots.plot_contraction(recovery.contraction, recovery.z_scores, names)
        if ppc is not None:
            figures[PPC_FIGURE_KEY] = dplots.plot_ppc_statistics(
                as_numpy(predictive_x), ppc.x_o, ppc.statistic_names, scaled_deviation=ppc.scaled_deviation
            )
    t = lap("figures", t)
    timings["total"] = time.perf_counter() - t_start

    return DiagnosticsResult(
        metrics=metrics,
        figures=figures,
        arrays=arrays,
        gates=gates,
        timings=timings,
        parameter_names=names,
        num_test_points=n,
        num_dropped=clean.num_dropped,
        num_posterior_samples=int(num_posterior_samples),
        seed=int(seed),
        sbc=sbc,
        coverage=coverage,
        tarp=tarp,
        recovery=recovery,
        ppc=ppc,
        observed_samples=obs_samples,
        notes=notes,
    )
