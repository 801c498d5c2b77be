"""Typed, frozen configuration loaded from ``params.yaml``.

Configuration flows one way: ``params.yaml`` → a validated frozen pydantic model → functions.
Every stage defines its own model (subclass of :class:`StageConfig`) and loads only its section.
Unknown keys and wrong types are errors: :class:`ConfigError`, whose message is one line naming the key
(``curate.workers: Input should be greater than or equal to 1, got 0``). :mod:`celebref.params` checks the
whole file.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "StageConfig",
    "ConfigError",
    "MissingSectionError",
    "read_params",
    "load_section",
    "validate_section",
    "describe_validation_error",
    "nearest_hint",
    "dump_config",
]

#: Problems one :class:`ConfigError` message lists before it only counts the rest.
SHOWN_PROBLEMS = 3


class ConfigError(ValueError):
    """A bad configuration, argument or input, found before anything is written; the message is one line."""


class MissingSectionError(ConfigError, KeyError):
    """The params file has no such section (a :class:`KeyError` too, for callers with a default)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class StageConfig(BaseModel):
    """Base for every config object: immutable, strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


C = TypeVar("C", bound=StageConfig)


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read the whole params file as a plain mapping.

    Raises :class:`FileNotFoundError` for a missing file and :class:`ConfigError` for a file that is not
    YAML or whose top level is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    try:
        with path.open("r", encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def validate_section(model: type[C], node: Any, section: str) -> C:
    """Validate ``node`` (the section ``section`` of a params file) into ``model``.

    Raises :class:`ConfigError` with :func:`describe_validation_error`'s one-line message.
    """
    try:
        return model.model_validate({} if node is None else node)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, section, model)) from exc


def load_section(model: type[C], section: str, path: str | Path = "params.yaml") -> C:
    """Validate one top-level section of the params file into ``model``.

    A dotted ``section`` (``"evaluate.lpips"``) walks nested mappings. A missing section raises
    :class:`MissingSectionError` (a :class:`KeyError`), a bad one :class:`ConfigError`.
    """
    node: Any = read_params(path)
    for part in section.split("."):
        if not isinstance(node, dict) or part not in node:
            raise MissingSectionError(f"{path}: section '{section}' not found (missing '{part}')")
        node = node[part]
    return validate_section(model, node, section)


def _location(parts: Sequence[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _model_keys(annotation: Any, loc: Sequence[str | int]) -> list[str] | None:
    """The keys the model at ``loc`` below ``annotation`` allows (None when ``loc`` leads to no model)."""
    for part in (*loc, None):
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):  # Optional[Model]: the model member
            models = [
                a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            annotation = models[0] if len(models) == 1 else None
            origin = None
        if part is None:
            break
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            annotation = None if field is None else field.annotation
        elif origin is not None and issubclass(origin, Mapping):
            annotation = typing.get_args(annotation)[1]
        elif origin in (tuple, list) and typing.get_args(annotation):
            annotation = typing.get_args(annotation)[0]
        else:
            return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return None


def nearest_hint(name: str, known: Sequence[str], listed: str = "allowed") -> str:
    """``did you mean '<closest of known>'?``, or ``<listed>: <all of known>`` when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else f"{listed}: {', '.join(known)}"


def _short(value: Any) -> str | None:
    """``value`` for an error message, when it is short."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= 60 else None
    return None


def _problem(error: Mapping[str, Any], section: str, model: type[BaseModel] | None) -> str:
    loc = tuple(error.get("loc", ()))
    key = _location([*section.split("."), *loc]) if section else _location(loc)
    kind, message = error.get("type", ""), str(error.get("msg", ""))
    if kind == "extra_forbidden":
        message = "unknown key"
        allowed = _model_keys(model, loc[:-1]) if model is not None else None
        if allowed:
            message += f"; {nearest_hint(str(loc[-1]), allowed)}"
    elif kind == "missing":
        message = "required key missing"
    else:
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        shown = _short(error.get("input"))
        if kind not in ("value_error", "assertion_error") and shown is not None:
            message += f", got {shown}"
    return f"{key}: {message}" if key else message


def describe_validation_error(
    exc: ValidationError, section: str = "", model: type[BaseModel] | None = None
) -> str:
    """One line for a pydantic error: ``<section>.<key path>: <message>`` per problem, ``; `` between.

    At most :data:`SHOWN_PROBLEMS` problems are spelled out; ``model`` (the validated class) lets an
    unknown key name its nearest allowed one.
    """
    errors = exc.errors()
    problems = [_problem(e, section, model) for e in errors[:SHOWN_PROBLEMS]]
    more = len(errors) - len(problems)
    text = "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
    return " ".join(text.split())  # one line, whatever the messages hold


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Write the resolved config beside a stage's outputs (YAML, atomically)."""
    from celebref.atomic import atomic_write_text

    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    atomic_write_text(Path(path), text)
