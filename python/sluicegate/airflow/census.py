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

from sluicegate.airflow.get_provider_info import CENSUS_DEFAULT_CONN_ID as DEFAULT_CONN_ID
from sluicegate.airflow.operators.sluicegate import SyncOperator
from sluicegate.airflow.sensors.sluicegate import SyncSensor

__all__ = ["CensusHook", "CensusOperator", "CensusSensor", "CensusTrigger"]


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
    # CensusHook and CensusTrigger are loaded on first use: a DAG file being parsed needs
    # neither (the hook is made when a task runs; the trigger's base class pulls in Airflow's
    # trigger machinery), and each would add milliseconds to every parse.
    if name == "CensusHook":
        from sluicegate.airflow.hooks.census import CensusHook

        return CensusHook
    if name == "CensusTrigger":
        from sluicegate.airflow.triggers.census import CensusTrigger

        return CensusTrigger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
