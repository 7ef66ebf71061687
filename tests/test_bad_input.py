"""Bad input through scripts/train.py: exit ≠ 0 within seconds, one line naming the key, nothing lost."""

from __future__ import annotations

import resource

import numpy as np
import pytest
from conftest import run_train
from mlflow.tracking import MlflowClient

from sbilab.recordings.allen import SHIPPED_DIRECTORY, cell_file_name

SUMMARY = ["observation=summary"]
RECORDING = ["observation=recording"]


def _files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "nan.csv").write_text("time_ms,voltage_mV\n0,-70\n0.01,-69\n0.02,nan\n")
    (tmp_path / "garbage.csv").write_text("volts,are,here\nnot,a,number\n")
    np.save(tmp_path / "bad.npy", np.array([1.0]))
    (tmp_path / "bad.npy").write_bytes(b"not really numpy")
    # copies of a shipped Allen cell, damaged: a stimulus that is no single step, NaNs, a truncated trace and file
    with np.load(SHIPPED_DIRECTORY / cell_file_name(509881736)) as data:
        cell = {key: data[key] for key in data.files}
    pulses = cell["current_uA"].copy()
    pulses[30_000:31_000] = 0.0
    np.savez(tmp_path / "pulses.npz", **{**cell, "current_uA": pulses})
    voltage = cell["voltage_mV"].copy()
    voltage[40_000:40_005] = np.nan
    np.savez(tmp_path / "nan.npz", **{**cell, "voltage_mV": voltage})
    np.savez(tmp_path / "cut.npz", **{**cell, "voltage_mV": cell["voltage_mV"][:50_000],
                                      "current_uA": cell["current_uA"][:50_000]})
    (tmp_path / "cut_bytes.npz").write_bytes((tmp_path / "pulses.npz").read_bytes()[:30_000])


