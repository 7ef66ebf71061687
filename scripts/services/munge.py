"""A munge daemon of its own (SLURM's authentication) with a fresh key and socket in a folder.

munged refuses keys and sockets that others could tamper with: the folder is owned by the ``munge``
user, mode 755, the key mode 400; the daemon runs in the foreground (``-F``) as that user.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .procs import Daemon, binary, own_dir, run, service_user


class Munge:
    """munged for ``folder``; SLURM's configs name ``socket`` (``AuthInfo=socket=…``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.user = service_user("munge")
        self.key = folder / "munge.key"
        self.socket = folder / "munge.socket"
        self.daemon = Daemon("munged", [binary("munged"), "-F", f"--socket={self.socket}", f"--key-file={self.key}",
                                        f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
                                        f"--seed-file={folder / 'munged.seed'}", "--num-threads=2"],
                             folder / "munged.out", user=self.user)

    def start(self, timeout: float = 30) -> "Munge":
        own_dir(self.folder, self.user, 0o755)
        if not self.key.is_file():
            run([binary("mungekey"), "--create", f"--keyfile={self.key}"], "mungekey", user=self.user)
        self.daemon.start()
        self.daemon.wait_until(self._round_trip, timeout, "issuing credentials")
        return self

    def stop(self) -> None:
        self.daemon.stop()

    def daemons(self) -> list[Daemon]:
        return [self.daemon]

    def env(self) -> dict[str, str]:
        return {}

    def _round_trip(self) -> bool:
        """A credential encoded and decoded through the socket (what slurmctld will do)."""
        encode = subprocess.run([binary("munge"), f"--socket={self.socket}", "-n"], capture_output=True)
        decode = subprocess.run([binary("unmunge"), f"--socket={self.socket}"], input=encode.stdout,
                                capture_output=True)
        return encode.returncode == 0 and decode.returncode == 0
