"""Airflow 2.10+/3.x import shim.

Airflow 3 moved the authoring classes to the Task SDK (``airflow.sdk``); Airflow 2.x has them
in ``airflow.models``, ``airflow.sensors.base`` and ``airflow.hooks.base``. Airflow 3 still
answers the 2.x paths, but with deprecation warnings, so the SDK is tried first. Type checkers
see the Airflow 3 classes. Triggers live in ``airflow.triggers.base`` on both lines (imported
by :mod:`sluicegate.airflow.triggers.sluicegate` only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
else:
    try:
        from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator
    except ImportError:  # Airflow 2.x
        from airflow.hooks.base import BaseHook
        from airflow.models import BaseOperator
        from airflow.sensors.base import BaseSensorOperator

    try:
        from airflow.sdk.exceptions import (
            AirflowException,
            AirflowNotFoundException,
            AirflowSensorTimeout,
            AirflowSkipException,
        )
    except ImportError:  # Airflow 2.x
        from airflow.exceptions import (
            AirflowException,
            AirflowNotFoundException,
            AirflowSensorTimeout,
            AirflowSkipException,
        )

__all__ = [
    "AirflowException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
    "default_deferrable",
]


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` setting (False when unset)."""
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 2.x
        from airflow.configuration import conf
    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))
