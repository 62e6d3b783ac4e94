"""dbt models by name, with a real dbt: `dbt build` makes `pub_hubspot_contacts` on the test
Postgres server, and a sync that names the model (`dbt_model: pub_hubspot_contacts`) reads the
table dbt built, found through `target/manifest.json`.

Needs the Postgres test server (`SLUICEGATE_TEST_PG_URL`, from scripts/services.sh) and dbt,
which this module installs from requirements/dbt.txt into a virtual environment of its own
(`SLUICEGATE_DBT_VENV`, default `.venv-dbt` in the repository), once.
"""

from __future__ import annotations

import decimal
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sluicegate

from _support import REPO, EmulatorProcess, ensure_dbt_venv

pytestmark = pytest.mark.core

DBT_PROJECT = REPO / "tests" / "dbt_project"


@pytest.fixture(scope="module")
def pg_url() -> str:
    url = os.environ.get("SLUICEGATE_TEST_PG_URL", "")
    if not url:
        pytest.skip(
            "SLUICEGATE_TEST_PG_URL is not set: source scripts/services.sh and start Postgres "
            "(`services_start pg DIR`; scripts/test.sh does)"
        )
    return url


@pytest.fixture(scope="module")
def dbt_venv() -> Path:
    """A virtual environment with the pinned dbt, made (or refreshed) when the pins change."""
    try:
        return ensure_dbt_venv()
    except AssertionError as err:
        pytest.fail(str(err))


def _sql(venv: Path, env: dict[str, str], statement: str) -> None:
    """Run one statement on the test server with the dbt environment's psycopg2."""
    code = (
        "import os, psycopg2\n"
        "c = psycopg2.connect(host=os.environ['SG_DBT_HOST'], port=os.environ['SG_DBT_PORT'],"
        " user=os.environ['SG_DBT_USER'], password=os.environ.get('SG_DBT_PASSWORD') or None,"
        " dbname=os.environ['SG_DBT_DBNAME'])\n"
        "c.autocommit = True\n"
        "c.cursor().execute(os.environ['SG_SQL'])\n"
    )
    subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], env={**env, "SG_SQL": statement}, check=True, timeout=60
    )


