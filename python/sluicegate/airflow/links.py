"""The operator's extra link "Sync run": the page of the run the task triggered.

The operator pushes the URL to XCom (``sync_run_url``) as soon as a remote or Census run is
triggered: a sluicegate server's run page (``/runs/{id}``) or the sync's run history on
Fivetran Activations. An embedded run has no web page, so the link is empty there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import BaseOperatorLink
    from airflow.sdk.execution_time.xcom import XCom
else:
    try:
        from airflow.sdk import BaseOperatorLink
        from airflow.sdk.execution_time.xcom import XCom
    except ImportError:  # Airflow 2.x
        from airflow.models import XCom
        from airflow.models.baseoperatorlink import BaseOperatorLink

__all__ = ["XCOM_RUN_URL", "SyncRunLink"]

#: The XCom key the operator pushes the run page's URL under.
XCOM_RUN_URL = "sync_run_url"


class SyncRunLink(BaseOperatorLink):
    """Link from the task to its sync run's page."""

    name = "Sync run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        url = XCom.get_value(key=XCOM_RUN_URL, ti_key=ti_key)
        return url if isinstance(url, str) and url.startswith(("http://", "https://")) else ""
