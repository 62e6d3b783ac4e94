"""Airflow sensor that waits for a sluicegate sync run to complete."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sluicegate.airflow._compat import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    default_deferrable,
)
from sluicegate.airflow._util import (
    check_rejection_limits,
    failure_message,
    parse_run_id,
    rejection_problem,
    summarize,
)
from sluicegate.airflow.hooks.sluicegate import EMBEDDED, SluicegateHook

if TYPE_CHECKING:
    from airflow.sdk import Context

    from sluicegate.airflow._api import ApiClient
    from sluicegate.engine import Engine

__all__ = ["SyncSensor"]

_PENDING = frozenset({"queued", "working"})
#: Consecutive failed reads of a remote run (no answer, 429, 5xx) tolerated before failing.
MAX_READ_FAILURES = 5


class SyncSensor(BaseSensorOperator):
    """Wait until a sync run is ``completed``; fail as soon as it is ``failed``.

    Reads the run from the state store the connection points at (embedded mode: no server
    needed), or with ``GET /sync_runs/{id}`` from the sluicegate server or Fivetran Activations
    the connection's host names (remote and Census modes).

    :param sync_run_id: the run to wait for. Templated; usually
        ``"{{ ti.xcom_pull(task_ids='<SyncOperator task>') }}"``, which renders as a string.
    :param sluicegate_conn_id: Airflow connection of type ``sluicegate``. Templated.
    :param poke_interval: seconds between checks (default 30).
    :param mode: ``"poke"`` keeps the worker slot between checks; ``"reschedule"`` gives it
        back and comes back after ``poke_interval``.
    :param deferrable: check once, then hand the wait to
        :class:`~sluicegate.airflow.triggers.sluicegate.SyncRunTrigger` in the triggerer, which
        frees the worker slot until the run ends. Defaults to Airflow's
        ``[operators] default_deferrable``.
    :param max_rejected_records: fail when more rows than this were not delivered (rejected
        by the destination or invalid), although the run completed. ``None``: no limit.
    :param max_rejected_share: the same as a share of the rows the run had to deliver,
        between 0 and 1 (``0.01``: fail above 1%). ``None``: no limit.

    A status other than ``queued``, ``working``, ``completed`` or ``failed`` fails the task
    rather than waiting on something the sensor does not understand. The sensor's ``timeout``
    (seconds, Airflow's default 7 days) applies in every mode; with ``soft_fail=True`` a
    timeout skips the task instead of failing it.
    """

    template_fields: Sequence[str] = ("sync_run_id", "sluicegate_conn_id")
    ui_color = "#e3f1f8"

    def __init__(
        self,
        *,
        sync_run_id: int | str,
        sluicegate_conn_id: str = SluicegateHook.default_conn_name,
        poke_interval: float | timedelta = 30,
        deferrable: bool | None = None,
        max_rejected_records: int | None = None,
        max_rejected_share: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.sync_run_id = sync_run_id
        self.sluicegate_conn_id = sluicegate_conn_id
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)
        self.max_rejected_records = check_rejection_limits(
            max_rejected_records, "max_rejected_records", share=False
        )
        self.max_rejected_share = check_rejection_limits(
            max_rejected_share, "max_rejected_share", share=True
        )
        self._engine: Engine | None = None
        self._client: ApiClient | None = None
        self._mode: str | None = None
        #: Consecutive failed reads of a remote run (a poke that fails is retried at the next).
        self._read_failures = 0

    def _run_id(self) -> int:
        try:
            return parse_run_id(self.sync_run_id)
        except ValueError as err:
            raise AirflowException(str(err)) from err

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        # Deferrable: a run that already ended is answered here, without a trip through the
        # triggerer; otherwise the wait moves there and this worker slot is released.
        if self.poke(context):
            return None
        from sluicegate.airflow.triggers.sluicegate import SyncRunTrigger

        timeout = _seconds(self.timeout)
        self.defer(
            trigger=SyncRunTrigger(
                sync_run_id=self._run_id(),
                sluicegate_conn_id=self.sluicegate_conn_id,
                poll_interval=self._trigger_poll_interval(),
                end_time=None if timeout is None else time.time() + timeout,
            ),
            method_name="execute_complete",
        )
        return None  # not reached: defer() raises

    def _trigger_poll_interval(self) -> float:
        """Seconds between the trigger's checks when the wait is deferred."""
        return _seconds(self.poke_interval) or 30.0

    def poke(self, context: Context) -> bool:
        run_id = self._run_id()
        run = self._read(run_id)
        if run is None:
            return False
        status = run.get("status")
        if status == "completed":
            self._finish(run)
            return True
        if status in _PENDING:
            self.log.info("sync run %d is %s", run_id, status)
            return False
        if status == "failed":
            raise AirflowException(failure_message(run))
        raise AirflowException(
            f"sync run {run_id} has status {status!r}, which this sensor does not know; "
            "expected queued, working, completed or failed"
        )

    def _read(self, run_id: int) -> Any:
        """The run, from the store or the API; None when a remote read failed transiently."""
        if self._mode is None:
            hook = SluicegateHook(sluicegate_conn_id=self.sluicegate_conn_id)
            self._mode = hook.get_mode()
            # One engine or client per task process, reused across pokes.
            if self._mode == EMBEDDED:
                self._engine = hook.get_engine()
            else:
                self._client = hook.get_client()
        if self._client is None:
            assert self._engine is not None
            return self._engine.get_run(run_id)
        from sluicegate.airflow._api import ApiError

        try:
            run = self._client.get_run(run_id)
        except ApiError as err:
            self._read_failures += 1
            if not err.transient or self._read_failures >= MAX_READ_FAILURES:
                raise
            self.log.warning("reading sync run %d failed (will retry): %s", run_id, err)
            return None
        self._read_failures = 0
        return run

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> None:
        """Resume after :class:`SyncRunTrigger` fired: succeed, fail or time out as it says."""
        if not isinstance(event, Mapping):
            raise AirflowException(f"SyncRunTrigger sent no usable event: {event!r}")
        status = event.get("status")
        run = event.get("run") or {}
        run_id = event.get("sync_run_id", self.sync_run_id)
        if status == "completed":
            self._finish(run)
            return
        if status == "failed":
            raise AirflowException(failure_message(run))
        if status == "timeout":
            message = f"{event.get('message') or f'sync run {run_id} did not end in time'} ({self.timeout}s)"
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        if status == "error":
            raise AirflowException(str(event.get("message") or f"following sync run {run_id} failed"))
        raise AirflowException(
            f"SyncRunTrigger sent an event with status {status!r} for sync run {run_id}, which "
            "this sensor does not know; expected completed, failed, timeout or error"
        )

    def _finish(self, run: Mapping[str, Any]) -> None:
        self.log.info("%s", summarize(run))
        problem = rejection_problem(run, self.max_rejected_records, self.max_rejected_share)
        if problem:
            raise AirflowException(problem)


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)
