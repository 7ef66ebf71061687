"""The posterior as an MLflow pyfunc model (models from code) and its registered versions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

import sbilab
from sbilab import tracking
from sbilab.methods import NPE
from sbilab.posterior_io import SPEC_FILE, STATE_FILE, posterior_spec

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "model-test"
X_DIM, THETA_DIM = 7, 2
ESTIMATOR = {"name": "maf", "model": "maf", "hidden_features": 10, "num_transforms": 2,
             "z_score_theta": "independent", "z_score_x": "independent"}
PRIOR = {"_target_": "sbilab.priors.box_uniform", "name": "hh_box", "low": [0.5, 1.0e-4], "high": [80.0, 15.0],
         "names": ["gbar_Na", "gbar_K"]}
METHOD = {"_target_": "sbilab.methods.NPE", "name": "npe", "sample_with": "direct"}


def _train_briefly(estimator: torch.nn.Module, theta: torch.Tensor, x: torch.Tensor) -> None:
    optimizer = torch.optim.Adam(estimator.parameters(), lr=1e-3)
    for _ in range(20):
        optimizer.zero_grad()
        estimator.loss(theta, condition=x).mean().backward()
        optimizer.step()


def _posterior_run(store: dict, *, with_model: bool) -> str:
    """A FINISHED run with a real (briefly trained) sbi posterior artifact, as the pipeline writes it."""
    generator = torch.Generator().manual_seed(0)
    theta = torch.rand(200, THETA_DIM, generator=generator) * torch.tensor([79.5, 15.0]) + torch.tensor([0.5, 0.0])
    noise = torch.randn(200, X_DIM, generator=generator)
    x = torch.cat([theta, theta.sum(1, keepdim=True)], 1).repeat(1, 3)[:, :X_DIM] + noise
    torch.manual_seed(0)
    estimator = NPE().build_estimator(ESTIMATOR, theta, x)
    _train_briefly(estimator, theta, x)
    with tracking.start_run(store["uri"], EXPERIMENT, store["artifacts"], run_name="posterior",
                            tags={"sbilab.estimator": "maf", "sbilab.simulator": "test"}) as recorder:
        spec = posterior_spec(METHOD, ESTIMATOR, PRIOR, THETA_DIM, X_DIM)
        recorder.log_text(yaml.safe_dump(spec, sort_keys=False), f"posterior/{SPEC_FILE}")
        recorder.log_torch_state(estimator.state_dict(), f"posterior/{STATE_FILE}")
        if with_model:
            tracking.log_posterior_model(recorder)
    return recorder.run_id


@pytest.fixture
def model_run(store):
    return store, _posterior_run(store, with_model=True)


LOAD_IN_FRESH_PROCESS = r"""
import json, sys
import numpy as np, pandas as pd, torch
import mlflow, mlflow.pyfunc
uri, run_id, registered = sys.argv[1:4]
mlflow.set_tracking_uri(uri)
x = np.linspace(0.5, 3.5, 14).reshape(2, 7)
out = {}
for name, model_uri in [("logged", mlflow.get_run(run_id).data.tags["sbilab.posterior_model"]),
                        ("runs", f"runs:/{run_id}/posterior_model"), ("registered", registered)]:
    model = mlflow.pyfunc.load_model(model_uri)
    samples = model.predict(pd.DataFrame(x), params={"num_samples": 25, "seed": 3})
    out[name] = {"shape": list(samples.shape), "dtype": str(samples.dtype), "first": samples[0, :3].tolist()}
