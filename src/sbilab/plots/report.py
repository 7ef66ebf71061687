"""The diagnostics report: one self-contained HTML page a person reads top to bottom.

Verdict first (and the misspecification warning when there is one), then every test with
its numbers, the threshold it is held to and its figure. Figures are embedded as PNG data
URIs, so the page shows in MLflow's artifact pane (which displays one file, without its
siblings) and anywhere else it is copied. The page takes the PNG bytes the run logs as its
``plots/*.png`` artifacts: each figure is drawn once (drawing each twice cost 1.5-3 s of a tiny run's 5-9 s record).
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Optional, Sequence, Union

from matplotlib.figure import Figure

if TYPE_CHECKING:
    from sbilab.diagnostics.result import DiagnosticsResult

@dataclass(frozen=True)
class Section:
    """One part of the report: what it checks, the metrics it shows, its figures."""

    title: str
    explanation: str
    prefixes: tuple[str, ...]
    figures: tuple[str, ...]


SECTIONS = (
    Section("Misspecification: could the simulator have produced x_o?",
            "p-values of x_o against the prior predictive (the held-out simulations). Below alpha: x_o looks like "
            "nothing the simulator produces and the posterior is an extrapolation. A warning, not a gate.",
            ("misspecification/",), ("plots/misspecification.png",)),
    Section("Local calibration at x_o (L-C2ST)",
            "A classifier tries to tell the posterior at x_o from the true one; a small p-value means it can "
            "(the curve leaves the grey band of the null trials).",
            ("lc2st/",), ("plots/lc2st_pp.png",)),
    Section("Accuracy at x_o",
            "C2ST against reference samples (0.5: indistinguishable), the predictive check (how many predictive "
            "IQRs x_o is from the posterior predictive) and the log-probability of the true parameters.",
            ("c2st", "ppc/", "posterior/logprob_true_theta"), ("plots/ppc_statistics.png",)),
    Section("Simulation-based calibration",
            "Ranks of the true parameters among posterior samples over the test set: uniform when calibrated. "
            "KS p-value and log-gamma (< 0: uniformity rejected at 5 %) per parameter.",
            ("sbc/",), ("plots/sbc_ranks.png", "plots/sbc_ecdf.png")),
    Section("Expected coverage",
            "How often the true parameters fall in credible regions of each level: HPD regions (all parameters "
            "jointly) and central intervals (each parameter). Below the diagonal: over-confident.",
            ("coverage/",), ("plots/coverage.png", "plots/coverage_central.png")),
    Section("TARP",
            "Coverage of random balls (Lemos et al. 2023). ATC near 0 when calibrated, > 0 under-confident, "
            "< 0 over-confident; the interval is a bootstrap over test points.",
            ("tarp/",), ("plots/tarp.png",)),
    Section("Recovery and contraction",
            "Posterior means against the truth, and how much the posterior shrinks from the prior (median over "
            "test points; z-score median near 0 and spread near 1 when unbiased and well sized).",
            ("posterior/contraction/", "posterior/z_score"), ("plots/recovery.png", "plots/contraction.png")),
)

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
.verdict{font-size:1.3em;font-weight:600;padding:.5em .8em;border-radius:4px;display:inline-block}
.pass{background:#e3f4e1;color:#1e6b1e} .fail{background:#fbe3e1;color:#9b1c1c}
.warning{background:#fff4d6;border-left:4px solid #e0a800;padding:.6em .9em;margin:1em 0}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em} td,th{padding:.25em .8em;border-bottom:1px solid #eee;
text-align:left} td.num{font-family:ui-monospace,monospace;text-align:right}
img{max-width:100%;margin:.4em 0} .muted{color:#666;font-size:.9em}
"""


def figure_png(figure: Figure, dpi: Union[float, str] = "figure") -> bytes:
    """PNG bytes of a figure, at its own resolution unless ``dpi`` says otherwise (as the run logs it)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _number(value: Optional[float]) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def _metric_rows(result: "DiagnosticsResult", prefixes: Sequence[str]) -> list[str]:
    checks = {c.name: c for c in result.gates.checks}
    rows = []
    for name, value in result.metrics.items():
        if not any(name.startswith(p) for p in prefixes):
            continue
        check = checks.get(name)
        if check is None:
            gate, status = "—", ""
        else:
            gate = f"{check.comparison} {_number(check.threshold)}"
            status = "<b>pass</b>" if check.passed else "<b style='color:#9b1c1c'>FAIL</b>"
        rows.append(f"<tr><td>{html.escape(name)}</td><td class='num'>{_number(value)}</td>"
                    f"<td>{html.escape(gate)}</td><td>{status}</td></tr>")
    return rows


def _image(path: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<figure><img alt='{html.escape(path)}' src='data:image/png;base64,{data}'></figure>"


def diagnostics_report(result: "DiagnosticsResult", figures: Mapping[str, Union[Figure, bytes]], *,
                       title: str = "") -> str:
    """The report of ``result`` as one HTML page with ``figures`` (artifact path → PNG bytes, or a Figure to draw)
    embedded."""
    failed = result.gates.failed
    verdict = "pass" if result.gates.passed else "fail"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>sbilab diagnostics {html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>Diagnostics{': ' + html.escape(title) if title else ''}</h1>",
             f"<p><span class='verdict {verdict}'>Calibration gates: {verdict.upper()}</span></p>"]
    if failed:
        parts.append("<p>Failed: " + ", ".join(html.escape(f"{c.name} = {_number(c.value)} (needs {c.comparison} "
                                                          f"{_number(c.threshold)})") for c in failed) + "</p>")
    for warning in result.warnings():
        parts.append(f"<div class='warning'><b>Warning:</b> {html.escape(warning)}</div>")
    parts.append(f"<p class='muted'>{result.num_test_points} test points ({result.num_dropped} dropped), "
                 f"{result.num_posterior_samples} posterior samples each; "
                 f"TARP by sbi {html.escape(result.tarp.sbi_version)}"
                 f"; {result.timings.get('total', float('nan')):.1f} s.</p>")
    for section in SECTIONS:
        rows = _metric_rows(result, section.prefixes)
        shown = [key for key in section.figures if key in figures]
        if not rows and not shown:
            continue
        parts.append(f"<h2>{html.escape(section.title)}</h2><p>{html.escape(section.explanation)}</p>")
        if rows:
            parts.append("<table><tr><th>metric</th><th>value</th><th>gate</th><th></th></tr>" + "".join(rows)
                         + "</table>")
        for key in shown:
            png = figures[key]
            parts.append(_image(key, png if isinstance(png, bytes) else figure_png(png)))
    if result.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in result.notes) + "</ul>")
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items())
    parts.append(f"<h2>Time</h2><p class='muted'>{html.escape(timings)}</p></body></html>")
    return "\n".join(parts)
