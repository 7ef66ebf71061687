"""Fill the simulation cache without training: `python scripts/simulate.py [overrides]`.

Simulates the training set (and the diagnostics test set unless
`diagnostics.enabled=false`) exactly as `scripts/train.py` would, so a later
train run or sweep with the same simulator, prior, summary, budget and seed
reads them from the cache.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sbilab import commands, entry


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    commands.simulate(cfg)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as interrupt:  # between stages too: one line, never a traceback
        entry.interrupted(interrupt)
