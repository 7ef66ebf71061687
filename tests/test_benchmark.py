"""`make benchmark`: a tiny real benchmark into a temporary SQLite store, and bad input.

The sbibm reference files come from ``.cache/sbibm-1.1.0`` (fetched once if missing;
the tests that need them skip when offline).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from sbilab import tracking
from sbilab.experiments.benchmark import EXPERIMENT, run_benchmark
from sbilab.simulators import sbibm_reference

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "simulation.num_simulations=300",
    "simulation.chunk_size=100",
    "simulation.num_workers=1",
    "trainer=fast",
    "diagnostics.num_observation_samples=300",
    "tracking.log_model=false",
    "benchmark.score=[1,2,3]",
]


@pytest.fixture(scope="module")
def sbibm_files() -> None:
    """sbibm's cached files (fetched once if missing); skip when they cannot be had."""
    try:
        sbibm_reference.fetch()
    except sbibm_reference.SbibmDataUnavailable as error:
        pytest.skip(f"sbibm reference files unavailable: {error}")


@pytest.fixture
def tiny_benchmark(store, tmp_path, sbibm_files):
    overrides = [*TINY, *store["overrides"], f"paths.cache_dir={tmp_path / 'cache'}"]
    lines: list[str] = []
    result = run_benchmark(["two_moons"], ["npe"], overrides, conf_dir=ROOT / "conf",
                           output_dir=tmp_path / "out", echo=lines.append)
    return store["uri"], result, overrides, lines


def test_tiny_benchmark_records_a_finished_parent_and_child(tiny_benchmark, tmp_path):
    uri, result, overrides, lines = tiny_benchmark
    client = MlflowClient(uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["sbilab.role"] == "benchmark"
    assert client.get_experiment(parent.info.experiment_id).name == EXPERIMENT
    assert not any("sqlite" in value for value in [*parent.data.params.values(), *parent.data.tags.values()])

    children = tracking.child_runs(uri, result.parent_run_id)
    assert [(c["run_name"], c["status"]) for c in children] == [("two_moons-npe", "FINISHED")]
    child = children[0]
    metrics = child["metrics"]
    scores = [metrics[f"c2st/obs_{k}"] for k in (1, 2, 3)]
    assert all(0.5 <= s <= 1.0 for s in scores), scores
    assert metrics["c2st/mean"] == pytest.approx(np.mean(scores))
    for name in ("time/simulate_s", "time/train_s", "time/sample_s", "time/c2st_s", "time/total_s"):
        assert metrics[name] >= 0, name
    assert 0 < metrics["time/cpu_s"] < 2 * metrics["time/total_s"]  # one torch thread (sklearn's BLAS too)
    assert child["params"]["simulation.num_simulations"] == "300" and child["params"]["estimator.model"] == "nsf"
    assert child["tags"]["sbilab.task"] == "two_moons" and child["tags"]["sbilab.method"] == "npe"
    samples = np.load(client.download_artifacts(child["run_id"], "samples/obs_2.npy", str(tmp_path)))
    assert samples.shape == (300, 2) and np.isfinite(samples).all()

    table = Path(client.download_artifacts(result.parent_run_id, "benchmark/results.md", str(tmp_path))).read_text()
    assert table == result.table == (result.output_dir / "results.md").read_text()
    header, _, row = table.splitlines()
    assert header.startswith("| task | method | estimator | c2st obs1 | c2st obs2 | c2st obs3 | mean | target | pass")
    assert row.startswith("| two_moons | npe | nsf_wide |") and "| 0.52 |" in row
    assert f"{np.mean(scores):.3f}" in row
    assert "two_moons" in Path(client.download_artifacts(result.parent_run_id, "benchmark/results.csv",
                                                         str(tmp_path))).read_text()
    assert any(line.startswith("sbilab: benchmark two_moons/npe: c2st") for line in lines)

    # the same seed reproduces the numbers (simulations now come from the cache)
    again = run_benchmark(["two_moons"], ["npe"], overrides, conf_dir=ROOT / "conf",
                          output_dir=tmp_path / "again", echo=lambda line: None)
    assert again.results[0].c2st == result.results[0].c2st


@pytest.mark.parametrize("args, key", [(["--tasks", "two_moon"], "tasks"), (["--methods", "npee"], "methods")])
def test_unknown_task_or_method_exits_2_with_one_line(store, args, key):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), *args, *store["overrides"]],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sbilab: error: {key}: "), done.stderr
    assert "allowed: " in lines[0] and ("two_moons" in lines[0] if key == "tasks" else "npe" in lines[0])
    client = MlflowClient(store["uri"])
    assert client.get_experiment_by_name(EXPERIMENT) is None
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_a_failed_child_fails_the_parent(store, tmp_path, sbibm_files, monkeypatch):
    import sbilab.experiments.benchmark as benchmark

    def broken(*args, **kwargs):
        raise RuntimeError("classifier exploded")

    monkeypatch.setattr(benchmark, "score_observation", broken)
    result = run_benchmark(["two_moons"], ["npe"], [*TINY, *store["overrides"], f"paths.cache_dir={tmp_path}"],
                           conf_dir=ROOT / "conf", output_dir=tmp_path / "out", echo=lambda line: None)
    assert not result.ok and result.results[0].error == "RuntimeError: classifier exploded"
    client = MlflowClient(store["uri"])
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FAILED" and "1 FAILED" in parent.data.tags["sbilab.children"]
    assert [c["status"] for c in tracking.child_runs(store["uri"], result.parent_run_id)] == ["FAILED"]
    assert "| two_moons | npe | nsf_wide |" in result.table and "| FAILED |" in result.table


def test_a_sequential_method_fits_once_per_observation_at_its_published_x_o(store, tmp_path, sbibm_files):
    overrides = [*TINY, "benchmark.score=[1,2]", "method.num_rounds=2", *store["overrides"],
                 f"paths.cache_dir={tmp_path / 'cache'}"]
    result = run_benchmark(["two_moons"], ["snpe"], overrides, conf_dir=ROOT / "conf", output_dir=tmp_path / "out",
                           echo=lambda line: None)
    assert result.ok, result.results[0].error
    children = tracking.child_runs(store["uri"], result.parent_run_id)
    assert sorted(c["run_name"] for c in children) == ["two_moons-snpe-obs1", "two_moons-snpe-obs2"]
    assert all(c["status"] == "FINISHED" for c in children)
    for child, k in ((c, int(c["run_name"][-1])) for c in children):
        published = sbibm_reference.published_observation("two_moons", k)
        assert child["params"]["observation.name"] == "summary"  # each fit conditioned on that x_o
        assert np.allclose(eval(child["params"]["observation.x"]), published.x, atol=1e-6)
        assert set(child["metrics"]) >= {f"c2st/obs_{k}", "round/val_loss_best"}
    assert set(result.results[0].c2st) == {1, 2} and len(result.results[0].run_ids) == 2


def test_benchmarks_started_in_the_same_second_get_their_own_output_folders(tmp_path):
    from sbilab.experiments.benchmark import default_output_dir

    folders = [default_output_dir(tmp_path) for _ in range(3)]  # within one second, as two `make benchmark`s can
    assert len(set(folders)) == 3 and all(folder.is_dir() for folder in folders)
    assert {folder.parent for folder in folders} == {tmp_path / "outputs" / "benchmark"}
