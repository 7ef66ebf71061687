"""Multirun sweeps: one MLflow parent run per Hydra multirun, created before any job starts.

The Hydra callback runs in the launching process: it initialises the store (so
parallel jobs never race on schema creation), creates the parent run and hands
its id to the jobs through the environment. Hydra turns callback exceptions
into warnings, so a failure here exits the multirun instead of raising.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

PARENT_ENV = "SBILAB_PARENT_RUN_ID"
SWEEP_ENV = "SBILAB_SWEEP_ID"
TRACKING_ENV = "SBILAB_SWEEP_TRACKING_URI"


class SweepParentRun(Callback):
    """Hydra callback (``hydra.callbacks``): parent run around a multirun.

    MLflow is imported only when a multirun starts, so single runs start fast.
    """

    def __init__(self, compare: bool = True) -> None:
        self.compare = compare
        self.parent_run_id: Optional[str] = None
        self.uri: Optional[str] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            from hydra.core.hydra_config import HydraConfig

            from sbilab import tracking

            HydraConfig.instance().set_config(config)
            sweep_dir = Path(str(config.hydra.sweep.dir))
            sweep_id = f"{sweep_dir.parent.name}_{sweep_dir.name}"
            self.uri = str(config.tracking.uri)
            experiment = str(config.tracking.experiment or config.simulator.name)
            overrides = " ".join(config.hydra.overrides.task)
            self.parent_run_id = tracking.create_parent_run(
                self.uri, experiment, config.tracking.artifact_location, sweep_id=sweep_id,
                tags={"hydra.sweep_dir": str(sweep_dir), "sbilab.sweep_overrides": overrides},
            )
        except Exception as error:  # Hydra would only warn: stop the multirun instead
            print(f"sbilab: error: cannot create the sweep's parent run: {error}", file=sys.stderr)
            raise SystemExit(2) from error
        os.environ[PARENT_ENV] = self.parent_run_id
        os.environ[SWEEP_ENV] = sweep_id
        os.environ[TRACKING_ENV] = self.uri
        # Hydra skips on_multirun_end when a job failed: close the parent at exit in any case
        atexit.register(self._finish, interrupted=True)
        print(f"sbilab: sweep {sweep_id}: parent run {self.parent_run_id}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._finish(interrupted=False)

    def _finish(self, interrupted: bool) -> None:
        """Close the parent (FAILED unless every child finished) and compare the children, once."""
        if self.parent_run_id is None or self.uri is None:
            return
        parent_run_id, self.parent_run_id = self.parent_run_id, None
        from sbilab import tracking

        summary = tracking.finish_parent_run(self.uri, parent_run_id, jobs_failed=interrupted)
        print(f"sbilab: sweep {'ended early' if interrupted else 'finished'}: {summary}", flush=True)
        if not self.compare:
            return
        from sbilab.compare import compare_sweep

        try:
            compare_sweep(self.uri, parent_run_id)
        except Exception as error:
            print(f"sbilab: error: comparison of sweep {parent_run_id} failed: {error}", file=sys.stderr)
            if not interrupted:
                raise SystemExit(2) from error
