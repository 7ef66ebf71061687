"""What a run writes to MLflow after training and diagnosing: the posterior, the training curves, the
samples, figures and gates at x_o, and the description the UI shows (through :mod:`sbilab.tracking`).

Split from :mod:`sbilab.pipeline` (the stages) so that a driver that trains once and diagnoses many
observations (:mod:`sbilab.experiments.cells`) writes each part where it belongs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import numpy as np
import yaml

from sbilab import tracking
from sbilab.diagnostics import DiagnosticsResult
from sbilab.plots.diagnostics import diagnostic_figures
from sbilab.plots.posterior import pairplot, predictive_traces, recording_overlay
from sbilab.plots.report import diagnostics_report
from sbilab.plots.training import loss_curves
from sbilab.posterior_io import SPEC_FILE, STATE_FILE, estimators_state, posterior_spec
from sbilab.spec import RunSpec

if TYPE_CHECKING:
    from sbilab.pipeline import Diagnosis
    from sbilab.training import Fitted


def record(recorder: tracking.RunRecorder, spec: RunSpec, fitted: Fitted, diagnosis: Optional[Diagnosis]) -> None:
    """The posterior artifact and training curves, (when given) everything ``diagnose`` found, and the
    run's description (verdict, gate table, warnings) for the UI."""
    record_posterior(recorder, spec, fitted)
    if fitted.networks.choice is not None:  # what recipe=auto tried, chose and why
        recorder.log_dict(fitted.networks.choice.record(), "recipe.json")
    first = fitted.networks.first
    others = [member.val_losses for member in fitted.networks.members[1:]]
    recorder.log_figure(loss_curves(first.train_losses, first.val_losses, best_epoch(first.val_losses), others),
                        "plots/loss.png")
    record_diagnosis(recorder, spec, diagnosis, fitted.networks.metrics())


def record_diagnosis(recorder: tracking.RunRecorder, spec: RunSpec, diagnosis: Optional[Diagnosis],
                     metrics: Optional[Mapping[str, float]] = None) -> None:
    """What ``diagnose`` found (when given) and the run's description from it and ``metrics`` (training's)."""
    metrics = dict(metrics or {})
    calibration = None if diagnosis is None else diagnosis.calibration
    if diagnosis is not None:
        record_observation(recorder, spec, diagnosis)
        metrics.update(diagnosis.metrics)
    if calibration is None:
        tracking.set_description(recorder, tracking.run_description(None, metrics))
        return
    gates = record_calibration(recorder, spec, calibration)
    tracking.set_description(recorder, tracking.run_description(gates, metrics, calibration.notes,
                                                               calibration.warnings()))


def record_observation(recorder: tracking.RunRecorder, spec: RunSpec, diagnosis: Diagnosis) -> None:
    """The samples at x_o, the metrics of the diagnose stage, the pairplot and the predictive traces."""
    recorder.log_array(diagnosis.samples.numpy(), "posterior_samples.npy")
    recorder.log_metrics(diagnosis.metrics)
    observation = spec.observation
    recorder.log_figure(pairplot(diagnosis.samples, spec.parts.parameter_names, prior_limits(spec),
                                 observation.theta), "plots/pairplot.png")
    if diagnosis.predictive_distance is not None:
        for path, array in diagnosis.predictive_distance.arrays().items():
            recorder.log_array(array, path)
    if diagnosis.predictive_traces is not None:
        time_axis, current, scale = spec.parts.simulator.trace_axes()
        traces = (time_axis, observation.raw.numpy(), diagnosis.predictive_traces.numpy(), current, scale)
        if observation.recording is None:
            recorder.log_figure(predictive_traces(*traces), "plots/ppc.png")
        else:  # a panel per simulated trace, the recording behind each: spike trains stay readable
            recorder.log_figure(recording_overlay(*traces, title=f"cell {observation.recording.cell_id}"),
                                "plots/ppc_traces.png")


def record_calibration(recorder: tracking.RunRecorder, spec: RunSpec, calibration: DiagnosticsResult) -> dict:
    """Figures, the report, raw arrays, ``gates.json``, gate metrics and tags; returns the gates."""
    pngs = {path: recorder.log_figure(figure, path) for path, figure in diagnostic_figures(calibration).items()}
    recorder.log_text(diagnostics_report(calibration, pngs, title=spec.tracking.run_name or spec.experiment_name),
                      "diagnostics/report.html")  # the artifacts' own bytes: each figure is drawn once
    for path, array in calibration.arrays.items():
        recorder.log_array(array, path)
    gates = calibration.gates_dict()
    recorder.log_dict(gates, "diagnostics/gates.json")
    recorder.log_metrics(tracking.gate_metrics(gates))
    if calibration.notes:
        recorder.log_text("\n".join(calibration.notes) + "\n", "diagnostics/notes.txt")
    recorder.set_tags(calibration.tags())
    return gates


def record_posterior(recorder: tracking.RunRecorder, spec: RunSpec, fitted: Fitted) -> None:
    """The ``posterior/`` artifact (spec + weights of every network) and, unless ``tracking.log_model=false``,
    the pyfunc model over it."""
    configs = spec.part_configs
    learned_summary = hasattr(spec.parts.summary, "embedding_net")  # its weights are in the state: rebuild it
    member_configs = fitted.networks.configs
    saved = posterior_spec(configs["method"], member_configs[0] if member_configs else configs["estimator"],
                           configs["prior"], len(spec.parts.parameter_names), spec.parts.x_dim,
                           summary_cfg=configs["summary"] if learned_summary else None,
                           ensemble_size=len(fitted.networks.members), member_estimators=member_configs)
    recorder.log_text(yaml.safe_dump(saved, sort_keys=False), f"posterior/{SPEC_FILE}")
    recorder.log_torch_state(estimators_state(fitted.networks.estimators), f"posterior/{STATE_FILE}")
    if spec.tracking.log_model:
        tracking.log_posterior_model(recorder)


def best_epoch(val_losses: Sequence[float]) -> int:
    """The epoch whose weights were kept (-1 before any epoch)."""
    return int(np.nanargmin(val_losses)) if len(val_losses) else -1


def prior_limits(spec: RunSpec) -> Optional[list[list[float]]]:
    """[low, high] per parameter for bounded priors (pairplot axes), else None."""
    prior = spec.part_configs["prior"]
    if "low" in prior and "high" in prior:
        return [[float(lo), float(hi)] for lo, hi in zip(prior["low"], prior["high"])]
    return None
