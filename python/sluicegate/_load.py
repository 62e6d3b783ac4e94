"""Loads the compiled engine on first use (kept out of module import time on purpose)."""

from __future__ import annotations

from types import ModuleType


def load_core() -> ModuleType:
    """Import ``sluicegate._core`` with an actionable message when it is missing or broken."""
    try:
        from sluicegate import _core
    except ImportError as err:
        raise ImportError(
            f"sluicegate's compiled engine (sluicegate._core) could not be imported: {err}. "
            "Install a sluicegate wheel, or build the extension from a checkout with "
            "`maturin develop`.",
            name="sluicegate._core",
        ) from err
    return _core
