"""The plain-Python peer: what a data engineer writes by hand (psycopg + requests).

Reads the table with a server-side cursor, sends JSON batches of 100 with a requests Session
whose retries follow the requests/urllib3 documentation (Retry with backoff on 429 and 5xx,
honouring Retry-After, POST included). Change detection is the usual hand-written one: a
high-water mark on `updated_at` kept in a local JSON file, saved when the run finishes. It
cannot see updates that leave `updated_at` alone, nor deletes.

    plain_sync.py --pg URL --table customers --url http://sink/customers --state state.json
    plain_sync.py ... --hubspot TOKEN      # HubSpot batch upsert bodies, idProperty email
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import psycopg
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

HUBSPOT_PROPERTIES = ("firstname", "lastname", "company", "country")


def session(token: str | None) -> requests.Session:
    s = requests.Session()
    retry = Retry(
        total=10,
        backoff_factor=1,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,  # POST too
        respect_retry_after_header=True,
    )
    s.mount("http://", HTTPAdapter(max_retries=retry))
    s.headers["Content-Type"] = "application/json"
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    else:
        # Tell the benchmark sink which field is the key, so it can count distinct records.
        s.headers["X-Sluicegate-Key"] = "id"
        s.headers["X-Sluicegate-Operation"] = "upsert"
    return s


def body(rows: list[dict], hubspot: bool) -> str:
    if hubspot:
        inputs = [
            {
                "idProperty": "email",
                "id": r["email"],
                "properties": {k: r[k] for k in HUBSPOT_PROPERTIES if r.get(k) is not None},
            }
            for r in rows
        ]
        return json.dumps({"inputs": inputs})
    return json.dumps(rows, default=str)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pg", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--hubspot", metavar="TOKEN")
    a = p.parse_args()

    cursor = None
    if os.path.exists(a.state):
        with open(a.state) as f:
            cursor = json.load(f).get("updated_at")
    http = session(a.hubspot)
    sent = 0
    high = cursor
    with psycopg.connect(a.pg) as conn:
        if a.hubspot:
            query = f"SELECT id, email, first_name AS firstname, last_name AS lastname, company, country, updated_at FROM {a.table}"
        else:
            query = f"SELECT * FROM {a.table}"
        params: tuple = ()
        if cursor is not None:
            query += " WHERE updated_at > %s"
            params = (cursor,)
        with conn.cursor(name="extract") as cur:
            cur.itersize = 10_000
            cur.execute(query, params)
            cols = [d.name for d in cur.description]
            batch: list[dict] = []
            for row in cur:
                rec = dict(zip(cols, row))
                ts = rec["updated_at"].isoformat()
                if high is None or ts > high:
                    high = ts
                if a.hubspot:
                    del rec["updated_at"]
                batch.append(rec)
                if len(batch) == a.batch:
                    http.post(a.url, data=body(batch, bool(a.hubspot)), timeout=60).raise_for_status()
                    sent += len(batch)
                    batch = []
            if batch:
                http.post(a.url, data=body(batch, bool(a.hubspot)), timeout=60).raise_for_status()
                sent += len(batch)
    with open(a.state, "w") as f:
        json.dump({"updated_at": high}, f)
    print(json.dumps({"sent": sent}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
