"""run(cfg): the one-way flow config → simulate → train → diagnose → record.

Each stage takes and returns plain objects; the MLflow run is opened before the
first stage so that any failure marks it FAILED, and it is FINISHED only after
the last artifact has been written.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from sbi.inference.posteriors import DirectPosterior, VectorFieldPosterior
from torch import Tensor

from sbilab.config import check_config, check_tracking_uri
from sbilab.diagnostics.settings import DiagnosticsSeeds
from sbilab.observation import Observation
from sbilab.parts import PART_GROUPS, Parts, build_parts, part_config
from sbilab.plots.posterior import pairplot, predictive_traces
from sbilab.plots.training import loss_curves
from sbilab.posterior_io import SPEC_FILE, STATE_FILE, estimators_state, posterior_spec
from sbilab.rng import seeded
from sbilab.simulation import Dataset, sample_prior, simulate_dataset, stage_seed
from sbilab.simulators.base import derive_seeds
from sbilab.methods import SNPE
from sbilab.rounds import train_sequential
from sbilab.training import EnsembleTraining, member_prefix, train_ensemble
from sbilab.ensemble import ensemble_members, ensemble_posterior
from sbilab import tracking

log = logging.getLogger(__name__)

@dataclass
class RunResult:
    """What a finished run reports back to the caller."""

    run_id: str
    experiment_id: str
    gates: Optional[str]
    metrics: dict[str, float] = field(default_factory=dict)


def experiment_name(cfg: DictConfig) -> str:
    return cfg.tracking.experiment or cfg.simulator.name


def run_tags(cfg: DictConfig, root: Path) -> dict[str, str]:
    tags = {f"sbilab.{group}": str(cfg[group].name) for group in PART_GROUPS}
    tags["sbilab.git_commit"] = tracking.git_commit(root)
    return tags


def run(cfg: DictConfig, parts: Optional[Parts] = None, *, parent_run_id: Optional[str] = None,
        extra_tags: Optional[Mapping[str, str]] = None) -> RunResult:
    """Run one experiment end to end and record it in MLflow (``parts``: already built by the caller)."""
    if parts is None:
        check_config(cfg)
        check_tracking_uri(str(cfg.tracking.uri))
        parts = build_parts(cfg)
    torch.set_num_threads(int(cfg.num_threads))
    root = Path(cfg.paths.root)
    observation = parts.observation
    tags = {**run_tags(cfg, root), **(extra_tags or {})}
    with tracking.start_run(
        cfg.tracking.uri, experiment_name(cfg), cfg.tracking.artifact_location,
        run_name=cfg.tracking.run_name, tags=tags, parent_run_id=parent_run_id,
    ) as recorder:
        started = time.perf_counter()
        record_config(cfg, recorder)
        recorder.log_array(observation.x.numpy(), "observation.npy")

        if isinstance(parts.method, SNPE):
            last = parts.method.num_rounds - 1
            sequential, posterior, _ = train_sequential(
                parts.method, part_config(cfg, "estimator"),
                lambda proposal, round_, num: simulate_round(cfg, parts, recorder, proposal, round_, num),
                observation.x, parts.prior, trainer_config(cfg), stage_seed(int(cfg.seed), "train"),
                int(cfg.simulation.num_simulations),
                callbacks_for_round=lambda r: [recorder.epoch_callback(prefix="" if r == last else f"round_{r}/")],
                on_round_end=lambda r, metrics: recorder.log_metrics(metrics, step=r),
                embedding_net=getattr(parts.summary, "embedding_net", None),
            )
            trained = EnsembleTraining([sequential])
        else:
            trained, posterior, _ = train_amortised(cfg, parts, recorder)
        recorder.log_metrics(trained.metrics())

        with seeded(stage_seed(int(cfg.seed), "observation-samples")):
            samples = posterior.sample((int(cfg.diagnostics.num_observation_samples),), x=observation.x,
                                       show_progress_bars=False)
        metrics = {**trained.metrics(),
                   **record_posterior(cfg, parts, posterior, observation, samples, trained, recorder)}
        gates = None
        if cfg.diagnostics.enabled:
            diag_metrics, gates = diagnose(cfg, parts, posterior, observation, samples, recorder)
            metrics.update(diag_metrics)
        recorder.log_metrics({"time/total_s": time.perf_counter() - started})
        return RunResult(recorder.run_id, recorder.experiment_id, gates, metrics)


def record_config(cfg: DictConfig, recorder: tracking.RunRecorder) -> None:
    """The run's params (machine paths left out) and its resolved ``config.yaml``."""
    recorder.log_params(tracking.loggable_params(OmegaConf.to_container(cfg, resolve=True)))
    recorder.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")


