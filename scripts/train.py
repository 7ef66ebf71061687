"""Train one sbilab run: `python scripts/train.py [group=option ...] [key=value ...]`.

Also the job of a multirun (`--multirun`): each job becomes a child of the
sweep's parent run (created by the `sbilab.experiments.sweep.SweepParentRun` callback).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from sbilab import entry


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from sbilab.config import preflight

    entry.guarded(lambda: preflight(cfg))  # before the heavy imports: a typo costs a second
    from sbilab.experiments.report import train_and_report
    from sbilab.experiments.sweep import check_job_sees_sweep, sweep_job
    from sbilab.spec import prepare

    spec = entry.guarded(lambda: prepare(cfg))  # bad input fails here, before any simulation or MLflow run
    job = sweep_job()
    if job is not None:
        entry.guarded(lambda: check_job_sees_sweep(spec, job))  # a node that does not share the cache or store
        spec = spec.with_tracking(run_name=spec.run_name(job.swept))  # its swept values in its name
        # a sweep job: raise, so Hydra records the failure and the other jobs still run
        if train_and_report(spec, parent_run_id=job.parent_run_id, extra_tags=job.tags):
            raise RuntimeError("diagnostics.strict=true and a calibration gate failed")
        return
    code = entry.guarded(lambda: train_and_report(spec))
    if code:
        sys.exit(code)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as interrupt:  # between stages too: one line, never a traceback
        entry.interrupted(interrupt)
