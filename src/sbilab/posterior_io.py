"""The posterior as a portable artifact: network state dict + the configs that rebuild it.

An ensemble (``trainer.ensemble_size`` > 1) is saved as one state dict over all its
networks (``nn.ModuleList`` keys ``<k>.<key>``) and rebuilt as a mixture posterior.

Nothing is unpickled on load: the state dict is read with ``weights_only=True``
and the network and prior are rebuilt from their configs, so a store cannot make
the loader run arbitrary code. A summary with a learned embedding of x (its
``embedding_net()``) is rebuilt from the spec's ``summary`` config, under the same
rule: only sbilab's own priors, methods and summaries are instantiated (not any ``sbilab.*`` callable),
and the parts of packages the caller trusts by name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
import yaml
from hydra.utils import instantiate
from sbi.inference.posteriors.base_posterior import NeuralPosterior
from torch import nn

from sbilab.ensemble import ensemble_posterior
from sbilab.methods import placeholder_batch
from sbilab.priors import build_prior

SPEC_FILE = "spec.yaml"
STATE_FILE = "estimator.pt"


def posterior_spec(method_cfg: Mapping[str, Any], estimator_cfg: Mapping[str, Any], prior_cfg: Mapping[str, Any],
                   theta_dim: int, x_dim: int, summary_cfg: Optional[Mapping[str, Any]] = None,
                   ensemble_size: int = 1,
                   member_estimators: Optional[Sequence[Mapping[str, Any]]] = None) -> dict[str, Any]:
    """Everything needed to rebuild the posterior around a saved state dict.

    ``summary_cfg``: the summary's config; needed when the summary brings a learned
    embedding of x (``embedding_net()``), whose weights are part of the state dict.
    ``ensemble_size``: the number of networks whose states :func:`estimators_state` saved.
    ``member_estimators``: each network's estimator config when they differ (``recipe=auto``'s mixtures).
    """
    spec = {
        "format": 1,
        "method": dict(method_cfg),
        "estimator": dict(estimator_cfg),
        "prior": dict(prior_cfg),
        "theta_dim": int(theta_dim),
        "x_dim": int(x_dim),
    }
    if summary_cfg is not None:
        spec["summary"] = dict(summary_cfg)
    if ensemble_size != 1:
        spec["ensemble_size"] = int(ensemble_size)
    if member_estimators is not None and any(dict(c) != dict(estimator_cfg) for c in member_estimators):
        if len(member_estimators) != ensemble_size:
            raise ValueError(f"{len(member_estimators)} member estimators for an ensemble of {ensemble_size}")
        spec["member_estimators"] = [dict(c) for c in member_estimators]
    return spec


def estimators_state(estimators: Sequence[nn.Module]) -> dict[str, torch.Tensor]:
    """One state dict for the run's networks: a single network's own, an ensemble's as ``<k>.<key>``."""
    if len(estimators) == 1:
        return estimators[0].state_dict()
    return nn.ModuleList(estimators).state_dict()


#: environment variable naming packages whose parts a loader rebuilds (comma-separated), as ``trust=`` does
TRUST_ENV = "SBILAB_TRUSTED_PACKAGES"


#: what each part of a stored spec may build without trust: sbilab's priors, methods and summaries only,
#: not any sbilab callable (``sbilab.scaffold.write_model`` writes files; a spec must not be able to call it)
OWN_PARTS = {"method": "sbilab.methods", "prior": "sbilab.priors", "summary": "sbilab.summaries"}


def trusted_packages(trust: Optional[Sequence[str]] = None) -> tuple[str, ...]:
    """The packages in ``trust`` and in ``$SBILAB_TRUSTED_PACKAGES`` (sbilab's own parts come per part)."""
    named = list(trust or []) + [p for p in os.environ.get(TRUST_ENV, "").split(",")]
    return tuple(sorted({p.strip() for p in named if p and p.strip()}))


def _is_trusted(target: str, trusted: Sequence[str]) -> bool:
    return any(target == package or target.startswith(f"{package}.") for package in trusted)


def _refusal(target: str, own: str) -> str:
    package = target.split(".")[0] or "<package>"
    return (f"posterior spec names _target_={target!r}; only {own}.* parts are rebuilt on load unless you trust "
            f"its package: load_posterior(..., trust=[{package!r}]) or {TRUST_ENV}={package}")