def trainer_config(cfg: DictConfig) -> dict[str, Any]:
    """The ``trainer`` group with Lightning's root folder (the run's output folder)."""
    return {**part_config(cfg, "trainer"), "root_dir": str(Path(cfg.paths.output_dir))}


def train_amortised(cfg: DictConfig, parts: Parts,
                    recorder: tracking.RunRecorder) -> tuple[EnsembleTraining, Any, Dataset]:
    """Simulate from the prior (cached), train the network (or ``trainer.ensemble_size`` networks) on it
    and wrap it as a posterior; return the trained networks, the posterior and the training data."""
    data = simulate(cfg, parts, purpose="train", num=int(cfg.simulation.num_simulations))
    recorder.log_metrics(simulation_metrics(data))
    recorder.set_tags({"sbilab.cache": cache_status(data)})
    log.info("simulated %d (%d invalid) in %.1fs, cache: %s (%d/%d chunks reused)", data.num_requested,
             data.num_invalid, data.seconds, cache_status(data), data.chunks_from_cache, data.chunks_total)
    embedding_net = getattr(parts.summary, "embedding_net", None)  # a learned summary's x-embedding factory
    trained = train_ensemble(parts.method, part_config(cfg, "estimator"), data.theta, data.x, trainer_config(cfg),
                             stage_seed(int(cfg.seed), "train"),
                             lambda k: [recorder.epoch_callback(prefix=member_prefix(k))],
                             embedding_net=embedding_net, prior=parts.prior)
    posterior = ensemble_posterior([parts.method.build_posterior(e, parts.prior) for e in trained.estimators])
    return trained, posterior, data


def simulate(cfg: DictConfig, parts: Parts, *, purpose: str, num: int) -> Dataset:
    """The simulation stage with this run's settings and cache key."""
    sim = cfg.simulation
    key_parts = {group: part_config(cfg, group) for group in ("simulator", "prior", "summary")}
    return simulate_dataset(
        parts.simulator, parts.prior, parts.summary, num, int(cfg.seed),
        purpose=purpose, chunk_size=int(sim.chunk_size), num_workers=int(sim.num_workers), backend=str(sim.backend),
        cache_dir=cfg.paths.cache_dir if sim.cache else None, key_parts=key_parts,
        invalid_warn_fraction=float(sim.invalid_warn_fraction),
    )


def simulate_round(cfg: DictConfig, parts: Parts, recorder: tracking.RunRecorder, proposal: Any, round_: int,
                   num: int) -> tuple[Tensor, Tensor]:
    """Sequential methods: round 0 is the usual (cached) prior simulation; later rounds draw θ from
    ``proposal`` (the last posterior at x_o) and are not cached."""
    if round_ == 0:
        data = simulate(cfg, parts, purpose="train", num=num)
        recorder.set_tags({"sbilab.cache": cache_status(data)})
        prefix = ""
    else:
        sim = cfg.simulation
        data = simulate_dataset(
            parts.simulator, proposal, parts.summary, num, int(cfg.seed), purpose=f"train-round-{round_}",
            chunk_size=int(sim.chunk_size), num_workers=int(sim.num_workers), backend=str(sim.backend),
            cache_dir=None, key_parts=None, invalid_warn_fraction=float(sim.invalid_warn_fraction),
        )
        prefix = f"round_{round_}/"
    recorder.log_metrics(simulation_metrics(data, prefix=prefix))
    log.info("round %d: simulated %d (%d invalid) in %.1fs", round_, data.num_requested, data.num_invalid,
             data.seconds)
    return data.theta, data.x


def simulation_metrics(data: Dataset, prefix: str = "") -> dict[str, float]:
    return {
        f"time/{prefix}simulate_s": data.seconds,
        f"simulation/{prefix}per_second": data.per_second,
        f"simulation/{prefix}invalid": data.num_invalid,
        f"simulation/{prefix}chunks_from_cache": data.chunks_from_cache,
    }


