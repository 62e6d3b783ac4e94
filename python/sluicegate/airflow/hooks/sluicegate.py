"""Airflow hook for sluicegate: turns an Airflow connection into an :class:`~sluicegate.Engine`.

A ``sluicegate`` connection names a project file and, optionally, a state store:

.. code-block:: bash

    export AIRFLOW_CONN_SLUICEGATE_DEFAULT='{
        "conn_type": "sluicegate",
        "extra": {"project": "/opt/airflow/include/sluicegate/sluicegate.yml",
                  "state": "postgres://sluicegate@db:5432/sluicegate"},
        "password": "..."
    }'

* ``project`` (extra): path of ``sluicegate.yml``; else the ``SLUICEGATE_PROJECT`` env var.
* ``state`` (extra): state store URL; else ``SLUICEGATE_STATE``; else the SQLite file
  ``sluicegate_state.db`` next to the project file.
* password (optional): the state store's password, spliced into a ``postgres://`` URL so the
  URL kept in the extra holds no secret (Airflow masks connection passwords in logs).

If the connection does not exist at all, the two environment variables are used alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from sluicegate.airflow._compat import AirflowException, AirflowNotFoundException, BaseHook
from sluicegate.airflow.get_provider_info import (
    CONN_TYPE,
    HIDDEN_FIELDS,
    HOOK_NAME,
    PLACEHOLDERS,
    RELABELING,
)

if TYPE_CHECKING:
    from sluicegate.engine import Engine

__all__ = ["EngineSettings", "SluicegateHook"]

PROJECT_ENV = "SLUICEGATE_PROJECT"
STATE_ENV = "SLUICEGATE_STATE"


class EngineSettings(NamedTuple):
    """Where the engine's project and state live. ``state`` may contain a password: never log it."""

    project: str
    state: str | None


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
        Extra JSON there.
        """
        return {
            "hidden_fields": list(HIDDEN_FIELDS),
            "relabeling": {**RELABELING, "extra": "Extra (JSON with project and state)"},
            "placeholders": dict(PLACEHOLDERS),
        }

    def get_settings(self) -> EngineSettings:
        """Resolve project and state store from the connection and the environment.

        :raises AirflowException: no project is configured anywhere, or the password cannot
            be combined with the state URL.
        """
        conn = None
        with contextlib.suppress(AirflowNotFoundException):  # then the env vars alone decide
            conn = self.get_connection(self.sluicegate_conn_id)
        return self._settings(conn)

    async def aget_settings(self) -> EngineSettings:
        """:meth:`get_settings` for asyncio code (a trigger): never blocks the event loop."""
        conn = None
        with contextlib.suppress(AirflowNotFoundException):
            aget = getattr(self, "aget_connection", None)
            if aget is not None:  # Airflow 3: the Task SDK's async lookup
                conn = await aget(self.sluicegate_conn_id)
            else:  # Airflow 2.x: a metadata DB / secrets backend read, in a thread
                conn = await asyncio.to_thread(self.get_connection, self.sluicegate_conn_id)
        return self._settings(conn)

    def _settings(self, conn: Any) -> EngineSettings:
        conn_id = self.sluicegate_conn_id
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
        """Load the project and open the state store; report how many syncs it declares."""
        try:
            syncs = self.get_engine().syncs()
        except Exception as err:  # the UI shows the message; any failure means "not working"
            return False, str(err) or type(err).__name__
        count = len(syncs)
        return True, f"{count} sync" if count == 1 else f"{count} syncs"


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
