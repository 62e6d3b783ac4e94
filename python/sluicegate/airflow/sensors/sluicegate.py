"""Airflow sensor that waits for a sluicegate sync run to complete."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sluicegate.airflow._compat import AirflowException, BaseSensorOperator
from sluicegate.airflow._util import failure_message, parse_run_id, summarize
from sluicegate.airflow.hooks.sluicegate import SluicegateHook

if TYPE_CHECKING:
    from airflow.sdk import Context

    from sluicegate.engine import Engine

__all__ = ["SyncSensor"]

_PENDING = frozenset({"queued", "working"})


class SyncSensor(BaseSensorOperator):
    """Wait until a sync run is ``completed``; fail as soon as it is ``failed``.

    Reads the run from the state store the connection points at (no server needed).

    :param sync_run_id: the run to wait for. Templated; usually
        ``"{{ ti.xcom_pull(task_ids='<SyncOperator task>') }}"``, which renders as a string.
    :param sluicegate_conn_id: Airflow connection of type ``sluicegate``. Templated.
    :param poke_interval: seconds between checks (default 30).

    A status other than ``queued``, ``working``, ``completed`` or ``failed`` fails the task
    rather than waiting on something the sensor does not understand.
    """

    template_fields: Sequence[str] = ("sync_run_id", "sluicegate_conn_id")
    ui_color = "#e3f1f8"

    def __init__(
        self,
        *,
        sync_run_id: int | str,
        sluicegate_conn_id: str = SluicegateHook.default_conn_name,
        poke_interval: float | timedelta = 30,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.sync_run_id = sync_run_id
        self.sluicegate_conn_id = sluicegate_conn_id
        self._engine: Engine | None = None

    def poke(self, context: Context) -> bool:
        try:
            run_id = parse_run_id(self.sync_run_id)
        except ValueError as err:
            raise AirflowException(str(err)) from err
        if self._engine is None:  # one engine per task process, reused across pokes
            self._engine = SluicegateHook(sluicegate_conn_id=self.sluicegate_conn_id).get_engine()

        run = self._engine.get_run(run_id)
        status = run.get("status")
        if status == "completed":
            self.log.info("%s", summarize(run))
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
