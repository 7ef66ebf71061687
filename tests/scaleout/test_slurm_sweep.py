"""`make sweep LAUNCHER=slurm` on the real one-node SLURM (with accounting): one SLURM job per sweep job,
children of one parent run, and a parent that closes only after every job has ended; the same with
`LAUNCHER=submitit_local`, the dry run on one machine (no SLURM needed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = ["trainer=fast", "diagnostics.enabled=false", "simulation.num_workers=1"]  # 1 CPU per job: both run at once


def _sweep(root: Path, sweep: str, *args: str, launcher: str = "slurm") -> subprocess.CompletedProcess:
    store = [f"tracking.uri=sqlite:///{root}/mlflow.db", f"tracking.artifact_location=file://{root}/artifacts",
             f"paths.cache_dir={root}/cache", f"hydra.sweep.dir={root}/multirun"]
    return subprocess.run(["make", "-s", "sweep", f"LAUNCHER={launcher}", f"SWEEP={sweep}",
                           f"ARGS={' '.join([*TINY, *store, *args])}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _runs(root: Path):
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("hodgkin_huxley").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("sbilab.role") == "sweep")
    return parent, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def _slurm_jobs(root: Path) -> dict[str, str]:
    """sacct's state of every job the sweep submitted (``<array>_<index>`` → state)."""
    folders = [p.name for p in (root / "multirun" / ".submitit").iterdir() if p.is_dir()]
    array = folders[0].split("_")[0]
    lines = subprocess.run(["sacct", "-n", "-P", "-X", "-j", array, "-o", "JobID,State"], capture_output=True,
                           text=True, check=True).stdout.split()
    return dict(line.split("|") for line in lines)


def _assert_closed_at_exit(result: subprocess.CompletedProcess) -> None:
    """A failed job skips Hydra's end-of-multirun hook: the parent closes at exit and says so, in full (the
    comparison's imports once failed there: Python takes no new atexit hooks while it exits)."""
    assert "sbilab: sweep ended early: 1 FINISHED" in result.stdout, (result.stdout + result.stderr)[-4000:]
    assert "Exception ignored" not in result.stderr and "can't register atexit" not in result.stderr


def test_a_two_job_slurm_sweep_finishes_the_parent_and_both_children(slurm_env, tmp_path):
    result = _sweep(tmp_path, "estimator=maf,mdn", "simulation.num_simulations=300")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "sbilab: sweep finished: 2 FINISHED" in result.stdout
    parent, children = _runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert sorted((r.data.tags["choice.estimator"], r.info.status) for r in children) == [
        ("maf", "FINISHED"), ("mdn", "FINISHED")]
    assert all("val/loss_best" in r.data.metrics for r in children)
    assert sorted(r.data.tags["sbilab.cache"] for r in children) == ["hit", "miss"]  # one budget, simulated once
    assert sorted(_slurm_jobs(tmp_path).values()) == ["COMPLETED", "COMPLETED"]
    logs = "".join(p.read_text() for p in (tmp_path / "multirun" / ".submitit").rglob("*_log.*"))
    assert logs.count("sbilab: job ") == 2  # each job's line is in its SLURM log
    assert "srun` command is available" not in logs and "Traceback" not in logs
    assert not list((tmp_path / "cache" / ".sweeps").iterdir())  # the sweep's marker is gone with it


def test_a_failed_job_does_not_close_the_parent_before_the_other_child(slurm_env, tmp_path):
    """Job 0 exits at once (bad input), job 1 trains 200 epochs: the launcher waits for job 1, then reports
    job 0. (Hydra's own `submitit_slurm` raised within seconds here and closed the parent while job 1 was
    RUNNING.)"""
    result = _sweep(tmp_path, "trainer.stop_after_epochs=0,200", "trainer.max_epochs=200", "trainer.lr_decay=null",
                    "simulation.num_simulations=1000")
    assert result.returncode != 0
    assert "trainer.stop_after_epochs=0 is invalid" in result.stdout + result.stderr
    _assert_closed_at_exit(result)
    parent, children = _runs(tmp_path)
    assert [r.info.status for r in children] == ["FINISHED"]  # job 0 never opened a run
    assert parent.info.status == "FAILED" and parent.data.tags["sbilab.error"].startswith("a job failed")
    assert parent.info.end_time >= children[0].info.end_time  # closed after its child, not at job 0's failure
    assert sorted(_slurm_jobs(tmp_path).values()) == ["COMPLETED", "FAILED"]


def test_the_submitit_local_dry_run_also_waits_for_every_job(tmp_path):
    """The same failure through `LAUNCHER=submitit_local` (local processes, no SLURM): job 0 fails at once,
    job 1 trains; the parent closes FAILED after its child FINISHED."""
    result = _sweep(tmp_path, "trainer.stop_after_epochs=0,3", "simulation.num_simulations=300",
                    launcher="submitit_local")
    assert result.returncode != 0
    assert "trainer.stop_after_epochs=0 is invalid" in result.stdout + result.stderr
    _assert_closed_at_exit(result)
    parent, children = _runs(tmp_path)
    assert [r.info.status for r in children] == ["FINISHED"]
    assert parent.info.status == "FAILED" and parent.data.tags["sbilab.error"].startswith("a job failed")
    assert parent.info.end_time >= children[0].info.end_time
    jobs = [p for p in (tmp_path / "multirun" / ".submitit").iterdir() if p.name.isdigit()]  # local jobs: pids
    assert len(jobs) == 2 and all(list(job.glob("*_log.out")) for job in jobs)  # ran as submitit's jobs
