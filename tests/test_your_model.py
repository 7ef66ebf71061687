"""docs/your-model.md, done as the page says, from a folder outside the project with sbilab installed as a wheel.

The page is the script: its ``# file: <path>`` blocks are written into a temporary project folder and its
command lines run there top to bottom, through the installed ``sbilab`` command (the wheel built from this
checkout, installed with ``pip --target`` beside the venv's dependencies, so the checkout itself is not what
runs). Budgets are shrunk (:data:`docs_harness.TINY_RUN`); no stage is switched off.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from docs_harness import TINY_RUN, documented_lines

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "your-model.md"
FILE_MARK = re.compile(r"^#\s*file:\s*(\S+)")


def page_files(text: str) -> dict[str, str]:
    """``{path: content}`` of the fenced blocks marked ``# file: <path>`` in their first two lines (kept: a comment;
    an experiment preset's ``# @package`` line must come first)."""
    files, block, language = {}, None, None
    for raw in text.splitlines():
        if raw.strip().startswith("```"):
            if language is None:
                language, block = raw.strip()[3:].strip() or "plain", []
            else:
                marks = [FILE_MARK.match(line) for line in (block or [])[:2] if FILE_MARK.match(line)]
                if marks:
                    files[marks[0].group(1)] = "\n".join(block) + "\n"
                language, block = None, None
            continue
        if block is not None:
            block.append(raw)
    return files


def test_the_page_names_its_files_and_commands():
    files = page_files(PAGE.read_text())
    assert {"growth.py", "conf/simulator/growth.yaml", "conf/prior/growth.yaml", "load.py"} <= set(files)
    commands = [line.command for line in documented_lines([PAGE])]
    assert any(c.startswith("sbilab train") for c in commands) and "python load.py <run id>" in commands


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The environment of a project that pip-installed sbilab: the wheel on PYTHONPATH, its command on PATH."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(work / "dist"), str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = (work / "dist").glob("sbilab-*.whl")
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    env = {k: v for k, v in os.environ.items() if k not in ("PROJECT_ROOT", "PYTHONPATH", "MAKEFLAGS")}
    env.update(PYTHONPATH=str(target), PATH=f"{target / 'bin'}:{Path(sys.executable).parent}:{env['PATH']}",
               PYTHONWARNINGS="ignore")
    return env


def _run(command: str, folder: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)


#: the tiny budget without its trainer keys: a trainer key names the training, which would switch the
#: generic recipe (what a user's model gets when nothing is named) off; the recipe stops on held-out loss.
#: Its budgets shrink instead: no extra seeds of the best, and a training-time budget of 10 s, so that the
#: candidates after the first start only while they fit in it (recipe.json records those skipped);
#: tests/test_recipe.py trains all four on one split.
RECIPE_TINY_RUN = [word for word in TINY_RUN.split() if not word.startswith("trainer.")] + [
    "recipe.extra_seeds=0", "recipe.time_budget_s=10"]


def with_tiny_budget(command: str) -> str:
    words = shlex.split(command)
    if words[0] == "sbilab" and words[1] in ("train", "simulate", "sweep"):
        words += RECIPE_TINY_RUN
    return shlex.join(words)


def names_training(command: str) -> bool:
    return any(word.startswith(("estimator", "trainer", "recipe=")) for word in shlex.split(command))


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_page_from_a_function_to_a_loaded_posterior(installed, tmp_path):
    project = tmp_path / "my-project"  # outside the checkout, no conf/ of sbilab's, no PROJECT_ROOT
    project.mkdir()
    where = _run("python -c 'import sbilab, sys; print(sbilab.__file__)'", project, installed)
    assert where.stdout.startswith(installed["PYTHONPATH"]), where.stdout + where.stderr  # the wheel, not the checkout
    for name, content in page_files(PAGE.read_text()).items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(content)
    run_id = ""
    for line in documented_lines([PAGE]):
        command = with_tiny_budget(line.command.replace("<run id>", run_id))
        started = time.perf_counter()
        result = _run(command, project, installed)
        print(f"{line.where}: {time.perf_counter() - started:.1f} s: {line.command}")  # pytest -s: the page's timings
        assert result.returncode == 0, f"{line.where}: `{command}` exited {result.returncode}:\n{result.stderr[-3000:]}"
        found = re.search(r"sbilab: run (\w+) FINISHED", result.stdout)
        run_id = found.group(1) if found else run_id
        if line.command.startswith("sbilab train"):
            assert "calibration gates:" in result.stdout, result.stdout
            assert "`sbilab ui`" in result.stdout  # the run tells this user the command they have
            if not names_training(line.command):  # nothing named: the generic recipe chose, and says what
                assert "sbilab: recipe=auto chose" in result.stdout, result.stdout
        if line.command.startswith("python load.py"):
            means = re.search(r"posterior mean \(r, K\): \[([\d.]+), ([\d.]+)\]", result.stdout)
            assert means and 0 < float(means.group(1)) < 5 and 10 < float(means.group(2)) < 1000, result.stdout
    # everything landed in the project's own store, every run FINISHED
    client = MlflowClient(f"sqlite:///{project}/mlruns/mlflow.db")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) >= 5 and all(r.info.status == "FINISHED" for r in runs)
    assert (project / ".cache" / "simulations").is_dir()
    # without the trust option the loader refuses, naming the option
    untrusted = (project / "load.py").read_text().replace(', trust=["growth"]', "")
    (project / "load_untrusted.py").write_text(untrusted)
    refused = _run(f"python load_untrusted.py {run_id}", project, installed)
    assert refused.returncode != 0 and "trust=['growth']" in refused.stderr, refused.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_new_model_writes_a_skeleton_whose_test_and_first_run_pass(installed, tmp_path):
    project = tmp_path / "lab"
    project.mkdir()
    made = _run("sbilab new-model decay", project, installed)
    assert made.returncode == 0, made.stderr
    again = _run("sbilab new-model decay", project, installed)
    assert again.returncode == 2 and "exists; nothing was written" in again.stderr
    tested = _run("python -m pytest -q -p no:cacheprovider tests/test_decay.py", project, installed)
    assert tested.returncode == 0, tested.stdout[-2000:]
    trained = _run(with_tiny_budget("sbilab train experiment=decay"), project, installed)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "FINISHED" in trained.stdout and "calibration gates:" in trained.stdout
    assert "sbilab: recipe=auto chose" in trained.stdout  # the skeleton names no estimator: the recipe runs
