"""airflow-provider-census's trigger signature over :class:`SyncRunTrigger` (also importable as
``sluicegate.airflow.census.CensusTrigger``)."""

from __future__ import annotations

from sluicegate.airflow.triggers.sluicegate import SyncRunTrigger

__all__ = ["CensusTrigger"]

DEFAULT_CONN_ID = "census_default"


class CensusTrigger(SyncRunTrigger):
    """airflow-provider-census's trigger signature over :class:`SyncRunTrigger`."""

    def __init__(
        self,
        sync_run_id: int,
        census_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 60.0,
        end_time: float | None = None,
        sluicegate_conn_id: str | None = None,
    ) -> None:
        # ``sluicegate_conn_id``: the name serialize() writes (the triggerer rebuilds from it).
        super().__init__(
            sync_run_id=sync_run_id,
            sluicegate_conn_id=sluicegate_conn_id or census_conn_id,
            poll_interval=max(float(poll_interval), 1.0),
            end_time=end_time,
        )
