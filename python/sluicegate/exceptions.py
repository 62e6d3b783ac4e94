"""The exception hierarchy of sluicegate.

Every error the engine raises is an instance of :class:`SluicegateError`; the subclasses say
which part failed. The message carries the whole cause chain::

    SluicegateError
    ├── ConfigError          the project file (sluicegate.yml) is invalid or missing
    ├── SourceError          reading the warehouse failed
    ├── DestinationError     the destination refused or could not be reached
    ├── StoreError           the state store (SQLite or Postgres) failed
    ├── RunNotFoundError     no run with that id
    ├── SyncNotFoundError    no sync with that id or name
    └── RunStateError        the run cannot be executed in its state (e.g. not queued)

Each instance also has ``causes`` (the cause chain, outermost first) and ``kind``.

The classes are defined by the compiled extension ``sluicegate._core``. They are re-exported
here lazily, so ``import sluicegate.exceptions`` stays cheap; the extension is loaded the first
time one of the names is looked up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "ConfigError",
    "DestinationError",
    "RunNotFoundError",
    "RunStateError",
    "SluicegateError",
    "SourceError",
    "StoreError",
    "SyncNotFoundError",
]

if TYPE_CHECKING:
    from sluicegate._core import (
        ConfigError,
        DestinationError,
        RunNotFoundError,
        RunStateError,
        SluicegateError,
        SourceError,
        StoreError,
        SyncNotFoundError,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sluicegate._load import load_core

        value = getattr(load_core(), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sluicegate.exceptions' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
