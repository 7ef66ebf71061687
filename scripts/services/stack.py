"""Several services started together under one state folder, stopped in reverse order.

``Stack`` is what both the command line (``python -m services``) and the pytest fixtures use, so a
service is started one way only. Each service keeps its data under ``<state>/<name>``; the stack
records what runs (ports, pids, client environment) in ``<state>/state.json`` and ``<state>/env.sh``,
both mode 600 (they hold the credentials).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import psutil

from .dask_cluster import DaskCluster
from .mlflow_server import MlflowServer
from .postgres import Postgres
from .procs import Daemon, ServiceError
from .slurm import Slurm

#: services in start order (mlflow needs postgres: asking for mlflow brings it)
NAMES = ("postgres", "mlflow", "slurm", "dask")


class Service(Protocol):
    def start(self) -> Any: ...
    def stop(self) -> None: ...
    def env(self) -> dict[str, str]: ...
    def daemons(self) -> list[Daemon]: ...


class Stack:
    """The services ``names`` (plus their dependencies) with their data under ``state``."""

    def __init__(self, state: Path, names: Sequence[str], mlflow_port: Optional[int] = None,
                 mlflow_host: str = "127.0.0.1", auth: bool = True, mlflow_workers: int = 1,
                 dask_workers: int = 2) -> None:
        unknown = sorted(set(names) - set(NAMES))
        if unknown:
            raise ServiceError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
        wanted = set(names) | ({"postgres"} if "mlflow" in names else set())
        self.state = state.resolve()
        self.services: dict[str, Service] = {}
        if "postgres" in wanted:
            self.postgres = Postgres(self.state / "postgres")
            self.services["postgres"] = self.postgres
        if "mlflow" in wanted:
            self.mlflow = MlflowServer(self.state / "mlflow", self.postgres, mlflow_port, host=mlflow_host, auth=auth,
                                       workers=mlflow_workers)
            self.services["mlflow"] = self.mlflow
        if "slurm" in wanted:
            self.slurm = Slurm(self.state / "slurm")
            self.services["slurm"] = self.slurm
        if "dask" in wanted:
            self.dask = DaskCluster(self.state / "dask", workers=dask_workers)
            self.services["dask"] = self.dask
        self.timings: dict[str, float] = {}

    def env(self) -> dict[str, str]:
        """The client environment of every service in the stack (MLFLOW_*, SLURM_CONF, DASK_*)."""
        env: dict[str, str] = {}
        for service in self.services.values():
            env.update(service.env())
        return env

    def start(self) -> "Stack":
        """Start in dependency order; on a failure stop what already runs, then raise."""
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o755)  # the service users (postgres, munge) must enter it
        started: list[str] = []
        try:
            for name, service in self.services.items():
                begin = time.monotonic()
                service.start()
                self.timings[f"{name} up"] = time.monotonic() - begin
                started.append(name)
        except BaseException:
            for name in reversed(started):
                self.services[name].stop()
            raise
        self._record()
        return self

    def stop(self) -> None:
        for name, service in reversed(list(self.services.items())):
            begin = time.monotonic()
            service.stop()
            self.timings[f"{name} down"] = time.monotonic() - begin
        for path in (self.state / "state.json", self.state / "env.sh"):
            path.unlink(missing_ok=True)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self) -> None:
        env = self.env()
        record = {"pid": os.getpid(), "services": list(self.services), "env": env, "groups": self._groups()}
        if "mlflow" in self.services:  # what `migrate` needs: the server's own stores
            record.update(backend_store_uri=self.postgres.url("mlflow"),
                          artifacts_destination=str(self.mlflow.artifacts))
        for path, text in ((self.state / "state.json", json.dumps(record, indent=2)),
                           (self.state / "env.sh", "".join(f"export {k}={v}\n" for k, v in env.items()))):
            path.touch(mode=0o600)
            path.chmod(0o600)
            path.write_text(text)

    def daemons(self) -> list[Daemon]:
        return [daemon for service in self.services.values() for daemon in service.daemons()]

    def _groups(self) -> list[int]:
        """Process groups of every daemon: what ``clean_stale`` kills if this process dies uncleanly."""
        return [daemon.pid for daemon in self.daemons() if daemon.pid is not None]


def read_record(state: Path) -> Optional[dict[str, Any]]:
    """The running stack's record in ``state``, or None when none runs there."""
    path = state / "state.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def supervisor_alive(record: dict[str, Any]) -> bool:
    """True while the `up`/`run` process of a record runs (a zombie left to PID 1 does not count)."""
    try:
        return psutil.Process(int(record["pid"])).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def clean_stale(state: Path) -> bool:
    """Kill the daemons of a stack whose supervisor died (SIGKILL, power cut); True when it did."""
    record = read_record(state)
    if record is None or supervisor_alive(record):
        return False
    for group in record.get("groups", []):
        try:
            os.killpg(int(group), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    (state / "state.json").unlink(missing_ok=True)
    return True
