"""sbilab: a workbench for simulation-based inference experiments."""

from typing import Any

__version__ = "0.1.0"


def load_posterior(uri: str, tracking_uri: str | None = None) -> Any:
    """Load a logged posterior (``runs:/<run_id>/posterior`` or a local folder) for sampling."""
    from sbilab.posterior_io import load_posterior as _load

    return _load(uri, tracking_uri)
