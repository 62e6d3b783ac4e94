-- Runs queued for the workers of `sluicegate serve` (triggered over the HTTP API or by a
-- schedule). Runs triggered in-task (CLI, Airflow operators) are claimed by their own caller.
ALTER TABLE sync_runs ADD COLUMN served BIGINT NOT NULL DEFAULT 0;
CREATE INDEX sync_runs_served_queue ON sync_runs (id) WHERE status = 'queued' AND served = 1;
-- A schedule's slot is triggered once, however many replicas run the scheduler.
CREATE UNIQUE INDEX sync_runs_scheduled_slot ON sync_runs (sync_id, scheduled_execution_time)
    WHERE served = 1 AND scheduled_execution_time IS NOT NULL;
