"""``sbilab new-model NAME`` / ``make new-model NAME=...``: the files a new model starts from.

It writes, in the user's project folder, a function simulator (``NAME/simulator.py``), its configs
(``conf/simulator``, ``conf/prior`` and an ``experiment`` preset that composes them with the identity
summary and sbi's own NPE training) and a test that simulates a few rows. The example model is
small and real (a decaying signal with noise), so the first ``sbilab train experiment=NAME`` finishes
with a verdict in about a minute; the user then replaces the function and the prior's bounds.
Existing files are never overwritten.
"""

from __future__ import annotations

import keyword
from pathlib import Path

from sbilab.errors import ConfigError

#: option names sbilab already ships in the groups a model adds to: a user's file would be ambiguous
_GROUPS = ("simulator", "prior", "experiment")

SIMULATOR = '''"""{name}: the simulator as a plain function (docs/your-model.md).

sbilab calls ``simulate(theta, rng)`` once per parameter vector with a seeded NumPy generator; use only
``rng`` for randomness, so that the same seed gives the same x. Return NaN (or raise) where the model
has no valid output: that θ is dropped and counted as invalid. For a batched function (theta [B, D]
-> x [B, ...]) set ``vectorized: true`` in conf/simulator/{name}.yaml.
"""

from __future__ import annotations

import numpy as np

#: the times the signal is observed at
TIMES = np.linspace(0.0, 5.0, 10)


def simulate(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """θ = (amplitude, decay rate) -> the signal at TIMES with Gaussian noise (sd 0.05)."""
    amplitude, rate = theta
    return amplitude * np.exp(-rate * TIMES) + 0.05 * rng.standard_normal(TIMES.size)
'''

SIMULATOR_CONFIG = '''# {name}: a plain function as the simulator (sbilab.simulators.function, docs/your-model.md)
defaults:
  - function
  - _self_
name: {name}
fn: {name}.simulator:simulate
vectorized: false   # true: fn(theta[B, D], rng) -> x[B, ...]
'''

PRIOR_CONFIG = '''# {name}'s prior: independent uniforms (other families: docs/your-model.md#priors)
_target_: sbilab.priors.box_uniform
name: {name}
low: [0.5, 0.1]
high: [2.0, 2.0]
names: [amplitude, rate]
'''

EXPERIMENT_CONFIG = '''# @package _global_
# {name}: `sbilab train experiment={name}`. Replace observation.theta by your data:
#   sbilab train experiment={name} observation=summary 'observation.x=[...]'
defaults:
  - override /simulator: {name}
  - override /prior: {name}
  - override /summary: identity
  # no estimator or trainer named: sbilab's generic recipe (recipe=auto) sizes the training by the budget
  # and picks the estimator by held-out score; name them (e.g. override /estimator: nsf) to choose yourself

simulation:
  num_simulations: 2000

observation:
  theta: [1.0, 0.8]               # a θ inside the prior: x_o is simulated from it
'''

TEST = '''"""{name}'s simulator through sbilab's adapter: shape, finite values, seeding."""

import numpy as np
import torch

from sbilab.simulators.function import FunctionSimulator


def test_simulates_a_few_rows_reproducibly():
    simulator = FunctionSimulator(fn="{name}.simulator:simulate")
    theta = torch.tensor([[1.0, 0.8], [1.5, 0.3], [0.7, 1.9]])
    x = simulator.simulate(theta, np.array([1, 2, 3]))
    assert x.shape[0] == 3 and torch.isfinite(x).all()
    assert torch.equal(simulator.simulate(theta, np.array([1, 2, 3])), x)  # same seeds, same x
    assert not torch.equal(simulator.simulate(theta, np.array([4, 5, 6])), x)  # other seeds, other noise
'''


def check_name(name: str) -> None:
    """A Python identifier that sbilab does not already use for a simulator, prior or experiment."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigError(f"NAME={name!r}: expected a Python identifier (letters, digits, _), e.g. NAME=my_model")
    from sbilab.cli import config_dir

    taken = [group for group in _GROUPS if (config_dir() / group / f"{name}.yaml").exists()]
    if taken:
        raise ConfigError(f"NAME={name!r}: sbilab already has {name} in conf/{taken[0]}/; choose another name")


def write_model(name: str, folder: Path) -> list[Path]:
    """Write the model's files under ``folder``; refuse if any exists (nothing is overwritten)."""
    check_name(name)
    folder = Path(folder).resolve()
    files = {
        folder / name / "__init__.py": "",
        folder / name / "simulator.py": SIMULATOR,
        folder / "conf" / "simulator" / f"{name}.yaml": SIMULATOR_CONFIG,
        folder / "conf" / "prior" / f"{name}.yaml": PRIOR_CONFIG,
        folder / "conf" / "experiment" / f"{name}.yaml": EXPERIMENT_CONFIG,
        folder / "tests" / f"test_{name}.py": TEST,
    }
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise ConfigError(f"NAME={name!r}: {existing[0]} exists; nothing was written "
                          "(remove it or choose another name)")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(name=name))
    return list(files)
