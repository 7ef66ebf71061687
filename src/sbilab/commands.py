"""What ``train`` and ``simulate`` do with a composed config: shared by ``scripts/`` and the ``sbilab`` command.

Only the entry points (``scripts/*.py`` and :mod:`sbilab.cli`) wrap these as Hydra applications; the
bodies live here once, so that the repository's scripts and an installed sbilab run the same code.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from sbilab import entry


def decide_recipe(cfg: DictConfig) -> DictConfig:
    """``recipe=when_unnamed`` (the default) made ``always`` or ``never`` from what this command named: the
    composed groups (``hydra.runtime.choices``) against the primary config's defaults, and the overrides."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from sbilab.config import recipe_decision

    if cfg.get("recipe") is None or cfg.recipe.get("apply") != "when_unnamed" or not HydraConfig.initialized():
        return cfg
    hydra_cfg = HydraConfig.get()
    apply, why = recipe_decision(cfg.recipe, dict(hydra_cfg.runtime.choices), list(hydra_cfg.overrides.task),
                                 primary_defaults(), method=str(cfg.get("method", {}).get("name", "npe")))
    with open_dict(cfg):
        cfg.recipe.apply = apply
        cfg.recipe.decided = why
    return cfg


def primary_defaults() -> dict[str, str]:
    """The options ``conf/config.yaml`` (sbilab's primary config) chooses for each group."""
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parent / "conf" / "config.yaml").read_text()
    entries = yaml.safe_load(text).get("defaults", [])
    return {str(k): str(v) for entry in entries if isinstance(entry, dict) for k, v in entry.items()}


def train(cfg: DictConfig) -> None:
    """One run (or one job of a multirun, a child of the sweep's parent run)."""
    from sbilab.config import preflight

    cfg = decide_recipe(cfg)

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


def train_cells(cfg: DictConfig) -> None:
    """One network for the recordings ``cells`` lists (``make cells``): trained once, diagnosed at each."""
    from sbilab.config import preflight

    entry.guarded(lambda: preflight(cfg))
    from sbilab.experiments.cells import cell_list, cell_specs
    from sbilab.experiments.report import cells_and_report

    specs = entry.guarded(lambda: cell_specs(cfg, cell_list(cfg)))
    code = entry.guarded(lambda: cells_and_report(specs))
    if code:
        sys.exit(code)


def simulate(cfg: DictConfig) -> None:
    """Fill the simulation cache as ``train`` would, without training."""
    from sbilab.config import preflight

    entry.guarded(lambda: preflight(cfg))
    from sbilab.experiments.report import simulate_and_report
    from sbilab.spec import prepare

    code = entry.guarded(lambda: simulate_and_report(prepare(cfg)))
    if code:
        sys.exit(code)
