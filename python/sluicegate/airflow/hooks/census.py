"""The ``census`` connection type's hook, :class:`CensusHook` (importable from
``sluicegate.airflow.census`` too, with the other drop-in classes)."""

from __future__ import annotations

from typing import Any

from sluicegate.airflow.get_provider_info import (
    CENSUS_CONN_TYPE,
    CENSUS_DEFAULT_CONN_ID,
    CENSUS_HIDDEN_FIELDS,
    CENSUS_HOOK_NAME,
    CENSUS_PLACEHOLDERS,
    CENSUS_RELABELING,
)
from sluicegate.airflow.hooks.sluicegate import SluicegateHook

__all__ = ["CensusHook"]

DEFAULT_CONN_ID = CENSUS_DEFAULT_CONN_ID


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
