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
