"""See :mod:`sluicegate.airflow`."""
