"""Shared plumbing for model wrappers: load weights lazily, once, and never pickle a loaded model."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from faces.weights import WeightsSpec, resolve_weights

__all__ = ["LazyModel", "missing_extra"]


def missing_extra(package: str, extra: str, exc: ImportError) -> ImportError:
    """An ``ImportError`` telling the user which optional extra provides ``package``."""
    return ImportError(
        f"the '{package}' package is needed for this backend but is not installed "
        f"({type(exc).__name__}: {exc}). Install it with: pip install 'celebref-hq[{extra}]'"
    )


class LazyModel:
    """Base for wrappers whose model loads on first use (thread-safe) and is dropped when pickled.

    Subclasses implement :meth:`_load`; :meth:`resolve` finds their weights file through
    :func:`faces.weights.resolve_weights`. A model object given to the constructor is used as is
    (this is how tests inject small stand-ins).
    """

    def __init__(
        self,
        spec: WeightsSpec | None,
        weights_path: str | Path | None,
        cache_dir: str | Path | None,
        allow_download: bool,
        model: Any = None,
    ) -> None:
        self._spec = spec
        self._weights_path = weights_path
        self._cache_dir = cache_dir
        self._allow_download = allow_download
        self._model: Any = model
        self._injected = model is not None
        self._lock = threading.Lock()

    def resolve(self) -> Path:
        """Path of the weights file (raises ``WeightsNotFoundError`` with instructions if missing)."""
        if self._spec is None:
            raise ValueError(f"{type(self).__name__} has no weights file")
        return resolve_weights(
            self._spec, self._weights_path, cache_dir=self._cache_dir, allow_download=self._allow_download
        )

    def _load(self) -> Any:
        raise NotImplementedError

    @property
    def model(self) -> Any:
        """The loaded model (loads it on first access)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if not state["_injected"]:
            state["_model"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
