"""Airflow operator that triggers a sluicegate sync: runs it inside the task (embedded mode) or
has a sluicegate server or Fivetran Activations run it (remote and Census modes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
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
from sluicegate.airflow.hooks.sluicegate import EMBEDDED, SluicegateHook
from sluicegate.airflow.links import XCOM_RUN_URL, SyncRunLink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from sluicegate.airflow._api import ApiClient
    from sluicegate.engine import Engine, RunResult

__all__ = ["SyncOperator"]

NO_WAIT_IN_TASK = (
    "SyncOperator(wait_for_completion=False) would queue a run that nothing executes: "
    "connection {conn!r} has no host, so syncs run inside the task (embedded mode). Leave "
    "wait_for_completion=True, or point the connection at a sluicegate server (host "
    "http(s)://..., password: its API token), which executes the run while the task returns."
)
#: Statuses of a run still under way (anything else but completed/failed fails closed).
_PENDING = frozenset({"queued", "working"})
#: Consecutive failed reads of a remote run tolerated before the task fails.
MAX_READ_FAILURES = 5
#: Default of ``yield_when_throttled``: an in-task deferrable run gives its worker slot back
#: when the destination's rate limit would hold it back at least this many seconds.
DEFAULT_YIELD_WHEN_THROTTLED = 30.0


class SyncOperator(BaseOperator):
    """Trigger a run of a sync, and execute it in this task or have a server execute it.

    The connection decides (see :class:`~sluicegate.airflow.hooks.sluicegate.SluicegateHook`):

    * **embedded** (no host): the run executes in this task, as described below;
    * **remote / Census** (host ``http(s)://``): ``POST /syncs/{id}/trigger`` on a sluicegate
      server or on Fivetran Activations, which execute the run. With
      ``wait_for_completion=False`` the task returns the run id at once (Census semantics; wait
      with :class:`~sluicegate.airflow.sensors.sluicegate.SyncSensor`). Otherwise it polls
      ``GET /sync_runs/{id}`` every ``poll_interval`` seconds, or, with ``deferrable=True``,
      hands the wait to :class:`~sluicegate.airflow.triggers.sluicegate.SyncRunTrigger` and
      releases the worker slot. Killing the task or reaching ``timeout`` sends
      ``POST /sync_runs/{id}/cancel``.

    In embedded mode with ``deferrable=True``, the run executes in this task until the
    destination's rate limit would hold it back for ``yield_when_throttled`` seconds or more (a
    429's ``Retry-After``, a spent rate window, the configured ``rate_limit``): then the run
    stops sending, commits what the batches in flight achieved, goes back to the queue, and the
    task defers (:class:`~sluicegate.airflow.triggers.sluicegate.SyncResumeTrigger`) until the
    wait is over, releasing its worker slot. It then claims the same run again and continues
    from the acknowledged state, as often as needed; the counts cover the whole run.

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
    * ``return_value``: the run id, for ``SyncSensor`` or any downstream task;
    * ``sync_run_url`` (remote and Census modes): the run's page, also the task's extra link
      "Sync run".

    :param sync_id: the sync's id (or, for compatibility, its name). Templated; a rendered
        string of digits is taken as an id.
    :param sync_name: the sync's name in the project file, instead of ``sync_id``. Templated.
    :param sluicegate_conn_id: Airflow connection of type ``sluicegate``. Templated.
    :param full_resync: resend every row instead of only what changed since the last
        acknowledged delivery. Templated (``"true"``/``"false"`` are understood).
        ``full_sync`` is accepted as another name for it.
    :param wait_for_completion: wait for the run to end (the default). ``False``: return the
        run id as soon as the server accepted the trigger (remote and Census modes only; in
        embedded mode this task is what executes the run, and the task fails saying so).
    :param deferrable: release the worker slot while waiting. Defaults to Airflow's
        ``[operators] default_deferrable``. Remote and Census modes: the whole wait moves to the
        triggerer. Embedded mode: the run executes in this task, and the task defers only while
        the destination's rate limit holds the run back (see ``yield_when_throttled``).
    :param yield_when_throttled: embedded mode with ``deferrable``: seconds (or a
        ``timedelta``) of rate-limit wait from which the run yields and the task defers
        (default 30). Shorter waits are waited out in the task. Full resyncs never yield.
    :param timeout: seconds (or a ``timedelta``) the run may take, counted from the task's
        first start across deferrals; past it the run is canceled and the task fails. ``None``:
        no limit (Airflow's ``execution_timeout`` still applies).
    :param poll_interval: seconds between reads of a remote run, and between progress lines in
        the log while an embedded run works.
    :param max_rejected_records: fail when more rows than this were not delivered (rejected by
        the destination or invalid), although the run completed. ``None``: no limit.
    :param max_rejected_share: the same as a share (0 to 1) of the rows the run had to deliver.
    """

    template_fields: Sequence[str] = ("sync_id", "sync_name", "sluicegate_conn_id", "full_resync")
    ui_color = "#cfe8f3"
    operator_extra_links = (SyncRunLink(),)
    #: Embedded mode with wait_for_completion=False: refuse (SyncOperator), or run the sync in
    #: the task anyway (CensusOperator, whose contract is "trigger and return the run id").
    _embedded_runs_without_wait = False

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
        yield_when_throttled: float | timedelta = DEFAULT_YIELD_WHEN_THROTTLED,
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
        self.sync_id = sync_id
        self.sync_name = sync_name
        self.sluicegate_conn_id = sluicegate_conn_id
        self.full_resync = full_resync
        self.wait_for_completion = bool(wait_for_completion)
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)
        self.yield_when_throttled = _seconds(yield_when_throttled, "yield_when_throttled")
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
        self._client: ApiClient | None = None

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
        hook = SluicegateHook(sluicegate_conn_id=self.sluicegate_conn_id)
        if hook.get_mode() == EMBEDDED:
            return self._execute_embedded(context, hook, sync, full)
        return self._execute_remote(context, hook, sync, full)

    # ------------------------------------------------------------------ embedded mode

    def _execute_embedded(
        self, context: Context, hook: SluicegateHook, sync: int | str, full: bool
    ) -> int:
        if not self.wait_for_completion and not self._embedded_runs_without_wait:
            raise AirflowException(NO_WAIT_IN_TASK.format(conn=self.sluicegate_conn_id))
        engine = hook.get_engine()
        started = time.time()

        ti = context["ti"]
        run_id = engine.trigger(sync, full_sync=full, reason=_reason(ti))
        ti.xcom_push(key="sync_run_id", value=run_id)
        ti.xcom_push(key=XCOM_RUN_URL, value=None)  # no run page in-task: the link is empty
        self.log.info(
            "Triggered %ssync %r: run %d; running it in this task",
            "full " if full else "",
            sync,
            run_id,
        )

        return self._run_in_task(context, engine, run_id, started)

    def _run_in_task(self, context: Context, engine: Engine, run_id: int, started: float) -> int:
        """Execute the run here; when it yields to the rate limit, defer until it may resume."""
        left = None if self.timeout is None else started + self.timeout - time.time()
        run = self._run_and_watch(
            engine,
            run_id,
            yield_when_throttled=self.yield_when_throttled if self.deferrable else None,
            timeout=left,
        )
        resume_at = run.get("resume_at")
        if run.get("status") == "queued" and resume_at is not None:
            moment = resume_at.timestamp()
            if self.timeout is not None:
                moment = min(moment, started + self.timeout)
            self.log.info(
                "sync run %d yielded to the destination's rate limit after %s records; it is "
                "queued again, and this task defers until %s (its worker slot is free meanwhile)",
                run_id,
                run.get("records_updated") or 0,
                resume_at.isoformat(),
            )
            from sluicegate.airflow.triggers.sluicegate import SyncResumeTrigger

            self._run_id = None  # deferring: the task process ends, the run is queued
            self.defer(
                trigger=SyncResumeTrigger(
                    sync_run_id=run_id,
                    moment=moment,
                    sluicegate_conn_id=self.sluicegate_conn_id,
                    started=started,
                ),
                method_name="execute_resume",
            )
        return self._finish(context, run_id, run)

    def execute_resume(self, context: Context, event: Any = None) -> int:
        """Continue an embedded run that yielded to the rate limit (after
        :class:`~sluicegate.airflow.triggers.sluicegate.SyncResumeTrigger` fired with
        ``{"status": "resume", "sync_run_id": N, "started": T}``)."""
        if not isinstance(event, Mapping) or event.get("status") != "resume":
            raise AirflowException(f"SyncResumeTrigger sent no usable event: {event!r}")
        run_id = int(event["sync_run_id"])
        started = float(event.get("started") or time.time())
        engine = SluicegateHook(sluicegate_conn_id=self.sluicegate_conn_id).get_engine()
        if self.timeout is not None and time.time() >= started + self.timeout:
            self._request_cancel(engine, run_id, f"timeout={self.timeout:g}s passed while deferred")
            run = engine.get_run(run_id)
            raise AirflowException(
                f"sync run {run_id} did not finish within timeout={self.timeout:g}s and was "
                f"canceled ({run.get('status')}): {failure_message(run)}"
            )
        self.log.info("resuming sync run %d from what the destination acknowledged", run_id)
        return self._run_in_task(context, engine, run_id, started)

    def _finish(self, context: Context, run_id: int, run: Any) -> int:
        """Push the counts, log the summary, and fail as the run (or the limits) say."""
        context["ti"].xcom_push(key="counts", value=counts_of(run))
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

    # ------------------------------------------------------------------ remote and Census modes

    def _execute_remote(
        self, context: Context, hook: SluicegateHook, sync: int | str, full: bool
    ) -> int:
        client = hook.get_client()
        ti = context["ti"]
        run_id = client.trigger(sync, full_sync=full)
        ti.xcom_push(key="sync_run_id", value=run_id)
        url = client.run_url(run_id, sync)
        ti.xcom_push(key=XCOM_RUN_URL, value=url)
        self.log.info(
            "Triggered %ssync %r on %s: run %d (%s)",
            "full " if full else "",
            sync,
            client.base,
            run_id,
            url,
        )
        if not self.wait_for_completion:
            return run_id
        if self.deferrable:
            from sluicegate.airflow.triggers.sluicegate import SyncRunTrigger

            self.defer(
                trigger=SyncRunTrigger(
                    sync_run_id=run_id,
                    sluicegate_conn_id=self.sluicegate_conn_id,
                    poll_interval=self.poll_interval,
                    end_time=None if self.timeout is None else time.time() + self.timeout,
                ),
                method_name="execute_complete",
            )
        run = self._poll_remote(client, run_id)
        return self._finish(context, run_id, run)

    def _poll_remote(self, client: ApiClient, run_id: int) -> dict[str, Any]:
        """Read the run every poll_interval until it ends; cancel it on timeout or kill."""
        from sluicegate.airflow._api import ApiError

        self._client, self._run_id = client, run_id
        self._cancel_requested = False
        started = time.monotonic()
        failures = 0
        last_status = None
        try:
            while True:
                try:
                    run = client.get_run(run_id)
                except ApiError as err:
                    failures += 1
                    if not err.transient or failures >= MAX_READ_FAILURES:
                        raise
                    self.log.warning("reading sync run %d failed (will retry): %s", run_id, err)
                else:
                    failures = 0
                    status = run.get("status")
                    if status in ("completed", "failed"):
                        self._run_id = None  # ended: nothing for on_kill to cancel
                        return run
                    if status not in _PENDING:
                        self._run_id = None
                        raise AirflowException(
                            f"sync run {run_id} has status {status!r}, which this version of "
                            "sluicegate does not know; expected queued, working, completed or "
                            "failed. Failing rather than waiting on it."
                        )
                    if status != last_status:
                        self.log.info(
                            "sync run %d is %s%s",
                            run_id,
                            status,
                            f": {run['current_step']}" if run.get("current_step") else "",
                        )
                        last_status = status
                wait = self.poll_interval
                if self.timeout is not None:
                    left = started + self.timeout - time.monotonic()
                    if left <= 0:
                        self._cancel_remote(client, run_id, f"timeout={self.timeout:g}s passed")
                        raise AirflowException(
                            f"sync run {run_id} did not finish within timeout={self.timeout:g}s "
                            "and was canceled"
                        )
                    wait = min(wait, left)
                time.sleep(wait)
        except BaseException:
            # execution_timeout, SIGTERM on Airflow 2, Ctrl-C, the server no longer answering:
            # the task is ending, so the run must not go on without it (a retry of the task
            # triggers a new run, which sends whatever this one did not deliver).
            if self._run_id is not None:
                self._cancel_remote(client, run_id, "the task was interrupted")
            raise

    def _cancel_remote(self, client: ApiClient, run_id: int, why: str) -> None:
        if self._cancel_requested:
            return
        self._cancel_requested = True
        self.log.warning("Canceling sync run %d on %s: %s", run_id, client.base, why)
        try:
            client.cancel(run_id)
        except Exception as err:  # e.g. 409: it ended in the meantime
            self.log.info("sync run %d was not canceled: %s", run_id, err)

    def execute_complete(self, context: Context, event: Any = None) -> int:
        """Resume after :class:`SyncRunTrigger` fired (deferrable remote mode)."""
        if not isinstance(event, Mapping):
            raise AirflowException(f"SyncRunTrigger sent no usable event: {event!r}")
        status = event.get("status")
        run_id = int(event.get("sync_run_id") or 0)
        run = event.get("run") or {}
        if status in ("completed", "failed"):
            return self._finish(context, run_id, run)
        if status == "timeout":
            client = SluicegateHook(sluicegate_conn_id=self.sluicegate_conn_id).get_client()
            self._cancel_remote(client, run_id, f"timeout={self.timeout}s passed")
            raise AirflowException(
                f"sync run {run_id} did not finish within timeout={self.timeout}s and was canceled"
            )
        if status == "error":
            raise AirflowException(str(event.get("message") or f"following sync run {run_id} failed"))
        raise AirflowException(
            f"SyncRunTrigger sent an event with status {status!r} for sync run {run_id}, which "
            "this operator does not know; expected completed, failed, timeout or error"
        )

    # ------------------------------------------------------------------ lineage

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (when ``apache-airflow-providers-openlineage`` is installed): the table
        the sync reads as input, the destination object as output. See :meth:`lineage`."""
        try:
            from airflow.providers.common.compat.openlineage.facet import Dataset
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:
            return None
        found = self.lineage()
        if found is None:
            return OperatorLineage()
        inputs, outputs = found
        return OperatorLineage(
            inputs=[Dataset(namespace=ns, name=name) for ns, name in inputs],
            outputs=[Dataset(namespace=ns, name=name) for ns, name in outputs],
        )

    def lineage(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]] | None:
        """``(inputs, outputs)`` as OpenLineage ``(namespace, name)`` pairs, or None when the
        sync cannot be described (it reads a query, or the API did not answer).

        Embedded: from the project (source URL without credentials, table or dbt model,
        destination type and object). Remote and Census: from ``GET /syncs/{id}``.
        """
        from sluicegate.airflow._lineage import lineage_of

        try:
            return lineage_of(SluicegateHook(sluicegate_conn_id=self.sluicegate_conn_id), self._sync())
        except Exception as err:  # lineage is best effort; never fails the task
            self.log.warning("no lineage for sync %r: %s", self.sync_id or self.sync_name, err)
            return None

    def _run_and_watch(
        self,
        engine: Engine,
        run_id: int,
        *,
        yield_when_throttled: float | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Execute the run in a thread; cancel it on timeout (seconds from now), kill or
        interruption. Returns it ended, or queued with ``resume_at`` when it yielded."""
        if timeout is not None and timeout <= 0:
            timeout = 1e-3  # the deadline passed: cancel at once, below
        outcome: dict[str, Any] = {}
        # Watched through an Event, not Thread.join(): on CPython 3.11 a join() interrupted by
        # an exception from a signal handler marks the still-running thread as stopped.
        ended = threading.Event()

        def work() -> None:
            try:
                outcome["run"] = engine.run(run_id, yield_when_throttled=yield_when_throttled)
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
                if timeout is not None:
                    left = started + timeout - time.monotonic()
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
            if run.get("status") == "queued":
                # It yielded to the rate limit just as the timeout passed: cancel it queued.
                self._cancel_requested = False
                self._request_cancel(engine, run_id, "timeout passed while it yielded")
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
        """Cancel the run this task is executing or waiting for (Airflow calls this when the
        task is killed): in embedded mode through the engine, else ``POST .../cancel``."""
        if self._client is not None:
            if self._run_id is not None:
                self._cancel_remote(self._client, self._run_id, "the task was killed")
            return
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
