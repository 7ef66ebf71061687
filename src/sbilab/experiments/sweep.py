"""Multirun sweeps: one MLflow parent run per Hydra multirun, created before any job starts.

The Hydra callback runs in the launching process: it initialises the store (so
parallel jobs never race on schema creation), opens the parent run and hands its id
to the jobs through the environment; each job (``scripts/train.py`` in a launcher's
process) finds it with :func:`sweep_job`. Hydra turns callback exceptions into
warnings, so a failure here exits the multirun instead of raising.

Jobs on other machines (``hydra/launcher=slurm``) must see what the launching machine
sees: the simulation cache (so each budget is simulated once) and the tracking store
(where the parent run is). :func:`check_job_sees_sweep` checks both in each job: the
callback leaves a marker file in ``paths.cache_dir``, which a job on a node that does
not share that folder cannot find.
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sbilab.errors import ConfigError

if TYPE_CHECKING:  # the callback is built for every run: nothing heavy at import
    from sbilab.spec import RunSpec

PARENT_ENV = "SBILAB_PARENT_RUN_ID"
SWEEP_ENV = "SBILAB_SWEEP_ID"
#: the keys the multirun sweeps over (``estimator=maf,mdn`` → ``estimator``), space-separated
SWEPT_ENV = "SBILAB_SWEPT_KEYS"
#: the marker file the launching process leaves in ``paths.cache_dir`` for its jobs to find
MARKER_ENV = "SBILAB_SWEEP_MARKER"


@dataclass
class SweepJob:
    """The parent run of the multirun this job belongs to, the job's sweep tags and its swept values."""

    parent_run_id: str
    tags: dict[str, str]
    swept: dict[str, str]  # this job's value of each swept key, in command-line order


def sweep_job() -> Optional[SweepJob]:
    """This job's sweep context inside a multirun (Hydra's runtime config), else ``None``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    parent_run_id = os.environ.get(PARENT_ENV)
    if hydra_cfg.mode != RunMode.MULTIRUN or not parent_run_id:
        return None
    tags = {f"choice.{group}": str(option) for group, option in hydra_cfg.runtime.choices.items()
            if not group.startswith("hydra") and option is not None}
    tags["sbilab.sweep_id"] = os.environ.get(SWEEP_ENV, "")
    tags["sbilab.job"] = str(hydra_cfg.job.num)
    tags["sbilab.overrides"] = " ".join(hydra_cfg.overrides.task)
    values = {item.key_or_group: item.get_value_element_as_str() for item in parse(hydra_cfg.overrides.task)
              if item.value() is not None}
    swept = {key: values[key] for key in os.environ.get(SWEPT_ENV, "").split() if key in values}
    return SweepJob(parent_run_id, tags, swept)


def parse(overrides: Any) -> list[Any]:
    """Hydra's own parse of command-line overrides (``key=value``, ``key=a,b``, ``+key=...``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def swept_keys(overrides: Any) -> list[str]:
    """The keys of the overrides that sweep (``a=1,2``, ``range(...)``, ``glob(...)``), in order; not Hydra's own."""
    return [item.key_or_group for item in parse(overrides)
            if item.is_sweep_override() and not item.key_or_group.startswith("hydra")]


def check_job_sees_sweep(spec: RunSpec, job: SweepJob) -> None:
    """Fail with one line when this job cannot see the launching machine's simulation cache or tracking store."""
    from sbilab import tracking

    marker = os.environ.get(MARKER_ENV)
    if marker and spec.simulation.cache and Path(marker).parent.parent == spec.paths.cache_dir \
            and not Path(marker).is_file():
        raise ConfigError(
            f"paths.cache_dir={str(spec.paths.cache_dir)!r} is not the folder the sweep was launched with: this job "
            f"(on {socket.gethostname()}) does not see its marker {Path(marker).name}; put the simulation cache on a "
            "filesystem every node shares (docs/scale-out.md), or set simulation.cache=false")
    tracking.check_run_visible(spec.tracking.uri, job.parent_run_id, "the sweep's parent run")


