"""sbilab: a workbench for simulation-based inference experiments."""

from typing import Any, Sequence

__version__ = "0.1.0"


def load_posterior(uri: str, tracking_uri: str | None = None, trust: Sequence[str] | None = None) -> Any:
    """Load a logged posterior for sampling: ``runs:/<run_id>/posterior``, ``models:/<name>/<version>``,
    ``models:/m-…`` or a local folder.

    ``trust``: packages of your own whose parts (a prior class) may be rebuilt, e.g. ``trust=["mypkg"]``;
    without it only sbilab's parts are.
    """
    from sbilab.posterior_io import load_posterior as _load

    return _load(uri, tracking_uri, trust)
