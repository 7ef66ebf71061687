"""Typed settings from config groups: dataclasses whose fields say what they allow.

A settings dataclass is a structured config: its fields are a config group's keys, typed;
:func:`setting` adds what a field allows (for the message) and how to check it beyond its
type. :func:`load_settings` merges a composed group into the dataclass with OmegaConf (which
converts and type-checks every value), then checks every range. The first problem is one
``ConfigError`` line naming the key, the value and what is allowed; rules across fields of
one group live in the dataclass's ``__post_init__``, raising ``ConfigError`` too.

Validation runs after Hydra composed the config rather than as a Hydra schema at
composition time: a schema error there is a multi-line Hydra trace with exit code 1, where
sbilab promises one line and exit code 2. Nothing heavy is imported here.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable, Optional, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from sbilab.errors import ConfigError

T = TypeVar("T")

INT_GE_1 = "an integer >= 1"
INT_GE_0 = "an integer >= 0"
BOOL = "true or false"
FRACTION = "a number strictly between 0 and 1"


def at_least(low: float) -> Callable[[Any], bool]:
    return lambda value: value >= low


def fraction(value: Any) -> bool:
    return 0 < value < 1


def setting(default: Any, allowed: str, valid: Callable[[Any], bool] = lambda value: True) -> Any:
    """A dataclass field with what is allowed (for the message) and its check (beyond the type)."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata={"allowed": allowed, "valid": valid})
    return dataclasses.field(default=default, metadata={"allowed": allowed, "valid": valid})


def group(schema: type, allowed: str = "a mapping of settings") -> Any:
    """A field holding a nested settings group (its own dataclass, checked field by field)."""
    return dataclasses.field(default_factory=schema, metadata={"allowed": allowed})


def load_settings(schema: type[T], node: Any, prefix: str = "") -> T:
    """``node`` (a config group) as a ``schema`` instance; one ``ConfigError`` line on the first bad value.

    ``prefix`` is the group's key (``""`` for run-level keys), used in messages. Missing keys keep
    their defaults; unknown keys, wrong types and values out of range are refused.
    """
    if node is None:
        raise ConfigError(f"{prefix} is missing from the config")
    values = resolved(node, prefix) if isinstance(node, DictConfig) else node
    if not isinstance(values, dict) and not dataclasses.is_dataclass(values):
        raise ConfigError(f"{prefix}={values!r} is invalid: expected a mapping of settings")
    check_groups(schema, values, prefix)
    structured = OmegaConf.structured(schema)
    unfreeze(structured)  # frozen dataclasses load like any other
    try:
        merged = OmegaConf.merge(structured, values)
    except ConfigKeyError as error:
        key = str(error.full_key)
        parent, _, _ = key.rpartition(".")
        known = ", ".join(f.name for f in dataclasses.fields(_schema_at(schema, parent)) if f.init)
        raise ConfigError(f"{_key(prefix, key)} is not a setting of {_key(prefix, parent)}; "
                          f"allowed: {known}") from None
    except ValidationError as error:
        key = str(error.full_key)
        value = OmegaConf.select(OmegaConf.create(values), key, default=None, throw_on_resolution_failure=False)
        raise ConfigError(f"{_key(prefix, key)}={value!r} is invalid: expected {_allowed(schema, key)}") from None
    settings = OmegaConf.to_object(merged)
    check_ranges(settings, prefix)
    return settings  # type: ignore[return-value]


def check_groups(schema: type, values: Any, prefix: str) -> None:
    """A nested group given as something other than a mapping (``diagnostics.thresholds=3``) is refused."""
    if not isinstance(values, dict):
        return
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        inner = _dataclass_in(hints[f.name])
        value = values.get(f.name)
        if inner is not None and value is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"{_key(prefix, f.name)}={value!r} is invalid: expected "
                                  f"{f.metadata.get('allowed', 'a mapping of settings')}")
            check_groups(inner, value, _key(prefix, f.name))


def unfreeze(node: Any) -> None:
    """Clear the read-only flag that frozen dataclasses set, on the node and every nested group."""
    OmegaConf.set_readonly(node, False)
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            unfreeze(child)


def resolved(node: DictConfig, prefix: str) -> Any:
    """A config node as plain values, its interpolations resolved against the whole config."""
    try:
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as error:  # full_key is the path from the config's root
        key = str(error.full_key) or prefix
        raise ConfigError(f"{key} has no value; give one on the command line ({key}=...)") from None
    except OmegaConfBaseException as error:
        key = str(getattr(error, "full_key", "") or "") or prefix
        raise ConfigError(f"{key}: {str(error).strip().splitlines()[0]}") from None


def check_ranges(settings: Any, prefix: str) -> None:
    """Every field's own check (``setting(..., valid=...)``), nested groups included."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, _key(prefix, f.name))
        elif value is not None and "valid" in f.metadata and not f.metadata["valid"](value):
            raise ConfigError(f"{_key(prefix, f.name)}={value!r} is invalid: expected {f.metadata['allowed']}")


def _key(prefix: str, key: str) -> str:
    return ".".join(part for part in (prefix, key) if part)


def _schema_at(schema: type, key: str) -> type:
    """The dataclass of a (dotted) nested group of ``schema`` (``schema`` itself for ``""``)."""
    if not key:
        return schema
    head, _, rest = key.partition(".")
    inner = _dataclass_in(typing.get_type_hints(schema)[head])
    return _schema_at(inner, rest) if inner is not None else schema


def _allowed(schema: type, key: str) -> str:
    """What a (possibly nested, dotted) key of ``schema`` allows, from its field metadata."""
    head, _, rest = key.partition(".")
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if f.name == head:
            inner = _dataclass_in(hints[f.name])
            if rest and inner is not None:
                return _allowed(inner, rest)
            return f.metadata.get("allowed", "a valid value")
    return "a valid value"


def _dataclass_in(annotation: Any) -> Optional[type]:
    """The dataclass an annotation holds (``Optional[LrDecay]`` → ``LrDecay``), if any."""
    candidates = [annotation, *typing.get_args(annotation)]
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)
