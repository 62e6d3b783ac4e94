"""`sluicegate dbt exposures` writes an exposures file that a real dbt accepts: `dbt parse` of
the test dbt project with the generated file puts one exposure per destination in the manifest,
depending on exactly the models its syncs read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_dbt import DBT_PROJECT, dbt_venv  # noqa: F401  (the dbt environment fixture)

pytestmark = pytest.mark.core


def _sluicegate() -> list[str]:
    """The installed command line (`python -m sluicegate` is the same entry point)."""
    return [sys.executable, "-m", "sluicegate"]


def test_exposures_group_models_by_destination_and_dbt_accepts_them(dbt_venv: Path, tmp_path: Path) -> None:  # noqa: F811
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    (tmp_path / "sluicegate.yml").write_text(
        "sources:\n"
        "  warehouse: {url: 'sqlite://w.db'}\n"
        "destinations:\n"
        "  HubSpot: {type: hubspot, access_token: '${HUBSPOT_TOKEN:-x}'}\n"
        "  audit: {type: webhook, url: 'http://127.0.0.1:9/x'}\n"
        "syncs:\n"
        "  - {id: 1, name: contacts, source: {connection: warehouse, dbt_model: pub_hubspot_contacts},"
        " destination: {connection: HubSpot}, primary_identifier: {from: email, to: email}}\n"
        "  - {id: 2, name: raw_audit, source: {connection: warehouse, table: raw_contacts},"
        " destination: {connection: audit}, primary_identifier: {from: id, to: id}}\n"
    )
    out = project / "models" / "sluicegate_exposures.yml"
    proc = subprocess.run(
        [*_sluicegate(), "--project", str(tmp_path / "sluicegate.yml"), "dbt", "exposures",
         "--output", str(out), "--owner-email", "data@example.com"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "not exposed: sync 2 (raw_audit)" in proc.stderr
    env = {
        **os.environ,
        "SG_DBT_HOST": "127.0.0.1", "SG_DBT_PORT": "5432", "SG_DBT_USER": "nobody",
        "SG_DBT_DBNAME": "none", "SG_DBT_SCHEMA": "none", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }  # fmt: skip
    parse = subprocess.run(
        [str(dbt_venv / "bin" / "dbt"), "parse", "--project-dir", str(project), "--profiles-dir", str(project)],
        cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert parse.returncode == 0, f"dbt parse refused the exposures:\n{parse.stdout[-4000:]}\n{out.read_text()}"
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    exposures = manifest["exposures"]
    assert list(exposures) == ["exposure.sluicegate_test.sluicegate_hubspot"], list(exposures)
    e = exposures["exposure.sluicegate_test.sluicegate_hubspot"]
    assert e["type"] == "application" and e["maturity"] == "high"
    assert e["depends_on"]["nodes"] == ["model.sluicegate_test.pub_hubspot_contacts"]
    assert e["owner"]["email"] == "data@example.com"
    assert e["meta"]["sluicegate"]["syncs"][0]["id"] == 1
