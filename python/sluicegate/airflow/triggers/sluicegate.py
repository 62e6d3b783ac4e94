"""Airflow trigger that waits for a sluicegate sync run in the triggerer, without a worker slot.

:class:`SyncRunTrigger` is what ``SyncSensor(deferrable=True)`` and, in remote mode,
``SyncOperator(deferrable=True)`` hand the wait to. Its :meth:`~SyncRunTrigger.run` reads the
run without ever blocking the triggerer's event loop:

* embedded connection: from the state store, through the engine's async bridge
  (``Engine.get_run_async``), on the engine's own threads;
* remote or Census connection: ``GET /sync_runs/{id}`` with ``httpx.AsyncClient``.

Events (``TriggerEvent.payload``), one per trigger, always JSON:

* ``{"status": "completed" | "failed", "sync_run_id": N, "run": {...}}``: the run ended;
  ``run`` holds its status, ``canceled``, error fields and counts (``run_for_event``).
* ``{"status": "timeout", "sync_run_id": N, "message": ..., "run": {...}}``: ``end_time``
  passed while the run was still queued or working.
* ``{"status": "error", "sync_run_id": N, "message": ...}``: the run cannot be followed (a
  status this version does not know, no such run, the store failing repeatedly). The waiting
  task fails with the message: unknown means failed, never "still running".

:class:`SyncResumeTrigger` is what an embedded ``SyncOperator(deferrable=True)`` defers to
when its run yielded to the destination's rate limit: it waits until the run may resume, then
fires ``{"status": "resume", "sync_run_id": N, "started": T}``, and the task claims the run
again (``started``: the task's first start, Unix time, which its ``timeout`` counts from).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from sluicegate.airflow._util import run_for_event, summarize
from sluicegate.airflow.hooks.sluicegate import EMBEDDED, SluicegateHook

__all__ = ["SyncResumeTrigger", "SyncRunTrigger"]

_PENDING = frozenset({"queued", "working"})
_TERMINAL = frozenset({"completed", "failed"})
#: Consecutive failed reads of the run (state store unreachable, ...) tolerated before the
#: trigger gives up with an ``error`` event.
MAX_READ_FAILURES = 3


class SyncRunTrigger(BaseTrigger):
    """Poll a sync run until it is ``completed`` or ``failed``, then fire one event.

    :param sync_run_id: the run to wait for.
    :param sluicegate_conn_id: Airflow connection of type ``sluicegate``.
    :param poll_interval: seconds between reads of the run.
    :param end_time: give up (``timeout`` event) at this Unix time; ``None``: never.
    """

    def __init__(
        self,
        sync_run_id: int,
        sluicegate_conn_id: str = SluicegateHook.default_conn_name,
        poll_interval: float = 30.0,
        end_time: float | None = None,
    ) -> None:
        super().__init__()
        self.sync_run_id = int(sync_run_id)
        self.sluicegate_conn_id = sluicegate_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = None if end_time is None else float(end_time)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "sync_run_id": self.sync_run_id,
                "sluicegate_conn_id": self.sluicegate_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
            },
        )

    def _event(self, status: str, **fields: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "sync_run_id": self.sync_run_id, **fields})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        run_id = self.sync_run_id
        hook = SluicegateHook(sluicegate_conn_id=self.sluicegate_conn_id)
        http = None
        try:
            missing: tuple[type[BaseException], ...] = ()
            if await hook.aget_mode() == EMBEDDED:
                from sluicegate.exceptions import RunNotFoundError

                engine = await hook.aget_engine()
                read = engine.get_run_async
                missing = (RunNotFoundError,)
            else:
                client = await hook.aget_client()
                http = client.async_http()

                async def read(run_id: int) -> Any:
                    return await client.aget_run(run_id, http)

        except Exception as err:
            yield self._event(
                "error", message=f"cannot follow sync run {run_id} through connection "
                f"{self.sluicegate_conn_id!r}: {err}"
            )
            return
        try:
            async for event in self._poll(read, missing):
                yield event
                return
        finally:
            if http is not None:
                await http.aclose()

    async def _poll(
        self, read: Any, missing: tuple[type[BaseException], ...]
    ) -> AsyncIterator[TriggerEvent]:
        """Read the run every poll_interval until it ends; yield the one event. ``missing``:
        the exceptions that mean "no such run" (besides an API's 404)."""
        from sluicegate.airflow._api import ApiError

        run_id = self.sync_run_id
        failures = 0
        last_run: dict[str, Any] | None = None
        last_status = None
        while True:
            try:
                run = await read(run_id)
            except Exception as err:
                if isinstance(err, missing) or (
                    isinstance(err, ApiError) and err.status == 404
                ):
                    yield self._event("error", message=f"sync run {run_id} does not exist: {err}")
                    return
                if isinstance(err, ApiError) and not err.transient:  # 401, 403, 400: final
                    yield self._event("error", message=f"cannot read sync run {run_id}: {err}")
                    return
                failures += 1
                if failures >= MAX_READ_FAILURES:
                    yield self._event(
                        "error",
                        message=f"cannot read sync run {run_id} ({failures} attempts in a row): {err}",
                    )
                    return
                self.log.warning("reading sync run %d failed (will retry): %s", run_id, err)
            else:
                failures = 0
                last_run = run_for_event(run)
                status = run.get("status")
                if status in _TERMINAL:
                    self.log.info("%s", summarize(run))
                    yield self._event(str(status), run=last_run)
                    return
                if status not in _PENDING:
                    yield self._event(
                        "error",
                        message=(
                            f"sync run {run_id} has status {status!r}, which this version of "
                            "sluicegate's trigger does not know; expected queued, working, "
                            "completed or failed. Failing rather than waiting on it: upgrade the "
                            "sluicegate package on the triggerer to match the engine."
                        ),
                        run=last_run,
                    )
                    return
                if status != last_status:
                    self.log.info("sync run %d is %s", run_id, status)
                    last_status = status

            delay = self.poll_interval
            if self.end_time is not None:
                left = self.end_time - time.time()
                if left <= 0:
                    yield self._event(
                        "timeout",
                        message=f"sync run {run_id} was still {last_status or 'unread'} when the "
                        "wait timed out",
                        run=last_run,
                    )
                    return
                delay = min(delay, left)
            await asyncio.sleep(delay)


class SyncResumeTrigger(BaseTrigger):
    """Wait until ``moment`` (Unix time), then fire ``{"status": "resume", "sync_run_id": N,
    "started": T}``.

    The run is queued meanwhile (it yielded to the destination's rate limit; nothing holds it).
    Killing the deferred task (mark failed, clear: Airflow 3's ``BaseTrigger.on_kill``) cancels
    that queued run, so it does not stay queued with no task to run it.

    :param sync_run_id: the yielded run.
    :param moment: Unix time at which the run may resume.
    :param sluicegate_conn_id: the embedded connection the run's state store is read through.
    :param started: passed back in the event: when the task first started (Unix time).
    """

    def __init__(
        self,
        sync_run_id: int,
        moment: float,
        sluicegate_conn_id: str = SluicegateHook.default_conn_name,
        started: float | None = None,
    ) -> None:
        super().__init__()
        self.sync_run_id = int(sync_run_id)
        self.moment = float(moment)
        self.sluicegate_conn_id = sluicegate_conn_id
        self.started = None if started is None else float(started)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "sync_run_id": self.sync_run_id,
                "moment": self.moment,
                "sluicegate_conn_id": self.sluicegate_conn_id,
                "started": self.started,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Short sleeps: a clock that jumps does not hold the run back for long.
        while (left := self.moment - time.time()) > 0:
            await asyncio.sleep(min(left, 10.0))
        yield TriggerEvent(
            {"status": "resume", "sync_run_id": self.sync_run_id, "started": self.started}
        )

    async def on_kill(self) -> None:
        """Cancel the queued run (Airflow 3 calls this when a user kills the deferred task)."""
        hook = SluicegateHook(sluicegate_conn_id=self.sluicegate_conn_id)
        try:
            engine = await hook.aget_engine()
            await asyncio.to_thread(engine.cancel, self.sync_run_id)
            self.log.warning("the task was killed while deferred: sync run %d canceled", self.sync_run_id)
        except Exception as err:  # e.g. RunStateError: it ended meanwhile
            self.log.info("sync run %d was not canceled: %s", self.sync_run_id, err)
