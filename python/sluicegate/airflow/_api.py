"""A small client of the Census (Fivetran Activations) Management API, as `sluicegate serve`
speaks it too: the hook's remote and Census modes.

Only the calls the Airflow layer needs: list syncs (test connection), read a sync (lineage),
trigger a sync, read a run, cancel a run. Every answer is checked against Census's envelope
(``{"status": "success", "data": ...}``; errors ``{"status": <http code>, "message": ...}``) and
a failure raises :class:`ApiError` naming the call, the HTTP status and the server's message,
never the token.

HTTP goes through ``httpx`` (a dependency of Airflow 2.10+ and 3.x): ``httpx.Client`` for the
worker, ``httpx.AsyncClient`` for the triggerer, whose event loop is never blocked. It is
imported when a call is made, not when a DAG file is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from sluicegate.airflow._compat import AirflowException

if TYPE_CHECKING:
    import httpx

__all__ = [
    "CENSUS_DEFAULT_HOST",
    "ApiClient",
    "ApiError",
    "api_base",
    "is_census_host",
]

#: Where Fivetran Activations (Census) serves its API (US workspaces; EU: app-eu.getcensus.com).
CENSUS_DEFAULT_HOST = "https://app.getcensus.com"
_CENSUS_DOMAINS = ("getcensus.com", "fivetran.com")
#: Seconds a single HTTP call may take.
DEFAULT_TIMEOUT = 30.0


class ApiError(AirflowException):
    """A call to the API failed. ``status`` is the HTTP status (``None``: no answer at all)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def transient(self) -> bool:
        """Worth asking again: no answer, a timeout, 429 or a 5xx."""
        return self.status is None or self.status == 429 or self.status >= 500


def api_base(host: str) -> str:
    """The API root (``…/api/v1``) for a connection's host.

    ``app.getcensus.com``, ``https://app.getcensus.com`` and ``https://app.getcensus.com/api/v1``
    all mean the same root; a host without a scheme gets ``https://`` (as the Census provider
    does), so a plain-HTTP server must be written ``http://host:port``.
    """
    text = host.strip().rstrip("/")
    if not text:
        raise ValueError("the API host is empty")
    if not text.startswith(("http://", "https://")):
        text = "https://" + text
    parts = urlsplit(text)
    if not parts.hostname:
        raise ValueError(f"the API host {host!r} is not a URL (write it http(s)://host[:port])")
    if parts.username or parts.password:
        raise ValueError(
            "the API host must not contain a user or password: put the API token in the "
            "connection's Password field"
        )
    if not text.endswith("/api/v1"):
        text += "/api/v1"
    return text


def is_census_host(base: str) -> bool:
    """True for Fivetran Activations' own hosts (the run page URL differs from ours)."""
    host = (urlsplit(base).hostname or "").lower()
    return any(host == d or host.endswith("." + d) for d in _CENSUS_DOMAINS)


def _message(body: Any) -> str | None:
    if isinstance(body, Mapping):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str) and body[key].strip():
                return str(body[key]).strip()
    return None