out["array_input"] = list(model.predict(x[:1].astype(np.float32), params={"num_samples": 4}).shape)
out["list_input"] = list(model.predict(x.tolist()).shape)
import sbilab
posterior = sbilab.load_posterior(f"runs:/{run_id}/posterior", uri)
torch.manual_seed(3)
x_1 = torch.as_tensor(x[:1], dtype=torch.float32)
out["direct"] = posterior.sample((25,), x=x_1, show_progress_bars=False)[:3].tolist()
print("RESULT " + json.dumps(out))
"""


def test_model_loads_and_samples_in_a_fresh_process(model_run):
    store, run_id = model_run
    uri = store["uri"]
    client = MlflowClient(uri)
    model_uri = client.get_run(run_id).data.tags["sbilab.posterior_model"]
    assert model_uri.startswith("models:/m-") and tracking.posterior_model_uri(uri, run_id) == model_uri
    # models from code: the model's code is a copy of sbilab/model.py, nothing pickled
    local = Path(tracking.download_artifacts(model_uri, uri))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["model_code_path"].endswith("model.py")
    assert not list(local.rglob("*.pkl"))
    assert sorted(p.name for p in (local / "artifacts" / "posterior").iterdir()) == [STATE_FILE, SPEC_FILE]

    name, version, registered = tracking.register_posterior_model(uri, run_id)
    assert (name, version, registered) == (f"{EXPERIMENT}_posterior", "1", f"models:/{EXPERIMENT}_posterior/1")

    done = subprocess.run([sys.executable, "-c", LOAD_IN_FRESH_PROCESS, uri, run_id, registered],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    for key in ("logged", "runs", "registered"):
        assert result[key]["shape"] == [2, 25, THETA_DIM] and result[key]["dtype"] == "float32"
    assert result["array_input"] == [1, 4, THETA_DIM] and result["list_input"] == [2, 1000, THETA_DIM]
    # the same network: identical samples for the same seed, whichever way it was loaded
    assert result["logged"]["first"] == result["registered"]["first"] == result["runs"]["first"]
    np.testing.assert_allclose(result["logged"]["first"], result["direct"], rtol=1e-5)


def test_register_versions_and_errors(store):
    uri = store["uri"]
    run_id = _posterior_run(store, with_model=False)  # a run recorded before models were logged
    assert tracking.posterior_model_uri(uri, run_id) is None
    assert tracking.register_posterior_model(uri, run_id, "hh-posterior")[1] == "1"
    model_uri = tracking.posterior_model_uri(uri, run_id)
    assert model_uri is not None
    assert tracking.register_posterior_model(uri, run_id, "hh-posterior")[1] == "2"
    assert tracking.posterior_model_uri(uri, run_id) == model_uri  # logged once, registered twice
    versions = MlflowClient(uri, registry_uri=uri).search_model_versions("name = 'hh-posterior'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert all(v.run_id == run_id and v.tags["sbilab.estimator"] == "maf" for v in versions)
    # sbilab.load_posterior takes every URI of the network: the run's folder, its model, a registered version
    samples = []
    for ref in (f"runs:/{run_id}/posterior", model_uri, "models:/hh-posterior/2"):
        posterior = sbilab.load_posterior(ref, uri)
        torch.manual_seed(0)
        samples.append(posterior.sample((20,), x=torch.zeros(1, X_DIM), show_progress_bars=False))
    assert torch.equal(samples[0], samples[1]) and torch.equal(samples[0], samples[2])

    with pytest.raises(ValueError, match="no run with id"):
        tracking.register_posterior_model(uri, "0" * 32)
    with pytest.raises(RuntimeError):
        with tracking.start_run(uri, EXPERIMENT, store["artifacts"], run_name="broken", tags={}) as recorder:
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="is FAILED"):
        tracking.register_posterior_model(uri, recorder.run_id)
    with tracking.start_run(uri, EXPERIMENT, store["artifacts"], run_name="empty", tags={}) as empty:
        pass
    with pytest.raises(ValueError, match="no posterior/ artifact"):
        tracking.register_posterior_model(uri, empty.run_id)


def test_register_script(store, capsys):
    import importlib.util

    run_id = _posterior_run(store, with_model=True)
    sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location("sbilab_script_register", ROOT / "scripts" / "register.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([run_id, "--name", "from-script", f"tracking.uri={store['uri']}"]) == 0
    assert f"registered from-script version 1 from run {run_id}: models:/from-script/1" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        script.main([run_id, "estimator=nsf"])
    assert bad.value.code == 2
    assert "only tracking.* and paths.* overrides" in capsys.readouterr().err


def test_predict_checks_its_input(model_run):
    import mlflow

    store, run_id = model_run
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/posterior_model")
    with pytest.raises(Exception, match="7|columns|shape"):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(Exception, match="num_samples"):
        model.predict(np.zeros((1, X_DIM)), params={"num_samples": 0})
