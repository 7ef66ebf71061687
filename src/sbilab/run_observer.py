"""Training as it happens, into the run's record: per-epoch losses, each dataset and round (the
observer that ``pipeline.train`` hands the training strategies)."""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

from lightning.pytorch.callbacks import Callback

from sbilab import tracking
from sbilab.simulation import Dataset
from sbilab.spec import NAME_SEPARATOR, RunSpec, budget_label
from sbilab.training import EnsembleTraining, EpochProgress

log = logging.getLogger(__name__)


class RecordingObserver:
    """Records training as it happens: per-epoch losses, how each dataset was obtained (the prior
    simulations as the run's dataset input), each round; ``progress``: a line per epoch on the terminal."""

    def __init__(self, recorder: tracking.RunRecorder, spec: RunSpec, progress: bool = False) -> None:
        self.recorder = recorder
        self.spec = spec
        self.progress = progress

    def epoch_callbacks(self, prefix: str) -> Sequence[Callback]:
        shown = [EpochProgress(f"training {prefix.rstrip('/')}".strip())] if self.progress else []
        return [self.recorder.epoch_callback(prefix=prefix), *shown]

    def dataset_simulated(self, data: Dataset, round_: int) -> None:
        self.recorder.log_metrics(data.metrics("" if round_ == 0 else f"round_{round_}/"))
        if round_ == 0:
            self.recorder.set_tags({"sbilab.cache": data.cache_status})
            tracking.log_datasets(self.recorder, [simulations_record(self.spec, data, "train", "training")])
        log.info("round %d: simulated %d (%d invalid) in %.1fs, cache: %s (%d/%d chunks reused)", round_,
                 data.num_requested, data.num_invalid, data.seconds, data.cache_status, data.chunks_from_cache,
                 data.chunks_total)

    def round_finished(self, round_: int, metrics: Mapping[str, float]) -> None:
        self.recorder.log_metrics(metrics, step=round_)

    def networks_trained(self, networks: EnsembleTraining) -> None:
        self.recorder.log_metrics(networks.metrics())


def simulations_record(spec: RunSpec, data: Dataset, purpose: str, context: str) -> tracking.DatasetRecord:
    """Prior simulations (``purpose``: train, test) as a dataset input: digest = the cache key, source = its cache
    folder (when cached), columns = θ names then statistic names."""
    choices, parts = spec.choices, spec.parts
    statistics = list(getattr(parts.summary, "names", []))
    if len(statistics) != parts.x_dim:  # unnamed (e.g. raw traces for a learned summary): one column
        statistics = [f"x[0:{parts.x_dim}]"]
    return tracking.DatasetRecord(
        name=NAME_SEPARATOR.join([choices["simulator"], choices["prior"], choices["summary"], purpose,
                                  budget_label(data.num_requested)]),
        digest=data.key, context=context, columns=[*parts.parameter_names, *statistics],
        source=str(spec.paths.cache_dir / data.key) if spec.simulation.cache else None,
        profile={"simulations": data.num_requested, "valid": int(data.theta.shape[0]), "invalid": data.num_invalid},
    )
