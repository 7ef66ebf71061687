"""A PostgreSQL cluster of its own in a folder: initdb once, ``postgres`` as a child, databases on demand.

``pg_ctl`` is not used to start it: it daemonises the server, which would then be orphaned to a PID 1
that does not reap. ``postgres`` runs in the foreground instead (as the ``postgres`` user when we are
root: it refuses root) and stops on SIGINT (PostgreSQL's "fast" shutdown).
"""

from __future__ import annotations

import glob
import secrets
import signal
import subprocess
from pathlib import Path
from typing import Optional

from .procs import Daemon, ServiceError, check_reachable, free_port, own_dir, run, service_user

ROLE = "mlflow"


def pg_bin(tool: str) -> str:
    """Path of a PostgreSQL server tool from the newest Debian ``postgresql-NN`` package."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise ServiceError(f"PostgreSQL's {tool} not found: run `bash scripts/services/install.sh` (as root)")
    return found[-1]


class Postgres:
    """A cluster in ``folder`` on 127.0.0.1:``port``; role ``mlflow`` with a password kept in the folder."""

    def __init__(self, folder: Path, port: Optional[int] = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.user = service_user("postgres")
        self.data = folder / "data"
        self.sockets = folder / "sockets"
        self.daemon = Daemon("postgres", [pg_bin("postgres"), "-D", str(self.data), "-p", str(self.port),
                                          "-c", "listen_addresses=127.0.0.1",
                                          "-c", f"unix_socket_directories={self.sockets}",
                                          "-c", "shared_buffers=32MB"],
                             folder / "postgres.log", user=self.user, stop_signal=signal.SIGINT)

    @property
    def password(self) -> str:
        return (self.folder / "password").read_text().strip()

    @property
    def passfile(self) -> Path:
        """A libpq password file: clients name it in PGPASSFILE, so no password sits in a URI or argv."""
        return self.folder / "pgpass"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` (``+psycopg2``: a bare ``postgresql://`` picks psycopg 3)."""
        return f"postgresql+psycopg2://{ROLE}@127.0.0.1:{self.port}/{database}"

    def env(self) -> dict[str, str]:
        return {"PGPASSFILE": str(self.passfile)}

    def start(self, timeout: float = 60) -> "Postgres":
        """initdb when the folder is new, then start and wait until it accepts connections."""
        own_dir(self.folder, None, 0o755)
        check_reachable(self.folder, self.user)
        new = not (self.data / "PG_VERSION").is_file()
        if new:
            self._initdb()
        own_dir(self.sockets, self.user, 0o700)
        self.daemon.start()
        ready = [pg_bin("pg_isready"), "-q", "-h", str(self.sockets), "-p", str(self.port), "-U", "postgres"]
        self.daemon.wait_until(lambda: _succeeds(ready, self.user), timeout, "accepting connections")
        if new:
            self.sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
        self.passfile.write_text(f"127.0.0.1:*:*:{ROLE}:{self.password}\n")
        self.passfile.chmod(0o600)
        return self

    def stop(self) -> None:
        self.daemon.stop()

    def daemons(self) -> list[Daemon]:
        return [self.daemon]

    def create_database(self, name: str) -> None:
        """Create database ``name`` owned by the ``mlflow`` role, unless it exists."""
        exists = self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists.strip():
            self.sql(f'CREATE DATABASE "{name}" OWNER {ROLE}')

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement as the superuser over the cluster's own socket; tuples-only output."""
        return run([pg_bin("psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", str(self.sockets),
                    "-p", str(self.port), "-U", "postgres", "-d", database],
                   f"psql {statement.split()[0]} {statement.split()[1]}", user=self.user, stdin=statement)

    def _initdb(self) -> None:
        own_dir(self.data, self.user, 0o700)
        password = secrets.token_urlsafe(24)
        (self.folder / "password").write_text(password + "\n")
        (self.folder / "password").chmod(0o600)
        # superuser: peer/trust only over the cluster's own socket (mode 700); TCP needs a password
        run([pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--no-locale",
             "--auth-local=trust", "--auth-host=scram-sha-256"], "initdb", user=self.user)


def _succeeds(cmd: list[str], user: Optional[str]) -> bool:
    return subprocess.run(cmd, user=user, extra_groups=[] if user else None,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
