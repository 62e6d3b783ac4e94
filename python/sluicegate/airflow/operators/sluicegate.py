"""Airflow operator that triggers a sluicegate sync and runs it inside the task."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sluicegate.airflow._compat import AirflowException, BaseOperator, default_deferrable
from sluicegate.airflow._util import (
    check_rejection_limits,
    counts_of,
    failure_message,
    parse_bool,
    parse_sync_ref,
    rejection_problem,
    summarize,
)
from sluicegate.airflow.hooks.sluicegate import SluicegateHook

if TYPE_CHECKING:
    from airflow.sdk import Context

    from sluicegate.engine import Engine
    from sluicegate.types import Run

__all__ = ["SyncOperator"]

NOT_DEFERRABLE_IN_TASK = (
    "SyncOperator(deferrable=True) cannot release the worker slot: in embedded mode the sync "
    "runs inside this task, so the task is busy for as long as data moves. Leave deferrable "
    "unset (or False) here; to wait on a run without holding a slot, use "
    "SyncSensor(deferrable=True) on a run triggered elsewhere. Deferring the operator itself "
    "needs a sluicegate server to run the sync (remote mode), which this version does not "
    "offer yet."
)
NO_WAIT_IN_TASK = (
    "SyncOperator(wait_for_completion=False) would queue a run that nothing executes: in "
    "embedded mode the sync runs inside this task. Leave wait_for_completion=True; returning "
    "at once needs a sluicegate server to run the sync (remote mode), which this version does "
    "not offer yet."
)


class SyncOperator(BaseOperator):
    """Trigger a run of a sync and execute it in this task (embedded mode).

    The task succeeds when the run completes and fails, with the run's error message, when the
    run fails. Sync state advances only on destination acknowledgement, so retrying a failed
    task sends only what was not delivered.

    The run executes in a thread of the task process while the task's main thread watches it:
    killing the task (``on_kill``: marked failed in the UI, SIGTERM, ``execution_timeout``) or
    reaching ``timeout`` cancels the run. The engine executing the run is in this process, so
    the run stops at once, after the batches in flight are answered and committed; it ends
    ``failed`` with ``canceled: true`` and the next run sends the rest. (A cancel from another
    process, e.g. ``sluicegate cancel``, is seen at the run's next heartbeat: a third of
    ``SLUICEGATE_LEASE``, 60 s by default.)

    XCom:

    * ``sync_run_id``: the run id, pushed as soon as the run is queued (present even when the
      run then fails);
    * ``counts``: the run's count fields (Census names plus ``planned``/``succeeded``/``failed``
      by adds, changes and removes);
    * ``return_value``: the run id, for ``SyncSensor`` or any downstream task.

    :param sync_id: the sync's id (or, for compatibility, its name). Templated; a rendered
        string of digits is taken as an id.
    :param sync_name: the sync's name in the project file, instead of ``sync_id``. Templated.
    :param sluicegate_conn_id: Airflow connection of type ``sluicegate``. Templated.
    :param full_resync: resend every row instead of only what changed since the last
        acknowledged delivery. Templated (``"true"``/``"false"`` are understood).
        ``full_sync`` is accepted as another name for it.
    :param wait_for_completion: wait for the run to end (the default, and the only choice in
        embedded mode, where this task executes the run).
    :param deferrable: release the worker slot while waiting. Defaults to Airflow's
        ``[operators] default_deferrable``. In embedded mode the sync runs in this task, so
        there is nothing to defer: an explicit ``deferrable=True`` is refused when the DAG is
        parsed, and ``default_deferrable = True`` is noted in the log and otherwise ignored.
    :param timeout: seconds (or a ``timedelta``) the run may take; past it the run is canceled
        and the task fails. ``None``: no limit (Airflow's ``execution_timeout`` still applies).
    :param poll_interval: seconds between progress lines in the log while the run works.
    :param max_rejected_records: fail when more rows than this were not delivered (rejected by
        the destination or invalid), although the run completed. ``None``: no limit.
    :param max_rejected_share: the same as a share (0 to 1) of the rows the run had to deliver.
    """

    template_fields: Sequence[str] = ("sync_id", "sync_name", "sluicegate_conn_id", "full_resync")
    ui_color = "#cfe8f3"

    #: Seconds to wait, after a cancel request, for the run to record that it was canceled.
    cancel_wait: float = 120.0

    def __init__(
        self,
        *,
        sync_id: int | str | None = None,
        sync_name: str | None = None,
        sluicegate_conn_id: str = SluicegateHook.default_conn_name,
        full_resync: bool | str = False,
        full_sync: bool | None = None,
        wait_for_completion: bool = True,
        deferrable: bool | None = None,
        timeout: float | timedelta | None = None,
        poll_interval: float | timedelta = 30,
        max_rejected_records: int | None = None,
        max_rejected_share: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (sync_id is None) == (sync_name is None):
            raise ValueError(
                "SyncOperator needs exactly one of sync_id (the sync's id) or sync_name (its name "
                f"in the project file); got sync_id={sync_id!r}, sync_name={sync_name!r}"
            )
        if full_sync is not None:
            if full_resync not in (False, full_sync):
                raise ValueError("full_sync is another name for full_resync: give only one")
            full_resync = full_sync
        if not wait_for_completion:
            raise ValueError(NO_WAIT_IN_TASK)
        if deferrable:
            raise ValueError(NOT_DEFERRABLE_IN_TASK)
        self.sync_id = sync_id
        self.sync_name = sync_name
        self.sluicegate_conn_id = sluicegate_conn_id
        self.full_resync = full_resync
        self.wait_for_completion = True
        self.deferrable = default_deferrable() if deferrable is None else False
        self.timeout = _seconds(timeout, "timeout")
        self.poll_interval = _seconds(poll_interval, "poll_interval") or 30.0
        self.max_rejected_records = check_rejection_limits(
            max_rejected_records, "max_rejected_records", share=False
        )
        self.max_rejected_share = check_rejection_limits(
            max_rejected_share, "max_rejected_share", share=True
        )
        # The run this task executes, for on_kill (set during execute).
        self._engine: Engine | None = None
        self._run_id: int | None = None
        self._ended: threading.Event | None = None
        self._cancel_requested = False

    @property
    def full_sync(self) -> bool | str:
        """The engine's name for :attr:`full_resync`."""
        return self.full_resync

    def _sync(self) -> int | str:
        try:
            if self.sync_name is not None:
                name = str(self.sync_name).strip()
                if not name:
                    raise ValueError(f"sync_name must be a sync's name, got {self.sync_name!r}")
                return name
            return parse_sync_ref(self.sync_id)
        except ValueError as err:
            raise AirflowException(str(err)) from err

    def execute(self, context: Context) -> int:
        sync = self._sync()
        try:
            full = parse_bool(self.full_resync, "full_resync")
        except ValueError as err:
            raise AirflowException(str(err)) from err
        if self.deferrable:
            self.log.info(
                "[operators] default_deferrable is on, but in embedded mode the sync runs in "
                "this task: nothing to defer"
            )
        engine = SluicegateHook(sluicegate_conn_id=self.sluicegate_conn_id).get_engine()

        ti = context["ti"]
        run_id = engine.trigger(sync, full_sync=full, reason=_reason(ti))
        ti.xcom_push(key="sync_run_id", value=run_id)
        self.log.info(
            "Triggered %ssync %r: run %d; running it in this task",
            "full " if full else "",
            sync,
            run_id,
        )

        run = self._run_and_watch(engine, run_id)
        ti.xcom_push(key="counts", value=counts_of(run))
        self.log.info("%s", summarize(run))

        status = run.get("status")
        if status == "failed":
            raise AirflowException(failure_message(run))
        if status != "completed":
            raise AirflowException(
                f"sync run {run_id} returned with status {status!r}; expected completed or failed"
            )
        problem = rejection_problem(run, self.max_rejected_records, self.max_rejected_share)
        if problem:
            raise AirflowException(problem)
        return run_id

    def _run_and_watch(self, engine: Engine, run_id: int) -> Run:
        """Execute the run in a thread; cancel it on timeout, kill or interruption."""
        outcome: dict[str, Any] = {}
        # Watched through an Event, not Thread.join(): on CPython 3.11 a join() interrupted by
        # an exception from a signal handler marks the still-running thread as stopped.
        ended = threading.Event()

        def work() -> None:
            try:
                outcome["run"] = engine.run(run_id)
            except BaseException as err:  # handed to the task's thread below
                outcome["error"] = err
            finally:
                ended.set()

        # Daemon: if the process is torn down while the run is still stopping, the thread must
        # not hold the exit up; the run's lease then expires and it is failed as executor lost.
        runner = threading.Thread(target=work, name=f"sluicegate-run-{run_id}", daemon=True)
        self._engine, self._run_id, self._ended = engine, run_id, ended
        self._cancel_requested = False
        started = time.monotonic()
        runner.start()
        timed_out = False
        try:
            while not ended.is_set():
                wait = self.poll_interval
                if self.timeout is not None:
                    left = started + self.timeout - time.monotonic()
                    if left <= 0:
                        timed_out = True
                        break
                    wait = min(wait, left)
                # Signal handlers (on_kill, Airflow's timeouts) run during this wait.
                if not ended.wait(wait):
                    self._log_progress(engine, run_id)
        except BaseException:
            # execution_timeout (AirflowTaskTimeout), SIGTERM on Airflow 2 (AirflowTaskTerminated),
            # Ctrl-C: the task is ending, so the run must not go on without it.
            self._cancel_and_wait(engine, run_id, ended, "the task was interrupted")
            raise
        if timed_out:
            self._cancel_and_wait(
                engine, run_id, ended, f"it did not finish within timeout={self.timeout:g}s"
            )
            run = engine.get_run(run_id)
            raise AirflowException(
                f"sync run {run_id} did not finish within timeout={self.timeout:g}s and was "
                f"canceled ({run.get('status')}"
                f"{', canceled' if run.get('canceled') else ', cancel still pending'}): "
                f"{failure_message(run)}"
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome["run"]

    def _log_progress(self, engine: Engine, run_id: int) -> None:
        try:
            run = engine.get_run(run_id)
        except Exception as err:  # progress lines are a courtesy; the run goes on
            self.log.warning("could not read the progress of sync run %d: %s", run_id, err)
            return
        self.log.info(
            "sync run %d is %s: %s; %s of %s planned records delivered",
            run_id,
            run.get("status"),
            run.get("current_step") or "-",
            run.get("records_updated") or 0,
            sum((run.get("planned") or {}).values()),
        )

    def _request_cancel(self, engine: Engine, run_id: int, why: str) -> None:
        if self._cancel_requested:
            return
        self._cancel_requested = True
        self.log.warning("Canceling sync run %d: %s", run_id, why)
        try:
            engine.cancel(run_id)
        except Exception as err:  # e.g. RunStateError: it ended in the meantime
            self.log.info("sync run %d was not canceled: %s", run_id, err)

    def _cancel_and_wait(
        self, engine: Engine, run_id: int, ended: threading.Event, why: str
    ) -> None:
        if ended.is_set():
            return
        self._request_cancel(engine, run_id, why)
        if not ended.wait(self.cancel_wait):
            self.log.warning(
                "sync run %d did not stop within %gs of the cancel request; it stops after the "
                "batch in flight, or is failed as 'executor lost' once this process is gone",
                run_id,
                self.cancel_wait,
            )

    def on_kill(self) -> None:
        """Cancel the run this task is executing (Airflow calls this when the task is killed)."""
        engine, run_id, ended = self._engine, self._run_id, self._ended
        if engine is None or run_id is None or ended is None or ended.is_set():
            return
        # Only ask: on_kill runs in a signal handler of the task's main thread, which goes back
        # to watching the run and reports it as canceled once it stopped.
        self._request_cancel(engine, run_id, "the task was killed")


def _seconds(value: float | timedelta | None, name: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds or a timedelta, got {value!r}")
    return float(seconds)


def _reason(ti: Any) -> str:
    """What the run record's ``sync_trigger_reason.ui_detail`` says about this task."""
    dag_id, task_id, run_id, try_number = (
        getattr(ti, name, "?") for name in ("dag_id", "task_id", "run_id", "try_number")
    )
    return f"Airflow task {dag_id}.{task_id}, DAG run {run_id}, try {try_number}"