CASES = [
    # (overrides, text the one-line message must contain)
    (["estimator=foo"], "estimator"),
    (["simulator=nope"], "simulator"),
    (["simulation.num_simulations=abc"], "simulation.num_simulations"),
    (["simulation.num_simulations=0"], "simulation.num_simulations"),
    (["simulation.num_simulations=-5"], "simulation.num_simulations"),
    (["simulation.chunk_size=0"], "simulation.chunk_size"),
    (["simulation.num_workers=0"], "simulation.num_workers"),
    (["trainer.batch_size=0"], "trainer.batch_size"),
    (["trainer.learning_rate=abc"], "trainer.learning_rate"),
    (["trainer.lr_decay={factor:2,patience:5,min_lr:0}"], "trainer.lr_decay"),
    (["trainer.lr_decay.schedule=linear"], "trainer.lr_decay.schedule"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs"),  # the default trainer's cosine spans max_epochs
    (["trainer.weight_averaging={decay:1.5}"], "trainer.weight_averaging"),
    (["trainer.ensemble_size=0"], "trainer.ensemble_size"),
    (["method=snpe", "trainer.ensemble_size=3"], "trainer.ensemble_size"),  # sequential: one network per round
    (["method=tsnpe", "method.quantile=0.9"], "method.quantile"),  # the mass left outside the truncated region
    (["method=tsnpe", "method.nesting_correction=maybe"], "method.nesting_correction"),
    (["recipe=auto", "recipe.lr_decay=cosine"], ("recipe.lr_decay", "plateau, none")),
    (["recipe=auto", "recipe.candidates.3.training=fast"], ("recipe.candidates[3].training='fast'", "recipe, sbi")),
    (["method=nle"], "estimator.z_score_theta"),  # the default estimator learns θ unconstrained: NPE only
    # a preset's key for the method it chose, with that method swapped for one without the key
    (["experiment=allen_cell", "method=npe"], ("method.num_rounds", "method=npe", "~method.num_rounds")),
    (["+summary.bins=3"], ("summary.bins", "allowed: duration, dt, t_on, t_off")),
    (["simulator.context=[V0,rise_time]"], ("simulator.context", "unknown ['rise_time']", "current_density")),
    (["diagnostics.num_test=-1"], "diagnostics.num_test"),
    (["diagnostics.num_ppc=20000"], "diagnostics.num_ppc"),
    (["prior.low=[90,1e-4]"], "prior.low"),
    (["prior.low=[0.5,1e-4,1]"], "prior.low"),
    (["prior.low=[0.5,1e-4,1]", "prior.high=[80,15,2]", "prior.names=[a,b,c]"], "simulator"),
    (["prior.names=[a]"], "prior.names"),
    (["experiment=two_moons", "summary=hh_features"], "summary=hh_features"),  # reads simulator.duration
    (["observation.theta=[1,2,3]"], "observation.theta"),
    (["prior.low=[10,10]"], "observation.theta"),  # θ* = (50, 5) lies outside this prior: no posterior holds it
    ([*SUMMARY, "observation.x=[1,2]"], "observation.x"),
    (SUMMARY, "observation"),  # no x given
    (RECORDING, "observation.file"),  # neither a file nor a cell
    ([*RECORDING, "observation.file=/nonexistent/trace.csv"], ("observation.file", "no such file")),
    ([*RECORDING, "observation.file={tmp}/empty.csv"], ("observation.file", "empty.csv", "no header row")),
    ([*RECORDING, "observation.file={tmp}/nan.csv"], ("observation.file", "nan.csv", "NaN")),
    ([*RECORDING, "observation.file={tmp}/garbage.csv"], ("observation.file", "garbage.csv", "no voltage_mV")),
    ([*RECORDING, "observation.file={tmp}/bad.npy"], ("observation.file", "bad.npy", "unsupported file type")),
    ([*RECORDING, "observation.file={tmp}/pulses.npz"], ("observation.file", "pulses.npz", "2 separate pulses")),
    ([*RECORDING, "observation.file={tmp}/nan.npz"], ("observation.file", "nan.npz", "5 NaN/inf samples")),
    ([*RECORDING, "observation.file={tmp}/cut.npz"], ("observation.file", "cut.npz", "truncated trace")),
    ([*RECORDING, "observation.file={tmp}/cut_bytes.npz"], ("observation.file", "cut_bytes.npz", "truncated file")),
    ([*RECORDING, "observation.cell=123"], ("observation.cell", "not one of the ten cells")),
    ([*RECORDING, "observation.cell=569469018", "paths.recordings={tmp}"], ("observation.cell", "paths.recordings")),
    ([*RECORDING, "observation.cell=509881736", "experiment=two_moons"], "stimulus protocol"),
    (["simulator=hodgkin_huxley_8p", "prior=hh8_box", "prior.names=[gbar_K,gbar_Na,g_leak,gbar_M,tau_max,V_T,"
      "noise_scale,E_leak]"], "prior.names"),  # θ's columns in another order than simulator.inferred
    (["estimator.model=mlp"], "estimator.model"),
    (["simulator.backend=gpu"], "simulator.backend"),
    (["tracking.uri=http://127.0.0.1:9"], "tracking.uri"),
    (["tracking.uri=sqlite:///relative/mlflow.db"], "tracking.uri"),
]


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture(scope="module")
def populated_store(tmp_path_factory):
    """A store that already holds one finished run, which bad input must leave untouched."""
    root = tmp_path_factory.mktemp("bad_input")
    uri = f"sqlite:///{root}/mlflow.db"
    overrides = [f"tracking.uri={uri}", f"tracking.artifact_location=file://{root}/artifacts",
                 f"paths.cache_dir={root}/cache"]
    result = run_train(["simulation.num_simulations=200", "trainer=fast", "diagnostics.enabled=false", *overrides])
    assert result.returncode == 0, result.stderr[-2000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("hodgkin_huxley").experiment_id])
    return uri, overrides, run


@pytest.mark.parametrize("args,key", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_fails_fast_with_the_key_and_loses_nothing(populated_store, tmp_path, args, key):
    uri, overrides, earlier = populated_store
    _files(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    # the tracking cases replace the store override; the others write into the populated store
    replaces_store = any(a.startswith("tracking.uri") for a in args)
    store_overrides = [o for o in overrides if not (o.startswith("tracking.uri") and replaces_store)]
    before = _children_cpu_seconds()
    result = run_train(["simulation.num_simulations=200", *args, *store_overrides], timeout=60)
    cpu = _children_cpu_seconds() - before
    assert result.returncode != 0
    # CPU, not wall: "fails fast" means no simulation, training or heavy import happened, and the
    # CPU a process used does not grow with the machine's load the way its wall time does
    assert cpu < 8, f"used {cpu:.1f} s of CPU"
    for fragment in (key,) if isinstance(key, str) else key:
        assert fragment in result.stderr, result.stderr[-1500:]
    assert "Traceback" not in result.stderr, result.stderr[-1500:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("hodgkin_huxley").experiment_id])
    assert [r.info.run_id for r in runs] == [earlier.info.run_id]  # no new run at all, FINISHED or not
    after = runs[0]
    assert after.info.status == "FINISHED" and after.data.metrics == earlier.data.metrics


def test_error_is_a_single_line_for_sbilab_checks(populated_store):
    _, overrides, _ = populated_store
    result = run_train(["simulation.num_simulations=abc", *overrides])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["sbilab: error: simulation.num_simulations='abc' is invalid: expected an integer >= 1"]
    assert result.returncode == 2
