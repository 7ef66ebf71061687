"""Credentials never become run data: what a run records passes through :func:`scrub` first.

A tracking server's credentials come from MLflow's environment variables; they can still reach
a text the run records: a password pasted into a URI (``http://user:password@host``) on the
command line lands in the overrides tags and ``config.yaml``, an error message may quote a URI.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

#: environment variables whose values are secrets (MLflow's, and the database's of ``mlflow server``)
SECRET_VARIABLES = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "PGPASSWORD")
#: ``scheme://user:password@`` in any URI
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s:]*:[^/@\s]*@")
#: shorter secrets are not searched for (they would match ordinary text)
_MIN_SECRET = 6


def scrub(text: str) -> str:
    """``text`` with URI passwords and the values of :data:`SECRET_VARIABLES` replaced by ``***``."""
    text = _USERINFO.sub(r"\1***@", text)
    for name in SECRET_VARIABLES:
        secret = os.environ.get(name, "")
        if len(secret) >= _MIN_SECRET:
            text = text.replace(secret, "***")
    return text


def scrub_values(mapping: Mapping[str, Any]) -> dict[str, str]:
    """A mapping's values as scrubbed strings (tags, params)."""
    return {key: scrub(str(value)) for key, value in mapping.items()}
