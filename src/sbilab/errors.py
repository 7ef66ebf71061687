"""Errors that mean "the input is wrong" (one clear line, exit 2), as opposed to bugs."""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad configuration or data; the message names the key and what is allowed."""


class ConfigError(UserInputError):
    """A config value is invalid."""


class ObservationError(UserInputError):
    """The ``observation`` config cannot give a usable x_o."""


class TrackingError(UserInputError):
    """The MLflow store cannot be reached or initialised (``tracking.uri``)."""


class SamplingError(UserInputError):
    """The trained posterior cannot be sampled as configured (the message says what to change)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while a run was open; the run is closed KILLED (``run_id``) before this is raised."""

    def __init__(self, run_id: str, reason: str = "") -> None:
        super().__init__(reason or "interrupted")
        self.run_id = run_id