class ApiClient:
    """Calls to one API root with one token.

    :param base: the API root, as :func:`api_base` makes it.
    :param token: the workspace (Census) or server (``SLUICEGATE_API_TOKEN``) token, sent as
        ``Authorization: Bearer <token>``; ``secret-token:`` is part of Census tokens.
    :param conn_id: the Airflow connection's id, named in errors.
    """

    def __init__(
        self, base: str, token: str | None, *, conn_id: str, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.base = base.rstrip("/")
        self._token = token
        self.conn_id = conn_id
        self.timeout = timeout
        self.census = is_census_host(self.base)

    def __repr__(self) -> str:  # no token
        return f"ApiClient({self.base!r}, conn_id={self.conn_id!r})"

    @property
    def ui_base(self) -> str:
        """The web root: the API root without ``/api/v1``."""
        return self.base[: -len("/api/v1")] if self.base.endswith("/api/v1") else self.base

    def run_url(self, sync_run_id: int, sync_id: int | str | None = None) -> str:
        """The page of a run: ``/runs/{id}`` on a sluicegate server, the sync's run history on
        Fivetran Activations."""
        if self.census:
            if sync_id is None:
                return f"{self.ui_base}/sync-runs/{sync_run_id}"
            return f"{self.ui_base}/syncs/{quote(str(sync_id), safe='')}/history?sync_run_id={sync_run_id}"
        return f"{self.ui_base}/runs/{sync_run_id}"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "sluicegate-airflow"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    # ------------------------------------------------------------------ answers

    def _what(self, method: str, path: str) -> str:
        return f"{method} {self.base}{path} (Airflow connection {self.conn_id!r})"

    def _no_answer(self, method: str, path: str, err: Exception) -> ApiError:
        kind = type(err).__name__
        return ApiError(f"{self._what(method, path)} got no answer: {kind}: {err}", None)

    def _data(
        self, method: str, path: str, status: int, text: str, ok: tuple[str, ...] = ("success",)
    ) -> Any:
        import json

        try:
            body = json.loads(text) if text.strip() else None
        except ValueError:
            body = None
        if status >= 400:
            reason = _message(body) or (text.strip()[:300] if text.strip() else "no message")
            hint = ""
            if status == 401:
                hint = " Check the API token in the connection's Password field."
            elif status == 404 and body is None:
                hint = " Is the connection's host the API of a sluicegate server or Fivetran Activations?"
            raise ApiError(f"{self._what(method, path)} answered {status}: {reason}.{hint}", status)
        if not isinstance(body, Mapping):
            raise ApiError(
                f"{self._what(method, path)} answered {status} with a body that is not a JSON "
                f"object: {text.strip()[:200]!r}",
                status,
            )
        if body.get("status") not in ok:
            raise ApiError(
                f"{self._what(method, path)} answered status {body.get('status')!r} (expected "
                f"{' or '.join(ok)}): {_message(body) or 'no message'}",
                status,
            )
        return body

    def _sync_call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        ok: tuple[str, ...] = ("success",),
    ) -> Any:
        import httpx

        try:
            with httpx.Client(timeout=self.timeout, headers=self._headers()) as http:
                resp = http.request(method, self.base + path, params=params)
        except httpx.HTTPError as err:
            raise self._no_answer(method, path, err) from err
        return self._data(method, path, resp.status_code, resp.text, ok)

    async def _async_call(
        self,
        http: httpx.AsyncClient,
        method: str,
        path: str,
        ok: tuple[str, ...] = ("success",),
    ) -> Any:
        import httpx

        try:
            resp = await http.request(method, self.base + path)
        except httpx.HTTPError as err:
            raise self._no_answer(method, path, err) from err
        return self._data(method, path, resp.status_code, resp.text, ok)

    # ------------------------------------------------------------------ calls

    def list_syncs(self, per_page: int = 1) -> tuple[list[Any], Mapping[str, Any]]:
        """``GET /syncs?page=1&per_page=N``: the first syncs and the pagination object."""
        body = self._sync_call("GET", "/syncs", {"page": 1, "per_page": per_page})
        return list(body.get("data") or []), body.get("pagination") or {}

    def get_sync(self, sync_id: int | str) -> dict[str, Any]:
        """``GET /syncs/{id}``."""
        body = self._sync_call("GET", f"/syncs/{quote(str(sync_id), safe='')}")
        return dict(body.get("data") or {})

    def trigger(self, sync_id: int | str, full_sync: bool = False) -> int:
        """``POST /syncs/{id}/trigger`` (``force_full_sync=true`` only when asked): the run id."""
        path = f"/syncs/{quote(str(sync_id), safe='')}/trigger"
        params = {"force_full_sync": "true"} if full_sync else None
        body = self._sync_call("POST", path, params)
        data = body.get("data")
        run_id = data.get("sync_run_id") if isinstance(data, Mapping) else None
        if isinstance(run_id, bool) or not isinstance(run_id, int):
            raise ApiError(
                f"{self._what('POST', path)} answered success without a sync_run_id: {data!r}"
            )
        return run_id

    def get_run(self, sync_run_id: int) -> dict[str, Any]:
        """``GET /sync_runs/{id}``: the run object."""
        body = self._sync_call("GET", f"/sync_runs/{int(sync_run_id)}")
        return self._run(body, sync_run_id)

    def cancel(self, sync_run_id: int) -> None:
        """``POST /sync_runs/{id}/cancel`` (answered ``{"status": "cancelled"}``)."""
        self._sync_call(
            "POST", f"/sync_runs/{int(sync_run_id)}/cancel", ok=("cancelled", "canceled", "success")
        )

    async def aget_run(self, sync_run_id: int, http: httpx.AsyncClient | None = None) -> dict[str, Any]:
        """:meth:`get_run` for asyncio code; pass ``http`` to reuse one connection pool."""
        import httpx

        path = f"/sync_runs/{int(sync_run_id)}"
        if http is not None:
            return self._run(await self._async_call(http, "GET", path), sync_run_id)
        async with httpx.AsyncClient(timeout=self.timeout, headers=self._headers()) as own:
            return self._run(await self._async_call(own, "GET", path), sync_run_id)

    def async_http(self) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` with this client's headers and timeout (close it)."""
        import httpx

        return httpx.AsyncClient(timeout=self.timeout, headers=self._headers())

    def _run(self, body: Mapping[str, Any], sync_run_id: int) -> dict[str, Any]:
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise ApiError(
                f"{self._what('GET', f'/sync_runs/{sync_run_id}')} answered success without a "
                f"run object: {data!r}"
            )
        run = dict(data)
        run.setdefault("id", int(sync_run_id))
        return run
