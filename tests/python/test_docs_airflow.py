"""docs/airflow.md says what the Airflow classes do: parameters, defaults, templated fields,
connection fields. Read from the page, compared with the classes' signatures.

The commands and DAG snippets of the page are run by test_docs_commands.py.
"""

from __future__ import annotations

import ast
import inspect
import re
from typing import Any

import pytest

from _support import REPO

pytest.importorskip("airflow", reason="apache-airflow is not installed")

from sluicegate.airflow import census
from sluicegate.airflow.get_provider_info import CONN_FIELDS
from sluicegate.airflow.operators.sluicegate import SyncOperator
from sluicegate.airflow.sensors.sluicegate import SyncSensor

pytestmark = pytest.mark.airflow

PAGE = REPO / "docs" / "airflow.md"
TEXT = PAGE.read_text(encoding="utf-8")


def section(title: str) -> str:
    start = TEXT.index(f"## {title}\n")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start : end if end > 0 else len(TEXT)]


def table(text: str, header: str) -> list[list[str]]:
    lines = text[text.index(header) :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def parameters(cls: type) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
    }


def spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_sync_operator_table_is_its_signature() -> None:
    params = parameters(SyncOperator)
    rows = table(section("SyncOperator"), "| parameter | default | meaning |")
    documented: set[str] = set()
    for name_cell, default_cell, meaning in rows:
        names = spans(name_cell)
        aliases = set(re.findall(r"\(`(\w+)`\)", name_cell))  # `full_resync` (`full_sync`)
        documented.update(names)
        for name in names:
            assert name in params, f"docs/airflow.md: SyncOperator has no parameter {name}"
            default = params[name].default
            templated = name in SyncOperator.template_fields
            assert name in aliases or ("templated" in meaning) == templated, (
                f"docs/airflow.md: {name} is {'' if templated else 'not '}templated"
            )
            if default_cell == "" or name in aliases:
                continue  # one of a required pair (sync_id / sync_name), or another name
            if default_cell == "none":
                assert default is None, f"docs/airflow.md: {name} defaults to {default!r}"
            elif default_cell == "`[operators] default_deferrable`":
                # None in the signature: Airflow's setting is read when the operator is built.
                assert default is None, f"docs/airflow.md: {name} defaults to {default!r}"
            else:
                shown = spans(default_cell)[0] if spans(default_cell) else default_cell
                value: Any = shown if name.endswith("conn_id") else ast.literal_eval(shown)
                assert default == value, f"docs/airflow.md: {name} defaults to {default!r}"
    assert documented == set(params), (
        f"docs/airflow.md's SyncOperator table and its signature differ: "
        f"{sorted(documented ^ set(params))}"
    )


def test_sensor_defaults_in_the_text() -> None:
    sensor = SyncSensor(task_id="wait", sync_run_id=1)
    snippet = section("SyncSensor and SyncRunTrigger")
    poke = re.search(r"poke_interval=(\d+)", snippet)
    assert poke and sensor.poke_interval == float(poke.group(1)), sensor.poke_interval
    days = re.search(r"`timeout` \(default (\d+) days\)", snippet)
    assert days and sensor.timeout == int(days.group(1)) * 24 * 3600, sensor.timeout


def test_census_defaults_in_the_text() -> None:
    """Every `name=value` written in the Census section is that parameter's default in the
    drop-in classes that take it."""
    classes = [census.CensusHook, census.CensusOperator, census.CensusSensor, census.CensusTrigger]
    pairs = re.findall(r"`(\w+)=([^`]+)`", section("Census drop-in"))
    assert len(pairs) >= 5, pairs
    for name, shown in pairs:
        value = ast.literal_eval(shown)
        having = [c for c in classes if name in parameters(c)]
        assert having, f"docs/airflow.md: no Census drop-in class takes {name}"
        for cls in having:
            default = parameters(cls)[name].default
            assert default == value, (
                f"docs/airflow.md: {cls.__name__}({name}=…) defaults to {default!r}"
            )


def test_connection_extra_fields() -> None:
    rows = table(section("Connection: three modes"), "| mode | host | password | extra |")
    in_task = next(r for r in rows if r[0].startswith("in-task"))
    fields = spans(re.sub(r"\([^)]*\)", "", in_task[3]))  # the names, not their explanations
    assert set(fields) == set(CONN_FIELDS), (
        f"docs/airflow.md: in-task extra fields {fields}, the hook reads {set(CONN_FIELDS)}"
    )
