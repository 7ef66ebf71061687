"""Diagnostic figures (SBC, coverage, TARP, recovery, contraction, PPC), built from results.

:func:`diagnostic_figures` turns a :class:`~sbilab.diagnostics.DiagnosticsResult` into
``{artifact path: Figure}``; the other functions draw one figure each from plain arrays.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so
nothing is registered with a GUI backend or pyplot's figure manager (no leaks when
many runs are plotted; ``fig.savefig`` and ``mlflow.log_figure`` work directly).
The figures follow BayesFlow's diagnostics (``calibration_histogram``,
``calibration_ecdf(difference=True)``, ``coverage``, ``recovery``,
``z_score_contraction``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from sbilab.diagnostics.coverage import coverage_band
from sbilab.diagnostics.sbc import (
    default_num_bins,
    ecdf_simultaneous_band,
    fractional_ranks,
    rank_histogram_band,
    rank_histogram_bins,
)
from sbilab.plots.local import plot_lc2st_pp, plot_misspecification
from sbilab.plots.style import BAND, LINE, OBSERVED, default_names, panel_grid

if TYPE_CHECKING:
    from sbilab.diagnostics.result import DiagnosticsResult

#: artifact paths of the figures every diagnostics run has
FIGURE_KEYS = (
    "plots/sbc_ranks.png",
    "plots/sbc_ecdf.png",
    "plots/coverage.png",
    "plots/tarp.png",
    "plots/recovery.png",
    "plots/contraction.png",
)
#: the posterior-predictive figure (runs with an observation and a predictive)
PPC_FIGURE_KEY = "plots/ppc_statistics.png"
#: central-interval coverage per parameter
CENTRAL_COVERAGE_FIGURE_KEY = "plots/coverage_central.png"
#: the L-C2ST probability-probability plot at x_o
LC2ST_FIGURE_KEY = "plots/lc2st_pp.png"
#: the misspecification tests' null distributions with x_o marked
MISSPECIFICATION_FIGURE_KEY = "plots/misspecification.png"


def plot_sbc_ranks(
    ranks: np.ndarray,
    num_posterior_samples: int,
    parameter_names: Optional[Sequence[str]] = None,
    *,
    num_bins: Optional[int] = None,
    confidence: float = 0.99,
) -> Figure:
    """SBC rank histograms with the pointwise binomial ``confidence`` band per bin."""
    ranks = np.asarray(ranks)
    n, d = ranks.shape
    names = default_names(parameter_names, d)
    edges = rank_histogram_bins(num_posterior_samples, num_bins or default_num_bins(n, num_posterior_samples))
    expected, lo, hi = rank_histogram_band(n, edges, num_posterior_samples, confidence)
    fig, axes = panel_grid(d)
    step_x = np.repeat(edges, 2)[1:-1]
    for j, ax in enumerate(axes):
        counts, _ = np.histogram(ranks[:, j], bins=edges)
        ax.fill_between(step_x, np.repeat(lo, 2), np.repeat(hi, 2), color=BAND, alpha=0.7, lw=0,
                        label=f"{confidence:.0%} binomial band")
        ax.plot(step_x, np.repeat(expected, 2), color="0.35", lw=1, ls="--")
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=LINE, alpha=0.75,
               edgecolor="white", lw=0.5)
        ax.set_xlim(edges[0], edges[-1])
        ax.set_title(names[j])
        ax.set_xlabel(f"rank (of {num_posterior_samples} samples)")
        ax.set_ylabel("count")
    axes[0].legend(loc="lower center", fontsize=7, frameon=False)
    fig.suptitle(f"SBC rank histograms (N={n})")
    return fig


def plot_sbc_ecdf(
    ranks: np.ndarray,
    num_posterior_samples: int,
    parameter_names: Optional[Sequence[str]] = None,
    *,
    confidence: float = 0.99,
    difference: bool = True,
    num_points: Optional[int] = None,
) -> Figure:
    """Rank ECDF (minus the uniform CDF when ``difference``) with a simultaneous band."""
    ranks = np.asarray(ranks)
    n, d = ranks.shape
    names = default_names(parameter_names, d)
    band = ecdf_simultaneous_band(n, num_points=num_points, confidence=confidence)
    z = band.z
    shift = z if difference else 0.0
    u = np.sort(fractional_ranks(ranks, num_posterior_samples), axis=0)
    fig, axes = panel_grid(d)
    for j, ax in enumerate(axes):
        ecdf = np.searchsorted(u[:, j], z, side="right") / n
        ax.fill_between(z, band.lower - shift, band.upper - shift, color=BAND, alpha=0.7, lw=0,
                        label=f"{confidence:.0%} simultaneous band")
        ax.plot(z, ecdf - shift, color=LINE, lw=1.5, label="rank ECDF")
        if difference:
            ax.axhline(0.0, color="0.35", lw=0.8, ls="--")
        else:
            ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_title(names[j])
        ax.set_xlabel("fractional rank")
        ax.set_ylabel("ECDF difference" if difference else "ECDF")
    axes[0].legend(loc="lower center", fontsize=7, frameon=False)
    fig.suptitle(f"SBC rank ECDF{' difference' if difference else ''} (N={n})")
    return fig


def plot_coverage(
    nominal: np.ndarray,
    empirical: np.ndarray,
    num_test_points: int,
    *,
    error: Optional[float] = None,
    confidence: float = 0.99,
) -> Figure:
    """Expected coverage of HPD regions vs. nominal level, with a pointwise binomial band."""
    nominal = np.asarray(nominal)
    lo, hi = coverage_band(num_test_points, nominal, confidence)
    fig = Figure(figsize=(4.2, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.fill_between(nominal, lo, hi, color=BAND, alpha=0.7, lw=0, label=f"{confidence:.0%} binomial band")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="ideal")
    ax.plot(nominal, empirical, color=LINE, lw=1.8, label="empirical")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("nominal credibility level (HPD)")
    ax.set_ylabel("empirical coverage")
    title = f"Expected coverage (N={num_test_points})"
    if error is not None:
        title += f"\nmax |error| = {error:.3f}"
    ax.set_title(title)
    ax.text(0.97, 0.03, "below diagonal: over-confident\nabove: under-confident", ha="right",
            va="bottom", fontsize=7, color="0.4", transform=ax.transAxes)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return fig


def plot_central_coverage(
    nominal: np.ndarray,
    empirical: np.ndarray,
    num_test_points: int,
    parameter_names: Optional[Sequence[str]] = None,
    *,
    errors: Optional[np.ndarray] = None,
    confidence: float = 0.99,
) -> Figure:
    """Coverage of central credible intervals per parameter vs. nominal level, with the binomial band."""
    nominal = np.asarray(nominal)
    empirical = np.asarray(empirical).reshape(len(nominal), -1)
    d = empirical.shape[1]
    names = default_names(parameter_names, d)
    lo, hi = coverage_band(num_test_points, nominal, confidence)
    fig, axes = panel_grid(d)
    for j, ax in enumerate(axes):
        ax.fill_between(nominal, lo, hi, color=BAND, alpha=0.7, lw=0, label=f"{confidence:.0%} binomial band")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.plot(nominal, empirical[:, j], color=LINE, lw=1.8, label="empirical")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("nominal level (central interval)")
        ax.set_ylabel("empirical coverage")
        ax.set_title(names[j] + (f"\nmax |error| = {np.asarray(errors)[j]:.3f}" if errors is not None else ""))
    axes[0].legend(loc="upper left", fontsize=7, frameon=False)
    fig.suptitle(f"Coverage of central intervals (N={num_test_points})")
    return fig


def plot_tarp(
    ecp: np.ndarray,
    alpha: np.ndarray,
    *,
    atc: Optional[float] = None,
    ks_pvalue: Optional[float] = None,
    atc_interval: Optional[tuple[float, float]] = None,
) -> Figure:
    """TARP expected coverage probability vs. credibility level."""
    fig = Figure(figsize=(4.2, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="ideal")
    ax.plot(alpha, ecp, color=LINE, lw=1.8, label="TARP")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(r"credibility level $\alpha$")
    ax.set_ylabel("expected coverage probability")
    parts = []
    if atc is not None:
        parts.append(f"ATC = {atc:+.3f}" + (f" [{atc_interval[0]:+.3f}, {atc_interval[1]:+.3f}]"
                                            if atc_interval is not None else ""))
    if ks_pvalue is not None:
        parts.append(f"KS p = {ks_pvalue:.3g}")
    ax.set_title("TARP" + (f"\n{', '.join(parts)}" if parts else ""))
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return fig


def plot_recovery(
    true_theta: np.ndarray,
    posterior_means: np.ndarray,
    parameter_names: Optional[Sequence[str]] = None,
    *,
    posterior_stds: Optional[np.ndarray] = None,
    r2: Optional[np.ndarray] = None,
    nrmse: Optional[np.ndarray] = None,
) -> Figure:
    """Posterior mean (±1 sd) vs. true value, one panel per parameter, identity line."""
    t = np.asarray(true_theta)
    m = np.asarray(posterior_means)
    d = t.shape[1]
    names = default_names(parameter_names, d)
    fig, axes = panel_grid(d)
    for j, ax in enumerate(axes):
        lo = np.nanmin([t[:, j].min(), np.nanmin(m[:, j])])
        hi = np.nanmax([t[:, j].max(), np.nanmax(m[:, j])])
        pad = 0.05 * (hi - lo if hi > lo else 1.0)
        if posterior_stds is not None:
            ax.errorbar(t[:, j], m[:, j], yerr=np.asarray(posterior_stds)[:, j], fmt="none",
                        ecolor=LINE, alpha=0.15, lw=0.8)
        ax.scatter(t[:, j], m[:, j], s=6, color=LINE, alpha=0.6, lw=0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(names[j])
        ax.set_xlabel("true")
        ax.set_ylabel("posterior mean")
        text = []
        if r2 is not None:
            text.append(f"$R^2$ = {np.asarray(r2)[j]:.3f}")
        if nrmse is not None:
            text.append(f"NRMSE = {np.asarray(nrmse)[j]:.3f}")
        if text:
            ax.text(0.04, 0.96, "\n".join(text), transform=ax.transAxes, va="top", fontsize=8)
    fig.suptitle(f"Parameter recovery (N={t.shape[0]})")
    return fig


def plot_contraction(
    contraction: np.ndarray,
    z_scores: np.ndarray,
    parameter_names: Optional[Sequence[str]] = None,
) -> Figure:
    """Posterior z-score vs. posterior contraction, one panel per parameter."""
    c = np.asarray(contraction)
    z = np.asarray(z_scores)
    d = c.shape[1]
    names = default_names(parameter_names, d)
    fig, axes = panel_grid(d)
    for j, ax in enumerate(axes):
        ok = np.isfinite(c[:, j]) & np.isfinite(z[:, j])
        ax.scatter(c[ok, j], z[ok, j], s=6, color=LINE, alpha=0.6, lw=0)
        ax.axhline(0.0, color="0.35", lw=0.8, ls="--")
        zmax = max(3.0, float(np.nanmax(np.abs(z[ok, j]))) * 1.05) if ok.any() else 3.0
        cmin = min(0.0, float(np.nanmin(c[ok, j]))) if ok.any() else 0.0
        ax.set_xlim(cmin - 0.02, 1.02)
        ax.set_ylim(-zmax, zmax)
        ax.set_title(names[j])
        ax.set_xlabel("posterior contraction")
        ax.set_ylabel("posterior z-score")
    fig.suptitle("z-score vs. contraction (ideal: |z| small, contraction near 1)", fontsize=10)
    return fig


def plot_ppc_statistics(
    predictive_x: np.ndarray,
    x_o: np.ndarray,
    statistic_names: Optional[Sequence[str]] = None,
    *,
    scaled_deviation: Optional[np.ndarray] = None,
    max_panels: int = 36,
) -> Figure:
    """Per-statistic histograms of the posterior predictive with the observed value marked."""
    pred = np.asarray(predictive_x, dtype=np.float64).reshape(len(predictive_x), -1)
    xo = np.asarray(x_o, dtype=np.float64).reshape(-1)
    d = pred.shape[1]
    names = default_names(statistic_names, d, prefix="x")
    shown = min(d, max_panels)
    fig, axes = panel_grid(shown, panel_size=2.6, max_cols=6)
    for j, ax in enumerate(axes):
        col = pred[:, j][np.isfinite(pred[:, j])]
        if col.size:
            q25, q50, q75 = np.quantile(col, [0.25, 0.5, 0.75])
            ax.axvspan(q25, q75, color=BAND, alpha=0.6, lw=0)
            ax.hist(col, bins=30, color=LINE, alpha=0.75)
            ax.axvline(q50, color="0.35", lw=0.8, ls="--")
        ax.axvline(xo[j], color=OBSERVED, lw=2)
        title = names[j]
        if scaled_deviation is not None and np.isfinite(scaled_deviation[j]):
            title += f"\n|Δ|/IQR = {scaled_deviation[j]:.2f}"
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    more = f" (first {shown} of {d})" if shown < d else ""
    fig.suptitle(f"Posterior predictive (M={pred.shape[0]}), observed in red{more}", fontsize=10)
    return fig


def diagnostic_figures(result: "DiagnosticsResult", *, confidence: float = 0.99) -> dict[str, Figure]:
    """Every figure of a diagnostics result, by artifact path (bands at ``confidence``)."""
    names = result.parameter_names
    sbc, coverage, tarp, recovery = result.sbc, result.coverage, result.tarp, result.recovery
    num_samples = result.num_posterior_samples
    figures = {
        "plots/sbc_ranks.png": plot_sbc_ranks(sbc.ranks, num_samples, names, confidence=confidence),
        "plots/sbc_ecdf.png": plot_sbc_ecdf(sbc.ranks, num_samples, names, confidence=confidence),
        "plots/coverage.png": plot_coverage(coverage.nominal, coverage.empirical, result.num_test_points,
                                            error=coverage.error, confidence=confidence),
        "plots/tarp.png": plot_tarp(tarp.ecp, tarp.alpha, atc=tarp.atc, ks_pvalue=tarp.ks_pvalue,
                                    atc_interval=tarp.atc_interval),
        "plots/recovery.png": plot_recovery(recovery.true_theta, recovery.posterior_means, names,
                                            posterior_stds=recovery.posterior_stds, r2=recovery.r2,
                                            nrmse=recovery.nrmse),
        "plots/contraction.png": plot_contraction(recovery.contraction, recovery.z_scores, names),
    }
    if result.central_coverage is not None:
        central = result.central_coverage
        figures[CENTRAL_COVERAGE_FIGURE_KEY] = plot_central_coverage(
            central.nominal, central.empirical, result.num_test_points, names, errors=central.errors,
            confidence=confidence)
    if result.ppc is not None:
        ppc = result.ppc
        figures[PPC_FIGURE_KEY] = plot_ppc_statistics(ppc.predictive, ppc.x_o, ppc.statistic_names,
                                                      scaled_deviation=ppc.scaled_deviation)
    tests = [t for t in (result.lc2st, result.lc2st_nf) if t is not None]
    if tests:
        figures[LC2ST_FIGURE_KEY] = plot_lc2st_pp(tests)
    if result.misspecification is not None:
        figures[MISSPECIFICATION_FIGURE_KEY] = plot_misspecification(result.misspecification)
    return figures
