"""The documented way to get Dask workers on a cluster, on the real one-node SLURM: `scripts/dask_slurm.py`
(dask-jobqueue's SLURMCluster) starts workers as SLURM jobs, `simulation=dask` uses them, Ctrl-C cancels them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _simulate(tmp_path: Path, *overrides: str):
    from sbilab.pipeline import simulate
    from sbilab.spec import prepare

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            *overrides, "simulation.num_simulations=4000", "simulation.chunk_size=500", "simulation.cache=false",
            f"paths.output_dir={tmp_path}/out", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"])
    return simulate(prepare(cfg), "train", 4000)


def _our_jobs() -> list[str]:
    return subprocess.run(["squeue", "-h", "-n", "sbilab-dask", "-o", "%i %T"], capture_output=True, text=True,
                          check=True).stdout.split("\n")[:-1]


def test_workers_as_slurm_jobs_simulate_and_go_away_on_ctrl_c(slurm_env, tmp_path):
    cluster = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "dask_slurm.py"), "--jobs", "2",
                                "--memory", "1GB", "--host", "127.0.0.1", "--wait", "180"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               # Ctrl-C as a terminal delivers it, even when the suite runs as `cmd &`
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        address = None
        for line in cluster.stdout:  # type: ignore[union-attr]
            if line.startswith("export DASK_SCHEDULER_ADDRESS="):
                address = line.strip().split("=", 1)[1]
            if line.startswith("sbilab: 2 Dask workers in 2 SLURM jobs"):
                break
        assert address is not None and cluster.poll() is None, cluster.stderr.read()[-3000:]  # type: ignore[union-attr]
        assert sorted(job.split()[1] for job in _our_jobs()) == ["RUNNING", "RUNNING"]

        on_slurm = _simulate(tmp_path, "simulation=dask", f"simulation.address={address}")
        local = _simulate(tmp_path, "simulation=local")
        assert torch.equal(on_slurm.x, local.x) and torch.equal(on_slurm.theta, local.theta)
    finally:
        cluster.send_signal(signal.SIGINT)
        cluster.wait(timeout=60)
    deadline = time.monotonic() + 30
    while _our_jobs() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _our_jobs() == []  # the worker jobs were cancelled with the cluster
