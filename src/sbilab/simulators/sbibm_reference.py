"""sbibm's published benchmark observations and reference posterior samples.

The sbibm 1.1.0 wheel on PyPI (Lueckmann et al. 2021, MIT licence) ships, for
every task and ``num_observation`` 1..10, the true parameters, the observation
and 10,000 reference posterior samples (``sbibm/tasks/<task>/files/...``). The
published C2ST numbers were computed against these samples.

sbibm pins an old sbi, so it is never installed: :func:`fetch` downloads the
wheel with ``pip download --no-deps`` (or takes a local copy), checks its hash,
and extracts only those data files into ``<project root>/.cache/sbibm-1.1.0/``.
Nothing else in sbilab needs the cache: the simulators compute their own
reference posteriors from the likelihood, and the true parameters and
observations of ``num_observation`` 1-3 are tabulated below.
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

SBIBM_VERSION = "1.1.0"
WHEEL_NAME = f"sbibm-{SBIBM_VERSION}-py2.py3-none-any.whl"
WHEEL_SHA256 = "12ecc6b4d327b92f9225f08faa6405e4274fb8e75943d86a53157d1b1bcfaf74"
#: the tasks whose files are extracted (sbibm's directory names)
TASKS = ("two_moons", "gaussian_linear", "slcp", "gaussian_mixture")
NUM_OBSERVATIONS = 10
_FILES = ("true_parameters.csv", "observation.csv", "reference_posterior_samples.csv.bz2")
_MEMBER = re.compile(
    r"^sbibm/tasks/(?P<task>[a-z_]+)/files/num_observation_(?P<k>\d+)/(?P<file>"
    + "|".join(re.escape(f) for f in _FILES)
    + r")$"
)
_COMPLETE = "COMPLETE.json"

#: (true parameters, observation) of sbibm's num_observation 1, 2, 3, copied from the
#: wheel's true_parameters.csv / observation.csv (float32 values as written there).
#: These are the observations the published C2ST figures average over (with 4..10).
OBSERVATIONS: dict[str, dict[int, tuple[tuple[float, ...], tuple[float, ...]]]] = {
    "two_moons": {
        1: ((-0.8176656, -0.5756806), (-0.6396706, 0.16234657)),
        2: ((-0.28899693, -0.8759459), (-0.5676688, -0.33194834)),
        3: ((0.73016036, -0.3217839), (0.0030109584, -0.6457662)),
    },
    "gaussian_linear": {
        1: (
            (0.27184236, 0.6762953, 0.17189318, -0.04218617, -0.82151634,
             0.024290232, -0.24255924, -0.16438946, -0.13595216, 0.26958188),
            (1.0471346, 0.5566712, -0.23618454, 0.027879834, -1.0051446,
             -0.007930746, 0.06117077, -0.29286885, -0.38539964, 0.2449614),
        ),
        2: (
            (0.3231766, -0.48194557, -0.158818, 0.24477085, -0.05232675,
             -0.17622235, 0.11508731, -0.59824085, 0.4403286, 0.054832038),
            (-0.106687605, -0.8015651, -0.07332335, 0.4009537, 0.62297356,
             -0.18687348, 0.7087778, 0.1921165, 0.6718195, 0.097826496),
        ),
        3: (
            (0.7524056, -0.40969732, -0.4214273, 0.5400569, 0.106762305,
             0.44723606, 0.15044528, -0.44408217, 0.03280716, -0.7424394),
            (0.46684834, -1.0391812, -0.4221986, -0.043471217, 0.06795333,
             0.44685173, 0.034785576, -0.48691356, -0.14388148, -0.60066223),
        ),
    },
    "slcp": {
        1: (
            (-2.8581212, -0.44451332, 2.9473476, 1.2396116, 2.9712725),
            (2.3718784, 0.49947417, 9.931435, 1.7136912, -10.436423, -1.9067793, -1.2343777, -0.09735),
        ),
        2: (
            (-0.8669908, -2.6278377, 2.8607178, -1.8587376, -2.7437975),
            (-0.66452104, -2.9279308, -16.49147, 4.06107, 4.232153, -4.652277, -4.9924355, -1.5655216),
        ),
        3: (
            (2.1904812, -0.9653516, 2.2308893, -2.95686, 1.7665963),
            (3.5023372, 5.254722, 8.685451, 9.995327, 0.40782332, -5.7111573, 10.605566, 12.695774),
        ),
    },
    "gaussian_mixture": {
        1: ((-9.527071, -1.4817104), (-9.472713, -1.4950509)),
        2: ((-2.8899693, -8.7594595), (-2.940192, -8.682056)),
        3: ((7.3016033, -3.2178392), (7.1683364, -3.0470583)),
    },
}


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
    return (cache_dir(root) / _COMPLETE).is_file()


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


def _extract(wheel: Path, staging: Path) -> dict[str, int]:
    """Copy the data files of :data:`TASKS` to ``staging/<task>/num_observation_<k>/``."""
    found: dict[tuple[str, int], set[str]] = {}
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            match = _MEMBER.match(member)
            if match is None or match["task"] not in TASKS:
                continue
            k = int(match["k"])
            out = staging / match["task"] / f"num_observation_{k}" / match["file"]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(archive.read(member))
            found.setdefault((match["task"], k), set()).add(match["file"])
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
                f"sbibm's reference files are not cached in {cache_dir(root)}; "
                "run `python scripts/benchmark_reference.py fetch`"
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
