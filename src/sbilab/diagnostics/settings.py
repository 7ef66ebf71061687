"""The typed ``diagnostics`` config group and the named seeds the diagnostics draw from.

:class:`DiagnosticsSettings` mirrors ``conf/diagnostics/*.yaml`` key for key and checks
every value on construction: a bad one raises :class:`~sbilab.errors.ConfigError` with one
line naming ``diagnostics.<key>`` and what is allowed. :class:`DiagnosticsSeeds` names each
random purpose; the caller derives the values (``sbilab.rng``), the diagnostics never add
offsets to a seed.

Light on purpose (no torch, no sbi): config checks import it before any heavy work.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

from sbilab.diagnostics.gates import GateThresholds
from sbilab.errors import ConfigError
from sbilab.settings import BOOL, FRACTION, INT_GE_0, INT_GE_1, at_least, fraction, group, load_settings, setting

#: the calibration gates a threshold may be given for (null switches a gate off)
THRESHOLD_KEYS = tuple(f.name for f in fields(GateThresholds))


@dataclass(frozen=True)
class LC2STSettings:
    """Local calibration at x_o (sbi's ``LC2ST``, and ``LC2ST_NF`` when the estimator is a flow)."""

    enabled: bool = setting(True, BOOL)
    #: classifiers trained under the null; the p-value is a multiple of 1/this
    num_trials_null: int = setting(100, INT_GE_1, at_least(1))
    #: MLP epochs without improvement before early stopping (sbi: 50; 10 keeps the power at 1,000 points)
    classifier_patience: int = setting(10, INT_GE_1, at_least(1))


@dataclass(frozen=True)
class MisspecificationSettings:
    """Could the simulator have produced x_o? Tests against the prior predictive (the test set)."""

    enabled: bool = setting(True, BOOL)
    alpha: float = setting(0.01, FRACTION, fraction)  # x_o is misspecified when a test's p-value is below this
    mmd_num_shuffles: int = setting(1000, INT_GE_1, at_least(1))  # draws of the MMD under the null
    #: prior-predictive simulations per MMD (its cost grows with the square)
    mmd_max_samples: int = setting(300, "an integer >= 2", at_least(2))
    logprob: bool = setting(True, BOOL)  # also sbi's marginal log-prob test (a flow trained on the test set's x)
    logprob_max_epochs: int = setting(200, INT_GE_1, at_least(1))  # cap on that flow's training epochs


@dataclass(frozen=True)
class PredictiveDistanceSettings:
    """The standardized posterior-predictive distance at x_o (NPE-PF's; ``diagnostics.predictive_distance``).

    Every posterior sample at x_o (``num_observation_samples``) is simulated; ``num_prior``
    prior-predictive simulations give each statistic's sd.
    """

    enabled: bool = setting(True, BOOL)
    num_prior: int = setting(10_000, "an integer >= 2", at_least(2))


@dataclass(frozen=True)
class SamplerBudgetSettings:
    """How long sampling the test set may take.

    A sampler that is not amortised (MCMC, rejection, importance, VI) runs anew for every test x
    (``sbilab.diagnostics.per_point``); a batched one can still be slow (a flow truncated to a bounded
    prior it mostly leaks out of). Either way the test points are cut to what ``seconds`` of sampling
    allow (timed on a pilot), or pinned by ``test_points``; ``max_samples`` caps the per-x samplers only.
    """

    #: seconds of test-set sampling (with the x_o samples, L-C2ST and the rest: the stage stays under 5 min)
    seconds: float = setting(120.0, "a number > 0", lambda value: value > 0)
    #: samples per test point (and the chains' cap): SBC ranks and coverage need hundreds, not thousands
    max_samples: int = setting(200, INT_GE_1, at_least(1))
    #: no fewer test points than this while they fit the time (the time wins; a note says so)
    min_test_points: int = setting(20, INT_GE_1, at_least(1))
    #: a fixed number of test points instead of the timed choice (null: chosen by the pilot)
    test_points: Optional[int] = setting(None, "an integer >= 1, or null to choose by time",
                                         lambda value: value is None or value >= 1)


@dataclass(frozen=True)
class DiagnosticsSettings:
    """What the diagnostics compute and how much (``conf/diagnostics/*.yaml``, typed)."""

    enabled: bool = setting(True, BOOL)
    #: held-out simulations (SBC, coverage, TARP, L-C2ST, prior predictive)
    num_test: int = setting(1000, INT_GE_1, at_least(1))
    #: per test point, shared by every set-level diagnostic
    num_posterior_samples: int = setting(1000, INT_GE_1, at_least(1))
    num_ppc: int = setting(100, INT_GE_1, at_least(1))  # posterior-predictive simulations at the observation
    #: posterior samples at the observation (and C2ST's cap)
    num_observation_samples: int = setting(10_000, INT_GE_1, at_least(1))
    strict: bool = setting(False, BOOL)  # exit non-zero when a gate fails (CI)
    #: test-set resamples for the interval on TARP's ATC (0: none)
    tarp_num_bootstrap: int = setting(200, INT_GE_0, at_least(0))
    lc2st: LC2STSettings = group(LC2STSettings)
    misspecification: MisspecificationSettings = group(MisspecificationSettings)
    predictive_distance: PredictiveDistanceSettings = group(PredictiveDistanceSettings)
    sampler_budget: SamplerBudgetSettings = group(SamplerBudgetSettings)
    thresholds: GateThresholds = group(GateThresholds, "a mapping of gate thresholds (a number or null each)")

    def __post_init__(self) -> None:
        if self.num_ppc > self.num_observation_samples:
            raise ConfigError(
                f"diagnostics.num_ppc={self.num_ppc} is larger than the posterior samples it is drawn from "
                f"(diagnostics.num_observation_samples={self.num_observation_samples})"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "DiagnosticsSettings":
        """From the composed ``diagnostics`` group (OmegaConf or plain mapping); missing keys keep their
        defaults, unknown keys and bad values raise ``ConfigError``."""
        return load_settings(cls, values, "diagnostics")


@dataclass(frozen=True)
class DiagnosticsSeeds:
    """One seed per random purpose of the diagnostics (derived by the caller, used as given).

    ``sampling``: posterior samples (and log-probs) for the test set; ``c2st``: the C2ST
    subsampling and classifier; ``tarp``: TARP's reference points; ``observation_log_prob``:
    ``log q(θ*|x_o)`` where it needs sampling; ``observation_samples``: samples at x_o when the
    caller did not pass them; ``tarp_bootstrap``: the test-set resamples of the ATC interval;
    ``lc2st``: the L-C2ST classifiers (and LC2ST_NF's base samples); ``misspecification``: the MMD
    shuffles and the marginal flow of the log-prob test.
    """

    sampling: int
    c2st: int
    tarp: int
    observation_log_prob: int
    observation_samples: int
    tarp_bootstrap: int
    lc2st: int
    misspecification: int

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), int) or isinstance(getattr(self, f.name), bool):
                raise TypeError(f"DiagnosticsSeeds.{f.name} must be an int, got {getattr(self, f.name)!r}")
