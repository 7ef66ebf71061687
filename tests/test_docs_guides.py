"""The executed docs, second half: the lines of docs/ other than benchmark.md (README's and benchmark.md's:
test_docs.py). Two files so that the slow suite's two workers share the doc lines."""

from __future__ import annotations

import pytest

from docs_harness import (
    Workspace,
    as_run_any_seed,
    check_line,
    distinct,
    documented_lines,
    local_lines,
    make_workspace,
)
from test_docs import README_AND_BENCHMARK

#: the guides' lines, less those that run as a README or benchmark line does, up to the seed (run once, in test_docs.py)
GUIDES = distinct([line for line in local_lines(documented_lines())
                   if line.path not in ("README.md", "docs/benchmark.md")], earlier=README_AND_BENCHMARK)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return make_workspace(tmp_path_factory.mktemp("docs_guides"))


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("line", GUIDES, ids=[line.where for line in GUIDES])
def test_documented_command_runs(workspace, line):
    check_line(workspace, line)


def test_the_two_files_run_every_local_line_once():
    every = local_lines(documented_lines())
    ran = {as_run_any_seed(line) for line in [*GUIDES, *README_AND_BENCHMARK]}
    # each line runs, or one just like it but for the seed does
    assert len(every) >= 30 and {as_run_any_seed(line) for line in every} == ran
    assert len(ran) == len(GUIDES) + len(README_AND_BENCHMARK)  # and none twice
