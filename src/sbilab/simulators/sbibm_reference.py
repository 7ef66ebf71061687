"""sbibm's published benchmark observations and reference posterior samples.

The sbibm 1.1.0 wheel on PyPI (Lueckmann et al. 2021, MIT licence) ships, for
every task and ``num_observation`` 1..10, the true parameters, the observation
and 10,000 reference posterior samples (``sbibm/tasks/<task>/files/...``). The
published C2ST numbers were computed against these samples.

sbibm pins an old sbi, so it is never installed: :func:`fetch` downloads the
wheel with ``pip download --no-deps`` (or takes a local copy), checks its hash,
and extracts only those data files into ``<project root>/.cache/sbibm-1.1.0/``,
one folder per task of :data:`TASKS` (``COMPLETE.json`` lists them; a cache
that lacks a task is extracted again). Only the benchmark's scoring needs the
cache: the class-based simulators compute their own reference posteriors from
the likelihood, and the true parameters and observations of ``num_observation``
1-3 are tabulated below.

Two of sbibm's tasks are variants that live in another task's folder of the wheel
and share its true parameters and reference samples, with their own x_o:
``bernoulli_glm_raw`` (``bernoulli_glm/.../observation_raw.csv``) and
``slcp_distractors`` (``slcp/.../observation_distractors.csv``); they are
extracted into folders of their own, their x_o as ``observation.csv``.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from sbilab.errors import ConfigError
from sbilab.simulators.sbibm_observations import OBSERVATIONS  # noqa: F401 (re-exported: ref.OBSERVATIONS)

SBIBM_VERSION = "1.1.0"
WHEEL_NAME = f"sbibm-{SBIBM_VERSION}-py2.py3-none-any.whl"
WHEEL_SHA256 = "12ecc6b4d327b92f9225f08faa6405e4274fb8e75943d86a53157d1b1bcfaf74"
#: the tasks whose files are extracted (sbibm's task names): the class-based tasks of
#: sbilab.simulators.benchmark_tasks, then those written as plain functions in sbilab.tasks
TASKS = ("two_moons", "gaussian_linear", "slcp", "gaussian_mixture",
         "gaussian_linear_uniform", "bernoulli_glm", "bernoulli_glm_raw", "sir", "lotka_volterra", "slcp_distractors")
NUM_OBSERVATIONS = 10
_FILES = ("true_parameters.csv", "observation.csv", "reference_posterior_samples.csv.bz2")
#: tasks whose files are in another task's folder of the wheel: (that folder, the file holding their x_o)
_VARIANTS = {"bernoulli_glm_raw": ("bernoulli_glm", "observation_raw.csv"),
             "slcp_distractors": ("slcp", "observation_distractors.csv")}
_MEMBER = re.compile(r"^sbibm/tasks/(?P<folder>[a-z_]+)/files/num_observation_(?P<k>\d+)/(?P<file>[a-z0-9_.]+)$")
_COMPLETE = "COMPLETE.json"


class SbibmDataUnavailable(RuntimeError):
    """sbibm's published files are not cached and could not be fetched."""


@dataclass(frozen=True)
class PublishedObservation:
    """One benchmark observation: θ* [D], x_o [d] and 10,000 reference samples [N, D] (float64)."""

    task: str
    num_observation: int
    theta: np.ndarray
    x: np.ndarray
    samples: np.ndarray


def benchmark_observation(task: str, num_observation: int) -> tuple[list[float], list[float]]:
    """(θ*, x_o) of sbibm's ``num_observation`` 1-3 from the table in code (no cache needed)."""
    _check_task(task)
    table = OBSERVATIONS[task]
    if num_observation not in table:
        raise ConfigError(
            f"num_observation={num_observation}: tabulated are {sorted(table)}; "
            "4-10 need the cache (published_observation)"
        )
    theta, x = table[num_observation]
    return list(theta), list(x)


def project_root() -> Path:
    """PROJECT_ROOT when set, else the repository holding this file."""
    env = os.environ.get("PROJECT_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[3]


def cache_dir(root: Optional[Path | str] = None) -> Path:
    return Path(root or project_root()) / ".cache" / f"sbibm-{SBIBM_VERSION}"


def is_cached(root: Optional[Path | str] = None) -> bool:
    """Whether the cache holds every task of :data:`TASKS` (one extracted with fewer tasks is not)."""
    try:
        done = json.loads((cache_dir(root) / _COMPLETE).read_text()).get("observations", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(done, dict) and all(done.get(task) == NUM_OBSERVATIONS for task in TASKS)


def fetch(root: Optional[Path | str] = None, *, wheel: Optional[Path | str] = None, timeout: float = 300) -> Path:
    """Cache sbibm's observations and reference samples; return the cache directory.

    ``wheel``: a local copy of the sbibm 1.1.0 wheel (for offline machines); else
    it is downloaded from PyPI with ``pip download --no-deps`` (never installed).
    Idempotent and safe to call from parallel processes.
    """
    from filelock import FileLock

    target = cache_dir(root)
    if is_cached(root):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f"sbibm-{SBIBM_VERSION}.lock")):
        if is_cached(root):
            return target
        workdir = Path(tempfile.mkdtemp(prefix="sbibm-", dir=target.parent))
        try:
            path = Path(wheel) if wheel is not None else _download_wheel(workdir, timeout)
            _check_hash(path)
            staging = workdir / "extracted"
            counts = _extract(path, staging)
            (staging / _COMPLETE).write_text(json.dumps(
                {"sbibm": SBIBM_VERSION, "wheel_sha256": WHEEL_SHA256, "observations": counts}, indent=1))
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return target


