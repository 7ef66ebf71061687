"""Daemons as children of the process that needs them: start, wait until healthy, stop the group.

This VM's PID 1 does not reap orphans, so every daemon runs in the foreground as a direct child
(``Popen``), in its own session so that one signal reaches its helpers too (uvicorn workers, dask
nannies), and is waited for after it is stopped. The starting process also becomes a "child
subreaper": a helper whose parent died first (a killed nanny's worker) is handed to us, not to
PID 1, and is reaped here too.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import psutil


class ServiceError(RuntimeError):
    """A service did not start or answer: the message names it and ends with its log's last lines."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def binary(name: str) -> str:
    """Absolute path of an installed program (sbin included), or a ServiceError saying how to get it."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise ServiceError(f"{name} not found: run `bash scripts/services/install.sh` (as root)")
    return found


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def own_dir(path: Path, user: Optional[str], mode: int = 0o700) -> Path:
    """Create ``path`` owned by ``user`` (``None``: the caller) with ``mode``; return it."""
    path.mkdir(parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)
    return path


def service_user(name: str) -> Optional[str]:
    """The system user a daemon that refuses root runs as: ``name`` when we are root, else ourselves."""
    return name if os.geteuid() == 0 else None


def check_reachable(path: Path, user: Optional[str]) -> None:
    """Fail with one line when ``user`` cannot enter ``path`` (a parent folder closed to others)."""
    if user is None:
        return
    if subprocess.run(["test", "-x", str(path)], user=user, extra_groups=[]).returncode != 0:
        raise ServiceError(f"{path}: the {user} user cannot enter this folder (a parent is mode 700?); "
                           "choose a state directory under /tmp or /var/tmp")


def run(cmd: Sequence[str], what: str, user: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
        timeout: float = 120, stdin: Optional[str] = None) -> str:
    """Run a short command to completion (``stdin`` fed to it); its stdout, or a ServiceError."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=_env(env), input=stdin,
                          user=user, extra_groups=[] if user else None)
    if done.returncode != 0:
        raise ServiceError(f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


def _env(extra: Optional[Mapping[str, str]]) -> Optional[dict[str, str]]:
    return None if extra is None else {**os.environ, **extra}


def _become_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants are re-parented to this process."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def _reap(pids: Sequence[int], timeout: float = 5) -> None:
    """Wait for those of ``pids`` that were handed to us (children of a dead parent) once they exit."""
    pending, deadline = set(pids), time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    pending.discard(pid)
            except ChildProcessError:  # not ours: its own parent reaps it
                pending.discard(pid)
        time.sleep(0.05)


def reap_adopted(names: set[str]) -> int:
    """Reap dead processes called ``names`` that were handed to us as orphans (e.g. a job's
    slurmstepd, which forks away from slurmd); returns how many."""
    reaped = 0
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE and child.name() in names:
                reaped += os.waitpid(child.pid, os.WNOHANG)[0] == child.pid
        except (psutil.NoSuchProcess, ChildProcessError):
            pass
    return reaped


class Daemon:
    """One long-running process, its output in ``log``, started in its own session."""

    def __init__(self, name: str, cmd: Sequence[str], log: Path, user: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, cwd: Optional[Path] = None,
                 stop_signal: int = signal.SIGTERM) -> None:
        self.name, self.cmd, self.log, self.user = name, list(cmd), log, user
        self.env, self.cwd, self.stop_signal = env, cwd, stop_signal
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "Daemon":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        _become_subreaper()
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env(self.env),
                cwd=self.cwd, start_new_session=True, user=self.user, extra_groups=[] if self.user else None)
        return self

    @property
    def pid(self) -> Optional[int]:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str = "ready") -> float:
        """Poll ``ready`` until true; fail early if the process exits. Returns the seconds waited."""
        start = time.monotonic()
        while True:
            if not self.alive():
                code = None if self.process is None else self.process.returncode
                raise ServiceError(f"{self.name} exited (code {code}) before it was {what}; "
                                   f"log {self.log}:\n{self.log_tail()}")
            try:
                if ready():
                    return time.monotonic() - start
            except Exception:  # a probe that cannot connect yet: keep polling
                pass
            if time.monotonic() - start > timeout:
                raise ServiceError(f"{self.name} not {what} after {timeout:.0f} s; log {self.log}:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 20) -> None:
        """Signal the whole group (helpers included), wait; SIGKILL what is left after ``timeout``."""
        if self.process is None:
            return
        helpers = self._descendants()
        if self.process.poll() is None:
            self._signal_group(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(10)
        if helpers:  # helpers of a leader that exited first (the group id is still theirs)
            self._signal_group(signal.SIGKILL)
            _reap(helpers)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash, as in the tests), and reap the leader."""
        if self.process is not None:
            helpers = self._descendants()
            self._signal_group(signal.SIGKILL)
            self.process.wait(10)
            _reap(helpers)

    def _descendants(self) -> list[int]:
        assert self.process is not None
        try:
            return [child.pid for child in psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _signal_group(self, sig: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
