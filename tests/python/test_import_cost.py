"""Importing sluicegate, its Airflow modules and the example DAG must not load the engine.

Airflow parses DAG files every 30 s and forks task processes; loading the extension there would
cost time and could start threads before a fork. Each check runs in a fresh interpreter, with an
import hook that makes `sluicegate._core` unimportable: an accidental import fails loudly even
when the extension is built, and the same code path is exercised when it is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.util import find_spec
from pathlib import Path

import pytest

from _support import REPO

BLOCK_CORE = textwrap.dedent(
    """
    import sys

    class _BlockCore:
        def find_spec(self, name, path=None, target=None):
            if name == "sluicegate._core":
                raise ImportError("sluicegate._core imported at import time")
            return None

    sys.meta_path.insert(0, _BlockCore())
    """
)


def _run(body: str) -> dict:
    code = (
        BLOCK_CORE
        + textwrap.dedent(body)
        + textwrap.dedent(
            """
        import json
        print(json.dumps({
            "core": "sluicegate._core" in sys.modules,
            "airflow": "airflow" in sys.modules,
            "modules": sorted(m for m in sys.modules if m.startswith("sluicegate")),
        }))
        """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=os.environ.copy(),
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_sluicegate_is_cheap() -> None:
    result = _run(
        """
        import sluicegate
        import sluicegate.engine, sluicegate.exceptions, sluicegate.types
        assert sluicegate.__version__
        assert "Engine" in sluicegate.__all__
        assert callable(sluicegate.Engine)           # the facade class, not the extension
        """
    )
    assert result["core"] is False
    assert result["airflow"] is False, "import sluicegate must not import Airflow"


def test_provider_info_imports_neither_airflow_nor_core() -> None:
    result = _run(
        """
        from sluicegate.airflow.get_provider_info import get_provider_info
        info = get_provider_info()
        assert info["package-name"] == "sluicegate"
        """
    )
    assert result["core"] is False
    assert result["airflow"] is False


def test_airflow_modules_and_example_dag_do_not_load_core() -> None:
    pytest.importorskip("airflow", reason="apache-airflow is not installed")
    dag_file = REPO / "dags" / "example_sync.py"
    result = _run(
        f"""
        import importlib.util
        import sluicegate
        import sluicegate.airflow.hooks.sluicegate
        import sluicegate.airflow.operators.sluicegate
        import sluicegate.airflow.sensors.sluicegate
        import sluicegate.airflow.triggers.sluicegate
        from sluicegate.airflow.triggers.sluicegate import SyncRunTrigger
        SyncRunTrigger(sync_run_id=1).serialize()

        spec = importlib.util.spec_from_file_location("example_sync", {str(dag_file)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.dag.dag_id == "sluicegate_example_sync"
        assert sorted(module.dag.task_ids) == ["sync_hubspot_contacts", "wait_for_sync"]
        """
    )
    assert result["core"] is False, result["modules"]
    assert "sluicegate.airflow.operators.sluicegate" in result["modules"]
    assert "sluicegate.airflow.triggers.sluicegate" in result["modules"]


def test_every_dag_in_dags_parses_without_core() -> None:
    """Each DAG file of dags/ (dbt, Census drop-in, deferrable, example), the Census module and
    the extra link: none loads the engine."""
    pytest.importorskip("airflow", reason="apache-airflow is not installed")
    files = sorted(str(p) for p in (REPO / "dags").glob("*.py"))
    assert len(files) >= 4
    result = _run(
        f"""
        import importlib.util, sys
        import sluicegate.airflow.census, sluicegate.airflow.links
        for path in {files!r}:
            spec = importlib.util.spec_from_file_location(path.rsplit("/", 1)[-1][:-3], path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            assert module.dag.tasks, path
        """
    )
    assert result["core"] is False, result["modules"]
    assert "sluicegate.airflow.census" in result["modules"]


@pytest.mark.core
def test_importing_the_extension_starts_nothing(tmp_path: Path) -> None:
    """Importing `_core` (and the Airflow modules) must not start the engine's runtime."""
    project = tmp_path / "sluicegate.yml"
    project.write_text("syncs: []\n")
    code = textwrap.dedent(
        f"""
        import sluicegate, sluicegate._core as core
        assert not core.runtime_started(), "runtime started by import"
        try:
            sluicegate.Engine({str(project)!r})
        except sluicegate.SluicegateError:
            pass  # a project without sources may be refused; opening it still starts the runtime
        print(core.runtime_started())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


def test_core_is_still_importable_normally() -> None:
    """The hook above only blocks the subprocesses; make sure the check is not vacuous."""
    if find_spec("sluicegate") is None:
        pytest.fail("sluicegate is not importable in this environment")
    if find_spec("sluicegate._core") is None:
        pytest.skip("sluicegate._core is not built")
    import sluicegate._core as core

    assert isinstance(core.__version__, str)
