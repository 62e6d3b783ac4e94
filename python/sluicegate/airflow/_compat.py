"""Airflow 2.10+/3.x import shim.

Airflow 3 moved the authoring classes to the Task SDK (``airflow.sdk``); Airflow 2.x has them
in ``airflow.models``, ``airflow.sensors.base`` and ``airflow.hooks.base``. Airflow 3 still
answers the 2.x paths, but with deprecation warnings, so the SDK is tried first.
"""

from __future__ import annotations

try:
    from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator
except ImportError:  # Airflow 2.x
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]
    from airflow.models import BaseOperator  # type: ignore[no-redef]
    from airflow.sensors.base import BaseSensorOperator  # type: ignore[no-redef]

try:
    from airflow.sdk.exceptions import AirflowException
except ImportError:  # Airflow 2.x
    from airflow.exceptions import AirflowException  # type: ignore[no-redef]

try:
    from airflow.sdk.exceptions import AirflowNotFoundException
except ImportError:  # Airflow 2.x
    from airflow.exceptions import AirflowNotFoundException  # type: ignore[no-redef]

__all__ = [
    "AirflowException",
    "AirflowNotFoundException",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
]
