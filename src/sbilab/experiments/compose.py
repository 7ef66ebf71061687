"""Composing a run's config the way ``scripts/train.py <overrides>`` would, from inside a driver."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, open_dict


def compose_run_config(conf_dir: Path, overrides: Sequence[str]) -> tuple[DictConfig, dict[str, str]]:
    """The run config exactly as ``scripts/train.py <overrides>`` composes it, and the chosen group options.

    Works inside a Hydra app (the HPO entry point: Hydra is initialised) and outside one
    (worker processes, the benchmark script).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    else:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    choices = {str(group): str(option) for group, option in cfg.hydra.runtime.choices.items()
               if not str(group).startswith("hydra") and option is not None}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def dedupe_overrides(overrides: Sequence[str]) -> list[str]:
    """Last override per key wins (Hydra's own rule), in first-seen order."""
    by_key: dict[str, str] = {}
    for item in overrides:
        by_key[item.split("=", 1)[0].lstrip("+~")] = item
    return list(by_key.values())
