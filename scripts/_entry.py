"""Shared start-up for the entry scripts: project root, quiet third-party logs, one-line errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, NoReturn

ROOT = Path(__file__).resolve().parents[1]
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

    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, ValueError):  # sbilab.errors.UserInputError and argument checks
        return str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    return None


def guarded(task: Callable[[], int | None]) -> int:
    """Run ``task``; bad input → one line and exit 2."""
    try:
        return task() or 0
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:
        message = user_error_message(error)
        if message is None:
            raise
        fail(message)