def _download_wheel(workdir: Path, timeout: float) -> Path:
    command = [sys.executable, "-m", "pip", "download", f"sbibm=={SBIBM_VERSION}", "--no-deps",
               "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "-d", str(workdir)]
    hint = ("sbibm's reference files could not be downloaded from PyPI (offline?). Pass a local copy of "
            f"{WHEEL_NAME} (scripts/benchmark_reference.py fetch --wheel PATH); the tasks themselves do not need it")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SbibmDataUnavailable(f"{hint} ({type(error).__name__}: {error})") from None
    wheels = sorted(workdir.glob("sbibm-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise SbibmDataUnavailable(f"{hint} (pip: {last[-1] if last else 'exit ' + str(done.returncode)})")
    return wheels[0]


def _check_hash(path: Path) -> None:
    if not path.is_file():
        raise SbibmDataUnavailable(f"{path}: no such file")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SbibmDataUnavailable(f"{path}: sha256 {digest} is not that of {WHEEL_NAME} ({WHEEL_SHA256})")


def _sources() -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(wheel folder, file name) -> the (task, file name in the cache) it is copied to."""
    sources: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for task in TASKS:
        folder, observation = _VARIANTS.get(task, (task, "observation.csv"))
        for name in _FILES:
            member = observation if name == "observation.csv" else name
            sources.setdefault((folder, member), []).append((task, name))
    return sources


def _extract(wheel: Path, staging: Path) -> dict[str, int]:
    """Copy the data files of :data:`TASKS` to ``staging/<task>/num_observation_<k>/``."""
    found: dict[tuple[str, int], set[str]] = {}
    sources = _sources()
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            match = _MEMBER.match(member)
            targets = sources.get((match["folder"], match["file"])) if match else None
            if not targets:
                continue
            k = int(match["k"])
            data = archive.read(member)
            for task, name in targets:
                out = staging / task / f"num_observation_{k}" / name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
                found.setdefault((task, k), set()).add(name)
    counts = {}
    for task in TASKS:
        complete = [k for k in range(1, NUM_OBSERVATIONS + 1) if found.get((task, k)) == set(_FILES)]
        if len(complete) != NUM_OBSERVATIONS:
            raise SbibmDataUnavailable(f"{wheel}: {task} has complete files for observations {complete} only")
        counts[task] = len(complete)
    return counts


def _read_csv(path: Path) -> np.ndarray:
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt") as handle:
        return np.loadtxt(handle, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"task={task!r}: sbibm tasks available here are {', '.join(TASKS)}")


def published_observation(
    task: str, num_observation: int, root: Optional[Path | str] = None, *, download: bool = False
) -> PublishedObservation:
    """θ*, x_o and the 10,000 published reference samples of one benchmark observation."""
    _check_task(task)
    if not 1 <= num_observation <= NUM_OBSERVATIONS:
        raise ConfigError(f"num_observation={num_observation}: sbibm has 1..{NUM_OBSERVATIONS}")
    if not is_cached(root):
        if not download:
            raise SbibmDataUnavailable(
                f"sbibm's reference files (every task of {', '.join(TASKS)}) are not cached in "
                f"{cache_dir(root)}; run `python scripts/benchmark_reference.py fetch`"
            )
        fetch(root)
    folder = cache_dir(root) / task / f"num_observation_{num_observation}"
    return PublishedObservation(
        task=task,
        num_observation=num_observation,
        theta=_read_csv(folder / "true_parameters.csv")[0],
        x=_read_csv(folder / "observation.csv")[0],
        samples=_read_csv(folder / "reference_posterior_samples.csv.bz2"),
    )


def match_observation(
    task: str, x_o: Sequence[float] | np.ndarray, root: Optional[Path | str] = None, atol: float = 1e-5
) -> Optional[int]:
    """The ``num_observation`` whose published x_o equals ``x_o`` (to float32 precision), else None.

    Looks at the cache when present (observations 1-10), else at the table (1-3).
    """
    _check_task(task)
    x = np.asarray(x_o, dtype=np.float64).reshape(-1)
    if is_cached(root):
        candidates = {
            k: _read_csv(cache_dir(root) / task / f"num_observation_{k}" / "observation.csv")[0]
            for k in range(1, NUM_OBSERVATIONS + 1)
        }
    else:
        candidates = {k: np.asarray(x_k) for k, (_, x_k) in OBSERVATIONS[task].items()}
    for k, x_k in candidates.items():
        if x_k.shape == x.shape and np.allclose(x, x_k, rtol=1e-6, atol=atol):
            return k
    return None
