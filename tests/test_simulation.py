"""The simulation stage: invariance to chunking and workers, the cache, non-finite data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sbi.utils import BoxUniform

from sbilab.rng import per_index_seeds
from sbilab.simulation import SimulationError, simulate_dataset
from sbilab.simulators.base import Simulator
from sbilab.summaries.identity import Identity


class NoisyToy(Simulator):
    """x = θ + noise; NaN where θ₀ > nan_above (part of the prior is 'invalid')."""

    parameter_dim = 2

    def __init__(self, nan_above: float = 10.0) -> None:
        self.nan_above = nan_above

    def simulate(self, theta: torch.Tensor, seeds: np.ndarray) -> torch.Tensor:
        noise = np.stack([np.random.default_rng(int(s)).standard_normal(2) for s in seeds])
        x = theta.numpy().astype(np.float64) + 0.1 * noise
        x[theta.numpy()[:, 0] > self.nan_above] = np.nan
        return torch.from_numpy(x).float()


PRIOR = BoxUniform(-torch.ones(2), torch.ones(2))
KEY = {"simulator": {"nan_above": 10.0}, "prior": "box", "summary": "identity"}


def _run(tmp_path, **kwargs):
    options = dict(chunk_size=64, num_workers=1, backend="serial", cache_dir=None, key_parts=None, progress=False)
    options.update(kwargs)
    simulator = options.pop("simulator", NoisyToy())
    return simulate_dataset(simulator, PRIOR, Identity(), options.pop("num", 300), 5, **options)


def test_identical_for_any_chunk_size_and_worker_count(tmp_path):
    reference = _run(tmp_path)
    for chunk_size, workers, backend in [(300, 1, "serial"), (7, 1, "serial"), (50, 2, "local"), (128, 2, "local")]:
        other = _run(tmp_path, chunk_size=chunk_size, num_workers=workers, backend=backend)
        assert torch.equal(other.theta, reference.theta)
        assert torch.equal(other.x, reference.x)


def test_seeds_depend_on_run_seed_and_index_only():
    assert np.array_equal(per_index_seeds(1, 10, 5), per_index_seeds(1, 0, 15)[10:])
    assert len(set(per_index_seeds(1, 0, 10_000).tolist())) == 10_000
    assert not np.array_equal(per_index_seeds(1, 0, 5), per_index_seeds(2, 0, 5))


def test_train_and_test_purposes_draw_different_data(tmp_path):
    train = _run(tmp_path, purpose="train")
    test = _run(tmp_path, purpose="test")
    assert not torch.equal(train.theta, test.theta)


def test_cache_hit_on_rerun_and_miss_when_a_keyed_field_changes(tmp_path):
    cache = tmp_path / "cache"
    first = _run(tmp_path, cache_dir=cache, key_parts=KEY)
    assert first.chunks_from_cache == 0 and not first.from_cache
    second = _run(tmp_path, cache_dir=cache, key_parts=KEY)
    assert second.from_cache and second.chunks_from_cache == first.chunks_total
    assert torch.equal(second.x, first.x) and torch.equal(second.theta, first.theta)
    changed = [
        dict(key_parts={**KEY, "simulator": {"nan_above": 0.5}}),
        dict(key_parts={**KEY, "prior": "other"}),
        dict(key_parts={**KEY, "summary": "other"}),
        dict(num=301),
        dict(purpose="test"),
    ]
    for change in changed:
        result = _run(tmp_path, cache_dir=cache, **{"key_parts": KEY, **change})
        assert result.chunks_from_cache == 0, change
    other_seed = simulate_dataset(NoisyToy(), PRIOR, Identity(), 300, 6, chunk_size=64, backend="serial",
                                  cache_dir=cache, key_parts=KEY, progress=False)
    assert other_seed.chunks_from_cache == 0


def test_simulator_version_is_part_of_the_key(tmp_path):
    cache = tmp_path / "cache"
    _run(tmp_path, cache_dir=cache, key_parts=KEY)
    bumped = NoisyToy()
    bumped.version = "2"
    assert _run(tmp_path, cache_dir=cache, key_parts=KEY, simulator=bumped).chunks_from_cache == 0


def test_editing_the_summary_code_misses_the_cache(tmp_path, monkeypatch):
    import importlib

    package = tmp_path / "mystats"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("SCALE = 1.0\n")
    (package / "stat.py").write_text(
        "from mystats.helpers import SCALE\n\nclass Scaled:\n    def __call__(self, x):\n        return SCALE * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    summary = importlib.import_module("mystats.stat").Scaled()
    cache = tmp_path / "cache"

    def run():
        return simulate_dataset(NoisyToy(), PRIOR, summary, 128, 5, chunk_size=64, backend="serial",
                                cache_dir=cache, key_parts=KEY, progress=False)

    run()
    assert run().from_cache
    (package / "helpers.py").write_text("SCALE = 2.0\n")  # a helper beside the summary's module
    assert run().chunks_from_cache == 0


def test_a_crashed_run_resumes_from_finished_chunks(tmp_path):
    cache = tmp_path / "cache"
    full = _run(tmp_path, cache_dir=cache, key_parts=KEY)
    chunk_files = sorted((cache / full.key).glob("*.npy"))
    for path in chunk_files[2:]:  # as if the run died after two chunks
        path.unlink()
    resumed = _run(tmp_path, cache_dir=cache, key_parts=KEY)
    assert resumed.chunks_from_cache == 2 and resumed.chunks_total == len(chunk_files)
    assert torch.equal(resumed.x, full.x)


def test_non_finite_simulations_are_dropped_counted_and_warned(tmp_path):
    with pytest.warns(UserWarning, match="non-finite"):
        result = _run(tmp_path, simulator=NoisyToy(nan_above=0.0))
    expected_invalid = int((result.num_requested - result.x.shape[0]))
    assert result.num_invalid == expected_invalid > 50
    assert torch.isfinite(result.x).all()
    assert (result.theta[:, 0] <= 0).all()


def test_all_invalid_is_a_clear_error(tmp_path):
    with pytest.raises(SimulationError, match="all 300 simulations"):
        _run(tmp_path, simulator=NoisyToy(nan_above=-5.0))


@pytest.mark.slow  # 43 s at load 6 (durations of the fast suite); runs in CI with `make test-slow`
def test_simulate_script_fills_the_cache_that_a_rerun_hits(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    args = [sys.executable, str(ROOT / "scripts" / "simulate.py"), "simulation.num_simulations=400",
            "simulation.chunk_size=100", "diagnostics.num_test=50", f"paths.cache_dir={tmp_path}/cache"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "train: 400 simulations, 0 invalid, cache miss (0/4 chunks reused)" in first.stdout
    second = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert "train: 400 simulations, 0 invalid, cache hit (4/4 chunks reused)" in second.stdout
    assert "test: 50 simulations, 0 invalid, cache hit (1/1 chunks reused)" in second.stdout
