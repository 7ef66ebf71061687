"""Hyperparameter search with Optuna (TPE); every trial is a child run of one MLflow parent run.

    python scripts/hpo.py [hpo=<name>] [hpo.<key>=<value> ...] [run overrides ...]

``hpo.*`` keys change the study (``conf/hpo/<name>.yaml``: n_trials, n_jobs, metric, params, ...);
any other override applies to every trial's run config, like ``scripts/train.py`` arguments.
The best configuration lands on the parent (params ``best.*``, ``hpo.best_*`` tags, ``hpo/best.json``).
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sbilab import entry


@hydra.main(version_base="1.3", config_path="../conf", config_name="hpo_study")
def main(cfg: DictConfig) -> None:
    from sbilab.experiments.search_space import load_hpo_settings

    settings = entry.guarded(lambda: load_hpo_settings(cfg.get("hpo")))
    run_overrides = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith("hpo")]
    from sbilab.experiments.hpo import run_study, summary_lines

    result = entry.guarded(lambda: run_study(settings, run_overrides, entry.ROOT / "conf"))
    for line in summary_lines(result):
        print(line)
    sys.stdout.flush()
    if result.best is None:
        sys.exit(1)
    if any(not trial.ok for trial in result.trials):
        print("sbilab: some trials failed: the parent run is marked FAILED", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