@pytest.fixture(scope="module")
def dbt_built(
    pg_url: str, dbt_venv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str]]:
    """`dbt build` of the seed and `pub_hubspot_contacts` (not of `stg_unbuilt`) into a fresh
    schema; yields the copied dbt project directory and the schema."""
    work = tmp_path_factory.mktemp("dbt")
    project = work / "dbt_project"
    shutil.copytree(DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    url = urllib.parse.urlsplit(pg_url)
    schema = f"sg_dbt_{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "SG_DBT_HOST": url.hostname or "127.0.0.1",
        "SG_DBT_PORT": str(url.port or 5432),
        "SG_DBT_USER": urllib.parse.unquote(url.username or "postgres"),
        "SG_DBT_PASSWORD": urllib.parse.unquote(url.password or ""),
        "SG_DBT_DBNAME": url.path.lstrip("/") or "postgres",
        "SG_DBT_SCHEMA": schema,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    proc = subprocess.run(
        [str(dbt_venv / "bin" / "dbt"), "build", "--select", "raw_contacts", "pub_hubspot_contacts",
         "--project-dir", str(project), "--profiles-dir", str(project)],
        cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"dbt build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    assert (project / "target" / "manifest.json").is_file()
    try:
        yield project, schema
    finally:
        _sql(dbt_venv, env, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _project(dir: Path, pg_url: str, dbt_project: Path, webhook: str) -> Path:
    sync = """\
  - id: {id}
    name: {name}
    source: {{connection: warehouse, dbt_model: {model}}}
    destination: {{connection: hook, object: contacts}}
    primary_identifier: {{from: email, to: email}}
    mappings:
{mappings}
"""
    contacts = (
        "      - {from: first_name, to: firstname}\n"
        "      - {from: lead_score, to: hubspotscore}\n"
        "      - {from: signed_up_at, to: createdate}"
    )
    text = (
        "sources:\n"
        "  warehouse:\n"
        f"    url: {json.dumps(pg_url)}\n"
        f"    dbt_manifest: {json.dumps(str(dbt_project / 'target' / 'manifest.json'))}\n"
        "destinations:\n"
        "  hook:\n"
        "    type: webhook\n"
        f"    url: {webhook}/contacts\n"
        "    batch_size: 100\n"
        "syncs:\n"
        + sync.format(id=1, name="hubspot_contacts", model="pub_hubspot_contacts", mappings=contacts)
        + sync.format(id=2, name="typo", model="pub_hubspot_contact", mappings=contacts)
        + sync.format(id=3, name="unbuilt", model="stg_unbuilt", mappings="      - {from: id, to: id}")
    )
    path = dir / "sluicegate.yml"
    path.write_text(text)
    return path


def _received(emulator: EmulatorProcess) -> list[dict[str, Any]]:
    """The records the emulator got, numbers as Decimal (so their digits can be checked)."""
    with urllib.request.urlopen(emulator.url + "/_emulator/received", timeout=30) as resp:
        body = json.loads(resp.read(), parse_float=decimal.Decimal)
    return list(body["records"])


@pytest.fixture
def engine(
    dbt_built: tuple[Path, str], pg_url: str, emulator: EmulatorProcess, tmp_path: Path
) -> sluicegate.Engine:
    return sluicegate.Engine(_project(tmp_path, pg_url, dbt_built[0], emulator.url))


def test_a_dbt_model_by_name_delivers_its_rows(engine: sluicegate.Engine, emulator: EmulatorProcess) -> None:
    run = engine.sync("hubspot_contacts")
    assert run["status"] == "completed", run["error_message"]
    assert run["records_updated"] == 4  # the seed's row without an e-mail is filtered by the model
    got = _received(emulator)
    # In key order, each value exactly: numerics keep their scale, timestamps are UTC ISO-8601.
    assert [r["email"] for r in got] == ["ada@example.com", "grace@example.com", "linus@example.com", "zoë@example.com"]
    want = [
        {"email": "ada@example.com", "firstname": "Ada", "hubspotscore": "88.50", "createdate": "2026-01-31T12:00:00Z"},
        {"email": "grace@example.com", "firstname": "Grace", "hubspotscore": "12345678.25",
         "createdate": "2026-02-01T07:30:00.5Z"},
        {"email": "linus@example.com", "firstname": "Linus", "hubspotscore": "0.00", "createdate": "2025-12-31T23:59:59Z"},
        {"email": "zoë@example.com", "firstname": "Zoë", "hubspotscore": None, "createdate": "2026-03-01T00:00:00Z"},
    ]  # fmt: skip
    for record, expected in zip(got, want, strict=True):
        as_text = {k: (str(v) if isinstance(v, decimal.Decimal) else v) for k, v in record.items()}
        assert as_text == expected
        if expected["hubspotscore"] is not None:
            assert isinstance(record["hubspotscore"], decimal.Decimal), "a numeric arrives as a JSON number"

    again = engine.sync("hubspot_contacts")
    assert again["status"] == "completed", again["error_message"]
    assert again["records_processed"] == 0


def test_a_model_missing_from_the_manifest_is_named(engine: sluicegate.Engine) -> None:
    run = engine.sync("typo")
    assert run["status"] == "failed"
    message = run["error_message"] or ""
    assert "dbt model `pub_hubspot_contact` is not in" in message, message
    assert "manifest.json" in message and "did you mean `pub_hubspot_contacts`" in message, message


def test_a_model_in_the_manifest_but_not_built_is_named(engine: sluicegate.Engine) -> None:
    run = engine.sync("unbuilt")
    assert run["status"] == "failed"
    message = run["error_message"] or ""
    assert "dbt model `stg_unbuilt`" in message, message
    assert "has it been built" in message, message
    assert "stg_unbuilt" in message and "does not exist" in message, message
