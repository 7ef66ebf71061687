"""``mlflow server`` on a PostgreSQL backend with proxied artifacts and (optionally) basic auth.

Clients get everything from MLflow's own environment variables (``env()``): MLFLOW_TRACKING_URI and,
with auth, MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD. Artifacts go through the server
(``mlflow-artifacts:/`` URIs, stored under ``<folder>/artifacts``): clients never touch that folder.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from .postgres import Postgres
from .procs import Daemon, ServiceError, free_port


def _secret(path: Path) -> str:
    """A random secret kept in ``path`` (mode 600), created on first use: stable across restarts."""
    if not path.is_file():
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


class MlflowServer:
    """The tracking server for ``folder`` on ``host:port``, backed by ``postgres`` (started by the caller)."""

    ADMIN = "admin"

    def __init__(self, folder: Path, postgres: Postgres, port: Optional[int] = None, host: str = "127.0.0.1",
                 auth: bool = True, workers: int = 1) -> None:
        self.folder, self.postgres, self.host, self.auth, self.workers = folder, postgres, host, auth, workers
        self.port = port or free_port()
        self.daemon: Optional[Daemon] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def artifacts(self) -> Path:
        """Where the server keeps artifacts (``--artifacts-destination``); only the server writes here."""
        return self.folder / "artifacts"

    @property
    def admin_password(self) -> str:
        return _secret(self.folder / "admin_password")

    def env(self, username: Optional[str] = None, password: Optional[str] = None) -> dict[str, str]:
        """The client environment: tracking URI and (with auth) the credentials, admin's by default."""
        env = {"MLFLOW_TRACKING_URI": self.url}
        if self.auth:
            env["MLFLOW_TRACKING_USERNAME"] = username or self.ADMIN
            env["MLFLOW_TRACKING_PASSWORD"] = password or self.admin_password
        return env

    def start(self, timeout: float = 120) -> "MlflowServer":
        """Create the databases, start the server, wait until it answers (schema created by then)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(exist_ok=True)
        self.postgres.create_database("mlflow")
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.postgres.url("mlflow"),
               "--serve-artifacts", "--artifacts-destination", str(self.artifacts),
               "--host", self.host, "--port", str(self.port), "--workers", str(self.workers)]
        env = {**self.postgres.env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
               "MLFLOW_DISABLE_TELEMETRY": "true"}
        if self.auth:
            self.postgres.create_database("mlflow_auth")
            cmd += ["--app-name", "basic-auth"]
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(self._write_auth_config())
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = _secret(self.folder / "flask_secret")
        self.daemon = Daemon("mlflow server", cmd, self.folder / "server.log", env=env, cwd=self.folder).start()
        self.daemon.wait_until(lambda: self.request("GET", "/health", auth=False) == "OK", timeout, "answering")
        self.request("GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default")
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def daemons(self) -> list[Daemon]:
        return [] if self.daemon is None else [self.daemon]

    def add_user(self, username: str, password: str) -> None:
        """Create a (non-admin) user through the auth REST API, unless it exists."""
        try:
            self.request("POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password})
        except ServiceError as error:
            if "RESOURCE_ALREADY_EXISTS" not in str(error):
                raise

    def request(self, method: str, path: str, body: Optional[dict] = None, auth: bool = True) -> str:
        """One HTTP call to the server as admin; the response body, or a ServiceError with status and body."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        if auth and self.auth:
            token = base64.b64encode(f"{self.ADMIN}:{self.admin_password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.read().decode()
        except urllib.error.HTTPError as error:
            raise ServiceError(f"{method} {path}: HTTP {error.code} {error.read().decode()[:300]}") from None

    def _write_auth_config(self) -> Path:
        """basic-auth settings: users in their own PostgreSQL database; members may edit by default.

        Checked credentials are cached for 5 minutes in the worker (a changed password can work for
        that long in other workers).
        """
        path = self.folder / "auth.ini"
        path.write_text("[mlflow]\n"
                        "default_permission = EDIT\n"
                        f"database_uri = {self.postgres.url('mlflow_auth')}\n"
                        f"admin_username = {self.ADMIN}\n"
                        f"admin_password = {self.admin_password}\n"
                        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                        # without it every request pays a PBKDF2 hash: 500 ms here instead of 30 ms
                        "auth_cache_ttl_seconds = 300\n")
        path.chmod(0o600)
        return path
