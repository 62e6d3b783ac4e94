"""What a sync reads and writes, as OpenLineage ``(namespace, name)`` pairs.

* Input: the source table. Namespace: the source's URL without credentials and without the
  database path (``postgres://db.internal:5432``); name: ``database.table`` as written in the
  project (``analytics.public.pub_hubspot_contacts``), or the dbt model's name; a SQLite file is
  ``sqlite:///abs/path.db`` with the table as name. A sync reading a ``query`` has no input
  dataset we can name, so there is no lineage.
* Output: the destination object. Namespace ``<destination type>://<destination name>``
  (``hubspot://crm``); name: the object (``contacts``), else the destination's name.

In remote and Census modes the same comes from ``GET /syncs/{id}``; the server does not expose
source URLs, so the input namespace is ``sluicegate://<server host>/<source name>``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sluicegate.airflow.hooks.sluicegate import EMBEDDED, SluicegateHook

Pair = tuple[str, str]


def _source_pair(url: str | None, source: str, relation: str) -> Pair:
    if not url:
        return f"sluicegate://{source}", relation
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if scheme.startswith("sqlite"):
        path = url.split("://", 1)[1] if "://" in url else url
        return f"sqlite://{path.split('?')[0]}", relation
    database = parts.path.strip("/")
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    name = f"{database}.{relation}" if database else relation
    return f"{scheme}://{host}{port}", name


def lineage_of(hook: SluicegateHook, sync: int | str) -> tuple[list[Pair], list[Pair]] | None:
    """The sync's inputs and outputs, or None when it reads a query."""
    if hook.get_mode() == EMBEDDED:
        for info in hook.get_engine().syncs():
            if sync in (info["id"], info["name"]):
                break
        else:
            raise LookupError(f"no sync {sync!r} in the project")
        obj = info.get("source_object") or {}
        if not obj.get("name"):
            return None
        source = _source_pair(info.get("source_url"), info["source"], str(obj["name"]))
        kind = info.get("destination_type") or "destination"
        target = (f"{kind}://{info['destination']}", info.get("object") or info["destination"])
        return [source], [target]

    client = hook.get_client()
    data: dict[str, Any] = client.get_sync(sync)
    src = data.get("source_attributes") or {}
    dst = data.get("destination_attributes") or {}
    obj = src.get("object") or {}
    relation = obj.get("name") or obj.get("table_name")
    if not relation:
        return None
    host = urlsplit(client.base).netloc
    source_name = str(src.get("connection_id") or "source")
    source = (f"sluicegate://{host}/{source_name}", str(relation))
    dest_name = str(dst.get("connection_id") or "destination")
    target = (f"{dst.get('type') or 'destination'}://{dest_name}", str(dst.get("object") or dest_name))
    return [source], [target]
