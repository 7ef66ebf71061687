"""Start-up shared by the entry scripts: project root, quiet third-party logs, one-line errors.

It lives in the package, not beside the scripts, so that a job unpickled in a fresh
process (submitit on a SLURM node) finds it. Importing it is cheap: nothing heavy is
imported until a command runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, NoReturn

#: the project root: ``PROJECT_ROOT`` (set by the Makefile) or the checkout this package is installed from
ROOT = Path(os.environ.get("PROJECT_ROOT") or Path(__file__).resolve().parents[2])
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "0")

import logging  # noqa: E402
import warnings  # noqa: E402

for _name in ("lightning", "lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)

warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", category=DeprecationWarning)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line on stderr and exit non-zero."""
    print(f"sbilab: error: {message}", file=sys.stderr)
    sys.exit(code)


def user_error_message(error: BaseException) -> str | None:
    """The one-line message of a bad-input error, or None for a bug (full traceback then)."""
    from hydra.errors import InstantiationException

    from sbilab.errors import UserInputError

    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, UserInputError):
        return str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    return None


#: exit code after Ctrl-C (128 + SIGINT), as a shell reports it
INTERRUPTED_EXIT = 130


def interrupted(error: KeyboardInterrupt) -> NoReturn:
    """One line for Ctrl-C/SIGTERM (no traceback): which run is KILLED and how to resume; exit 130."""
    run_id = getattr(error, "run_id", None)
    if run_id is None:
        print("sbilab: interrupted while no run was open (nothing is left RUNNING)", file=sys.stderr)
    else:
        print(f"sbilab: interrupted: run {run_id} is KILLED; run the same command again to resume: simulations "
              f"already finished come from the cache (paths.cache_dir)", file=sys.stderr)
    sys.exit(INTERRUPTED_EXIT)


def guarded(task: Callable[[], int | None]) -> int:
    """Run ``task``; bad input → one line and exit 2; Ctrl-C → one line and exit 130."""
    try:
        return task() or 0
    except KeyboardInterrupt as error:
        interrupted(error)
    except SystemExit:
        raise
    except Exception as error:
        message = user_error_message(error)
        if message is None:
            raise
        fail(message)


#: override prefixes that say where the store is (all that store commands use of the config)
STORE_KEYS = ("tracking.", "tracking=", "paths.")


def store_command(argv: list[str], doc: str | None, positional: str, option: str) -> tuple:
    """Parse ``[POSITIONAL] [--OPTION VALUE] [key=value ...]`` for commands that only read the store.

    Returns (positional, option value, store overrides, other overrides).
    """
    import argparse

    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(positional, nargs="?")
    parser.add_argument(f"--{option}")
    args = parser.parse_args([a for a in argv if a not in overrides])
    store = [a for a in overrides if a.lstrip("+").startswith(STORE_KEYS)]
    return getattr(args, positional), getattr(args, option), store, [a for a in overrides if a not in store]


def store_uri(overrides: list[str]) -> str:
    """The tracking URI the composed config (with ``overrides``) points at."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return str(compose("config", overrides=overrides).tracking.uri)
