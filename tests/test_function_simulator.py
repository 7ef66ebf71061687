"""A user's plain function as the simulator (sbilab.simulators.function): seeding, batching, failures, cache key."""

from __future__ import annotations

import pickle
import textwrap

import numpy as np
import pytest
import torch
from conftest import run_train
from mlflow.tracking import MlflowClient

from sbilab.errors import ConfigError
from sbilab.rng import per_index_seeds
from sbilab.simulators.function import FunctionSimulator, SimulatorFunctionError

MODULE = '''
import numpy as np
import torch


def per_theta(theta, rng):
    return theta * 2.0 + rng.standard_normal(theta.shape[0])


def batched(theta, rng):
    return theta.sum(axis=1, keepdims=True) + rng.standard_normal((theta.shape[0], 3))


def fails_above(theta, rng):
    if theta[0] > 0.5:
        raise ValueError("no steady state")
    return np.array([theta[0], rng.uniform()])


def batched_fails_above(theta, rng):
    if (theta[:, 0] > 0.5).any():
        raise ValueError("no steady state")
    return np.stack([theta[:, 0], rng.uniform(size=len(theta))], axis=1)


def always_fails(theta, rng):
    raise RuntimeError("bug in my model")


def global_torch(theta):
    return theta + torch.randn(theta.shape)


def wrong_rows(theta, rng):
    return np.zeros((1, 2))


def returns_list(theta, rng):
    return [float(theta[0]), 1.0]
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of the user's, importable as ``usersim`` (as from their project folder)."""
    (tmp_path / "usersim.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "usersim.py"
    import sys

    sys.modules.pop("usersim", None)


def _theta(n: int, dim: int = 2) -> torch.Tensor:
    return torch.linspace(0.0, 1.0, n * dim).reshape(n, dim)


def test_per_theta_rows_do_not_depend_on_the_batch_they_are_in(user_module):
    simulator = FunctionSimulator(fn="usersim:per_theta")
    theta, seeds = _theta(6), per_index_seeds(3, 0, 6)
    whole = simulator.simulate(theta, seeds)
    pieces = torch.cat([simulator.simulate(theta[:2], seeds[:2]), simulator.simulate(theta[2:], seeds[2:])])
    assert whole.shape == (6, 2) and torch.equal(whole, pieces)
    assert not torch.equal(whole, simulator.simulate(theta, per_index_seeds(4, 0, 6)))


def test_batched_function_is_reproducible_per_chunk(user_module):
    simulator = FunctionSimulator(fn="usersim:batched", vectorized=True)
    theta, seeds = _theta(5), per_index_seeds(0, 0, 5)
    x = simulator.simulate(theta, seeds)
    assert x.shape == (5, 3) and torch.equal(x, simulator.simulate(theta, seeds))
    assert not torch.equal(x, simulator.simulate(theta, per_index_seeds(1, 0, 5)))


def test_a_function_without_rng_gets_seeded_global_generators_and_they_are_restored(user_module):
    simulator = FunctionSimulator(fn="usersim:global_torch", array="torch", vectorized=True)
    theta, seeds = _theta(4), per_index_seeds(0, 0, 4)
    torch.manual_seed(123)
    x = simulator.simulate(theta, seeds)
    after = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(simulator.simulate(theta, seeds), x)
    assert torch.equal(torch.rand(1), after)  # the caller's stream is untouched


def test_a_theta_that_raises_becomes_nan_and_the_rest_are_kept(user_module):
    theta = torch.tensor([[0.1, 0.0], [0.9, 0.0], [0.2, 0.0]])
    for fn, vectorized in (("usersim:fails_above", False), ("usersim:batched_fails_above", True)):
        x = FunctionSimulator(fn=fn, vectorized=vectorized).simulate(theta, per_index_seeds(0, 0, 3))
        assert torch.isnan(x[1]).all() and torch.isfinite(x[[0, 2]]).all(), fn


def test_a_function_that_always_raises_is_reported_with_its_theta(user_module):
    with pytest.raises(SimulatorFunctionError, match=r"raised on every θ.*bug in my model"):
        FunctionSimulator(fn="usersim:always_fails").simulate(_theta(3), per_index_seeds(0, 0, 3))
    with pytest.raises(SimulatorFunctionError, match=r"theta=\[0.5.*no steady state"):
        theta = torch.tensor([[0.1, 0.0], [0.5001, 0.0]])
        FunctionSimulator(fn="usersim:fails_above", on_error="raise").simulate(theta, per_index_seeds(0, 0, 2))


def test_outputs_of_any_array_type_and_a_wrong_row_count(user_module):
    x = FunctionSimulator(fn="usersim:returns_list").simulate(_theta(2), per_index_seeds(0, 0, 2))
    assert x.shape == (2, 2) and x.dtype == torch.float32
    with pytest.raises(SimulatorFunctionError, match="one row per θ row"):
        FunctionSimulator(fn="usersim:wrong_rows", vectorized=True).simulate(_theta(3), per_index_seeds(0, 0, 3))


@pytest.mark.parametrize("kwargs,match", [
    ({"fn": "usersim:nope"}, "simulator.fn='usersim:nope': module 'usersim' has no function 'nope'"),
    ({"fn": "no_such_module:f"}, "cannot import 'no_such_module'"),
    ({"fn": "usersim"}, "expected package.module:function"),
    ({"fn": "usersim:per_theta", "array": "jax"}, "simulator.array='jax': allowed: numpy, torch"),
    ({"fn": "usersim:per_theta", "on_error": "skip"}, "simulator.on_error='skip': allowed: nan, raise"),
    ({"fn": "usersim:per_theta", "parameter_dim": 0}, "simulator.parameter_dim=0"),
])
def test_bad_settings_name_the_key(user_module, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FunctionSimulator(**kwargs)


def test_editing_the_function_changes_the_cache_key_and_workers_reimport_it(user_module):
    first = FunctionSimulator(fn="usersim:per_theta")
    clone = pickle.loads(pickle.dumps(first))  # what a worker process receives
    assert clone.version == first.version and clone.fn is not None
    user_module.write_text(MODULE.replace("theta * 2.0", "theta * 3.0"))
    assert FunctionSimulator(fn="usersim:per_theta").version != first.version


def test_a_function_simulator_runs_end_to_end_from_the_command_line(store, tmp_path):
    """`simulator=function simulator.fn=...` with a prior from config: the run FINISHES with a verdict."""
    (tmp_path / "decaysim.py").write_text(textwrap.dedent('''
        import numpy as np
        T = np.linspace(0.0, 3.0, 6)
        def simulate(theta, rng):
            return theta[0] * np.exp(-theta[1] * T) + 0.1 * rng.standard_normal(T.size)
    '''))
    result = run_train([
        "simulator=function", "simulator.fn=decaysim:simulate", "prior=box",
        "prior.low=[0.5,0.1]", "prior.high=[2.0,2.0]", "prior.names=[amplitude,rate]", "summary=identity",
        "estimator=maf", "trainer=fast", "observation.theta=[1.0,0.8]", "simulation.num_simulations=500",
        "diagnostics=fast", *store["overrides"], f"paths.cache_dir={tmp_path}/cache",
    ], env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FINISHED" in result.stdout and "calibration gates:" in result.stdout
    (run,) = MlflowClient(store["uri"]).search_runs([MlflowClient(store["uri"]).get_experiment_by_name("function")
                                                      .experiment_id])
    assert run.data.params["simulator.fn"] == "decaysim:simulate"
    assert np.isfinite(run.data.metrics["val/loss_best"])