def _trusted_part(cfg: Mapping[str, Any], part: str, trusted: Sequence[str] = ()) -> dict[str, Any]:
    """A ``part`` config from a stored spec, refused unless every ``_target_`` in it is sbilab's own kind of
    that part (:data:`OWN_PARTS`) or in a package the caller trusts."""
    _refuse_untrusted_targets(cfg, (OWN_PARTS[part], *trusted), top=True)
    return {k: v for k, v in cfg.items() if k != "name"}


def _refuse_untrusted_targets(node: Any, trusted: Sequence[str], top: bool = False) -> None:
    """Hydra instantiates nested ``_target_`` keys too: refuse any outside the trusted packages."""
    if isinstance(node, Mapping):
        target = node.get("_target_")
        if (top or target is not None) and not _is_trusted(str(target or ""), trusted):
            raise ValueError(_refusal(str(target or ""), trusted[0]))
        for value in node.values():
            _refuse_untrusted_targets(value, trusted)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _refuse_untrusted_targets(value, trusted)


def rebuild_posterior(spec: Mapping[str, Any], state: Mapping[str, torch.Tensor],
                      trust: Optional[Sequence[str]] = None) -> NeuralPosterior:
    """Rebuild method, network and prior from ``spec`` and load the trained weights.

    ``trust``: packages besides sbilab whose ``_target_`` parts may be built (your own prior's package).
    """
    if spec.get("format") != 1:
        raise ValueError(f"unknown posterior spec format {spec.get('format')!r}")
    trusted = trusted_packages(trust)
    method = instantiate(_trusted_part(spec["method"], "method", trusted), _convert_="all")
    prior = build_prior(_trusted_part(spec["prior"], "prior", trusted))
    theta, x = placeholder_batch(spec["theta_dim"], spec["x_dim"])
    make_embedding = None  # a fresh x-embedding per network
    if spec.get("summary") is not None:
        summary = instantiate(_trusted_part(spec["summary"], "summary", trusted), _convert_="all")
        make_embedding = getattr(summary, "embedding_net", None)
    size = spec.get("ensemble_size", 1)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"posterior spec names ensemble_size={size!r}; expected an integer >= 1")
    configs = spec.get("member_estimators") or [spec["estimator"]] * size
    if len(configs) != size:
        raise ValueError(f"posterior spec names {len(configs)} member_estimators for ensemble_size={size}")
    estimators = [method.build_estimator(config, theta, x, prior=prior,
                                         embedding_net=make_embedding() if make_embedding else None)
                  for config in configs]
    (estimators[0] if size == 1 else nn.ModuleList(estimators)).load_state_dict(dict(state))
    return ensemble_posterior([method.build_posterior(estimator, prior) for estimator in estimators])


def load_posterior_dir(directory: str | Path, trust: Optional[Sequence[str]] = None) -> NeuralPosterior:
    """Load a posterior from a local ``posterior/`` folder (spec.yaml + estimator.pt)."""
    directory = Path(directory)
    spec = yaml.safe_load((directory / SPEC_FILE).read_text())
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    return rebuild_posterior(spec, state, trust)


def load_posterior(uri: str, tracking_uri: str | None = None, trust: Optional[Sequence[str]] = None) -> NeuralPosterior:
    """Load a logged posterior by MLflow URI or from a local folder.

    ``runs:/<run_id>/posterior`` is the run's posterior folder; ``models:/m-…`` (a run's posterior
    model) and ``models:/<name>/<version>`` (a registered version) are pyfunc models, whose only
    artifact is a copy of that folder.

    Only sbilab's own classes are built from the stored configs unless ``trust`` names more packages
    (``trust=["mypkg"]`` for a prior of your own; also ``$SBILAB_TRUSTED_PACKAGES``): a store you did not
    write cannot make the loader run code you did not choose.
    """
    if Path(uri).is_dir():
        return load_posterior_dir(posterior_folder(Path(uri)), trust)
    from sbilab.tracking import download_artifacts

    return load_posterior_dir(posterior_folder(download_artifacts(uri, tracking_uri)), trust)


def posterior_folder(folder: Path) -> Path:
    """``folder`` itself when it holds a posterior spec, else the one posterior folder inside it (a model's)."""
    if (folder / SPEC_FILE).is_file():
        return folder
    found = sorted(folder.rglob(SPEC_FILE))
    if len(found) != 1:
        raise ValueError(f"{folder} holds {len(found)} posterior specs ({SPEC_FILE}); expected one")
    return found[0].parent
