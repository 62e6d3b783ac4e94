"""Helpers shared by the operator and the sensor. Imports nothing from the engine."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sluicegate.types import COUNT_FIELDS

_DIGITS = re.compile(r"[0-9]+")


def parse_run_id(value: object) -> int:
    """Turn a sync run id as it arrives in a task (often a string rendered from XCom) into an int.

    Raises ``ValueError`` with a message that says what was received and why it is wrong.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value > 0:
            return value
    elif isinstance(value, str):
        text = value.strip()
        if _DIGITS.fullmatch(text) and int(text) > 0:
            return int(text)
        if text in ("", "None", "null"):
            raise ValueError(
                f"sync_run_id rendered as {value!r}: there is no run id to wait for. If it is "
                "pulled from XCom, the upstream task pushed none (check that the task id in "
                "xcom_pull is right and that the task triggered a run)."
            )
    raise ValueError(f"sync_run_id must be a positive integer run id, got {value!r}")


def parse_sync_ref(value: object) -> int | str:
    """A sync is named by id or by name; a templated id arrives as a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.fullmatch(text):
            return int(text)
        if text:
            return text
    raise ValueError(f"sync_id must be a sync id (int) or a sync name (str), got {value!r}")


def counts_of(run: Mapping[str, Any]) -> dict[str, Any]:
    """The count fields of a run (Census names plus planned/succeeded/failed by change kind)."""
    return {field: run.get(field) for field in COUNT_FIELDS}


def _kinds(counts: object) -> str:
    if not isinstance(counts, Mapping):
        return "-"
    return "{adds} adds, {changes} changes, {removes} removes".format(
        adds=counts.get("adds", 0),
        changes=counts.get("changes", 0),
        removes=counts.get("removes", 0),
    )


def summarize(run: Mapping[str, Any]) -> str:
    """One log line describing a run."""
    line = (
        f"sync run {run.get('id')} of sync {run.get('sync_id')} {run.get('status')}: "
        f"source rows {run.get('source_record_count')}; planned {_kinds(run.get('planned'))}; "
        f"succeeded {_kinds(run.get('succeeded'))}; failed {_kinds(run.get('failed'))}; "
        f"invalid {run.get('records_invalid')}"
    )
    if run.get("full_sync"):
        line += " (full sync)"
    return line


def failure_message(run: Mapping[str, Any]) -> str:
    """``sync run N failed: <error_message>``, falling back to the detail, then to the code."""
    reason = run.get("error_message") or run.get("error_detail") or run.get("error_code")
    if run.get("canceled"):
        reason = f"canceled{': ' + str(reason) if reason else ''}"
    return f"sync run {run.get('id')} failed: {reason or 'no error message recorded'}"
