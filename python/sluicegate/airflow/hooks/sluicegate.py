"""Airflow hook for sluicegate: one connection type, three modes, chosen by the connection.

* **In-task (embedded)**, host empty: the connection names a project file and, optionally, a
  state store; the operator runs the sync inside the task (:meth:`SluicegateHook.get_engine`).

  .. code-block:: bash

      export AIRFLOW_CONN_SLUICEGATE_DEFAULT='{
          "conn_type": "sluicegate",
          "extra": {"project": "/opt/airflow/include/sluicegate/sluicegate.yml",
                    "state": "postgres://sluicegate@db:5432/sluicegate"},
          "password": "..."
      }'

  - ``project`` (extra): path of ``sluicegate.yml``; else the ``SLUICEGATE_PROJECT`` env var.
  - ``state`` (extra): state store URL; else ``SLUICEGATE_STATE``; else the SQLite file
    ``sluicegate_state.db`` next to the project file.
  - password (optional): the state store's password, spliced into a ``postgres://`` URL so the
    URL kept in the extra holds no secret (Airflow masks connection passwords in logs).

  If the connection does not exist at all, the two environment variables are used alone.

* **Remote**, host ``http(s)://…`` of a ``sluicegate serve``: runs are triggered and read over
  its Census-compatible API; the password is the API token (``secret-token:…``).

  .. code-block:: bash

      export AIRFLOW_CONN_SLUICEGATE_DEFAULT='{"conn_type": "sluicegate",
          "host": "http://sluicegate.internal:8080", "password": "secret-token:xyz"}'

* **Fivetran Activations (Census)**, host ``https://app.getcensus.com/api/v1`` (or
  ``app-eu.getcensus.com``): the same API, with a workspace token as password.

Connections of type ``census`` (``sluicegate.airflow.census``) are remote or Census mode too;
their host defaults to ``app.getcensus.com``, as in airflow-provider-census.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from sluicegate.airflow._api import CENSUS_DEFAULT_HOST, ApiClient, api_base, is_census_host
from sluicegate.airflow._compat import AirflowException, AirflowNotFoundException, BaseHook
from sluicegate.airflow.get_provider_info import (
    CENSUS_CONN_TYPE,
    CONN_TYPE,
    HIDDEN_FIELDS,
    HOOK_NAME,
    PLACEHOLDERS,
    RELABELING,
)

if TYPE_CHECKING:
    from sluicegate.engine import Engine

__all__ = ["EMBEDDED", "HTTP_MODES", "EngineSettings", "RemoteSettings", "SluicegateHook"]

#: The modes a connection selects (:meth:`SluicegateHook.get_mode`).
EMBEDDED = "embedded"
REMOTE = "remote"
CENSUS = "census"
HTTP_MODES = frozenset({REMOTE, CENSUS})

PROJECT_ENV = "SLUICEGATE_PROJECT"
STATE_ENV = "SLUICEGATE_STATE"


class EngineSettings(NamedTuple):
    """Where the engine's project and state live. ``state`` may contain a password: never log it."""

    project: str
    state: str | None


class RemoteSettings(NamedTuple):
    """An API to call. ``token`` is a secret: never log it."""

    mode: str  # "remote" (a sluicegate server) or "census" (Fivetran Activations)
    base: str  # the API root, ending in /api/v1
    token: str | None


