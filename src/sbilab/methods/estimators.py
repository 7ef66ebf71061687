"""Estimator configs: which sbi builder a config names, its family, and its builder kwargs."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor

#: estimator config keys that describe the config itself, not the network (``training``: a recipe candidate's)
_META_KEYS = ("name", "family", "training")
#: sbi's z-scoring option that maps θ through the prior's support to an unbounded space (zuko flows only)
UNCONSTRAINED = "transform_to_unconstrained"

#: sbi builders (``model_builders`` names) that give a conditional density (NPE, SNPE, NLE)
POSTERIOR_MODELS = ("maf", "nsf", "mdn", "made", "maf_rqs", "zuko_maf", "zuko_nsf", "zuko_ncsf", "zuko_sospf",
                    "zuko_naf", "zuko_unaf", "zuko_gf", "zuko_bpf", "zuko_nice")
DENSITY_MODELS = POSTERIOR_MODELS
#: ``classifier_nn`` models (NRE)
CLASSIFIER_MODELS = ("mlp", "resnet", "linear")
#: ``posterior_flow_nn`` / ``posterior_score_nn`` networks (FMPE, NPSE); sbi 0.27 documents
#: ``transformer_cross_attn`` too but its builder raises "Unknown architecture"
VECTOR_FIELD_MODELS = ("mlp", "ada_mlp", "transformer")

FAMILY_MODELS = {"density": DENSITY_MODELS, "classifier": CLASSIFIER_MODELS, "vector_field": VECTOR_FIELD_MODELS}

#: the config file of each family to suggest in error messages
FAMILY_EXAMPLE = {"density": "maf", "classifier": "classifier_resnet", "vector_field": "vf_mlp"}


def estimator_kwargs(estimator_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The sbi builder kwargs of an ``estimator`` config (its ``model`` and sizes)."""
    return {k: v for k, v in estimator_cfg.items() if k not in _META_KEYS}


def estimator_family(estimator_cfg: Mapping[str, Any]) -> Optional[str]:
    """``estimator.family`` when set, else the family implied by ``estimator.model`` (None: ambiguous)."""
    family = estimator_cfg.get("family")
    if family is not None:
        return str(family)
    model = estimator_cfg.get("model")
    owners = [f for f, models in FAMILY_MODELS.items() if model in models]
    return owners[0] if len(owners) == 1 else None


def placeholder_batch(theta_dim: int, x_dim: int, num: int = 2) -> tuple[Tensor, Tensor]:
    """Distinct rows of the right shapes, to rebuild a network before loading its state."""
    grid = torch.arange(num, dtype=torch.float32)[:, None]
    return grid.expand(num, theta_dim).clone(), grid.expand(num, x_dim).clone()
