"""Real services for the tests that need them: started once per session, on first use, by the same
code as ``python -m services`` (scripts/services), and torn down at the end.

Clients get them the way users do, from environment variables: ``tracking_env`` sets
MLFLOW_TRACKING_URI / _USERNAME / _PASSWORD, ``slurm_env`` SLURM_CONF, ``dask_env``
DASK_SCHEDULER_ADDRESS. Without the Debian packages (``make services-install``) the tests are
skipped, except in CI (``CI`` set), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from services.procs import ServiceError  # noqa: E402
from services.stack import Stack  # noqa: E402

#: service → a tool that must be installed for it
NEEDS = {"mlflow": "/usr/lib/postgresql", "slurm": "slurmctld", "dask": "dask"}
TIMINGS: dict[str, float] = {}
TEST_USER, TEST_PASSWORD = "sbilab-test", "sbilab-test-password"


def installed(service: str) -> bool:
    tool = NEEDS[service]
    if tool.startswith("/"):
        return Path(tool).is_dir()
    if tool == "dask":
        return Path(sys.executable).with_name("dask").is_file()
    return shutil.which(tool) is not None or shutil.which(tool, path="/usr/sbin") is not None


def _stack(service: str) -> Iterator[Stack]:
    if not installed(service):
        message = f"{service}: not installed (run `make services-install`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # not pytest's tmp_path: its parents are mode 700, and postgres/munge run as their own users
    state = Path(tempfile.mkdtemp(prefix=f"sbilab-{service}-", dir="/tmp"))
    stack = Stack(state, [service])
    try:
        stack.start()
    except ServiceError:
        shutil.rmtree(state, ignore_errors=True)
        raise
    try:
        yield stack
    finally:
        stack.stop()
        TIMINGS.update(stack.timings)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_stack() -> Iterator[Stack]:
    """PostgreSQL + ``mlflow server`` (basic auth, proxied artifacts, one worker)."""
    yield from _stack("mlflow")


@pytest.fixture(scope="session")
def slurm_stack() -> Iterator[Stack]:
    """munge, MariaDB, slurmdbd, slurmctld and slurmd: one node called ``localhost``."""
    yield from _stack("slurm")


@pytest.fixture(scope="session")
def dask_stack() -> Iterator[Stack]:
    """``dask scheduler`` and two single-threaded ``dask worker`` processes."""
    yield from _stack("dask")


@pytest.fixture
def tracking_env(mlflow_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A (non-admin) user's client environment for the server, set in ``os.environ``; returned too."""
    mlflow_stack.mlflow.add_user(TEST_USER, TEST_PASSWORD)
    env = mlflow_stack.mlflow.env(TEST_USER, TEST_PASSWORD)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def slurm_env(slurm_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = slurm_stack.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def dask_env(dask_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """DASK_SCHEDULER_ADDRESS set, and Dask's config re-read (it reads the environment at import)."""
    import dask

    env = dask_stack.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    dask.config.refresh()
    yield env
    monkeypatch.undo()
    dask.config.refresh()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run these tests last: the session's services then stop with the session instead of idling
    through the rest of the suite (all four: 1.2 GB, about 0.1 core while idle)."""
    here = Path(__file__).parent
    items.sort(key=lambda item: here in item.path.parents)


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.write_line("services: " + ", ".join(f"{name} {seconds:.1f} s"
                                                             for name, seconds in TIMINGS.items()))