def _leave_marker(config: DictConfig, sweep_id: str) -> Optional[Path]:
    """The marker of :func:`check_job_sees_sweep` in the cache folder (None when simulations are not cached)."""
    if not config.simulation.cache:
        return None
    marker = Path(str(config.paths.cache_dir)) / ".sweeps" / sweep_id
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{socket.gethostname()}\n")
    return marker


def _import_what_finish_needs() -> None:
    """Import now what closing the parent imports: at interpreter exit Python refuses new atexit
    hooks, and scikit-learn (the comparison's C2ST) registers one through joblib when imported.
    This costs the launching process a few seconds, once per multirun."""
    import sbi.utils.metrics  # noqa: F401

    import sbilab.experiments.compare  # noqa: F401
    import sbilab.experiments.overview  # noqa: F401
    import sbilab.experiments.posterior_pairs  # noqa: F401
    import sbilab.experiments.report  # noqa: F401
    import sbilab.plots.comparison  # noqa: F401


class SweepParentRun(Callback):
    """Hydra callback (``hydra.callbacks``): a parent run around a multirun, compared when it ends.

    MLflow is imported only when a multirun starts, so single runs start fast.
    """

    def __init__(self, compare: bool = True) -> None:
        self.compare = compare
        self.stack: Optional[ExitStack] = None
        self.parent: Any = None
        self.marker: Optional[Path] = None

    def __getstate__(self) -> dict[str, Any]:
        """Launchers pickle the callbacks into their jobs: the open parent run stays in this process."""
        return {**self.__dict__, "stack": None, "parent": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            from hydra.core.hydra_config import HydraConfig

            from sbilab import tracking

            HydraConfig.instance().set_config(config)
            sweep_dir = Path(str(config.hydra.sweep.dir))
            sweep_id = f"{sweep_dir.parent.name}_{sweep_dir.name}"
            overrides = " ".join(config.hydra.overrides.task)
            swept = swept_keys(config.hydra.overrides.task)
            self.stack = ExitStack()
            self.parent = self.stack.enter_context(tracking.parent_run(
                str(config.tracking.uri), str(config.tracking.experiment or config.simulator.name),
                config.tracking.artifact_location, sweep_id=sweep_id, role="sweep",
                tags={"hydra.sweep_dir": str(sweep_dir), "sbilab.sweep_overrides": overrides,
                      **tracking.source_tags(Path(str(config.paths.root)))},
                run_name=f"sweep-{sweep_id}" + (f" ({', '.join(swept)})" if swept else "")))
        except Exception as error:  # Hydra would only warn: stop the multirun instead
            print(f"sbilab: error: cannot create the sweep's parent run: {error}", file=sys.stderr)
            raise SystemExit(2) from error
        os.environ[PARENT_ENV] = self.parent.run_id
        os.environ[SWEEP_ENV] = sweep_id
        os.environ[SWEPT_ENV] = " ".join(swept)
        self.marker = _leave_marker(config, sweep_id)
        if self.marker is not None:
            os.environ[MARKER_ENV] = str(self.marker)
        # Hydra skips on_multirun_end when a job failed: close the parent at exit in any case
        _import_what_finish_needs()
        atexit.register(self._finish, interrupted=True)
        print(f"sbilab: sweep {sweep_id}: parent run {self.parent.run_id}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._finish(interrupted=False)

    def _finish(self, interrupted: bool) -> None:
        """Close the parent (FAILED unless every child finished) and compare the children, once."""
        if self.stack is None:
            return
        stack, parent, self.stack = self.stack, self.parent, None
        parent.jobs_failed = interrupted
        stack.close()
        if self.marker is not None:
            self.marker.unlink(missing_ok=True)
        from sbilab.experiments.report import ui_command, ui_hint

        print(f"sbilab: sweep {'ended early' if interrupted else 'finished'}: {parent.summary}", flush=True)
        link = ui_hint(parent.uri, parent.recorder.experiment_id, parent.run_id)
        print(f"sbilab: open it with `{ui_command()}`, then {link}", flush=True)
        if not self.compare:
            return
        from sbilab.experiments.compare import compare_sweep

        try:
            compare_sweep(parent.uri, parent.run_id)
        except Exception as error:
            print(f"sbilab: error: comparison of sweep {parent.run_id} failed: {error}", file=sys.stderr)
            if not interrupted:
                raise SystemExit(2) from error
