"""The executed docs, second half: the lines of docs/ other than benchmark.md (README's and benchmark.md's:
test_docs.py). Two files so that the slow suite's two workers share the doc lines."""

from __future__ import annotations

import pytest

from docs_harness import Workspace, check_line, documented_lines, local_lines, make_workspace

GUIDES = [line for line in local_lines(documented_lines()) if line.path not in ("README.md", "docs/benchmark.md")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return make_workspace(tmp_path_factory.mktemp("docs_guides"))


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("line", GUIDES, ids=[line.where for line in GUIDES])
def test_documented_command_runs(workspace, line):
    check_line(workspace, line)


def test_the_two_files_run_every_local_line():
    from test_docs import README_AND_BENCHMARK

    assert len(GUIDES) + len(README_AND_BENCHMARK) == len(local_lines(documented_lines())) >= 30
