"""Checks at the observation x_o: log-probability of θ*, C2ST, PPC, L-C2ST, misspecification."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from sbilab.diagnostics.c2st import DEFAULT_C2ST_CLASSIFIER, c2st_score
from sbilab.diagnostics.draws import TestSetDraws
from sbilab.diagnostics.inputs import DiagnosticsInputs
from sbilab.diagnostics.laps import Laps
from sbilab.diagnostics.lc2st import LC2STResult, flow_of, run_lc2st, run_lc2st_nf
from sbilab.diagnostics.misspecification import MisspecificationResult, check_misspecification
from sbilab.diagnostics.ppc import PPCResult, ppc_distance
from sbilab.diagnostics.sampling import as_float_tensor, call_with_supported_kwargs
from sbilab.diagnostics.settings import DiagnosticsSeeds, DiagnosticsSettings
from sbilab.rng import seeded

#: fewest test points L-C2ST's classifiers train on (its MLP holds out 10 % of 2N pairs, both classes in it)
LC2ST_MIN_POINTS = 20


def log_prob_at_observation(posterior: Any, theta_o: Any, x_o: Any, *, seed: int) -> tuple[float, str]:
    """``log q(θ_o | x_o)`` and how it was computed: the normalised ``log_prob`` when the posterior
    has one, else the unnormalised batched one. Seeded: a leakage correction may sample."""
    theta = as_float_tensor(theta_o).reshape(-1)
    x = as_float_tensor(x_o)
    with seeded(seed):
        if hasattr(posterior, "log_prob"):
            lp = call_with_supported_kwargs(posterior.log_prob, theta[None], x=x)
            return float(as_float_tensor(lp).reshape(-1)[0]), "log_prob"
        lp = call_with_supported_kwargs(posterior.log_prob_batched, theta[None, None], x=x[None], norm_posterior=False)
    return float(as_float_tensor(lp).reshape(-1)[0]), "log_prob_batched(norm_posterior=False)"


def sample_at_observation(posterior: Any, x_o: Any, num_samples: int, *, seed: int) -> torch.Tensor:
    """``[num_samples, D]`` posterior samples at ``x_o``, seeded, the caller's RNG untouched."""
    with seeded(seed):
        samples = call_with_supported_kwargs(posterior.sample, (num_samples,), x=as_float_tensor(x_o),
                                             show_progress_bars=False)
    return as_float_tensor(samples).reshape(num_samples, -1)


@dataclass
class ObservationChecks:
    """Everything computed at x_o (each None where it does not apply)."""

    metrics: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    ppc: Optional[PPCResult] = None
    c2st: Optional[float] = None
    observed_samples: Optional[np.ndarray] = None  # [n, D] the samples C2ST compared (saved as an artifact)
    lc2st: Optional[LC2STResult] = None
    lc2st_nf: Optional[LC2STResult] = None
    misspecification: Optional[MisspecificationResult] = None


def check_observation(inputs: DiagnosticsInputs, settings: DiagnosticsSettings, seeds: DiagnosticsSeeds,
                      draws: TestSetDraws, laps: Laps, notes: list[str]) -> ObservationChecks:
    """Log-prob of θ*, C2ST against reference samples, PPC, L-C2ST and misspecification at ``inputs.x_o``."""
    out = ObservationChecks()
    x_o = as_float_tensor(inputs.x_o)
    if inputs.theta_o is not None:
        lp_o, how = log_prob_at_observation(inputs.posterior, inputs.theta_o, x_o, seed=seeds.observation_log_prob)
        out.metrics["posterior/logprob_true_theta"] = lp_o
        if how != "log_prob":
            notes.append(f"posterior/logprob_true_theta is unnormalised ({how})")
    samples: Optional[Tensor] = None if inputs.observed_samples is None else as_float_tensor(inputs.observed_samples)
    if inputs.reference_samples is not None:
        reference = as_float_tensor(inputs.reference_samples)
        if samples is None:
            num = min(len(reference), settings.num_observation_samples)
            samples = sample_at_observation(inputs.posterior, x_o, num, seed=seeds.observation_samples)
        out.observed_samples = samples.double().numpy()
        out.c2st = c2st_score(samples, reference, seed=seeds.c2st, classifier=DEFAULT_C2ST_CLASSIFIER,
                              max_samples=settings.num_observation_samples)
        out.metrics["c2st"] = out.c2st
        out.arrays["diagnostics/observed_posterior_samples.npy"] = out.observed_samples
    if inputs.predictive_x is not None:
        out.ppc = ppc_distance(inputs.predictive_x, x_o, statistic_names=inputs.statistic_names)
        out.metrics.update(out.ppc.metrics())
        out.arrays.update(out.ppc.arrays())
    laps("observation")
    if settings.misspecification.enabled:
        out.misspecification = check_misspecification(draws.finite_x, x_o, settings.misspecification,
                                                      seed=seeds.misspecification, embedding_net=inputs.embedding_net)
        notes.extend(out.misspecification.notes)
        out.metrics.update(out.misspecification.metrics())
        out.arrays.update(out.misspecification.arrays())
        laps("misspecification")
    if settings.lc2st.enabled and draws.num_points < LC2ST_MIN_POINTS:
        notes.append(f"lc2st: not computed: {draws.num_points} test points, its classifiers need "
                     f"{LC2ST_MIN_POINTS} (diagnostics.num_test, diagnostics.sampler_budget)")
    elif settings.lc2st.enabled:
        if samples is None:
            samples = sample_at_observation(inputs.posterior, x_o, settings.num_observation_samples,
                                            seed=seeds.observation_samples)
        one_each = draws.samples[0]  # one posterior sample per test point: no new sampling
        out.lc2st = run_lc2st(draws.theta, draws.x, one_each, x_o, samples, settings.lc2st, seed=seeds.lc2st)
        laps("lc2st")
        flow = flow_of(inputs.posterior)
        if flow is not None:
            out.lc2st_nf = run_lc2st_nf(draws.theta, draws.x, one_each, x_o, flow, settings.lc2st, seed=seeds.lc2st,
                                        num_eval=settings.num_observation_samples)
            laps("lc2st_nf")
        else:
            notes.append("lc2st/nf_*: not computed (the posterior is not a single normalising flow)")
        for result in (out.lc2st, out.lc2st_nf):
            if result is not None:
                out.metrics.update(result.metrics())
                out.arrays.update(result.arrays())
    return out
