"""Run lifecycle under failure: exceptions → FAILED, Ctrl-C/SIGTERM → KILLED, SIGKILL → stale → FAILED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_train
from mlflow.tracking import MlflowClient

X_OBS = "observation.x=[5,-70,0.1,-55,300,3,15]"
FOREVER = ["simulation.num_simulations=1000", "trainer=default", "trainer.max_epochs=-1",
           "trainer.stop_after_epochs=100000", "trainer.batch_size=20", "diagnostics.enabled=false"]


def _runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("hodgkin_huxley")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def _default_sigint() -> None:
    """Ctrl-C as a terminal delivers it: a suite started in the background by a non-interactive shell
    (``cmd &``) passes SIGINT on as ignored, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def _wait_for_training(uri: str, process: subprocess.Popen, timeout: float = 120) -> str:
    """Block until the run has logged a training epoch; return its id."""
    return _wait_for_metric(uri, process, "train/loss", "hodgkin_huxley", timeout)


#: a run that is in its diagnostics for minutes: NLE's rejection sampler, one x at a time, a long budget
LONG_DIAGNOSTICS = ["experiment=two_moons", "simulation.num_simulations=300", "trainer.max_epochs=2",
                    "diagnostics.sampler_budget.seconds=600", "diagnostics.sampler_budget.min_test_points=1000"]


def _wait_for_metric(uri: str, process: subprocess.Popen, metric: str, experiment: str, timeout: float = 120) -> str:
    """Block until the run has logged ``metric``; return its id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-2000:]
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment) if Path(uri[len("sqlite:///"):]).exists() else None
        for run in client.search_runs([found.experiment_id]) if found is not None else []:
            if metric in run.data.metrics:
                return run.info.run_id
        time.sleep(0.5)
    process.kill()
    raise AssertionError(f"{metric} was never logged")


@pytest.mark.parametrize("stage,sig", [("training", signal.SIGTERM), ("training", signal.SIGINT),
                                       ("diagnostics", signal.SIGINT)])
def test_interrupted_run_is_killed_with_one_line(store, tmp_path, stage, sig):
    args, metric, experiment = [*FOREVER], "train/loss", "hodgkin_huxley"
    if stage == "diagnostics":  # trained (val/loss_best is logged when the networks are), now sampling the test set
        args, metric, experiment = LONG_DIAGNOSTICS, "val/loss_best", "two_moons"
    process = _start([*args, *store["overrides"], f"paths.cache_dir={tmp_path}/cache"])
    run_id = _wait_for_metric(store["uri"], process, metric, experiment)
    process.send_signal(sig)
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # still running: do not leave it behind after the failure
            process.kill()
    assert process.returncode == 130
    run = MlflowClient(store["uri"]).get_run(run_id)
    assert run.info.status == "KILLED"
    assert "interrupted" in run.data.tags["sbilab.error"]
    assert "Traceback" not in stderr, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if line.startswith("sbilab: interrupted")]
    assert run_id in line and "KILLED" in line and "cache" in line


def test_sigkilled_run_is_marked_failed_by_the_next_run(store, tmp_path):
    process = _start([*FOREVER, *store["overrides"], f"paths.cache_dir={tmp_path}/cache"])
    run_id = _wait_for_training(store["uri"], process)
    process.kill()
    process.wait(timeout=30)
    assert MlflowClient(store["uri"]).get_run(run_id).info.status == "RUNNING"
    result = run_train(["simulation.num_simulations=200", "trainer=fast", "diagnostics.enabled=false",
                        *store["overrides"], f"paths.cache_dir={tmp_path}/cache"])
    assert result.returncode == 0, result.stderr[-2000:]
    killed = MlflowClient(store["uri"]).get_run(run_id)
    assert killed.info.status == "FAILED" and "stale" in killed.data.tags["sbilab.error"]
    assert len([r for r in _runs(store["uri"]) if r.info.status == "FINISHED"]) == 1


def test_exception_mid_run_marks_failed_with_the_message(store, tmp_path):
    # V0 = NaN makes every simulation non-finite: the run starts, then fails in the simulation stage
    result = run_train(["simulator.V0=nan", "observation=summary", X_OBS, "simulation.num_simulations=100",
                        *store["overrides"], f"paths.cache_dir={tmp_path}/cache"])
    assert result.returncode != 0
    (run,) = _runs(store["uri"])
    assert run.info.status == "FAILED"
    assert "non-finite" in run.data.tags["sbilab.error"]
    error_txt = MlflowClient(store["uri"]).download_artifacts(run.info.run_id, "error.txt")
    assert "SimulationError" in Path(error_txt).read_text()


def test_interrupt_swallowed_by_a_library_still_kills_the_run(store):
    """sbi's gradient ascent catches Ctrl-C and returns its best guess; the run must still end KILLED."""
    from sbi.utils.sbiutils import gradient_ascent

    from sbilab.errors import RunInterrupted
    from sbilab.tracking.runs import start_run

    calls = []

    def potential(theta: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:  # Ctrl-C arrives mid-search
            os.kill(os.getpid(), signal.SIGINT)
        return -(theta**2).sum(-1)

    reached_the_end = False
    with pytest.raises(RunInterrupted) as raised:
        with start_run(store["uri"], "swallowed", None, run_name=None, tags={}) as recorder:
            gradient_ascent(potential, torch.randn(10, 2), num_iter=50, num_to_optimize=5)
            reached_the_end = True  # sbi swallowed it: the body goes on to its end
    assert reached_the_end and len(calls) < 20
    run = MlflowClient(store["uri"]).get_run(recorder.run_id)
    assert raised.value.run_id == recorder.run_id
    assert run.info.status == "KILLED"
    # the latch is cleared with the run: the next run in this process is not killed by the old signal
    with start_run(store["uri"], "swallowed", None, run_name=None, tags={}) as after:
        pass
    assert MlflowClient(store["uri"]).get_run(after.run_id).info.status == "FINISHED"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
