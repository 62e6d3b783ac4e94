"""Apache Airflow integration: hook, operator and sensor for sluicegate syncs.

Install with ``pip install 'sluicegate[airflow]'``. Classes live in the usual provider layout:

* ``sluicegate.airflow.hooks.sluicegate.SluicegateHook``: connection type ``sluicegate``
* ``sluicegate.airflow.operators.sluicegate.SyncOperator``: trigger and run a sync in the task
* ``sluicegate.airflow.sensors.sluicegate.SyncSensor``: wait for a sync run to complete
  (poke, reschedule or deferrable)
* ``sluicegate.airflow.triggers.sluicegate.SyncRunTrigger``: the deferrable sensor's wait, in
  the triggerer, awaiting the engine through its async bridge

Importing these modules does not load the compiled engine; it is loaded when a task executes.
This package's ``__init__`` imports nothing, so it is safe to import without Airflow installed
(``get_provider_info`` relies on that).
"""
