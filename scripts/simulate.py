"""Fill the simulation cache without training: `python scripts/simulate.py [overrides]`.

Simulates the training set (and the diagnostics test set unless
`diagnostics.enabled=false`) exactly as `scripts/train.py` would, so a later
train run or sweep with the same simulator, prior, summary, budget and seed
reads them from the cache.
"""

from __future__ import annotations

import sys

import _entry
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from sbilab.config import check_config

    _entry.guarded(lambda: check_config(cfg))
    from sbilab.cli import simulate_and_report

    code = _entry.guarded(lambda: simulate_and_report(cfg))
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
