"""``python -m services`` (what ``make server`` runs): up, status, stop, and recovery from a hard kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from .conftest import ROOT, installed

pytestmark = pytest.mark.slow


def _services(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "scripts")}, **kwargs)


def _up(state: Path) -> subprocess.Popen:
    """`up dask` in the background; returns once it has recorded what runs."""
    process = subprocess.Popen([sys.executable, "-m", "services", "up", "--state", str(state), "dask"], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "scripts")},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    while _recorded_pid(state) != process.pid:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "no state.json after 90 s"
        time.sleep(0.2)
    return process


def _recorded_pid(state: Path) -> int | None:
    try:
        return int(json.loads((state / "state.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


@pytest.fixture
def state():
    if not installed("dask"):
        pytest.skip("dask: not installed (make install)")
    folder = Path(tempfile.mkdtemp(prefix="sbilab-cli-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_up_status_stop(state: Path):
    process = _up(state)
    record = json.loads((state / "state.json").read_text())
    assert (state / "state.json").stat().st_mode & 0o077 == 0  # it holds credentials
    assert _services("status", "--state", str(state)).returncode == 0
    assert _services("up", "--state", str(state), "dask").stdout.startswith("services: already running")

    stopped = _services("stop", "--state", str(state))
    assert stopped.returncode == 0, stopped.stderr
    assert process.wait(30) == 0 and "dask down" in process.stdout.read()
    assert not (state / "state.json").exists() and _alive(record["groups"]) == []
    assert _services("status", "--state", str(state)).returncode == 3


def test_a_killed_supervisor_leaves_nothing_behind_after_the_next_start(state: Path):
    process = _up(state)
    groups = json.loads((state / "state.json").read_text())["groups"]
    process.send_signal(signal.SIGKILL)  # no teardown: the daemons live on, orphaned
    process.wait(10)
    assert len(_alive(groups)) == len(groups)
    assert _services("status", "--state", str(state)).returncode == 3  # nobody supervises them

    again = _up(state)  # kills the leftovers first, then starts anew
    assert _alive(groups) == []
    assert _services("stop", "--state", str(state)).returncode == 0
    assert again.wait(30) == 0 and "leftovers" in again.stdout.read()
