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
    if run.get("canceled") and not str(reason or "").lower().startswith("cancel"):
        reason = f"canceled{': ' + str(reason) if reason else ''}"
    return f"sync run {run.get('id')} failed: {reason or 'no error message recorded'}"


def rejected_rows(run: Mapping[str, Any]) -> tuple[int, int]:
    """``(rows not delivered, rows the run had to deliver)``.

    Not delivered: rows the destination rejected (``records_failed``) plus rows that were
    invalid before sending (``records_invalid``); they are what ``Engine.rejections()`` lists
    and what the next run retries. The rows the run had to deliver are those it sent
    (``records_processed``) plus the invalid ones.
    """
    failed = int(run.get("records_failed") or 0)
    invalid = int(run.get("records_invalid") or 0)
    processed = int(run.get("records_processed") or 0)
    return failed + invalid, processed + invalid


def check_rejection_limits(value: object, name: str, *, share: bool) -> float | int | None:
    """Validate ``max_rejected_records`` (a count >= 0) or ``max_rejected_share`` (0 to 1)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if share:
        if not 0 <= value <= 1:
            raise ValueError(
                f"{name} is a share of the rows a run had to deliver, between 0 and 1 "
                f"(e.g. 0.01 for 1%), got {value!r}"
            )
        return float(value)
    if value < 0 or int(value) != value:
        raise ValueError(f"{name} must be a whole number of rows >= 0, got {value!r}")
    return int(value)


def rejection_problem(
    run: Mapping[str, Any], max_records: int | None, max_share: float | None
) -> str | None:
    """Why a completed run breaks the rejection limits, or None when it does not."""
    rejected, total = rejected_rows(run)
    share = rejected / total if total else 0.0
    where = (
        f"sync run {run.get('id')} completed, but {rejected} of {total} rows were not "
        f"delivered (rejected by the destination: {int(run.get('records_failed') or 0)}, "
        f"invalid: {int(run.get('records_invalid') or 0)})"
    )
    hint = "; list them with Engine.rejections(run_id) or `sluicegate rejections`"
    if max_records is not None and rejected > max_records:
        return f"{where}, more than max_rejected_records={max_records}{hint}"
    if max_share is not None and share > max_share:
        return f"{where}, a share of {share:.2%}, above max_rejected_share={max_share:.2%}{hint}"
    return None


# The run fields a trigger event carries (JSON-serializable, no secrets: counts and errors).
EVENT_RUN_FIELDS: tuple[str, ...] = (
    "id",
    "sync_id",
    "sync_name",
    "status",
    "canceled",
    "full_sync",
    "error_code",
    "error_message",
    "error_detail",
    "completed_at",
    *COUNT_FIELDS,
)


def run_for_event(run: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run record a trigger event (or an XCom) carries."""
    return {field: run.get(field) for field in EVENT_RUN_FIELDS}


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


def parse_bool(value: object, name: str) -> bool:
    """A flag that may arrive rendered from a template (``"True"``, ``"false"``, ``"1"``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be true or false, got {value!r}")
