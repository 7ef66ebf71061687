"""The executed docs: every `make …` / `python …` line of README.md and docs/*.md, run as the doc gives it.

A line is a command when it starts with ``make``, ``python``, ``.venv/bin/python`` or ``sbilab`` inside a
```` ```bash ```` (or ``sh``) block. Each is run from the project root through ``bash -c`` with:

- a tiny budget appended to its Hydra overrides (``ARGS=`` of a make target, the arguments of a script):
  :data:`TINY_RUN` for commands that train, :data:`TINY_BENCHMARK` for ``make benchmark``,
  :data:`TINY_HPO` for ``make hpo``; later overrides win, so a doc's ``simulation.num_simulations=30000``
  runs at 300 and a swept budget collapses to one value;
- a temporary store and cache (``tracking.uri``, ``tracking.artifact_location``, ``paths.cache_dir``,
  Hydra's output folders; ``MLRUNS`` and ``PORT`` for ``make ui``);
- the doc's placeholders filled (:data:`PLACEHOLDERS`: ``<run id>`` by a run made first, and so on).

How each line is run is decided by the first rule of :data:`RULES` that matches it: ``local`` (here, in
tests/test_docs.py), ``serve`` (a server: started, answered, stopped), ``ci`` (``make test``: what .ci/run
runs), ``your_model`` (docs/your-model.md, run
top to bottom from a folder outside the project by tests/test_your_model.py), or a service
(``tracking_server``, ``slurm``): the rule names the scale-out test that runs that
command's form against the real service (tests/scaleout/, where .ci/run starts them); those lines are not
yet run from the doc's own text. A line whose comment says ``fails here:`` must exit non-zero with one ``sbilab:``
line on stderr and no traceback. A line no rule matches fails the fast test: a new doc line is run or
explicitly placed, never silently untested.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(make|python|\.venv/bin/python|sbilab)(\s|$)")
SHELL_BLOCKS = ("bash", "sh", "shell", "console", "plain")  # plain: a fence with no language
#: the doc's mark for a line that is meant to fail on a machine like CI's (no GPU, no cluster partition)
FAILS_MARK = "fails here:"

#: appended to every command that trains (make train/sweep/simulate, scripts/train.py): nothing switched off
#: (keys only, no group choice: a rerun from a recorded config.yaml has no config groups to choose from)
TINY_RUN = ("simulation.num_simulations=300 trainer.max_epochs=2 trainer.ensemble_size=1 "
            "diagnostics.num_test=50 diagnostics.num_posterior_samples=50 diagnostics.num_observation_samples=300 "
            "diagnostics.num_ppc=20 diagnostics.tarp_num_bootstrap=50 diagnostics.sampler_budget.seconds=5 "
            "diagnostics.sampler_budget.min_test_points=10 diagnostics.lc2st.num_trials_null=5 "
            "diagnostics.misspecification.mmd_num_shuffles=200 diagnostics.misspecification.mmd_max_samples=100 "
            "diagnostics.misspecification.logprob_max_epochs=50 diagnostics.predictive_distance.num_prior=100")
#: make benchmark: each task's fit shrunk, one sbibm observation (7: the one docs/benchmark.md reloads) on 500 samples,
#: 50 MCMC chains
TINY_BENCHMARK = ("simulation.num_simulations=300 trainer.max_epochs=2 trainer.ensemble_size=1 benchmark.score=[7] "
                  "diagnostics.num_observation_samples=500 method.sampling.mcmc.num_chains=50 "
                  "method.sampling.mcmc.warmup_steps=20")
#: make hpo: two trials of the tiny run
TINY_HPO = f"hpo.n_trials=2 {TINY_RUN}"
#: added where a command runs TSNPE (the allen_cell preset, method=tsnpe): 3 rounds, and 10,000 posterior draws
#: to place each region (enough for a quantile down to 1e-4) instead of 100,000: at 300 simulations the
#: regions' draws, not the training, took 60 of a run's 88 s (3 truncated rounds still nest, sample and cache)
TINY_TSNPE = "method.num_rounds=3 method.num_samples_to_estimate_support=10000"


@dataclass(frozen=True)
class DocLine:
    """One documented command: where it is, the command as written, its comment."""

    path: str  # relative to the project root
    number: int
    command: str
    comment: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.number}"

    @property
    def fails_here(self) -> bool:
        return FAILS_MARK in self.comment


def split_comment(line: str) -> tuple[str, str]:
    """(command, comment): the comment starts at the first `` #`` outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def documented_lines(docs: list[Path] = DOCS) -> list[DocLine]:
    """Every command line in the shell blocks of ``docs``, in order."""
    found: list[DocLine] = []
    for path in docs:
        language: Optional[str] = None
        for number, raw in enumerate(path.read_text().splitlines(), start=1):
            stripped = raw.strip()
            if stripped.startswith("```"):
                language = None if language is not None else (stripped[3:].strip() or "plain")
                continue
            if language in SHELL_BLOCKS and COMMAND.match(stripped):
                command, comment = split_comment(stripped)
                found.append(DocLine(str(path.relative_to(ROOT)), number, command, comment))
    return found