def cache_status(data: Dataset) -> str:
    if data.from_cache:
        return "hit"
    return "partial" if data.chunks_from_cache else "miss"


def record_posterior(cfg: DictConfig, parts: Parts, posterior: Any, observation: Observation, samples: Tensor,
                     trained: EnsembleTraining, recorder: tracking.RunRecorder) -> dict[str, float]:
    """Posterior samples at x_o, the posterior artifact, and the figures about them."""
    recorder.log_array(samples.numpy(), "posterior_samples.npy")
    metrics: dict[str, float] = {}
    if observation.theta is not None:
        if is_normalised(posterior):  # MCMC/VI/importance posteriors know it up to a constant
            metrics["posterior/logprob_true_theta"] = float(
                posterior.log_prob(observation.theta[None], x=observation.x)[0])
        metrics["posterior/true_theta_hpd_level"] = true_theta_hpd_level(posterior, samples, observation)
        recorder.log_metrics(metrics)

    log_posterior(cfg, parts, trained, recorder)
    first = trained.first
    best_epoch = int(np.nanargmin(first.val_losses)) if first.val_losses else -1
    others = [member.val_losses for member in trained.members[1:]]
    recorder.log_figure(loss_curves(first.train_losses, first.val_losses, best_epoch, others), "plots/loss.png")
    limits = prior_limits(cfg)
    recorder.log_figure(pairplot(samples, parts.parameter_names, limits, observation.theta), "plots/pairplot.png")
    figure = ppc_traces(cfg, parts, samples, observation)
    if figure is not None:
        recorder.log_figure(figure, "plots/ppc.png")
    return metrics


def log_posterior(cfg: DictConfig, parts: Parts, trained: EnsembleTraining, recorder: tracking.RunRecorder) -> None:
    """The ``posterior/`` artifact (spec + trained weights of every member) and, unless
    ``tracking.log_model=false``, the pyfunc model over it."""
    learned_summary = hasattr(parts.summary, "embedding_net")  # its weights are in the state dict: rebuild it on load
    spec = posterior_spec(part_config(cfg, "method"), part_config(cfg, "estimator"), part_config(cfg, "prior"),
                          len(parts.parameter_names), parts.x_dim,
                          summary_cfg=part_config(cfg, "summary") if learned_summary else None,
                          ensemble_size=len(trained.members))
    recorder.log_text(yaml.safe_dump(spec, sort_keys=False), f"posterior/{SPEC_FILE}")
    recorder.log_torch_state(estimators_state(trained.estimators), f"posterior/{STATE_FILE}")
    if cfg.tracking.get("log_model", True):
        tracking.log_posterior_model(recorder)  # pyfunc model (from code) over the posterior/ folder


#: posteriors whose log_prob is normalised (NPE-style and vector-field posteriors)
NORMALISED_POSTERIORS = (DirectPosterior, VectorFieldPosterior)


def is_normalised(posterior: Any) -> bool:
    """Whether ``posterior.log_prob`` is normalised (an ensemble's is when all its members' are)."""
    members = ensemble_members(posterior)
    return all(isinstance(p, NORMALISED_POSTERIORS) for p in (members or [posterior]))


def true_theta_hpd_level(posterior: Any, samples: Tensor, observation: Observation) -> float:
    """Smallest HPD credibility level whose region contains θ* (θ* lies in the 95 % region iff < 0.95)."""
    from sbilab.diagnostics.sampling import posterior_log_prob_batched

    x = observation.x[None]
    lp_samples = posterior_log_prob_batched(posterior, samples[:, None], x)[:, 0]
    lp_true = posterior_log_prob_batched(posterior, observation.theta[None, None], x)[0, 0]
    return float((lp_samples > lp_true).float().mean())


def prior_limits(cfg: DictConfig) -> Optional[list[list[float]]]:
    """[low, high] per parameter for bounded priors (pairplot axes), else None."""
    if "low" in cfg.prior and "high" in cfg.prior:
        return [[float(lo), float(hi)] for lo, hi in zip(cfg.prior.low, cfg.prior.high)]
    return None


