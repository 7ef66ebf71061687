"""Sweep comparison: factor detection, the table, and the artifacts on a real SQLite parent run."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from sbilab import tracking
from sbilab.experiments.compare import (
    BUDGET_KEY,
    budget_panels,
    build_comparison,
    compare_sweep,
    heatmap_axes,
    heatmap_grid,
    loss_comparable,
    metric_columns,
    parse_overrides,
    swept_factors,
)
from sbilab.experiments.tables import to_markdown

ROOT = Path(__file__).resolve().parents[1]


def child(run_id: str, estimator: str, budget: int, *, status: str = "FINISHED", metrics=None, overrides=True,
          extra_params=None) -> dict:
    """A child run as `tracking.child_runs` returns it."""
    params = {"estimator.name": estimator, "estimator.model": estimator, BUDGET_KEY: str(budget), "seed": "0",
              **({"estimator.num_transforms": "5"} if estimator != "mdn" else {"estimator.num_components": "10"}),
              **(extra_params or {})}
    tags = {"choice.estimator": estimator, "choice.trainer": "fast", "sbilab.estimator": estimator}
    if overrides:
        tags["sbilab.overrides"] = (f"tracking.uri=sqlite\\:////x.db trainer=fast {BUDGET_KEY}={budget} "
                                    f"estimator={estimator}")
    return {"run_id": run_id, "run_name": f"run-{run_id}", "status": status, "params": params, "tags": tags,
            "metrics": metrics if metrics is not None else {}, "start_time": 1000, "end_time": 5000}


def grid_children(overrides: bool = True) -> list[dict]:
    runs = []
    for i, (estimator, budget) in enumerate([(e, b) for e in ("maf", "mdn") for b in (200, 300)]):
        runs.append(child(f"r{i}", estimator, budget, overrides=overrides, metrics={
            "val/loss_best": 10.0 - i, "tarp/atc": 0.1 * i, "time/train_s": 1.0, "time/simulate_s": 0.5,
            "time/total_s": 2.0 + i, "train/epochs": 5.0, "sbc/ks_pvalue/b": 0.2, "sbc/ks_pvalue/a": 0.3,
            "train/loss": 1.0}))
    return runs


def test_parse_overrides_strips_prefixes_and_keeps_escaped_values():
    found = parse_overrides("estimator=maf +x.y=3 ~z=1 tracking.uri=sqlite\\:////a.db flag")
    assert found == {"estimator": "maf", "x.y": "3", "z": "1", "tracking.uri": "sqlite\\:////a.db"}


def test_swept_factors_come_from_the_overrides_that_vary():
    assert swept_factors(grid_children()) == [BUDGET_KEY, "estimator"]
    one_factor = [c for c in grid_children() if c["params"][BUDGET_KEY] == "200"]
    assert swept_factors(one_factor) == ["estimator"]
    assert swept_factors(grid_children()[:1]) == []


def test_swept_factors_without_override_tags_use_choices_and_params():
    # estimator-dependent params (num_transforms / num_components) are not factors of their own
    assert swept_factors(grid_children(overrides=False)) == ["estimator", BUDGET_KEY]


def test_metric_columns_follow_the_key_order_and_skip_the_rest():
    columns = metric_columns(grid_children())
    assert columns == ["val/loss_best", "sbc/ks_pvalue/a", "sbc/ks_pvalue/b", "tarp/atc", "time/simulate_s",
                       "time/train_s", "time/total_s", "train/epochs"]


def test_no_best_run_when_the_swept_factors_change_the_loss():
    runs = grid_children()
    for run, method in zip(runs, ("npe", "nle", "npe", "nle")):
        run["tags"]["sbilab.overrides"] += f" method={method}"
    comparison = build_comparison("parent", runs)
    assert "method" in comparison.factors and comparison.best is None  # -log q(θ|x) vs -log q(x|θ)
    assert loss_comparable([BUDGET_KEY, "estimator", "seed", "trainer.batch_size"])
    assert not any(loss_comparable([factor]) for factor in ("summary", "prior.low", "experiment", "simulator",
                                                            "observation.cell"))


def test_table_rows_are_sorted_and_formatted():
    runs = grid_children()
    runs.append(child("bad", "maf", 250, status="FAILED", metrics={"train/loss": 3.0}))
    comparison = build_comparison("parent", runs)
    assert comparison.factors == [BUDGET_KEY, "estimator"]
    assert [r[BUDGET_KEY] for r in comparison.rows] == ["200", "200", "250", "300", "300"]
    assert comparison.best["run_id"] == "r3"  # lowest val/loss_best among FINISHED runs
    table = list(csv.DictReader(io.StringIO(comparison.csv())))
    assert table[2]["status"] == "FAILED" and table[2]["val/loss_best"] == ""
    assert float(table[0]["val/loss_best"]) == 10.0
    md = comparison.markdown().splitlines()
    assert md[0].startswith("| run_id | run_name | status | gates | simulation.num_simulations | estimator |")
    assert len(md) == 2 + len(runs)
    assert "| maf |" in md[2] and md[1].count("---:") >= 1
    assert to_markdown(["a"], [{"a": "x|y"}]).splitlines()[2] == "| x\\|y |"


def test_a_sweep_over_recorded_cells_shows_each_cells_distance_gates_time_and_overlay():
    from sbilab.experiments.overview import overview_markdown

    runs = []
    for i, cell in enumerate(("518290966", "509881736", "566517779")):
        run = child(f"c{i}", "nsf", 10000, status="FAILED" if i == 2 else "FINISHED", extra_params={
            "observation.name": "recording", "observation.cell": cell}, metrics={
            "ppc/standardized_distance": 1.0 + i / 10, "ppc/standardized_distance_median": 0.8, "time/total_s": 600.0})
        run["tags"]["sbilab.overrides"] += f" observation.cell={cell}"
        run["tags"]["sbilab.gates"] = "pass" if i == 0 else "fail"
        runs.append(run)
    comparison = build_comparison("parent", runs)
    assert comparison.factors == ["observation.cell"]
    assert {"ppc/standardized_distance", "ppc/standardized_distance_median", "overlay"} <= set(comparison.columns)
    by_cell = {row["observation.cell"]: row for row in comparison.rows}
    assert by_cell["518290966"]["overlay"] == "plots/ppc_traces.png"
    assert by_cell["566517779"]["overlay"] is None  # a failed run logged no figure: no dead link
    assert comparison.best is None  # each cell's simulator runs its own protocol: the losses do not rank the runs
    text = overview_markdown(comparison, "7", {"FINISHED": 2, "FAILED": 1})
    header = next(line for line in text.splitlines() if line.startswith("| run |"))
    assert header == ("| run | gates | observation.cell | ppc/standardized_distance | ppc/standardized_distance_median "
                      "| time/total_s | overlay |")
    assert "[traces](#/experiments/7/runs/c0/artifactPath/plots/ppc_traces.png)" in text
    row = next(line for line in text.splitlines() if "509881736" in line)
    assert "| fail | 509881736 | 1.1 | 0.8 | 600 |" in row
    # a sweep without recordings keeps its table as it was
    assert "overlay" not in build_comparison("parent", grid_children()).columns


def test_budget_panels_group_by_estimator_and_the_other_factors():
    panels = dict(budget_panels(grid_children(), [BUDGET_KEY, "estimator"]))
    assert set(panels) == {"val/loss_best", "tarp/atc", "wall time (s)"}
    assert sorted(panels["val/loss_best"]["maf"]) == [(200.0, 10.0), (300.0, 9.0)]
    seeds = [child(f"s{i}", "nsf", 100, extra_params={"seed": str(i)}, metrics={"val/loss_best": float(i)})
             for i in range(2)]
    panels = dict(budget_panels(seeds, ["seed"]))
    assert set(panels["val/loss_best"]) == {"nsf · seed=0", "nsf · seed=1"}


def test_heatmap_grid_means_replicates_and_puts_the_budget_on_columns():
    assert heatmap_axes([BUDGET_KEY, "estimator"]) == ("estimator", BUDGET_KEY)
    assert heatmap_axes(["estimator", "seed"]) == ("estimator", "seed")
    runs = grid_children() + [child("r9", "maf", 200, metrics={"val/loss_best": 20.0})]
    grid, rows, cols = heatmap_grid(runs, "estimator", BUDGET_KEY, "val/loss_best")
    assert rows == ["maf", "mdn"] and cols == ["200", "300"]
    np.testing.assert_allclose(grid, [[15.0, 9.0], [8.0, 7.0]])


# --------------------------------------------------------------------------------------------- real store


@pytest.fixture
def sweep_store(store):
    """A parent with four finished children and one failed one, written through sbilab.tracking."""
    uri = store["uri"]
    parent = tracking.create_parent_run(uri, "compare-test", store["artifacts"], sweep_id="2026-01-01_00-00-00",
                                        tags={})
    for run in grid_children():
        tags = {k: v for k, v in run["tags"].items()}
        tags["sbilab.sweep_id"] = "2026-01-01_00-00-00"
        with tracking.start_run(uri, "compare-test", store["artifacts"], run_name=run["run_name"], tags=tags,
                                parent_run_id=parent) as recorder:
            recorder.log_params(run["params"])
            recorder.log_metrics(run["metrics"])
    with pytest.raises(RuntimeError):
        with tracking.start_run(uri, "compare-test", store["artifacts"], run_name="broken",
                                tags={"sbilab.overrides": f"trainer=fast {BUDGET_KEY}=300 estimator=nsf",
                                      "choice.estimator": "nsf", "choice.trainer": "fast"},
                                parent_run_id=parent) as recorder:
            recorder.log_params({BUDGET_KEY: "300", "estimator.name": "nsf"})
            raise RuntimeError("boom")
    assert "FAILED" in tracking.finish_parent_run(uri, parent)
    return uri, parent


def test_a_sweep_whose_jobs_were_killed_is_killed_not_failed(store):
    uri = store["uri"]
    client = MlflowClient(uri)
    statuses = {}
    for children in (["FINISHED", "KILLED"], ["KILLED", "FAILED"], ["FINISHED", "FINISHED"]):
        parent = tracking.create_parent_run(uri, "killed-test", store["artifacts"], sweep_id="s", tags={})
        for status in children:
            with pytest.raises(KeyboardInterrupt) if status == "KILLED" else \
                    pytest.raises(RuntimeError) if status == "FAILED" else nullcontext():
                with tracking.start_run(uri, "killed-test", store["artifacts"], run_name=status, tags={},
                                        parent_run_id=parent):
                    if status == "KILLED":
                        raise KeyboardInterrupt
                    if status == "FAILED":
                        raise RuntimeError("boom")
        tracking.finish_parent_run(uri, parent, jobs_failed=children != ["FINISHED", "FINISHED"])
        statuses[tuple(children)] = client.get_run(parent).info.status
    assert statuses == {("FINISHED", "KILLED"): "KILLED", ("KILLED", "FAILED"): "FAILED",
                        ("FINISHED", "FINISHED"): "FINISHED"}


def _artifact_paths(client: MlflowClient, run_id: str, path: str) -> set[str]:
    return {item.path for item in client.list_artifacts(run_id, path)}


def test_compare_sweep_logs_the_table_and_figures_to_the_parent(sweep_store):
    uri, parent = sweep_store
    comparison = compare_sweep(uri, parent)
    client = MlflowClient(uri)
    assert _artifact_paths(client, parent, "comparison") == {
        "comparison/runs.csv", "comparison/runs.md", "comparison/vs_budget.png", "comparison/heatmap.png",
        "comparison/summary.json"}
    rows = list(csv.DictReader(io.StringIO(Path(client.download_artifacts(parent, "comparison/runs.csv")).read_text())))
    assert len(rows) == 5 and sorted(r["status"] for r in rows) == ["FAILED"] + ["FINISHED"] * 4
    assert {r["estimator"] for r in rows} == {"maf", "mdn", "nsf"}
    summary = json.loads(Path(client.download_artifacts(parent, "comparison/summary.json")).read_text())
    assert summary["children"] == {"FINISHED": 4, "FAILED": 1}
    assert summary["factors"] == comparison.factors == [BUDGET_KEY, "estimator"]
    tags = client.get_run(parent).data.tags
    assert tags["sbilab.swept"] == f"{BUDGET_KEY}, estimator"
    assert tags["sbilab.best_run"] == comparison.best["run_id"]


def test_resolve_parent_by_run_id_sweep_id_or_latest(sweep_store):
    uri, parent = sweep_store
    assert tracking.resolve_parent_run(uri, parent) == parent
    assert tracking.resolve_parent_run(uri, "2026-01-01_00-00-00") == parent
    assert tracking.resolve_parent_run(uri) == parent
    with pytest.raises(ValueError, match="no run or sweep"):
        tracking.resolve_parent_run(uri, "no-such-sweep")


def _load_script(name: str):
    import importlib.util

    sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location(f"sbilab_script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_script_prints_the_table(sweep_store):
    uri, parent = sweep_store
    ok = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare.py"), "2026-01-01_00-00-00",
                         f"tracking.uri={uri}", "estimator=maf,nsf"],
                        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "ignoring overrides" in ok.stdout and f"parent run {parent}" in ok.stdout
    assert ok.stdout.count("| FINISHED |") == 4


def test_compare_script_fails_in_one_line(sweep_store, capsys):
    uri, _ = sweep_store
    script = _load_script("compare")
    with pytest.raises(SystemExit) as exit_info:
        script.main(["no-such-sweep", f"tracking.uri={uri}"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"sbilab: error: no run or sweep with id 'no-such-sweep' in the MLflow store {uri}"]


def test_posterior_c2st_pairs_runs_at_one_observation():
    from sbilab.experiments.posterior_pairs import posterior_c2st_rows, same_observation_runs

    obs = {"observation.theta": "[50.0, 5.0]", "observation.seed": "2026", "simulator.name": "hodgkin_huxley"}
    runs = [{"run_id": rid, "status": "FINISHED", "params": dict(obs), "tags": {"choice.summary": summary}}
            for rid, summary in [("a", "hh_features"), ("b", "hh_cnn"), ("c", "hh_extended")]]
    generator = np.random.default_rng(0)
    samples = {"a": generator.normal(size=(1000, 2)), "b": generator.normal(size=(1000, 2)),
               "c": generator.normal(loc=3.0, size=(1000, 2))}
    assert same_observation_runs(runs) == runs
    columns, rows = posterior_c2st_rows(runs, ["summary"], samples.__getitem__)
    scores = {(r["run_id_a"], r["run_id_b"]): r["c2st"] for r in rows}
    assert len(rows) == 3 and rows[0]["run_a"] == "summary=hh_features"
    assert scores[("a", "b")] < 0.56  # same distribution: chance level
    assert scores[("a", "c")] > 0.95 and scores[("b", "c")] > 0.95  # shifted by 3 sd: separable
    other = [*runs[:2], {**runs[2], "params": {**obs, "observation.theta": "[40.0, 5.0]"}}]
    assert same_observation_runs(other) == []  # different observations: no comparison
    assert same_observation_runs([{**runs[0], "status": "FAILED"}, runs[1]]) == []
    cells = [{**run, "params": {**obs, "observation.cell": cell}}
             for run, cell in zip(runs, ("509881736", "518290966"))]
    assert same_observation_runs(cells) == []  # two recorded cells are two observations
