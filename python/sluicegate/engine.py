"""Typed facade over the compiled engine.

:class:`Engine` is what Python code (and the Airflow operators) use to trigger and run syncs.
It is a thin wrapper over ``sluicegate._core.Engine``: the extension does the work, this class
owns the signatures, the docstrings and the types. Importing this module does not load the
extension; constructing an :class:`Engine` does.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from sluicegate import _core
    from sluicegate.types import Rejection, Run, SyncInfo

    class RunResult(Run, total=False):
        """What :meth:`Engine.run` returns: the run, plus ``resume_at`` when it yielded."""

        #: Set only when the run yielded (``status == "queued"``): when to run it again (UTC).
        resume_at: datetime

__all__ = ["Engine"]


class Engine:
    """A sluicegate project together with its state store.

    :param project: path to the project file (``sluicegate.yml``). A relative path is made
        absolute against the current directory now, so a later ``chdir`` does not change it.
    :param state: URL of the state store, e.g. ``"sqlite:////abs/path/state.db"`` or
        ``"postgres://user@host/db"``. ``None`` means the SQLite file ``sluicegate_state.db``
        next to the project file.
    :raises ConfigError: the project file is missing or invalid.
    :raises StoreError: the state store cannot be opened or migrated.

    Runs are executed in the calling thread with the GIL released, so other Python threads
    (for example Airflow's heartbeat) keep running while a sync moves data. An engine may be
    used again in a child process after ``os.fork()``.
    """

    __slots__ = ("_core", "_project", "_state")

    def __init__(self, project: str | os.PathLike[str], state: str | None = None) -> None:
        from sluicegate._load import load_core

        core = load_core()  # the engine's only door to the extension
        self._project = os.path.abspath(os.fspath(project))
        self._state = state
        self._core: _core.Engine = core.Engine(self._project, state)

    @property
    def project(self) -> str:
        """Absolute path of the project file."""
        return self._project

    def trigger(
        self, sync: int | str, *, full_sync: bool = False, reason: str | None = None
    ) -> int:
        """Queue a run of a sync and return the new run id.

        :param sync: the sync's numeric id or its name from the project file.
        :param full_sync: resend every row, ignoring what the destination already acknowledged.
        :param reason: who triggered the run, recorded as ``sync_trigger_reason.ui_detail``.
        :raises SyncNotFoundError: no sync with that id or name.

        Only one run per sync is active at a time; a second trigger queues behind the first.
        """
        return self._core.trigger(sync, full_sync, reason)

    def run(self, run_id: int, *, yield_when_throttled: float | timedelta | None = None) -> RunResult:
        """Claim a queued run and execute it in this process; return the finished run.

        Blocks until the run is ``completed`` or ``failed``. A run that ends ``failed`` is
        returned, not raised: read ``run["error_message"]``.

        :param yield_when_throttled: seconds (or a ``timedelta``). When the destination's rate
            limit would hold the next request back at least this long (a 429's
            ``Retry-After``, a spent rate window, the configured ``rate_limit``'s next token),
            the run stops sending, commits the answers of the batches in flight, and goes back
            to the queue: it is returned with ``status == "queued"`` and ``resume_at`` (an
            aware UTC ``datetime``), and nothing holds it meanwhile. Call ``run`` (or
            :meth:`resume`) with the same id again, from any process, at or after
            ``resume_at``: the diff against the acknowledged state sends exactly the rest, and
            the counts of the finished run cover every attempt. Full syncs never yield.
            ``None`` (the default): wait as long as the destination asks.
        :raises RunNotFoundError: no run with that id.
        :raises RunStateError: the run is not queued (already running or finished).
        """
        seconds = _positive_seconds(yield_when_throttled, "yield_when_throttled")
        run = cast("dict[str, Any]", self._core.run(run_id, seconds))
        resume_after = run.pop("resume_after", None)
        if resume_after is not None:
            run["resume_at"] = datetime.now(timezone.utc) + timedelta(seconds=float(resume_after))
        return cast("RunResult", run)

    def resume(
        self, run_id: int, *, yield_when_throttled: float | timedelta | None = None
    ) -> RunResult:
        """Run again a run that yielded (``status == "queued"``): the same as :meth:`run`,
        named for what it does. It may yield again."""
        return self.run(run_id, yield_when_throttled=yield_when_throttled)

    def sync(self, sync: int | str, *, full_sync: bool = False, reason: str | None = None) -> Run:
        """Trigger a run of ``sync`` and execute it now; return the finished run.

        The run is created already claimed by this process, in one store transaction, so a
        process killed at any moment leaves no queued run behind. While another run of the
        sync is working, this waits for it to end first. Arguments as for :meth:`trigger`.
        """
        return cast("Run", self._core.sync(sync, full_sync, reason))

    def get_run(self, run_id: int) -> Run:
        """Return the current record of a run.

        :raises RunNotFoundError: no run with that id.
        """
        return cast("Run", self._core.get_run(run_id))

    async def get_run_async(self, run_id: int) -> Run:
        """:meth:`get_run` for asyncio code: awaits the store read without blocking the loop.

        The read runs on the engine's own threads; the event loop keeps serving other tasks
        meanwhile. Usable from any running event loop (Airflow's triggerer included).

        :raises RunNotFoundError: no run with that id.
        """
        return cast("Run", await self._core.get_run_async(run_id))

    def list_runs(self, sync: int | str | None = None, *, limit: int = 20) -> list[Run]:
        """Return the most recent runs, newest first, optionally of one sync only."""
        return cast("list[Run]", self._core.list_runs(sync, limit))

    def cancel(self, run_id: int) -> Run:
        """Cancel a run: a queued run ends at once; a working run stops after the batch in
        flight and ends ``failed`` with ``canceled: True``. Returns the run as it is now.

        :raises RunStateError: the run already ended.
        """
        return cast("Run", self._core.cancel(run_id))

    def plan(self, sync: int | str, *, full_sync: bool = False, samples: int = 3) -> dict[str, Any]:
        """Dry run: what a run would send now, touching neither the destination nor the state.

        Returns counts (``source_rows``, ``adds``, ``changes``, ``removes``, ``invalid``,
        ``unchanged``) and up to ``samples`` records of each kind under ``samples``.
        """
        return cast("dict[str, Any]", self._core.plan(sync, full_sync, samples))

    def rejections(self, run_id: int, *, limit: int = 1000) -> list[Rejection]:
        """Rows of a run that were not delivered (invalid or rejected), with the reason.

        They are retried by the next run: their state never advanced.
        """
        return cast("list[Rejection]", self._core.rejections(run_id, limit))

    def syncs(self) -> list[SyncInfo]:
        """Return the syncs declared in the project file."""
        return cast("list[SyncInfo]", self._core.syncs())

    def __repr__(self) -> str:
        state = "default" if self._state is None else "custom"
        # The state URL is not shown: it may hold a password.
        return f"Engine(project={self._project!r}, state={state})"


def _positive_seconds(value: float | timedelta | None, name: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise ValueError(f"{name} must be a positive number of seconds or a timedelta, got {value!r}")
    return float(seconds)
