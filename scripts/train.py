"""Train one sbilab run: `python scripts/train.py [group=option ...] [key=value ...]`.

Also the job of a multirun (`--multirun`): each job becomes a child of the
sweep's parent run (created by the `sbilab.experiments.sweep.SweepParentRun` callback).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sbilab import commands, entry


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    commands.train(cfg)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as interrupt:  # between stages too: one line, never a traceback
        entry.interrupted(interrupt)
