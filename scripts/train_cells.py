"""One network for many recorded cells: `python scripts/train_cells.py experiment=allen_cells [key=value ...]`.

Trains one amortised network on every cell's protocol (``cells``), samples it at each cell's
recording in one batched call and diagnoses each cell in a child run (sbilab.experiments.cells).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sbilab import commands, entry


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    commands.train_cells(cfg)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as interrupt:
        entry.interrupted(interrupt)