@dataclass(frozen=True)
class Rule:
    """How the lines matching ``pattern`` (a regex searched in the command) are run, and why."""

    pattern: str
    kind: str  # local | serve | ci | tracking_server | slurm | dask | your_model
    why: str
    path: Optional[str] = None  # only the lines of this doc

    def matches(self, line: DocLine) -> bool:
        return (self.path is None or line.path == self.path) and re.search(self.pattern, line.command) is not None


#: first match wins; each service kind runs in tests/scaleout/test_docs_services.py
RULES: tuple[Rule, ...] = (
    Rule(r".", "your_model", "tests/test_your_model.py: the page's files written and its commands run in order "
         "from a temporary folder outside the project, with sbilab installed as a wheel", path="docs/your-model.md"),
    Rule(r"^make test$", "ci", ".ci/run runs `make test` itself (running the suite inside the suite would recurse)"),
    Rule(r"^make ui\b", "serve", "the MLflow UI: started on a free port over a temporary store, answered, stopped"),
    Rule(r"^make server\b(?!-)", "tracking_server", "tests/scaleout/test_cli.py: `python -m services up` (what "
         "make server runs) on PostgreSQL"),
    Rule(r"^make server-migrate\b", "tracking_server", "tests/scaleout/test_migrate.py: the SQLite store copied into "
         "the running server"),
    Rule(r"tracking=server|models:/", "tracking_server", "tests/scaleout/test_tracking_server.py: make train, "
         "make sweep, make register and load_posterior('models:/...') against the server"),
    Rule(r"LAUNCHER=slurm|dask_slurm\.py", "slurm", "tests/scaleout/test_slurm_sweep.py and test_dask_jobqueue.py: "
         "make sweep LAUNCHER=slurm and Dask workers as SLURM jobs on the one-node SLURM"),
    Rule(r"^(make|python|\.venv/bin/python|sbilab)\b", "local", "runs on this machine at a tiny budget"),
)


