"""What the diagnostics return: plain values, nothing logged, no figures.

The caller logs ``metrics``, saves ``arrays`` (artifact path → array, ``np.save``),
writes ``gates.to_dict()`` to ``diagnostics/gates.json`` and builds the figures from the
per-diagnostic results (``sbilab.plots.diagnostics.diagnostic_figures``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from sbilab.diagnostics.coverage import CentralCoverageResult, CoverageResult
from sbilab.diagnostics.gates import GateReport
from sbilab.diagnostics.lc2st import LC2STResult
from sbilab.diagnostics.misspecification import MisspecificationResult
from sbilab.diagnostics.ppc import PPCResult
from sbilab.diagnostics.recovery import RecoveryResult
from sbilab.diagnostics.sbc import SBCResult
from sbilab.diagnostics.settings import DiagnosticsSeeds
from sbilab.diagnostics.tarp import TarpResult


@dataclass
class DiagnosticsResult:
    """Everything :func:`~sbilab.diagnostics.compute_diagnostics` computed."""

    metrics: dict[str, float]
    arrays: dict[str, np.ndarray]
    gates: GateReport
    timings: dict[str, float]  # seconds per step, plus "total"
    parameter_names: list[str]
    num_test_points: int  # rows used (after dropping non-finite rows)
    num_dropped: int
    num_posterior_samples: int
    seeds: DiagnosticsSeeds
    sbc: SBCResult
    coverage: CoverageResult
    tarp: TarpResult
    recovery: RecoveryResult
    central_coverage: Optional[CentralCoverageResult] = None
    ppc: Optional[PPCResult] = None
    c2st: Optional[float] = None
    observed_samples: Optional[np.ndarray] = None  # [n, D] posterior samples at x_o (C2ST's)
    lc2st: Optional[LC2STResult] = None
    lc2st_nf: Optional[LC2STResult] = None
    misspecification: Optional[MisspecificationResult] = None
    notes: list[str] = field(default_factory=list)
    cuts: list[str] = field(default_factory=list)  # what a per-x sampler's budget cut (also in notes): printed

    @property
    def verdict(self) -> str:
        return self.gates.verdict

    @property
    def misspecified(self) -> Optional[bool]:
        """Whether x_o looks like nothing the simulator produces (None: not tested)."""
        return None if self.misspecification is None else self.misspecification.misspecified

    def tags(self) -> dict[str, str]:
        """Run tags: the gates' verdict, misspecification (where tested), the sbi that computed TARP."""
        out = {"sbilab.gates": self.verdict, "sbilab.tarp_sbi_version": self.tarp.sbi_version}
        if self.misspecified is not None:
            out["sbilab.misspecified"] = "true" if self.misspecified else "false"
        return out

    def warnings(self) -> list[str]:
        """Plain-words warnings for the person who runs it (printed with the verdict)."""
        if not self.misspecified:
            return []
        assert self.misspecification is not None
        p_values = ", ".join(f"{k.split('/')[-1]} = {v:.3g}" for k, v in self.misspecification.p_values.items())
        return [f"the observation does not look like anything the simulator produces ({p_values}); "
                "the posterior is an extrapolation: do not trust it without a better model. What usually helps: "
                "check x_o's units and preprocessing against the simulator's statistics, widen the prior, or add the "
                "mechanism the simulator misses; the run's description lists each test"]

    def gates_dict(self) -> dict[str, Any]:
        """JSON form of the gates, for ``diagnostics/gates.json``."""
        return self.gates.to_dict()

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable digest: metrics, gates, timings, counts, seeds, notes."""
        return {
            "metrics": {k: (v if np.isfinite(v) else None) for k, v in self.metrics.items()},
            "gates": self.gates.to_dict(),
            "timings": dict(self.timings),
            "num_test_points": self.num_test_points,
            "num_dropped": self.num_dropped,
            "num_posterior_samples": self.num_posterior_samples,
            "seeds": asdict(self.seeds),
            "misspecified": self.misspecified,
            "tarp_sbi_version": self.tarp.sbi_version,
            "notes": list(self.notes),
        }
