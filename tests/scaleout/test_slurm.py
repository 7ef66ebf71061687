"""A real one-node SLURM with accounting: sbatch, srun and sacct as a user (or submitit) calls them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _slurm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """A SLURM client command; it finds the cluster through SLURM_CONF only (set by ``slurm_env``)."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def _accounted(job: str, states: set[str], timeout: float = 30) -> dict[str, str]:
    """``sacct``'s state of each step of ``job`` once the job's own line reaches one of ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        lines = _slurm("sacct", "-n", "-P", "-j", job, "-o", "JobID,State,ExitCode").stdout.split()
        steps = {line.split("|")[0]: "|".join(line.split("|")[1:]) for line in lines}
        if steps.get(job, "").split("|")[0] in states or time.monotonic() > deadline:
            return steps
        time.sleep(0.5)


def test_a_batch_job_with_an_srun_step_runs_and_sacct_records_it(slurm_env, tmp_path: Path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#SBATCH --job-name=sbilab-smoke\n#SBATCH --cpus-per-task=1\n"
                      f"#SBATCH --output={tmp_path}/%j.out\n"
                      "srun bash -c 'echo step on $SLURMD_NODENAME'\necho batch done\n")
    submitted = _slurm("sbatch", "--parsable", "--wait", str(script))
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    assert (tmp_path / f"{job}.out").read_text().splitlines() == ["step on localhost", "batch done"]
    steps = _accounted(job, {"COMPLETED"})
    assert steps[job] == "COMPLETED|0:0" and steps[f"{job}.batch"] == "COMPLETED|0:0"
    assert steps[f"{job}.0"] == "COMPLETED|0:0"  # the srun step


def test_a_job_killed_before_it_finishes_is_accounted_as_failed(slurm_env, tmp_path: Path):
    """What submitit relies on to stop waiting for a job that never wrote its result."""
    submitted = _slurm("sbatch", "--parsable", f"--output={tmp_path}/%j.out", "--wrap", "sleep 600")
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    deadline = time.monotonic() + 30
    while _slurm("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() != "RUNNING":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    assert _slurm("scancel", "--signal=KILL", "--full", job).returncode == 0
    steps = _accounted(job, {"CANCELLED", "FAILED"})
    assert steps[job].split("|")[0] in {"CANCELLED", "FAILED"}, steps
    assert steps[job] != "COMPLETED|0:0"


def test_two_jobs_share_the_node(slurm_env, tmp_path: Path):
    """The node's CPUs are consumable, its memory is not: two 1-CPU jobs run at the same time."""
    marker = tmp_path / "both"
    jobs = []
    for index in range(2):
        # each job waits (up to 60 s) until both have announced themselves
        command = (f"touch {tmp_path}/started-{index}; for i in $(seq 600); do "
                   f"[ -e {tmp_path}/started-0 ] && [ -e {tmp_path}/started-1 ] && touch {marker} && exit 0; "
                   "sleep 0.1; done; exit 1")
        result = _slurm("sbatch", "--parsable", "--cpus-per-task=1", "--mem=100M", f"--output={tmp_path}/%j.out",
                        "--wrap", command)
        assert result.returncode == 0, result.stderr
        jobs.append(result.stdout.strip())
    states = [_accounted(job, {"COMPLETED", "FAILED"}, timeout=90)[job] for job in jobs]
    assert states == ["COMPLETED|0:0", "COMPLETED|0:0"] and marker.exists()
