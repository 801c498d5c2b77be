"""Typed, frozen configuration loaded from ``params.yaml``.

Configuration flows one way: ``params.yaml`` → a validated frozen pydantic model → functions.
Every stage defines its own model (subclass of :class:`StageConfig`) and loads only its section.
Unknown keys and wrong types are errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict

__all__ = ["StageConfig", "read_params", "load_section", "dump_config"]


class StageConfig(BaseModel):
    """Base for every config object: immutable, strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


C = TypeVar("C", bound=StageConfig)


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read the whole params file as a plain mapping."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    with path.open("r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_section(model: type[C], section: str, path: str | Path = "params.yaml") -> C:
    """Validate one top-level section of the params file into ``model``.

    A dotted ``section`` (``"evaluate.lpips"``) walks nested mappings.
    """
    node: Any = read_params(path)
    for part in section.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{path}: section '{section}' not found (missing '{part}')")
        node = node[part]
    return model.model_validate(node or {})


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Write the resolved config beside a stage's outputs (YAML, atomically)."""
    from celebref.atomic import atomic_write_text

    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    atomic_write_text(Path(path), text)
