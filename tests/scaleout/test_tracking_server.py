"""sbilab through `tracking=server` on the real PostgreSQL-backed `mlflow server` (basic auth, proxied
artifacts): `make train`, a parallel sweep, concurrent writers, the registry, and a server that dies.

The client side knows only MLflow's variables (``tracking_env``: MLFLOW_TRACKING_URI, a non-admin
user's MLFLOW_TRACKING_USERNAME / _PASSWORD), as a lab member's shell would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

import sbilab

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = ["simulation.num_simulations=300", "trainer=fast", "diagnostics=fast", "diagnostics.num_test=40",
        "diagnostics.num_posterior_samples=40", "diagnostics.num_ppc=10"]
EXPECTED_ARTIFACTS = {"config.yaml", "posterior_samples.npy", "observation.npy", "posterior/spec.yaml",
                      "posterior/estimator.pt", "plots/loss.png", "plots/pairplot.png", "plots/ppc.png",
                      "plots/sbc_ranks.png", "plots/coverage.png", "plots/tarp.png", "diagnostics/gates.json"}


def _make(target: str, *variables: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``make <target> VAR=...`` in the checkout, as a user runs it (the environment holds MLFLOW_TRACKING_*)."""
    return subprocess.run(["make", "-s", target, *variables], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def _assert_complete(client: MlflowClient, run_id: str) -> None:
    """FINISHED, every epoch's losses logged once, every artifact a run writes present."""
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED", run.data.tags.get("sbilab.error")
    epochs = int(run.data.metrics["train/epochs"])
    for name in ("train/loss", "val/loss", "train/lr"):
        assert sorted(m.step for m in client.get_metric_history(run_id, name)) == list(range(epochs)), name
    assert EXPECTED_ARTIFACTS <= _artifacts(client, run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # stored through the server's proxy


def _assert_no_credentials(client: MlflowClient, run_id: str, secret: str, tmp_path: Path) -> None:
    run = client.get_run(run_id)
    recorded = [*run.data.params.values(), *run.data.tags.values(),
                Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path))).read_text()]
    assert not any(secret in text for text in recorded)
    assert not any(key.startswith("tracking.") for key in run.data.params)


