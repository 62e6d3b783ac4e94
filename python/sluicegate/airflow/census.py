"""Drop-in replacements for the ``airflow-provider-census`` classes.

A DAG written for Census (Fivetran Activations) runs on sluicegate by changing its imports::

    # from airflow_provider_census.operators.census import CensusOperator
    # from airflow_provider_census.sensors.census import CensusSensor
    from sluicegate.airflow.census import CensusOperator, CensusSensor

The classes take the same parameters as that package's (``census_conn_id`` defaulting to
``census_default``, ``sync_id``, ``sync_run_id``, ``deferrable`` and the usual operator and
sensor arguments) and read the same connection type, ``census`` (fields: host "Activations API
Host", default ``app.getcensus.com``; password "Activations API Token"). Where the connection
points decides who runs the sync:

* host ``app.getcensus.com`` / ``app-eu.getcensus.com`` (or empty): Fivetran Activations, as
  before;
* host ``http(s)://`` of a ``sluicegate serve``: sluicegate, over the same API, with one of the
  server's tokens as password;
* ``census_conn_id`` naming a ``sluicegate`` connection without host: sluicegate runs the sync
  inside the ``CensusOperator`` task (embedded mode: nothing else would execute it), and the
  sensor reads the run from the state store.

Beyond the Census package, the operator accepts every :class:`SyncOperator` option
(``wait_for_completion``, ``deferrable``, ``full_resync``, ``timeout``, ...) and cancels its run
when the task is killed; the sensor accepts the :class:`SyncSensor` options. As in that package,
``CensusOperator`` returns the run id at once (XCom ``return_value``) and ``CensusSensor`` waits.
"""

from __future__ import annotations

from typing import Any

from sluicegate.airflow.get_provider_info import (
    CENSUS_CONN_TYPE,
    CENSUS_HIDDEN_FIELDS,
    CENSUS_HOOK_NAME,
    CENSUS_PLACEHOLDERS,
    CENSUS_RELABELING,
)
from sluicegate.airflow.hooks.sluicegate import SluicegateHook
from sluicegate.airflow.operators.sluicegate import SyncOperator
from sluicegate.airflow.sensors.sluicegate import SyncSensor

__all__ = ["CensusHook", "CensusOperator", "CensusSensor", "CensusTrigger"]

DEFAULT_CONN_ID = "census_default"


class CensusHook(SluicegateHook):
    """The ``census`` connection type: a Census-compatible API (Fivetran Activations or a
    sluicegate server) reached with a token. Methods of airflow-provider-census's hook.

    :param census_conn_id: id of a connection of type ``census`` (or ``sluicegate``).
    """

    conn_name_attr = "census_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CENSUS_CONN_TYPE
    hook_name = CENSUS_HOOK_NAME

    def __init__(self, census_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(sluicegate_conn_id=census_conn_id, **kwargs)
        self.census_conn_id = census_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": list(CENSUS_HIDDEN_FIELDS),
            "relabeling": dict(CENSUS_RELABELING),
            "placeholders": dict(CENSUS_PLACEHOLDERS),
        }

    def get_api_base_url(self) -> str:
        """The host's web root, e.g. ``https://app.getcensus.com`` (the API is under /api/v1)."""
        return self.get_client().ui_base

    def get_auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>``. The value is a secret: do not log it."""
        return self.get_client()._headers()

    def trigger_sync(self, sync_id: int | str, force_full_sync: bool = False) -> int:
        """``POST /api/v1/syncs/{sync_id}/trigger``: the new run's id."""
        return self.get_client().trigger(sync_id, full_sync=force_full_sync)

    def get_sync_run_info(self, sync_run_id: int | str) -> dict[str, Any]:
        """``GET /api/v1/sync_runs/{sync_run_id}``: the run object (``data``)."""
        return self.get_client().get_run(int(sync_run_id))

    def cancel_sync_run(self, sync_run_id: int | str) -> None:
        """``POST /api/v1/sync_runs/{sync_run_id}/cancel``."""
        self.get_client().cancel(int(sync_run_id))

    def get_sync_history_url(self, sync_id: int | str | None, sync_run_id: int | str) -> str:
        """The run's page (Census: the sync's run history; sluicegate: ``/runs/{id}``)."""
        return self.get_client().run_url(int(sync_run_id), sync_id)


class CensusOperator(SyncOperator):
    """Trigger a sync and return its run id (XCom ``return_value``), as airflow-provider-census's
    operator does; see :class:`SyncOperator` for the options it adds.

    :param sync_id: the sync's id.
    :param census_conn_id: connection of type ``census`` (or ``sluicegate``).
    """

    # Census semantics: trigger and return. In embedded mode the sync must still be executed
    # by someone: this task does it.
    _embedded_runs_without_wait = True

    def __init__(
        self,
        *,
        sync_id: int | str,
        census_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            sync_id=sync_id,
            sluicegate_conn_id=census_conn_id,
            wait_for_completion=wait_for_completion,
            **kwargs,
        )

    @property
    def census_conn_id(self) -> str:
        return self.sluicegate_conn_id


class CensusSensor(SyncSensor):
    """Wait for a sync run, as airflow-provider-census's sensor does (fails when the run fails;
    ``deferrable=False`` by default, as there); see :class:`SyncSensor` for the options it adds.

    :param sync_run_id: the run to wait for; templated (``"{{ ti.xcom_pull(task_ids=...) }}"``).
    :param census_conn_id: connection of type ``census`` (or ``sluicegate``).
    :param deferrable: hand the wait to the triggerer after a first check.
    """

    def __init__(
        self,
        *,
        sync_run_id: int | str,
        census_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = False,
        poke_interval: float = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            sync_run_id=sync_run_id,
            sluicegate_conn_id=census_conn_id,
            deferrable=deferrable,
            poke_interval=poke_interval,
            **kwargs,
        )

    @property
    def census_conn_id(self) -> str:
        return self.sluicegate_conn_id

    def _trigger_poll_interval(self) -> float:
        # As airflow-provider-census's deferred sensor: at least one second between checks.
        return max(super()._trigger_poll_interval(), 1.0)


def __getattr__(name: str) -> Any:
    # CensusTrigger is loaded on first use: its base class pulls in Airflow's trigger machinery,
    # which a DAG file being parsed does not need.
    if name == "CensusTrigger":
        from sluicegate.airflow.triggers.census import CensusTrigger

        return CensusTrigger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