def rule_for(line: DocLine) -> Optional[Rule]:
    return next((rule for rule in RULES if rule.matches(line)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Workspace:
    """A temporary store, cache and output folders, and the values placeholders are filled with."""

    root: Path
    tracking_uri: Optional[str] = None  # None: the temporary SQLite store; else e.g. the team server's URL
    run_id: str = ""
    sweep_id: str = ""
    config_dir: str = ""
    nwb_file: str = ""
    benchmark_run_id: str = ""

    @property
    def project_dir(self) -> str:
        """A user's project folder (``make new-model DIR=...``), outside the checkout."""
        return str(self.root / "my-project")

    @property
    def sqlite_uri(self) -> str:
        return f"sqlite:///{self.root}/mlruns/mlflow.db"

    def store_overrides(self) -> list[str]:
        if self.tracking_uri is not None:  # tracking=server reads the URI from MLflow's variables
            return [f"paths.cache_dir={self.root}/cache"]
        return [f"tracking.uri={self.sqlite_uri}", f"tracking.artifact_location=file://{self.root}/mlruns/artifacts",
                f"paths.cache_dir={self.root}/cache"]

    def hydra_overrides(self) -> list[str]:
        return [f"hydra.run.dir={self.root}/outputs/run", f"hydra.sweep.dir={self.root}/multirun"]


#: a placeholder in a doc line → the Workspace attribute that fills it
PLACEHOLDERS: dict[str, str] = {
    "<parent run id | sweep id>": "sweep_id",
    "<parent run id>": "sweep_id",
    "<run id>": "run_id",
    "/abs/path/to/downloaded/artifacts": "config_dir",
    "/data/cell.nwb": "nwb_file",
    "<benchmark run id>": "benchmark_run_id",
    "sqlite:///$PWD/mlruns/mlflow.db": "sqlite_uri",
    "<your project folder>": "project_dir",
}


def fill_placeholders(command: str, workspace: Workspace) -> str:
    for placeholder, attribute in PLACEHOLDERS.items():
        if placeholder in command:
            value = getattr(workspace, attribute)
            assert value, f"{placeholder} needs Workspace.{attribute}"
            command = command.replace(placeholder, value)
    return re.sub(r"\s\[--[a-z-]+ [A-Z]+\]", "", command)  # an optional argument shown as [--option VALUE]


#: the make targets and scripts that train (they take the tiny run's budget and Hydra's output folders)
TRAINING = ("train", "sweep", "simulate", "cells", "train.py", "simulate.py", "train_cells.py")


def runs_tsnpe(words: Sequence[str]) -> bool:
    """Whether a command's overrides choose TSNPE: ``method=tsnpe``, or the allen_cell preset without another method."""
    text = " ".join(words)
    other_method = re.search(r"(?<![\w.])method=(?!tsnpe\b)", text) is not None
    return not other_method and re.search(r"(?<![\w.])(method=tsnpe|experiment=allen_cell)\b", text) is not None


def _extra_for(target: str, words: Sequence[str] = ()) -> list[str]:
    """The tiny budget for a make target or script (empty for commands that only read the store)."""
    if target in ("benchmark", "benchmark.py"):
        return TINY_BENCHMARK.split()
    if target in ("hpo", "hpo.py"):
        return TINY_HPO.split()
    if target in TRAINING:
        return TINY_RUN.split() + (TINY_TSNPE.split() if runs_tsnpe(words) else [])
    return []


def runnable(line: DocLine, workspace: Workspace) -> str:
    """The shell command that runs ``line`` here: placeholders filled, tiny budget and temporary store added."""
    words = shlex.split(fill_placeholders(line.command, workspace))
    if words[0] == "make":
        target = next(w for w in words[1:] if "=" not in w)
        extra = _extra_for(target, words)
        if target not in ("ui", "test", "new-model", "server", "server-migrate", "server-stop", "server-status"):
            extra = [*extra, *workspace.store_overrides()]
            if target in TRAINING:
                extra += workspace.hydra_overrides()
        if target == "sweep" and not any(w.startswith("JOBS=") for w in words):
            words.append("JOBS=2")
        if target == "ui":
            words += [f"MLRUNS={workspace.root}/mlruns", f"PORT={free_port()}"]
        args = next((i for i, w in enumerate(words) if w.startswith("ARGS=")), None)
        if extra:
            if args is None:
                words.append("ARGS=" + " ".join(extra))
            else:
                words[args] = f"{words[args]} {' '.join(extra)}"
        return shlex.join(["make", "-s", *words[1:]])
    if words[0] in ("python", ".venv/bin/python") and len(words) > 1 and words[1].endswith(".py"):
        script = Path(words[1]).name
        extra = []
        if words[1].startswith("scripts/"):  # sbilab's entry scripts take overrides; research/ scripts do not
            extra = [*_extra_for(script, words), *workspace.store_overrides()]
        if script in TRAINING:
            extra += workspace.hydra_overrides()
        words = [str(ROOT / ".venv" / "bin" / "python"), *words[1:], *extra]
        return shlex.join(words)
    if words[0] == "python":
        words[0] = str(ROOT / ".venv" / "bin" / "python")
    return shlex.join(words)


@dataclass
class Outcome:
    line: DocLine
    command: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def problem(self) -> Optional[str]:
        """None when the line did what the doc says (ran, or failed with one line where it is marked to fail)."""
        tail = (self.stderr or self.stdout)[-2500:]
        if self.line.fails_here:
            lines = [x for x in self.stderr.splitlines() if x.startswith("sbilab:")]
            if self.returncode == 0:
                return f"{self.line.where}: marked '{FAILS_MARK}' but exited 0"
            if "Traceback" in self.stderr or len(lines) != 1:
                return f"{self.line.where}: must fail with one 'sbilab:' line, got:\n{tail}"
            return None
        if self.returncode != 0:
            return f"{self.line.where}: `{self.line.command}` exited {self.returncode}:\n{tail}"
        return None


def environment(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PROJECT_ROOT": str(ROOT), **(extra or {})}
    env.pop("MAKEFLAGS", None)
    return env


def run_line(line: DocLine, workspace: Workspace, *, timeout: float = 900,
             env: Optional[dict[str, str]] = None) -> Outcome:
    """Run one documented line as ``runnable`` gives it; a server line is started, answered and stopped."""
    command = runnable(line, workspace)
    started = time.perf_counter()
    if rule_for(line).kind == "serve":
        return _serve(line, command, started, env)
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            env=environment(env))
    return Outcome(line, command, result.returncode, result.stdout, result.stderr, time.perf_counter() - started)


def _serve(line: DocLine, command: str, started: float, env: Optional[dict[str, str]]) -> Outcome:
    port = re.search(r"PORT=(\d+)", command).group(1)
    process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=environment(env), start_new_session=True)
    answered = wait_for_http(f"http://127.0.0.1:{port}/", process.poll, timeout=120)
    os.killpg(process.pid, 15)
    stdout, stderr = process.communicate(timeout=60)
    return Outcome(line, command, 0 if answered else 1, stdout, stderr + ("" if answered else "\nno HTTP answer"),
                   time.perf_counter() - started)


def wait_for_http(url: str, exited: Callable[[], Optional[int]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and exited() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
                return response.status == 200
        except OSError:
            time.sleep(0.5)
    return False



def local_lines(lines: list[DocLine]) -> list[DocLine]:
    """The lines this machine runs (``local`` and ``serve``)."""
    return [line for line in lines if rule_for(line) is not None and rule_for(line).kind in ("local", "serve")]


def as_run(line: DocLine) -> str:
    """The command ``line`` runs as, in a symbolic workspace: two lines with the same one run the same thing."""
    symbolic = Workspace(Path("/workspace"), run_id="RUN", sweep_id="SWEEP", config_dir="CONFIG", nwb_file="NWB",
                         benchmark_run_id="BENCHMARK")
    return re.sub(r"PORT=\d+", "PORT=N", runnable(line, symbolic))


def as_run_any_seed(line: DocLine) -> str:
    """:func:`as_run` without ``seed=<n>``: ``seed=1`` runs the path the default seed runs (the seed is an integer
    checked before anything runs, and every random draw is seeded from it the same way)."""
    return re.sub(r"(?<![\w.])seed=\d+(?![\d,])\s*", "", as_run(line))


def distinct(lines: Sequence[DocLine], earlier: Sequence[DocLine] = ()) -> list[DocLine]:
    """``lines`` less those that run as an earlier one (of ``lines`` or ``earlier``) does, up to the seed's value: the
    README and a guide often show the same command (``make sweep SWEEP=...`` with and without the ``JOBS=2`` the
    harness adds), and docs/benchmark.md each benchmark at seeds 0 and 1."""
    seen = {as_run_any_seed(line) for line in earlier}
    kept = []
    for line in lines:
        if as_run_any_seed(line) not in seen:
            seen.add(as_run_any_seed(line))
            kept.append(line)
    return kept


def make_workspace(root: Path) -> Workspace:
    """A store with what the doc lines' placeholders name: a run, a sweep, the run's config, an NWB file."""
    from mlflow.tracking import MlflowClient

    from recording_files import write_nwb
    from sbilab.recordings.allen import CELLS, SHIPPED_DIRECTORY, cell_file_name

    space = Workspace(root)
    made = run_line(DocLine("tests/docs_harness.py", 0, "make train", ""), space)
    assert made.returncode == 0, made.stderr[-2000:]
    space.run_id = re.search(r"sbilab: run (\w+) FINISHED", made.stdout).group(1)
    swept = run_line(DocLine("tests/docs_harness.py", 0, 'make sweep SWEEP="seed=0,1"', ""), space)
    assert swept.returncode == 0, swept.stderr[-2000:]
    client = MlflowClient(space.sqlite_uri)
    (space.sweep_id,) = {r.data.tags["mlflow.parentRunId"] for e in client.search_experiments()
                         for r in client.search_runs([e.experiment_id]) if "mlflow.parentRunId" in r.data.tags}
    space.config_dir = str(Path(client.download_artifacts(space.run_id, "config.yaml", str(space.root))).parent)
    space.nwb_file = str(write_nwb(SHIPPED_DIRECTORY / cell_file_name(next(iter(CELLS))), space.root / "cell.nwb"))
    return space


def benchmark_run(space: Workspace) -> str:
    """A finished benchmark run of the workspace that scored observation 7 (a benchmark line ran before)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(space.sqlite_uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
            if "c2st/obs_7" in r.data.metrics and r.info.status == "FINISHED"]
    assert runs, "no benchmark run scored observation 7 yet (the benchmark lines run first, in doc order)"
    return runs[0].info.run_id


def check_line(space: Workspace, line: DocLine) -> None:
    """Run ``line``; fail with where it is, what ran and what it printed unless it did what the doc says."""
    if "<benchmark run id>" in line.command:
        space.benchmark_run_id = benchmark_run(space)
    outcome = run_line(line, space, timeout=1400)
    assert outcome.problem() is None, f"{outcome.problem()}\n(ran: {outcome.command}, {outcome.seconds:.0f} s)"
    if not line.fails_here and line.command.startswith("make train"):
        assert "FINISHED" in outcome.stdout and "calibration gates:" in outcome.stdout, outcome.stdout[-2000:]
