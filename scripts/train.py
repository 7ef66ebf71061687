"""Train one sbilab run: `python scripts/train.py [group=option ...] [key=value ...]`.

Also the job of a multirun (`--multirun`): each job becomes a child of the
sweep's parent run (created by the `sbilab.sweep.SweepParentRun` callback).
"""

from __future__ import annotations

import os
import sys

import _entry
import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig


def sweep_context() -> tuple[str | None, dict[str, str]]:
    """Parent run id and the job's sweep tags when running inside a multirun."""
    from sbilab.sweep import PARENT_ENV, SWEEP_ENV

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None, {}
    tags = {f"choice.{group}": str(option) for group, option in hydra_cfg.runtime.choices.items()
            if not group.startswith("hydra") and option is not None}
    tags["sbilab.sweep_id"] = os.environ.get(SWEEP_ENV, "")
    tags["sbilab.job"] = str(hydra_cfg.job.num)
    tags["sbilab.overrides"] = " ".join(hydra_cfg.overrides.task)
    return os.environ.get(PARENT_ENV), tags


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from sbilab.config import check_config

    _entry.guarded(lambda: check_config(cfg))  # before the heavy imports: a typo costs a second
    from sbilab.cli import train_and_report

    parent_run_id, tags = sweep_context()
    if parent_run_id is not None:
        # a sweep job: raise, so Hydra records the failure and the other jobs still run
        if train_and_report(cfg, parent_run_id=parent_run_id, extra_tags=tags):
            raise RuntimeError("diagnostics.strict=true and a calibration gate failed")
        return
    code = _entry.guarded(lambda: train_and_report(cfg))
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
