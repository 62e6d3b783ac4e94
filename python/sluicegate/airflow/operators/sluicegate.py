"""Airflow operator that triggers a sluicegate sync and runs it inside the task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sluicegate.airflow._compat import AirflowException, BaseOperator
from sluicegate.airflow._util import counts_of, failure_message, parse_sync_ref, summarize
from sluicegate.airflow.hooks.sluicegate import SluicegateHook

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["SyncOperator"]


class SyncOperator(BaseOperator):
    """Trigger a run of a sync and execute it in this task (embedded mode).

    The task succeeds when the run completes and fails, with the run's error message, when the
    run fails. Sync state advances only on destination acknowledgement, so retrying a failed
    task sends only what was not delivered.

    XCom:

    * ``sync_run_id``: the run id, pushed as soon as the run is queued (present even when the
      run then fails);
    * ``counts``: the run's count fields (Census names plus ``planned``/``succeeded``/``failed``
      by adds, changes and removes);
    * ``return_value``: the run id, for ``SyncSensor`` or any downstream task.

    :param sync_id: the sync's id, or its name in the project file. Templated; a rendered string
        of digits is taken as an id.
    :param sluicegate_conn_id: Airflow connection of type ``sluicegate``. Templated.
    :param full_sync: resend every row instead of only what changed since the last
        acknowledged delivery.
    """

    template_fields: Sequence[str] = ("sync_id", "sluicegate_conn_id")
    ui_color = "#cfe8f3"

    def __init__(
        self,
        *,
        sync_id: int | str,
        sluicegate_conn_id: str = SluicegateHook.default_conn_name,
        full_sync: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sync_id = sync_id
        self.sluicegate_conn_id = sluicegate_conn_id
        self.full_sync = full_sync

    def execute(self, context: Context) -> int:
        try:
            sync = parse_sync_ref(self.sync_id)
        except ValueError as err:
            raise AirflowException(str(err)) from err
        engine = SluicegateHook(sluicegate_conn_id=self.sluicegate_conn_id).get_engine()

        ti = context["ti"]
        run_id = engine.trigger(sync, full_sync=bool(self.full_sync), reason=_reason(ti))
        ti.xcom_push(key="sync_run_id", value=run_id)
        self.log.info(
            "Triggered %ssync %r: run %d; running it in this task",
            "full " if self.full_sync else "",
            sync,
            run_id,
        )

        run = engine.run(run_id)
        ti.xcom_push(key="counts", value=counts_of(run))
        self.log.info("%s", summarize(run))

        status = run.get("status")
        if status == "failed":
            raise AirflowException(failure_message(run))
        if status != "completed":
            raise AirflowException(
                f"sync run {run_id} returned with status {status!r}; expected completed or failed"
            )
        return run_id


def _reason(ti: Any) -> str:
    """What the run record's ``sync_trigger_reason.ui_detail`` says about this task."""
    dag_id, task_id, run_id, try_number = (
        getattr(ti, name, "?") for name in ("dag_id", "task_id", "run_id", "try_number")
    )
    return f"Airflow task {dag_id}.{task_id}, DAG run {run_id}, try {try_number}"
