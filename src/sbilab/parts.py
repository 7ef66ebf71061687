"""Building a run's parts from config and checking they fit together, before any real work.

Everything here is cheap (a one-simulation pilot at most), so bad input fails in
seconds; MLflow and Lightning are not imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from sbilab.methods import Method
from sbilab.observation import Observation, make_observation
from sbilab.simulation import sample_prior, stage_seed
from sbilab.simulators.base import Simulator, derive_seeds
from sbilab.errors import ConfigError

#: config groups whose chosen option becomes an `sbilab.<group>` tag
PART_GROUPS = ("simulator", "prior", "summary", "estimator", "method")


@dataclass
class Parts:
    """The instantiated parts of a run and the observation they condition on."""

    simulator: Simulator
    prior: torch.distributions.Distribution
    summary: Any
    method: Method
    parameter_names: list[str]
    x_dim: int
    observation: Observation


def part_config(cfg: DictConfig, group: str) -> dict[str, Any]:
    """A group's config as a plain dict (interpolations resolved).

    A part that interpolates a key the other chosen parts lack (``summary=hh_features``
    reads ``simulator.duration``) is bad input: one line naming the part and the key.
    """
    try:
        return OmegaConf.to_container(cfg[group], resolve=True)  # type: ignore[return-value]
    except InterpolationResolutionError as error:
        option = OmegaConf.select(cfg, f"{group}.name", default="?", throw_on_resolution_failure=False)
        raise ConfigError(f"{group}={option}: {str(error).strip().splitlines()[0]} (at {error.full_key}); "
                          f"this {group} does not fit the other parts chosen") from None


def instantiate_part(cfg: Mapping[str, Any]) -> Any:
    """Build a part from its config with Hydra, ignoring the descriptive ``name`` key."""
    return instantiate({k: v for k, v in cfg.items() if k != "name"}, _convert_="all")


def build_parts(cfg: DictConfig) -> Parts:
    """Instantiate simulator, prior, summary and method, check their shapes, make x_o."""
    simulator = instantiate_part(part_config(cfg, "simulator"))
    prior = instantiate_part(part_config(cfg, "prior"))
    summary = instantiate_part(part_config(cfg, "summary"))
    method = instantiate_part(part_config(cfg, "method"))
    names = list(cfg.prior.names)
    prior_dim = int(sample_prior(prior, 1, 0).shape[1])
    if len(names) != prior_dim:
        raise ConfigError(f"prior.names has {len(names)} entries but the prior has {prior_dim} parameters")
    if prior_dim != simulator.parameter_dim:
        raise ConfigError(
            f"prior has {prior_dim} parameters ({', '.join(names)}) but simulator "
            f"{cfg.simulator.name!r} takes {simulator.parameter_dim}"
        )
    method.check_estimator(part_config(cfg, "estimator"))
    method.check_summary(summary)  # a learned summary (embedding_net) needs a method that conditions on x
    if int(cfg.trainer.ensemble_size) > 1 and not method.amortised:
        raise ConfigError(f"trainer.ensemble_size={cfg.trainer.ensemble_size} is not available for "
                          f"method={method.name!r}, which trains one network round by round; allowed: 1 "
                          "(ensembles: an amortised method, e.g. method=npe)")
    pilot_theta = sample_prior(prior, 1, stage_seed(int(cfg.seed), "pilot"))
    x_dim = int(simulator.simulate_summaries(pilot_theta, derive_seeds(0, 0, 1), summary).reshape(1, -1).shape[1])
    obs = cfg.observation
    observation = make_observation(simulator, summary, theta=obs.theta, x=obs.x, file=obs.file,
                                   seed=int(obs.seed), x_dim=x_dim)
    return Parts(simulator, prior, summary, method, names, x_dim, observation)
