"""Shapes of the values the engine returns.

These are plain ``dict`` objects at runtime (the extension builds them); the ``TypedDict``
classes below only describe them to type checkers. Importing this module is free: it imports
nothing from the extension.

Field names follow the Census / Fivetran Activations sync-run object, so code written against
the Census API reads our runs unchanged.
"""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = [
    "CENSUS_COUNT_FIELDS",
    "COUNT_FIELDS",
    "TERMINAL_STATUSES",
    "ChangeCounts",
    "Rejection",
    "Run",
    "RunStatus",
    "SourceObject",
    "SyncInfo",
    "SyncTriggerReason",
]

RunStatus = Literal["queued", "working", "completed", "failed"]
"""Life cycle of a run: ``queued -> working -> completed | failed``.

A cancelled run is ``failed`` with ``canceled: True``.
"""

TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed"})


class ChangeCounts(TypedDict):
    """Rows by kind of change (used for ``planned``, ``succeeded`` and ``failed``)."""

    adds: int
    changes: int
    removes: int


class SyncTriggerReason(TypedDict):
    """Who or what triggered a run (Census ``sync_trigger_reason``)."""

    ui_tag: str
    ui_detail: str


class Run(TypedDict):
    """One sync run, as stored in the state store.

    Timestamps are ISO 8601 strings in UTC. Counts are ``None`` until the run has produced them.
    """

    id: int
    sync_id: int
    sync_name: str
    status: RunStatus
    created_at: str
    updated_at: str
    started_at: str | None
    completed_at: str | None
    scheduled_execution_time: str | None
    error_code: str | None
    error_message: str | None
    error_detail: str | None
    canceled: bool
    full_sync: bool
    sync_trigger_reason: SyncTriggerReason
    current_step: str | None
    source_record_count: int | None
    source_record_updates: int | None
    source_record_deletes: int | None
    source_record_invalids: int | None
    records_invalid: int | None
    records_processed: int | None
    records_updated: int | None
    records_failed: int | None
    planned: ChangeCounts
    succeeded: ChangeCounts
    failed: ChangeCounts


class SyncInfo(TypedDict):
    """One sync declared in the project file (``Engine.syncs()``)."""

    id: int
    name: str
    source: str
    destination: str
    object: str | None
    behavior: str
    #: The source's URL without user, password or query (``postgres://db:5432/analytics``).
    source_url: str | None
    #: What the sync reads: ``{"type": "table" | "dbt_model" | "query", "name": ...}``.
    source_object: SourceObject
    #: The destination's type (``hubspot``, ``webhook``, ...).
    destination_type: str | None


class SourceObject(TypedDict):
    """The relation a sync reads (``name`` is ``None`` for a ``query``)."""

    type: Literal["table", "dbt_model", "query"]
    name: str | None


class Rejection(TypedDict):
    """A row a run did not deliver (``Engine.rejections()``), and why."""

    identifier: str | None
    kind: Literal["invalid", "rejected"]
    operation: str
    reason: str
    payload: str | None  # the mapped record as JSON text, when there is one


CENSUS_COUNT_FIELDS: tuple[str, ...] = (
    "source_record_count",
    "source_record_updates",
    "source_record_deletes",
    "source_record_invalids",
    "records_invalid",
    "records_processed",
    "records_updated",
    "records_failed",
)
"""The count fields of a Census sync-run object."""

COUNT_FIELDS: tuple[str, ...] = (*CENSUS_COUNT_FIELDS, "planned", "succeeded", "failed")
"""Census count fields plus our per-change-kind counts."""
