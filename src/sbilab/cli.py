"""The ``sbilab`` command, for projects that ``pip install sbilab`` (the repository's ``make`` targets run the same
code).

    sbilab train [key=value ...]            one run into ./mlruns (as `make train`)
    sbilab sweep key=a,b [key=value ...]    a Hydra multirun on this machine's cores (as `make sweep`)
    sbilab simulate [key=value ...]         fill the simulation cache without training
    sbilab cells [cells=[id,...] ...]       one network for several recorded cells (as `make cells`)
    sbilab ui [--port 5000]                 the MLflow UI on ./mlruns
    sbilab new-model NAME [--dir DIR]       a function simulator, its configs and a test (docs/your-model.md)

The folder you run it from is the project: ``mlruns/``, ``outputs/`` and ``.cache/`` go there, its
Python modules are importable (``simulator.fn=mysim:simulate``) and its ``conf/`` folder, when there is
one, is on Hydra's search path, so ``simulator=mine`` finds ``conf/simulator/mine.yaml``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

COMMANDS = ("train", "sweep", "simulate", "cells", "ui", "new-model")


def config_dir() -> Path:
    """sbilab's own config tree (shipped inside the package as ``sbilab/conf``)."""
    return Path(__file__).resolve().parent / "conf"


def _project_here() -> Path:
    """The working folder as the project: its root for paths, its modules importable (here and in workers)."""
    here = Path.cwd().resolve()
    os.environ.setdefault("PROJECT_ROOT", str(here))
    os.environ.setdefault("SBILAB_UI_COMMAND", "sbilab ui")  # what the run's last line tells this user to type
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(here) not in paths:  # worker processes that start afresh (sweep jobs) import the user's modules too
        os.environ["PYTHONPATH"] = os.pathsep.join([str(here), *paths])
    return here


def with_user_configs(overrides: Sequence[str], project: Path) -> list[str]:
    """``overrides`` plus ``hydra.searchpath=[file://<project>/conf]`` when the project has a ``conf/`` folder.

    A searchpath the user gives wins; sbilab's own tree is never added twice.
    """
    user_conf = project / "conf"
    given = any(o.lstrip("+").startswith("hydra.searchpath") for o in overrides)
    if given or not user_conf.is_dir() or user_conf.resolve() == config_dir().resolve():
        return list(overrides)
    return [*overrides, f"hydra.searchpath=[file://{user_conf.resolve()}]"]


def _run_hydra(body: Callable, overrides: Sequence[str], multirun: bool = False) -> None:
    import hydra

    from sbilab import entry

    sys.argv = ["sbilab", *(["--multirun"] if multirun else []), *overrides]
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")(body)
    try:
        app()
    except KeyboardInterrupt as interrupt:  # between stages too: one line, never a traceback
        entry.interrupted(interrupt)


def _sweep_overrides(overrides: Sequence[str]) -> list[str]:
    """This machine's cores through the joblib launcher unless another launcher is named."""
    if any(o.startswith("hydra/launcher=") for o in overrides):
        return list(overrides)
    return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={os.cpu_count() or 1}", *overrides]


def _ui(argv: Sequence[str], project: Path) -> int:
    import argparse
    import shutil

    parser = argparse.ArgumentParser(prog="sbilab ui", description="The MLflow UI on a store of runs.")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--store", type=Path, default=project / "mlruns", help="folder holding mlflow.db")
    args = parser.parse_args(list(argv))
    store = args.store.resolve()
    if not (store / "mlflow.db").is_file():
        print(f"sbilab: error: --store={store}: no mlflow.db there (run `sbilab train` first)", file=sys.stderr)
        return 2
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if mlflow is None:
        print("sbilab: error: the mlflow command is not installed beside this Python", file=sys.stderr)
        return 2
    print(f"sbilab: MLflow UI on http://127.0.0.1:{args.port}/#/experiments?workflowType=machine_learning")
    command = [mlflow, "ui", "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
               "--default-artifact-root", f"file://{store}/artifacts", "--host", "127.0.0.1", "--port", str(args.port)]
    os.execv(command[0], command)
    return 0  # not reached


def _new_model(argv: Sequence[str], project: Path) -> int:
    import argparse

    from sbilab.errors import ConfigError
    from sbilab.scaffold import write_model

    parser = argparse.ArgumentParser(prog="sbilab new-model",
                                     description="A function simulator, its configs and a test, in a folder of yours.")
    parser.add_argument("name", help="a Python identifier: the module and the config option")
    parser.add_argument("--dir", type=Path, default=project, help="the project folder (default: here)")
    args = parser.parse_args(list(argv))
    try:
        written = write_model(args.name, args.dir)
    except ConfigError as error:
        print(f"sbilab: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"sbilab: wrote {path}")
    print(f"sbilab: next: cd {args.dir.resolve()} && python -m pytest tests/test_{args.name}.py && "
          f"sbilab train experiment={args.name}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``sbilab <command> [...]``; see the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"sbilab: error: unknown command {command!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    project = _project_here()
    if command == "ui":
        return _ui(rest, project)
    if command == "new-model":
        return _new_model(rest, project)
    from sbilab import commands

    overrides = with_user_configs(rest, project)
    if command == "train":
        _run_hydra(commands.train, overrides)
    elif command == "simulate":
        _run_hydra(commands.simulate, overrides)
    elif command == "cells":
        _run_hydra(commands.train_cells, ["experiment=allen_cells", *overrides])
    else:
        _run_hydra(commands.train, _sweep_overrides(overrides), multirun=True)
    return 0


def console() -> None:
    """Console-script entry point."""
    sys.exit(main())
