"""The stages of a run as a small public API, and ``run(spec)``, which composes them.

    prepare(cfg) → RunSpec                         (sbilab.spec: the only stage that sees the config)
    open_run(spec)        the MLflow run, opened first so that any failure marks it FAILED
    simulate(spec, ...)   θ ~ prior (or a proposal) → x, chunked, cached, NaN filtered
    train(spec, ...)      one network, an ensemble, or the rounds of a sequential method
    build_posterior(...)  the method's sbi posterior around the trained networks
    diagnose(...)         samples at x_o, predictive traces, calibration on held-out simulations
    record(...)           posterior artifact, samples, figures, diagnostics, verdict (sbilab.run_record)

Each stage takes the :class:`~sbilab.spec.RunSpec` and plain values and returns plain
values. The drivers (sweeps, HPO, benchmark) compose the same stages.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional

import torch
from omegaconf import OmegaConf
from sbi.inference.posteriors import DirectPosterior, VectorFieldPosterior
from threadpoolctl import threadpool_limits
from torch import Tensor

from sbilab import tracking
from sbilab.diagnostics import DiagnosticsInputs, DiagnosticsResult, DiagnosticsSeeds, compute_diagnostics
from sbilab.diagnostics.gates import InUse, explain_failures
from sbilab.diagnostics.predictive_distance import StandardizedDistanceResult, standardized_distance
from sbilab.diagnostics.sampling import posterior_log_prob_batched
from sbilab.ensemble import ensemble_members, ensemble_posterior
from sbilab.memory import PeakMemory
from sbilab.predictive import simulate_predictive, simulate_predictive_traces
from sbilab.priors import sample_prior
from sbilab.rng import seeded
from sbilab.run_observer import RecordingObserver
from sbilab.run_record import record
from sbilab.simulation import Dataset, simulate_dataset
from sbilab.spec import RunSpec
from sbilab.training import (
    Fitted,
    SilentObserver,
    TrainingObserver,
    TrainingProblem,
    on_terminal,
    strategy_for,
)

#: posteriors whose log_prob is normalised (NPE-style and vector-field posteriors)
NORMALISED_POSTERIORS = (DirectPosterior, VectorFieldPosterior)
#: raw traces simulated from posterior draws for the predictive figure


@dataclass
class RunResult:
    """What a finished run reports back to the caller."""

    run_id: str
    experiment_id: str
    gates: Optional[str]
    metrics: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # plain words for the person who ran it (misspecification)
    explanation: list[str] = field(default_factory=list)  # the worst failed gates and what helps; what was cut
    chosen: Optional[str] = None  # recipe=auto: what it chose and why (one line)


@dataclass
class Diagnosis:
    """What the diagnose stage found: samples and checks at x_o, and calibration (when enabled)."""

    samples: Tensor  # [n, D] posterior samples at x_o
    metrics: dict[str, float]
    predictive_traces: Optional[Tensor] = None  # [k, T] raw traces simulated from the first samples
    calibration: Optional[DiagnosticsResult] = None
    predictive_distance: Optional[StandardizedDistanceResult] = None
    on_region: bool = False  # calibrated on a truncated region of the prior (TSNPE), not the whole prior
    in_use: InUse = field(default_factory=InUse)  # what the run already does (left out of the advice)

    @property
    def verdict(self) -> Optional[str]:
        return None if self.calibration is None else self.calibration.verdict

    @property
    def warnings(self) -> list[str]:
        return [] if self.calibration is None else self.calibration.warnings()

    @property
    def explanation(self) -> list[str]:
        """What the terminal shows beside the verdict: the worst failed gates and what was cut."""
        if self.calibration is None:
            return []
        domain = "the truncated region its last round simulated from" if self.on_region else "the prior"
        return [*explain_failures(self.calibration.gates, domain=domain, in_use=self.in_use), *self.calibration.cuts]


# -- the run ----------------------------------------------------------------------------------------


def run(spec: RunSpec, *, parent_run_id: Optional[str] = None,
        extra_tags: Optional[Mapping[str, str]] = None) -> RunResult:
    """One experiment end to end, recorded in MLflow: FINISHED only after the last artifact is written."""
    torch.set_num_threads(spec.num_threads)
    # NumPy's and scikit-learn's BLAS/OpenMP pools too (L-C2ST's classifiers, the MMD): on HH their
    # default two threads doubled the L-C2ST CPU time (6.9 s against 3.3 s, same p-value; measured)
    with threadpool_limits(limits=spec.num_threads), \
            open_run(spec, parent_run_id=parent_run_id, extra_tags=extra_tags) as recorder:
        started = time.perf_counter()
        fitted = train(spec, RecordingObserver(recorder, spec, progress=parent_run_id is None and on_terminal()))
        posterior = build_posterior(spec, fitted)
        diagnosis = diagnose(spec, posterior, fitted.region)
        record(recorder, spec, fitted, diagnosis)
        recorder.log_metrics({"time/total_s": time.perf_counter() - started})
        metrics = {**fitted.networks.metrics(), **diagnosis.metrics}
        choice = fitted.networks.choice
        explanation = diagnosis.explanation
        if choice is not None and diagnosis.verdict == "fail" and spec.recipe is not None:
            explanation = [*explanation, choice.next_step(spec.recipe, spec.simulation.num_simulations)]
        return RunResult(recorder.run_id, recorder.experiment_id, diagnosis.verdict, metrics, diagnosis.warnings,
                         explanation, None if choice is None else choice.summary())


@contextmanager
def open_run(spec: RunSpec, *, parent_run_id: Optional[str] = None,
             extra_tags: Optional[Mapping[str, str]] = None) -> Iterator[tracking.RunRecorder]:
    """The run's MLflow record, opened with its tags, params, ``config.yaml`` and ``observation.npy``.

    Closed FINISHED when the block returns, FAILED on an exception, KILLED on Ctrl-C/SIGTERM.
    """
    tags = {**{f"sbilab.{group}": option for group, option in spec.choices.items()},
            **({"sbilab.recipe": "auto"} if spec.recipe is not None else {}),
            "sbilab.git_commit": tracking.git_commit(spec.paths.root), **tracking.source_tags(spec.paths.root),
            **(extra_tags or {})}
    with tracking.start_run(spec.tracking.uri, spec.experiment_name, spec.tracking.artifact_location,
                            run_name=spec.run_name(), tags=tags, parent_run_id=parent_run_id) as recorder:
        recorder.log_params(tracking.loggable_params(spec.config))
        recorder.log_text(OmegaConf.to_yaml(spec.config), "config.yaml")
        recorder.log_array(spec.observation.x.numpy(), "observation.npy")
        recording = spec.observation.recording
        if recording is not None:  # which file, cell and corrections: params and the run's observation dataset
            recorder.log_params(tracking.loggable_params({"recording": recording.metadata()}))
            tracking.log_datasets(recorder, [tracking.recording_record(recording.metadata())])
        yield recorder


# -- simulate, train, build the posterior -----------------------------------------------------------


def simulate(spec: RunSpec, purpose: str, num: int, proposal: Optional[Any] = None) -> Dataset:
    """``num`` (θ, x) pairs for ``purpose`` (``train``, ``test``, ...): θ from the prior, or from ``proposal``.

    Simulations are cached (``simulation.cache``) under a key of everything that determines
    them; for a proposal (later rounds of sequential methods, a truncated test set) that
    includes the θ drawn, so a rerun after a kill reuses every round it draws again.
    """
    settings = spec.simulation
    cached = settings.cache
    key_parts = {group: spec.part_configs[group] for group in ("simulator", "prior", "summary")}
    return simulate_dataset(
        spec.parts.simulator, spec.parts.prior if proposal is None else proposal, spec.parts.summary, num,
        spec.seeds.run, purpose=purpose, chunk_size=settings.chunk_size, num_workers=settings.num_workers,
        backend=settings.backend, cache_dir=spec.paths.cache_dir if cached else None,
        key_parts=key_parts if cached else None, invalid_warn_fraction=settings.invalid_warn_fraction,
        backend_options={"address": settings.address, "retries": settings.retries} if settings.backend == "dask"
        else None, theta_in_key=proposal is not None,
    )


def train(spec: RunSpec, observer: TrainingObserver = SilentObserver(),
          simulate_round: Optional[Callable[[Optional[Any], int, int], Dataset]] = None) -> Fitted:
    """Simulate the training data and train the method's networks on it (its training strategy decides how).

    ``observer`` sees every epoch, dataset and round, and the trained networks. ``simulate_round``
    (proposal, round, number) replaces simulating ``spec``'s simulator, e.g. by the simulations of
    several specs (one network for many recordings, :mod:`sbilab.experiments.cells`).
    """
    problem = TrainingProblem(
        method=spec.parts.method, estimator=spec.part_configs["estimator"], prior=spec.parts.prior,
        settings=spec.trainer, seed=spec.seeds.train, num_simulations=spec.simulation.num_simulations,
        x_o=spec.observation.x, embedding_net=getattr(spec.parts.summary, "embedding_net", None),
        recipe=spec.recipe,
    )

    def simulate_own(proposal: Optional[Any], round_: int, num: int) -> Dataset:
        return simulate(spec, "train" if round_ == 0 else f"train-round-{round_}", num, proposal)

    fitted = strategy_for(spec.parts.method, spec.recipe).fit(problem, simulate_round or simulate_own, observer)
    observer.networks_trained(fitted.networks)
    return fitted


def build_posterior(spec: RunSpec, fitted: Fitted) -> Any:
    """The method's sbi posterior around the trained network(s); an ensemble's is their mixture."""
    method, prior = spec.parts.method, spec.parts.prior
    return ensemble_posterior([method.build_posterior(estimator, prior) for estimator in fitted.networks.estimators])


# -- diagnose -----------------------------------------------------------------------------------------


def diagnose(spec: RunSpec, posterior: Any, region: Optional[Any] = None, samples: Optional[Tensor] = None
             ) -> Diagnosis:
    """Posterior samples at x_o and what they say; calibration on a held-out test set when enabled.

    ``region``: where the posterior claims to hold when not on the whole prior (TSNPE's truncated
    prior); the test set and the prior moments then come from it. ``samples``: the samples at x_o
    when drawn already (batched over many observations), else drawn here.
    """
    observation, seeds = spec.observation, spec.seeds
    if samples is None:
        with seeded(seeds.observation_samples):
            samples = posterior.sample((spec.diagnostics.num_observation_samples,), x=observation.x,
                                       show_progress_bars=False)
    diagnosis = Diagnosis(samples=samples, metrics=observation_metrics(posterior, samples, spec),
                          predictive_traces=simulate_predictive_traces(spec, samples),
                          in_use=in_use(spec))
    if spec.diagnostics.enabled:
        with PeakMemory() as memory:
            calibrate_and_measure(spec, posterior, diagnosis, region)
        diagnosis.metrics.update({"memory/diagnose_peak_mb": memory.peak_mb,
                                  "memory/diagnose_beyond_start_mb": memory.beyond_start_mb})
    return diagnosis


def in_use(spec: RunSpec) -> InUse:
    """What the run already does, so that the advice after failed gates leaves it out."""
    estimator = spec.part_configs["estimator"]
    return InUse(str(estimator.get("model", "")), spec.trainer.ensemble_size, spec.trainer.max_epochs == -1,
                 estimator.get("hidden_features"), recipe=spec.recipe is not None)


def calibrate_and_measure(spec: RunSpec, posterior: Any, diagnosis: Diagnosis, region: Optional[Any] = None) -> None:
    """The predictive distance at x_o and calibration on held-out simulations, into ``diagnosis``."""
    observation, samples = spec.observation, diagnosis.samples
    started = time.perf_counter()
    predictive_x = simulate_predictive(spec, samples)
    if spec.diagnostics.predictive_distance.enabled:
        prior_x = simulate(spec, "prior-predictive", spec.diagnostics.predictive_distance.num_prior).x
        diagnosis.predictive_distance = standardized_distance(predictive_x, observation.x, prior_x)
        diagnosis.metrics.update(diagnosis.predictive_distance.metrics())
    diagnosis.calibration, test = calibrate(spec, posterior, samples, predictive_x[: spec.diagnostics.num_ppc],
                                            region)
    if region is not None:
        diagnosis.on_region = True
        diagnosis.metrics["diagnostics/region_prior_mass"] = region.prior_mass
        # the region was built to leave out method.quantile of the last-but-one posterior; far more of the
        # final posterior outside it means the region cut the posterior the last round was trained for
        with seeded(spec.seeds.observation_samples):  # the region's density estimates its leakage by sampling
            outside = ~region.contains(samples.reshape(-1, samples.shape[-1]))
        diagnosis.metrics["diagnostics/posterior_mass_outside_region"] = float(outside.float().mean())
    diagnosis.metrics.update(test.metrics("test_"))
    diagnosis.metrics.update(diagnosis.calibration.metrics)
    diagnosis.metrics.update({f"time/diagnose/{step}_s": seconds  # what each statistic costs
                              for step, seconds in diagnosis.calibration.timings.items() if step != "total"})
    diagnosis.metrics["time/diagnose_s"] = time.perf_counter() - started


def observation_metrics(posterior: Any, samples: Tensor, spec: RunSpec) -> dict[str, float]:
    """Where θ* (when known) falls in the posterior at x_o."""
    observation = spec.observation
    if observation.theta is None:
        return {}
    metrics: dict[str, float] = {}
    if is_normalised(posterior):  # MCMC/VI/importance posteriors know it up to a constant
        metrics["posterior/logprob_true_theta"] = float(posterior.log_prob(observation.theta[None], x=observation.x)[0])
    x = observation.x[None]
    lp_samples = posterior_log_prob_batched(posterior, samples[:, None], x)[:, 0]
    lp_true = posterior_log_prob_batched(posterior, observation.theta[None, None], x)[0, 0]
    # the smallest HPD level whose region holds θ* (θ* lies in the 95 % region iff < 0.95)
    metrics["posterior/true_theta_hpd_level"] = float((lp_samples > lp_true).float().mean())
    return metrics


def is_normalised(posterior: Any) -> bool:
    """Whether ``posterior.log_prob`` is normalised (an ensemble's is when all its members' are)."""
    members = ensemble_members(posterior)
    return all(isinstance(p, NORMALISED_POSTERIORS) for p in (members or [posterior]))


def learned_embedding(spec: RunSpec, posterior: Any) -> Any:
    """The trained embedding net of a learned summary (``summary=hh_cnn``), else None."""
    if not hasattr(spec.parts.summary, "embedding_net"):
        return None
    members = ensemble_members(posterior) or [posterior]
    return getattr(getattr(members[0], "posterior_estimator", None), "embedding_net", None)


def calibrate(spec: RunSpec, posterior: Any, samples: Tensor, predictive_x: Tensor,
              region: Optional[Any] = None) -> tuple[DiagnosticsResult, Dataset]:
    """SBC, coverage, TARP and recovery on held-out simulations; PPC (on ``predictive_x``) and C2ST at x_o.

    The held-out θ come from the prior, or from ``region`` (a truncated prior) where the posterior
    only claims to hold there (Deistler et al. 2022 check TSNPE's coverage the same way); the test
    set's posterior samples are then truncated to the region too: under the truncated prior the
    exact posterior is zero outside it, and SBC and coverage compare against that posterior.
    """
    settings, parts, seeds = spec.diagnostics, spec.parts, spec.seeds
    test = simulate(spec, "test", settings.num_test, proposal=region)
    # the reference depends on x_o only: c2st works for simulated and given observations alike
    reference = parts.simulator.reference_posterior(spec.observation.x, settings.num_observation_samples,
                                                    seeds.reference)
    inputs = DiagnosticsInputs(
        posterior, test.theta, test.x,
        parameter_names=parts.parameter_names,
        prior_samples=sample_prior(parts.prior if region is None else region, 10_000, seeds.prior_moments),
        x_o=spec.observation.x,
        observed_samples=samples,  # θ*'s log-prob is logged with the samples, not here
        predictive_x=predictive_x,
        statistic_names=[*getattr(parts.summary, "names", []), *parts.simulator.context] or None,
        reference_samples=reference,
        embedding_net=learned_embedding(spec, posterior),
        region=None if region is None else region.contains,
    )
    result = compute_diagnostics(inputs, settings, DiagnosticsSeeds(**seeds.diagnostics))
    return result, test
