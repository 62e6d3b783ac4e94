"""sluicegate: self-hosted reverse ETL with a Rust engine.

``import sluicegate`` is cheap on purpose: it does not load the compiled engine
(``sluicegate._core``), start threads or touch the network. Airflow parses DAG files every
30 seconds and forks task processes, so the engine is loaded only when an :class:`Engine` is
constructed or an exception class is first looked up.

>>> from sluicegate import Engine
>>> engine = Engine("sluicegate.yml")          # doctest: +SKIP
>>> run = engine.sync("hubspot_contacts")      # doctest: +SKIP
>>> run["status"], run["succeeded"]            # doctest: +SKIP
('completed', {'adds': 10000, 'changes': 0, 'removes': 0})
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "ChangeCounts",
    "ConfigError",
    "DestinationError",
    "Engine",
    "Rejection",
    "Run",
    "RunNotFoundError",
    "RunStateError",
    "RunStatus",
    "SluicegateError",
    "SourceError",
    "StoreError",
    "SyncInfo",
    "SyncNotFoundError",
    "__version__",
]

# Public name -> module that defines it. Resolved on first access by __getattr__ below.
_LAZY: dict[str, str] = {
    "Engine": "sluicegate.engine",
    "SluicegateError": "sluicegate.exceptions",
    "ConfigError": "sluicegate.exceptions",
    "SourceError": "sluicegate.exceptions",
    "DestinationError": "sluicegate.exceptions",
    "StoreError": "sluicegate.exceptions",
    "RunNotFoundError": "sluicegate.exceptions",
    "RunStateError": "sluicegate.exceptions",
    "SyncNotFoundError": "sluicegate.exceptions",
    "ChangeCounts": "sluicegate.types",
    "Rejection": "sluicegate.types",
    "Run": "sluicegate.types",
    "RunStatus": "sluicegate.types",
    "SyncInfo": "sluicegate.types",
}

if TYPE_CHECKING:
    from sluicegate.engine import Engine
    from sluicegate.exceptions import (
        ConfigError,
        DestinationError,
        RunNotFoundError,
        RunStateError,
        SluicegateError,
        SourceError,
        StoreError,
        SyncNotFoundError,
    )
    from sluicegate.types import ChangeCounts, Rejection, Run, RunStatus, SyncInfo

    __version__: str


def _distribution_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("sluicegate")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _distribution_version()
    elif name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'sluicegate' has no attribute {name!r}")
    globals()[name] = value  # cache: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