def ppc_traces(cfg: DictConfig, parts: Parts, samples: Tensor, observation: Observation, num_traces: int = 3) -> Any:
    """Observed trace against traces simulated from a few posterior samples (trace simulators only)."""
    axes = parts.simulator.trace_axes()
    if axes is None or observation.raw is None:
        return None
    time_axis, current, scale = axes
    if observation.raw.numel() != len(time_axis):
        return None
    seeds = derive_seeds(stage_seed(int(cfg.seed), "ppc-traces"), 0, num_traces)
    predicted = parts.simulator.simulate(samples[:num_traces], seeds).numpy()
    return predictive_traces(time_axis, observation.raw.numpy(), predicted, current, scale)


def diagnostics_seeds(seed: int) -> DiagnosticsSeeds:
    """The diagnostics' seeds by purpose: the first five equal to the values used before the split
    (base, +1, +2, +3), the new ones by name (to move to ``rng.py``)."""
    base = stage_seed(int(seed), "diagnostics")
    return DiagnosticsSeeds(sampling=base, c2st=base, tarp=base + 1, observation_log_prob=base + 2,
                            observation_samples=base + 3, tarp_bootstrap=stage_seed(int(seed), "tarp-bootstrap"),
                            lc2st=stage_seed(int(seed), "lc2st"),
                            misspecification=stage_seed(int(seed), "misspecification"))


def learned_embedding(parts: Parts, posterior: Any) -> Any:
    """The trained embedding net of a learned summary (``summary=hh_cnn``), else None."""
    if not hasattr(parts.summary, "embedding_net"):
        return None
    members = ensemble_members(posterior) or [posterior]
    estimator = getattr(members[0], "posterior_estimator", None)
    return getattr(estimator, "embedding_net", None)


def diagnose(cfg: DictConfig, parts: Parts, posterior: Any, observation: Observation, samples: Tensor,
             recorder: tracking.RunRecorder) -> tuple[dict[str, float], str]:
    """Calibration on a held-out test set and local checks at x_o; log and return the verdict."""
    from sbilab.diagnostics import DiagnosticsInputs, DiagnosticsSettings, compute_diagnostics
    from sbilab.plots.diagnostics import diagnostic_figures
    from sbilab.plots.report import diagnostics_report

    started = time.perf_counter()
    settings = DiagnosticsSettings.from_mapping(cfg.diagnostics)
    test = simulate(cfg, parts, purpose="test", num=settings.num_test)
    recorder.log_metrics(simulation_metrics(test, prefix="test_"))

    ppc_theta = samples[: settings.num_ppc]  # the first draws of the (seeded) posterior samples at x_o
    ppc_seeds = derive_seeds(stage_seed(int(cfg.seed), "ppc"), 0, ppc_theta.shape[0])
    predictive_x = parts.simulator.simulate_summaries(ppc_theta, ppc_seeds, parts.summary)
    # the reference depends on x_o only: c2st works for simulated and given observations alike
    reference = parts.simulator.reference_posterior(observation.x, settings.num_observation_samples,
                                                    stage_seed(int(cfg.seed), "reference"))
    inputs = DiagnosticsInputs(
        posterior, test.theta, test.x,
        parameter_names=parts.parameter_names,
        prior_samples=sample_prior(parts.prior, 10_000, stage_seed(int(cfg.seed), "prior-moments")),
        x_o=observation.x,
        observed_samples=samples,  # θ*'s log-prob is logged with the samples, not here
        predictive_x=predictive_x,
        statistic_names=list(getattr(parts.summary, "names", [])) or None,
        reference_samples=reference,
        embedding_net=learned_embedding(parts, posterior),
    )
    result = compute_diagnostics(inputs, settings, diagnostics_seeds(int(cfg.seed)))
    figures = diagnostic_figures(result)
    report = diagnostics_report(result, figures, title=str(cfg.tracking.run_name or experiment_name(cfg)))
    metrics = dict(result.metrics)
    metrics["time/diagnose_s"] = time.perf_counter() - started
    recorder.log_metrics(metrics)
    for path, figure in figures.items():
        recorder.log_figure(figure, path)
    for path, array in result.arrays.items():
        recorder.log_array(array, path)
    recorder.log_dict(result.gates_dict(), "diagnostics/gates.json")
    recorder.log_text(report, "diagnostics/report.html")
    if result.notes:
        recorder.log_text("\n".join(result.notes) + "\n", "diagnostics/notes.txt")
    recorder.set_tags(result.tags())
    for warning in result.warnings():
        print(f"sbilab: WARNING: {warning}", flush=True)
    return metrics, result.verdict
