"""sbilab: a workbench for simulation-based inference experiments."""

from typing import Any

__version__ = "0.1.0"


def load_posterior(uri: str, tracking_uri: str | None = None) -> Any:
    """Load a logged posterior for sampling: ``runs:/<run_id>/posterior``, ``models:/<name>/<version>``,
    ``models:/m-…`` or a local folder."""
    from sbilab.posterior_io import load_posterior as _load

    return _load(uri, tracking_uri)