class SluicegateHook(BaseHook):
    """Open a sluicegate :class:`~sluicegate.Engine` from an Airflow connection.

    :param sluicegate_conn_id: id of a connection of type ``sluicegate``.
    """

    conn_name_attr = "sluicegate_conn_id"
    default_conn_name = "sluicegate_default"
    conn_type = CONN_TYPE
    hook_name = HOOK_NAME

    def __init__(self, sluicegate_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sluicegate_conn_id = sluicegate_conn_id
        self._engine: Engine | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form for Airflow 2.x (Airflow 3.2+ reads ``get_provider_info`` instead).

        Airflow 2.x has no declarative extra fields, so ``project`` and ``state`` go into the
        Extra JSON there. The host selects the mode: empty for in-task runs, the URL of a
        sluicegate server or of Fivetran Activations for remote runs.
        """
        return {
            "hidden_fields": list(HIDDEN_FIELDS),
            "relabeling": {
                **RELABELING,
                "extra": "Extra (in-task mode: JSON with project and state)",
            },
            "placeholders": dict(PLACEHOLDERS),
        }

    # ------------------------------------------------------------------ modes

    def _connection(self) -> Any:
        """The connection, or None when it is not defined (then the env vars decide)."""
        if not hasattr(self, "_conn_cache"):
            conn = None
            with contextlib.suppress(AirflowNotFoundException):
                conn = self.get_connection(self._conn_id())
            self._conn_cache = conn
        return self._conn_cache

    async def _aconnection(self) -> Any:
        if not hasattr(self, "_conn_cache"):
            conn = None
            with contextlib.suppress(AirflowNotFoundException):
                aget = getattr(self, "aget_connection", None)
                if aget is not None:  # Airflow 3: the Task SDK's async lookup
                    conn = await aget(self._conn_id())
                else:  # Airflow 2.x: a metadata DB / secrets backend read, in a thread
                    conn = await asyncio.to_thread(self.get_connection, self._conn_id())
            self._conn_cache = conn
        return self._conn_cache

    def _conn_id(self) -> str:
        return str(getattr(self, self.conn_name_attr))

    def _remote(self, conn: Any) -> RemoteSettings | None:
        """The API this connection points at, or None for in-task mode."""
        if conn is None:
            return None
        host = (conn.host or "").strip()
        if not host and conn.conn_type == CENSUS_CONN_TYPE:
            host = CENSUS_DEFAULT_HOST
        if not host:
            return None
        try:
            base = api_base(host)
        except ValueError as err:
            raise AirflowException(f"Airflow connection {self._conn_id()!r}: {err}") from err
        mode = CENSUS if is_census_host(base) else REMOTE
        return RemoteSettings(mode, base, conn.password or None)

    def get_mode(self) -> str:
        """``"embedded"`` (runs in the task), ``"remote"`` (a sluicegate server) or ``"census"``."""
        remote = self._remote(self._connection())
        return EMBEDDED if remote is None else remote.mode

    async def aget_mode(self) -> str:
        """:meth:`get_mode` for asyncio code."""
        remote = self._remote(await self._aconnection())
        return EMBEDDED if remote is None else remote.mode

    def _client_for(self, remote: RemoteSettings | None) -> ApiClient:
        if remote is None:
            raise AirflowException(
                f"Airflow connection {self._conn_id()!r} has no host, so it runs syncs in the "
                "task (embedded mode) and has no API to call; set its host to the URL of a "
                "sluicegate server or of Fivetran Activations for remote mode"
            )
        if not remote.token:
            raise AirflowException(
                f"Airflow connection {self._conn_id()!r} points at {remote.base} but has no "
                "API token: put it in the connection's Password field (secret-token:...)"
            )
        return ApiClient(remote.base, remote.token, conn_id=self._conn_id())

    def get_client(self) -> ApiClient:
        """The API client of a remote or Census connection.

        :raises AirflowException: the connection is in-task, or has no token.
        """
        return self._client_for(self._remote(self._connection()))

    async def aget_client(self) -> ApiClient:
        """:meth:`get_client` for asyncio code."""
        return self._client_for(self._remote(await self._aconnection()))

    def get_settings(self) -> EngineSettings:
        """Resolve project and state store from the connection and the environment.

        :raises AirflowException: no project is configured anywhere, or the password cannot
            be combined with the state URL.
        """
        return self._settings(self._connection())

    async def aget_settings(self) -> EngineSettings:
        """:meth:`get_settings` for asyncio code (a trigger): never blocks the event loop."""
        return self._settings(await self._aconnection())

    def _settings(self, conn: Any) -> EngineSettings:
        conn_id = self._conn_id()
        remote = self._remote(conn)
        if remote is not None:
            raise AirflowException(
                f"Airflow connection {conn_id!r} points at the API {remote.base} (remote mode): "
                "there is no engine to open in this process; runs are triggered over the API"
            )
        extras: dict[str, Any] = (conn.extra_dejson or {}) if conn is not None else {}
        password = (conn.password or None) if conn is not None else None

        project = _extra(extras, "project") or os.environ.get(PROJECT_ENV) or None
        if not project:
            where = (
                f"Airflow connection {conn_id!r} does not set the extra field 'project'"
                if conn is not None
                else f"Airflow connection {conn_id!r} is not defined"
            )
            raise AirflowException(
                f"No sluicegate project configured: {where}, and the {PROJECT_ENV} environment "
                f"variable is not set. Point one of them at your sluicegate.yml."
            )
        state = _extra(extras, "state") or os.environ.get(STATE_ENV) or None
        if password:
            state = _state_with_password(state, password, conn_id)
        return EngineSettings(os.path.expanduser(project), state)

    def get_engine(self) -> Engine:
        """Return the engine for this connection (created on first call, then reused)."""
        if self._engine is None:
            settings = self.get_settings()
            from sluicegate.engine import Engine

            self.log.info(
                "Opening sluicegate project %s (state store: %s)",
                settings.project,
                _describe_state(settings.state),
            )
            self._engine = Engine(settings.project, settings.state)
        return self._engine

    async def aget_engine(self) -> Engine:
        """:meth:`get_engine` for asyncio code: the connection is read with Airflow's async
        lookup and the engine (project file, state store) is opened in a worker thread."""
        if self._engine is None:
            settings = await self.aget_settings()
            from sluicegate.engine import Engine

            self.log.info(
                "Opening sluicegate project %s (state store: %s)",
                settings.project,
                _describe_state(settings.state),
            )
            self._engine = await asyncio.to_thread(Engine, settings.project, settings.state)
        return self._engine

    def get_conn(self) -> Engine:
        """Airflow's conventional name for :meth:`get_engine`."""
        return self.get_engine()

    def test_connection(self) -> tuple[bool, str]:
        """In-task: load the project and open the state store; remote and Census: list the
        syncs over the API (``GET /syncs?page=1&per_page=1``). Report how many syncs there are."""
        try:
            remote = self._remote(self._connection())
            if remote is None:
                count = len(self.get_engine().syncs())
                where = "in the project"
            else:
                data, pagination = self._client_for(remote).list_syncs(per_page=1)
                total = pagination.get("total_records")
                count = total if isinstance(total, int) else len(data)
                server = "Fivetran Activations" if remote.mode == CENSUS else "sluicegate server"
                where = f"on the {server} at {remote.base}"
        except Exception as err:  # the UI shows the message; any failure means "not working"
            return False, str(err) or type(err).__name__
        return True, f"{count} sync {where}" if count == 1 else f"{count} syncs {where}"


def _extra(extras: dict[str, Any], name: str) -> str | None:
    """Read an extra field, also under the ``extra__sluicegate__`` prefix older UIs wrote."""
    value = extras.get(name) or extras.get(f"extra__{CONN_TYPE}__{name}")
    if value is None:
        return None
    if not isinstance(value, str):
        raise AirflowException(f"the connection's extra field {name!r} must be a string")
    return value.strip() or None


def _state_with_password(state: str | None, password: str, conn_id: str) -> str:
    """Put the connection's password into a server state store URL."""
    problem = None
    if state is None:
        problem = "there is no state store URL to use it with"
    else:
        parts = urlsplit(state)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        if parts.scheme.startswith("sqlite"):
            problem = "a sqlite:// state store takes no password"
        elif ":" in userinfo:
            problem = "the state store URL already contains a password; keep only one of them"
        elif not at or not user or not hostport:
            problem = "the state store URL needs a user name (postgres://USER@host:5432/db)"
        else:
            netloc = f"{quote(unquote(user), safe='')}:{quote(password, safe='')}@{hostport}"
            return urlunsplit(parts._replace(netloc=netloc))
    raise AirflowException(f"Airflow connection {conn_id!r} sets a password, but {problem}.")


def _describe_state(state: str | None) -> str:
    """Describe a state store URL without its credentials."""
    if state is None:
        return "default SQLite file next to the project"
    parts = urlsplit(state)
    if parts.scheme.startswith("sqlite"):
        return state
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"
