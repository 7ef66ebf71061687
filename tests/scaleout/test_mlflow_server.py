"""A real ``mlflow server`` on PostgreSQL, reached with MLflow's own client and environment variables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

#: a client in another process that knows only the environment
CLIENT = textwrap.dedent("""
    import sys, tempfile, pathlib
    from mlflow.tracking import MlflowClient
    client = MlflowClient()  # URI and credentials from MLFLOW_TRACKING_* only
    experiment = client.create_experiment(sys.argv[1])
    run = client.create_run(experiment, run_name="proxied")
    for step in range(10):
        client.log_metric(run.info.run_id, "val/loss", 1.0 / (step + 1), step=step)
    client.log_param(run.info.run_id, "estimator", "maf")
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp, "posterior")
        folder.mkdir()
        (folder / "estimator.pt").write_bytes(bytes(range(256)) * 40)
        (folder / "spec.yaml").write_text("x_dim: 7\\n")
        client.log_artifacts(run.info.run_id, str(folder), "posterior")
    client.set_terminated(run.info.run_id, "FINISHED")
    print(run.info.run_id)
""")


def _client_process(env: dict[str, str], experiment: str, hidden: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run CLIENT with only the tracking variables. As root it runs in a mount namespace of its own
    where an empty tmpfs covers ``hidden`` (the server's folder): whatever it stores or reads went
    through the server."""
    keep = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "MLFLOW_DISABLE_TELEMETRY") if key in os.environ}
    command = [sys.executable, "-c", CLIENT, experiment]
    if os.geteuid() == 0 and shutil.which("unshare"):
        command = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs hidden "$0" && exec "$@"', str(hidden), *command]
    return subprocess.run(command, env={**keep, **env}, cwd=cwd, capture_output=True, text=True, timeout=120)


def _files(client: MlflowClient, run_id: str, path: str | None = None) -> dict[str, int]:
    found: dict[str, int] = {}
    for item in client.list_artifacts(run_id, path):
        found.update(_files(client, run_id, item.path) if item.is_dir else {item.path: item.file_size})
    return found


def test_a_client_logs_a_run_through_the_server_with_proxied_artifacts(mlflow_stack, tracking_env, tmp_path):
    server = mlflow_stack.mlflow
    result = _client_process(tracking_env, "proxied", mlflow_stack.state, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    run_id = result.stdout.strip().splitlines()[-1]

    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"estimator": "maf"}
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    history = client.get_metric_history(run_id, "val/loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (step, 1.0 / (step + 1)) for step in range(10)]
    assert _files(client, run_id) == {"posterior/estimator.pt": 10240, "posterior/spec.yaml": 9}
    downloaded = Path(client.download_artifacts(run_id, "posterior/estimator.pt", str(tmp_path)))
    assert downloaded.read_bytes() == bytes(range(256)) * 40
    # the bytes sit where the server keeps them, and reached it by the artifact proxy
    stored = [path for path in server.artifacts.rglob("estimator.pt") if run_id in str(path)]
    assert len(stored) == 1 and stored[0].read_bytes() == downloaded.read_bytes()
    assert "PUT /api/2.0/mlflow-artifacts/artifacts/" in (server.folder / "server.log").read_text()
    # the user who created the experiment owns it; the credentials never became run data
    assert not any(tracking_env["MLFLOW_TRACKING_PASSWORD"] in value
                   for value in [*run.data.params.values(), *run.data.tags.values()])


@pytest.mark.parametrize("credentials", [{"MLFLOW_TRACKING_PASSWORD": "wrong-password"},
                                         {"MLFLOW_TRACKING_USERNAME": None, "MLFLOW_TRACKING_PASSWORD": None}],
                         ids=["wrong password", "no credentials"])
def test_the_server_refuses_clients_without_valid_credentials(tracking_env, monkeypatch, credentials):
    MlflowClient().search_experiments()  # the test user's own credentials work
    for key, value in credentials.items():
        if value is None:
            monkeypatch.delenv(key)
        else:
            monkeypatch.setenv(key, value)
    with pytest.raises(MlflowException, match="401"):
        MlflowClient().search_experiments()
