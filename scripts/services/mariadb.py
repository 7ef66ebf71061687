"""A MariaDB server of its own in a folder, for SLURM's accounting daemon (slurmdbd) only.

``mariadbd`` runs in the foreground as a child (as root, which it allows with ``--user=root``); the
database root logs in through the server's own socket, slurmdbd through a password on 127.0.0.1.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Optional

from .procs import Daemon, binary, free_port, own_dir, run

ACCOUNTING_USER = "slurm"
ACCOUNTING_DB = "slurm_acct_db"


class MariaDB:
    """A server in ``folder`` on 127.0.0.1:``port`` with user ``slurm`` owning ``slurm_acct_db``."""

    def __init__(self, folder: Path, port: Optional[int] = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.data = folder / "data"
        self.socket = folder / "mysqld.sock"
        self.daemon = Daemon("mariadb", [binary("mariadbd"), "--no-defaults", f"--datadir={self.data}",
                                         f"--socket={self.socket}", f"--port={self.port}",
                                         "--bind-address=127.0.0.1", "--skip-name-resolve", "--user=root",
                                         f"--pid-file={folder / 'mariadb.pid'}", "--skip-log-bin",
                                         "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=48M",
                                         "--innodb-lock-wait-timeout=900"],  # what slurmdbd asks for
                             folder / "mariadb.log")

    @property
    def password(self) -> str:
        path = self.folder / "slurm_password"
        if not path.is_file():
            path.write_text(secrets.token_urlsafe(18) + "\n")
            path.chmod(0o600)
        return path.read_text().strip()

    def start(self, timeout: float = 60) -> "MariaDB":
        """Create the data folder when new, start, wait for the socket, make sure the user exists."""
        own_dir(self.folder, None, 0o700)
        if not (self.data / "mysql").is_dir():
            run([binary("mariadb-install-db"), "--no-defaults", f"--datadir={self.data}", "--user=root",
                 "--auth-root-authentication-method=socket", "--skip-test-db", "--skip-name-resolve"],
                "mariadb-install-db")
        self.daemon.start()
        self.daemon.wait_until(lambda: self.sql("SELECT 1").strip() == "1", timeout, "accepting connections")
        self.sql(f"CREATE USER IF NOT EXISTS '{ACCOUNTING_USER}'@'127.0.0.1' IDENTIFIED BY '{self.password}';"
                 f"GRANT ALL ON {ACCOUNTING_DB}.* TO '{ACCOUNTING_USER}'@'127.0.0.1'")
        return self

    def stop(self) -> None:
        self.daemon.stop()

    def daemons(self) -> list[Daemon]:
        return [self.daemon]

    def sql(self, statements: str) -> str:
        """Run SQL as the database root over the server's socket (fed on stdin, not argv)."""
        return run([binary("mariadb"), "--no-defaults", f"--socket={self.socket}", "-u", "root", "-N", "-B"],
                   "mariadb", stdin=statements, timeout=30)
