"""The dlt peer: `sql_table` with its fastest backend (connectorx, Arrow → parquet) into a
`@dlt.destination` function that POSTs the rows, as dlt's "reverse ETL" docs describe.

Change detection is dlt's: `dlt.sources.incremental("updated_at")`, the cursor kept in the
pipeline directory. HTTP retries come from `dlt.sources.helpers.requests` (429/5xx with
exponential backoff, Retry-After honoured); a failed batch fails the load job, which dlt
retries from the last committed batch.

    dlt_sync.py --pg URL --table customers --url http://sink/customers --dir PIPELINES_DIR
    dlt_sync.py ... --hubspot TOKEN --batch 100   # HubSpot batch upsert bodies
"""

from __future__ import annotations

import argparse
import sys

import dlt
from dlt.common import json
from dlt.sources.helpers import requests
from dlt.sources.sql_database import sql_table

HUBSPOT_PROPERTIES = ("first_name", "last_name", "company", "country")
HUBSPOT_NAMES = {"first_name": "firstname", "last_name": "lastname", "company": "company", "country": "country"}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pg", required=True, help="postgresql://user@host:port/db")
    p.add_argument("--table", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--dir", required=True, help="pipelines directory (dlt's state)")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--hubspot", metavar="TOKEN")
    a = p.parse_args()

    headers = {"Content-Type": "application/json"}
    if a.hubspot:
        headers["Authorization"] = f"Bearer {a.hubspot}"
    else:
        headers["X-Sluicegate-Key"] = "id"
        headers["X-Sluicegate-Operation"] = "upsert"

    @dlt.destination(batch_size=a.batch, loader_file_format="parquet", name="bench_sink", naming_convention="direct",
                     max_table_nesting=0, skip_dlt_columns_and_tables=True)
    def sink(items, table) -> None:
        rows = items.to_pylist()
        if a.hubspot:
            payload = {"inputs": [
                {"idProperty": "email", "id": r["email"],
                 "properties": {HUBSPOT_NAMES[k]: r[k] for k in HUBSPOT_PROPERTIES if r.get(k) is not None}}
                for r in rows]}
        else:
            payload = rows
        requests.post(a.url, data=json.dumps(payload), headers=headers, timeout=60).raise_for_status()

    pg_url = a.pg.replace("postgres://", "postgresql://", 1)
    table = sql_table(
        credentials=pg_url,
        table=a.table,
        backend="connectorx",
        backend_kwargs={"conn": pg_url},
        incremental=dlt.sources.incremental("updated_at"),
    )
    pipeline = dlt.pipeline(pipeline_name=f"bench_{a.table}", destination=sink, pipelines_dir=a.dir, progress=None)
    info = pipeline.run(table)
    info.raise_on_failed_jobs()
    return 0


if __name__ == "__main__":
    sys.exit(main())
