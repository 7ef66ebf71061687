"""The executed docs (tests/docs_harness.py): every documented command is placed, and every one that can run
on this machine runs as the doc gives it, at a tiny budget, into a temporary store."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from docs_harness import (
    FAILS_MARK,
    ROOT,
    DocLine,
    Workspace,
    documented_lines,
    rule_for,
    run_line,
    runnable,
)

LINES = documented_lines()
LOCAL = [line for line in LINES if rule_for(line) is not None and rule_for(line).kind in ("local", "serve")]


def test_every_documented_command_is_placed():
    assert len(LINES) >= 40  # README.md and docs/*.md: a parser that finds nothing must not pass
    unplaced = [line.where for line in LINES if rule_for(line) is None]
    assert not unplaced, f"documented commands with no rule in tests/docs_harness.py: {unplaced}"
    for line in LINES:
        rule = rule_for(line)
        if rule.kind in ("tracking_server", "slurm"):  # run by the named scale-out tests, where the services run
            for name in re.findall(r"tests/scaleout/\w+\.py|test_\w+\.py", rule.why):
                path = ROOT / name if name.startswith("tests/") else ROOT / "tests" / "scaleout" / name
                assert path.is_file(), f"{line.where}: rule names {name}, which does not exist"
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # the `ci` rule's claim


def test_runnable_appends_the_tiny_budget_and_the_temporary_store(tmp_path):
    workspace = Workspace(tmp_path, run_id="abc123", sweep_id="def456")
    line = DocLine("README.md", 1, 'make train ARGS="estimator=nsf simulation.num_simulations=30000 seed=3"', "")
    words = shlex.split(runnable(line, workspace))
    args = next(w for w in words if w.startswith("ARGS=")).split()
    assert args.index("simulation.num_simulations=30000") < args.index("simulation.num_simulations=300")  # later wins
    assert f"tracking.uri={workspace.sqlite_uri}" in args and "diagnostics=fast" in args
    assert "diagnostics.enabled=false" not in args  # nothing on the path is switched off
    compare = shlex.split(runnable(DocLine("README.md", 2, "make compare SWEEP=<parent run id>", ""), workspace))
    assert "SWEEP=def456" in compare and not any("num_simulations" in w for w in compare)
    ui = runnable(DocLine("README.md", 3, "make ui", ""), workspace)
    assert f"MLRUNS={tmp_path}/mlruns" in ui and "PORT=" in ui


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    """One store for all doc lines, with what their placeholders name: a run, a sweep, its config, an NWB file."""
    from recording_files import write_nwb
    from sbilab.recordings.allen import CELLS, SHIPPED_DIRECTORY, cell_file_name

    space = Workspace(tmp_path_factory.mktemp("docs"))
    made = run_line(DocLine("tests/test_docs.py", 0, "make train", ""), space)
    assert made.returncode == 0, made.stderr[-2000:]
    space.run_id = re.search(r"sbilab: run (\w+) FINISHED", made.stdout).group(1)
    swept = run_line(DocLine("tests/test_docs.py", 0, 'make sweep SWEEP="seed=0,1"', ""), space)
    assert swept.returncode == 0, swept.stderr[-2000:]
    client = MlflowClient(space.sqlite_uri)
    (space.sweep_id,) = {r.data.tags["mlflow.parentRunId"] for e in client.search_experiments()
                         for r in client.search_runs([e.experiment_id]) if "mlflow.parentRunId" in r.data.tags}
    space.config_dir = str(Path(client.download_artifacts(space.run_id, "config.yaml", str(space.root))).parent)
    space.nwb_file = str(write_nwb(SHIPPED_DIRECTORY / cell_file_name(next(iter(CELLS))), space.root / "cell.nwb"))
    return space


def _benchmark_run(space: Workspace) -> str:
    client = MlflowClient(space.sqlite_uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
            if "c2st/obs_7" in r.data.metrics and r.info.status == "FINISHED"]
    assert runs, "no benchmark run scored observation 7 yet (the benchmark lines run first, in doc order)"
    return runs[0].info.run_id


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("line", LOCAL, ids=[line.where for line in LOCAL])
def test_documented_command_runs(workspace, line):
    if "<benchmark run id>" in line.command:
        workspace.benchmark_run_id = _benchmark_run(workspace)
    outcome = run_line(line, workspace, timeout=1400)
    assert outcome.problem() is None, f"{outcome.problem()}\n(ran: {outcome.command}, {outcome.seconds:.0f} s)"
    if not line.fails_here and line.command.startswith("make train"):
        assert "FINISHED" in outcome.stdout and "calibration gates:" in outcome.stdout, outcome.stdout[-2000:]


def test_lines_meant_to_fail_say_why():
    for line in LINES:
        if line.fails_here:
            reason = line.comment.split(FAILS_MARK, 1)[1].strip()
            assert reason, f"{line.where}: '{FAILS_MARK}' needs the reason after it"