def test_make_train_register_and_load_through_the_server(tracking_env, tmp_path):
    args = " ".join(["tracking=server", *TINY, f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/out"])
    result = _make("train", f"ARGS={args}")
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = result.stdout.split("sbilab: run ", 1)[1].split()[0]
    assert f"{tracking_env['MLFLOW_TRACKING_URI']}/#/experiments/" in result.stdout  # the server's UI, not make ui
    client = MlflowClient()
    _assert_complete(client, run_id)
    _assert_no_credentials(client, run_id, tracking_env["MLFLOW_TRACKING_PASSWORD"], tmp_path)

    registered = _make("register", f"RUN={run_id}", "NAME=scaleout-hh", "ARGS=tracking=server")
    assert registered.returncode == 0, registered.stderr[-3000:]
    assert "models:/scaleout-hh/1" in registered.stdout
    model_uri = client.get_run(run_id).data.tags["sbilab.posterior_model"]
    samples = []
    for ref in (f"runs:/{run_id}/posterior", model_uri, "models:/scaleout-hh/1"):
        posterior = sbilab.load_posterior(ref)  # tracking URI and credentials from the environment
        torch.manual_seed(0)
        samples.append(posterior.sample((30,), x=torch.zeros(1, 7), show_progress_bars=False))
    assert torch.equal(samples[0], samples[1]) and torch.equal(samples[0], samples[2])


def test_a_four_job_parallel_sweep_through_the_server(tracking_env, tmp_path):
    args = " ".join(["tracking=server", "tracking.experiment=scaleout-sweep", *TINY,
                     f"paths.cache_dir={tmp_path}/cache", f"hydra.sweep.dir={tmp_path}/multirun"])
    result = _make("sweep", "JOBS=4", "SWEEP=seed=0,1,2,3", f"ARGS={args}", timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sbilab: sweep finished: 4 FINISHED" in result.stdout
    client = MlflowClient()
    experiment = client.get_experiment_by_name("scaleout-sweep")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("sbilab.role") == "sweep")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 5 and parent.info.status == "FINISHED"
    assert sorted(r.data.params["seed"] for r in children) == ["0", "1", "2", "3"]
    for child in children:
        _assert_complete(client, child.info.run_id)
    assert {"comparison/runs.csv", "comparison/runs.md"} <= _artifacts(client, parent.info.run_id)


#: one writer: a full sbilab run record without the training (which the sweep above covers), into an
#: experiment that does not exist yet, started at the same moment as its siblings
WRITER = textwrap.dedent("""
    import sys, time, pathlib, numpy as np, torch
    from sbilab import tracking
    experiment, index, go = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
    uri = __import__("os").environ["MLFLOW_TRACKING_URI"]
    go.with_name(f"ready-{index}").touch()
    while not go.exists():
        time.sleep(0.01)
    with tracking.start_run(uri, experiment, None, run_name=f"writer-{index}", tags={"writer": str(index)}) as run:
        run.log_params({"writer": index, "estimator.hidden_features": 50})
        for epoch in range(40):
            run.log_metrics({"train/loss": index + 1.0 / (epoch + 1), "val/loss": index + 2.0 / (epoch + 1)}, epoch)
        run.log_torch_state({"w": torch.full((64, 64), float(index))}, "posterior/estimator.pt")
        run.log_array(np.arange(100) * index, "posterior_samples.npy")
        run.log_text(f"writer {index}\\n", "config.yaml")
    print(run.run_id)
""")


def test_eight_concurrent_writers_into_a_new_experiment_lose_nothing(tracking_env, tmp_path):
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, "scaleout-writers", str(index), str(go)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
               for index in range(8)]
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("ready-*"))) < 8 and time.monotonic() < deadline:
        time.sleep(0.2)  # until every writer has imported sbilab: then all start at once
    go.touch()
    outputs = [writer.communicate(timeout=300) for writer in writers]
    assert [writer.returncode for writer in writers] == [0] * 8, [err[-1500:] for _, err in outputs]
    run_ids = [out.strip().splitlines()[-1] for out, _ in outputs]

    client = MlflowClient()
    experiments = [e for e in client.search_experiments() if e.name == "scaleout-writers"]
    assert len(experiments) == 1  # the creation race has one winner; the others read it back
    runs = client.search_runs([experiments[0].experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids)
    assert not client.search_runs(["0"], "tags.writer != ''")  # nobody fell back to the Default experiment
    for run in runs:
        index = int(run.data.tags["writer"])
        assert run.info.status == "FINISHED" and run.data.params["writer"] == str(index)
        history = client.get_metric_history(run.info.run_id, "val/loss")
        assert sorted((m.step, m.value) for m in history) == [(e, index + 2.0 / (e + 1)) for e in range(40)]
        assert _artifacts(client, run.info.run_id) == {"posterior/estimator.pt", "posterior_samples.npy", "config.yaml"}
        state = torch.load(client.download_artifacts(run.info.run_id, "posterior/estimator.pt", str(tmp_path)),
                           weights_only=True)
        assert torch.equal(state["w"], torch.full((64, 64), float(index)))


def test_wrong_credentials_are_one_line_naming_the_variables(tracking_env, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_PASSWORD": "not-the-password", "PYTHONWARNINGS": "ignore"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "tracking=server", *TINY,
                             f"hydra.run.dir={tmp_path}/out"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and time.monotonic() - started < 60
    assert result.stderr.strip().splitlines()[-1] == (
        f"sbilab: error: tracking.uri='{tracking_env['MLFLOW_TRACKING_URI']}': the server refused the password of "
        f"MLFLOW_TRACKING_USERNAME='{tracking_env['MLFLOW_TRACKING_USERNAME']}' (HTTP 401); set "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment")
    assert "Traceback" not in result.stderr


def test_the_server_killed_mid_run_fails_the_run_with_the_reason_and_loses_nothing_else(mlflow_stack, tracking_env,
                                                                                         tmp_path):
    client = MlflowClient()
    before = client.create_run(client.create_experiment("scaleout-before-the-kill"), run_name="earlier")
    for step in range(5):
        client.log_metric(before.info.run_id, "val/loss", 1.0 / (step + 1), step=step)
    client.log_text(before.info.run_id, "kept\n", "notes.txt")
    client.set_terminated(before.info.run_id)

    # long enough to be killed in the middle of training: many epochs, no early stop
    args = ["tracking=server", "tracking.experiment=scaleout-killed", "simulation.num_simulations=2000",
            "trainer.max_epochs=400", "trainer.stop_after_epochs=400", "trainer.lr_decay=null",
            "diagnostics.enabled=false", f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/out"]
    job = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
    run_id = _wait_for_epochs(client, "scaleout-killed", epochs=3, timeout=300)
    mlflow_stack.mlflow.daemon.kill()
    killed = time.monotonic()
    time.sleep(20)  # longer than the client's bounded retries (3, backoff 1): the run has failed by now
    assert job.poll() is None  # ... and waits for the server to record why, not hanging on a request
    mlflow_stack.mlflow.start()
    out, err = job.communicate(timeout=300)
    assert time.monotonic() - killed < 200
    assert job.returncode == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"sbilab: error: tracking.uri='{tracking_env['MLFLOW_TRACKING_URI']}': run {run_id} "
                           "FAILED: the tracking server stopped answering during the run (")

    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["sbilab.error"].startswith("the tracking server stopped answering during the run (")
    steps = sorted(m.step for m in client.get_metric_history(run_id, "val/loss"))
    assert len(steps) >= 3 and steps == list(range(len(steps)))  # every epoch up to the failure, no gap
    assert "error.txt" in _artifacts(client, run_id)
    # nothing else lost: a run finished before the kill is whole
    earlier = client.get_run(before.info.run_id)
    assert earlier.info.status == "FINISHED"
    assert [m.value for m in sorted(client.get_metric_history(before.info.run_id, "val/loss"),
                                    key=lambda m: m.step)] == [1.0 / (s + 1) for s in range(5)]
    assert Path(client.download_artifacts(before.info.run_id, "notes.txt", str(tmp_path))).read_text() == "kept\n"


def _wait_for_epochs(client: MlflowClient, experiment: str, epochs: int, timeout: float) -> str:
    """The id of the experiment's run once it has logged ``epochs`` validation losses."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found is not None else []
        if runs and len(client.get_metric_history(runs[0].info.run_id, "val/loss")) >= epochs:
            return runs[0].info.run_id
        time.sleep(1)
    raise AssertionError(f"no run of {experiment} logged {epochs} epochs within {timeout} s")
