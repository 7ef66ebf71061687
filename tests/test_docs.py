"""The executed docs (tests/docs_harness.py): every documented command is placed, and every one that can run
on this machine runs as the doc gives it, at a tiny budget, into a temporary store."""

from __future__ import annotations

import re
import shlex

import pytest

from docs_harness import (
    FAILS_MARK,
    ROOT,
    DocLine,
    Workspace,
    check_line,
    distinct,
    documented_lines,
    local_lines,
    make_workspace,
    rule_for,
    runnable,
)

LINES = documented_lines()
#: the README's and docs/benchmark.md's lines run here; the guides' in test_docs_guides.py (two files: two workers)
README_AND_BENCHMARK = distinct([line for line in local_lines(LINES)
                                 if line.path in ("README.md", "docs/benchmark.md")])


def test_every_documented_command_is_placed():
    assert len(LINES) >= 40  # README.md and docs/*.md: a parser that finds nothing must not pass
    unplaced = [line.where for line in LINES if rule_for(line) is None]
    assert not unplaced, f"documented commands with no rule in tests/docs_harness.py: {unplaced}"
    for line in LINES:
        rule = rule_for(line)
        if rule.kind in ("tracking_server", "slurm", "your_model"):  # run by the tests the rule names
            for name in re.findall(r"tests/(?:scaleout/)?\w+\.py|(?<!/)test_\w+\.py", rule.why):
                path = ROOT / name if name.startswith("tests/") else ROOT / "tests" / "scaleout" / name
                assert path.is_file(), f"{line.where}: rule names {name}, which does not exist"
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # the `ci` rule's claim


def test_runnable_appends_the_tiny_budget_and_the_temporary_store(tmp_path):
    workspace = Workspace(tmp_path, run_id="abc123", sweep_id="def456")
    line = DocLine("README.md", 1, 'make train ARGS="estimator=nsf simulation.num_simulations=30000 seed=3"', "")
    words = shlex.split(runnable(line, workspace))
    args = next(w for w in words if w.startswith("ARGS=")).split()
    assert args.index("simulation.num_simulations=30000") < args.index("simulation.num_simulations=300")  # later wins
    assert f"tracking.uri={workspace.sqlite_uri}" in args and "diagnostics.num_test=50" in args
    assert "diagnostics.enabled=false" not in args  # nothing on the path is switched off
    compare = shlex.split(runnable(DocLine("README.md", 2, "make compare SWEEP=<parent run id>", ""), workspace))
    assert "SWEEP=def456" in compare and not any("num_simulations" in w for w in compare)
    ui = runnable(DocLine("README.md", 3, "make ui", ""), workspace)
    assert f"MLRUNS={tmp_path}/mlruns" in ui and "PORT=" in ui


def test_a_line_that_differs_from_an_earlier_one_only_by_its_seed_runs_once():
    lines = [DocLine("docs/x.md", 1, 'make benchmark ARGS="simulation.num_workers=1"', ""),
             DocLine("docs/x.md", 2, 'make benchmark ARGS="seed=1 simulation.num_workers=1"', ""),
             DocLine("docs/x.md", 3, 'make benchmark ARGS="seed=1 estimator=nsf"', ""),
             DocLine("docs/x.md", 4, 'make sweep SWEEP="seed=0,1,2"', ""),  # a swept seed is another command
             DocLine("docs/x.md", 5, 'make sweep SWEEP="seed=0,1"', "")]
    assert [line.number for line in distinct(lines)] == [1, 3, 4, 5]


def test_tsnpe_lines_and_make_cells_run_at_the_tiny_budget(tmp_path):
    workspace = Workspace(tmp_path)

    def args(command: str) -> list[str]:
        words = shlex.split(runnable(DocLine("docs/recordings.md", 1, command, ""), workspace))
        return next(w for w in words if w.startswith("ARGS=")).split()

    assert {"method.num_samples_to_estimate_support=10000", "simulation.num_simulations=300"} <= \
        set(args('make train ARGS="experiment=allen_cell trainer=default method.quantile=1e-4"'))
    # another method chosen over the preset's, or the many-cell preset: no TSNPE keys (they would not exist)
    for command in ('make train ARGS="experiment=allen_cell method=npe ~method.num_rounds ~method.quantile"',
                    'make cells ARGS="cells=[518290966,509881736]"'):
        assert not any(w.startswith("method.num_") for w in args(command)), command
    assert "simulation.num_simulations=300" in args('make cells ARGS="cells=[518290966,509881736]"')


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return make_workspace(tmp_path_factory.mktemp("docs"))


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("line", README_AND_BENCHMARK, ids=[line.where for line in README_AND_BENCHMARK])
def test_documented_command_runs(workspace, line):
    check_line(workspace, line)


def test_lines_meant_to_fail_say_why():
    for line in LINES:
        if line.fails_here:
            reason = line.comment.split(FAILS_MARK, 1)[1].strip()
            assert reason, f"{line.where}: '{FAILS_MARK}' needs the reason after it"
