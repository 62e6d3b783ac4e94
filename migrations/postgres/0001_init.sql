-- Runs, acknowledged row state and per-row outcomes. Field names follow the Census API.
-- Same shape as the SQLite schema (timestamps as fixed-width RFC 3339 text, flags as 0/1).
CREATE TABLE sync_runs (
    id                       BIGSERIAL PRIMARY KEY,
    sync_id                  BIGINT NOT NULL,
    sync_name                TEXT    NOT NULL,
    status                   TEXT    NOT NULL CHECK (status IN ('queued', 'working', 'completed', 'failed')),
    created_at               TEXT    NOT NULL,
    updated_at               TEXT    NOT NULL,
    started_at               TEXT,
    completed_at             TEXT,
    scheduled_execution_time TEXT,
    error_code               TEXT,
    error_message            TEXT,
    error_detail             TEXT,
    canceled                 BIGINT NOT NULL DEFAULT 0,
    full_sync                BIGINT NOT NULL DEFAULT 0,
    trigger_tag              TEXT    NOT NULL,
    trigger_detail           TEXT    NOT NULL,
    current_step             TEXT,
    executor                 TEXT,
    lease_expires_at         TEXT,
    heartbeat_at             TEXT,
    cancel_requested         BIGINT NOT NULL DEFAULT 0,
    source_record_count      BIGINT,
    source_record_updates    BIGINT,
    source_record_deletes    BIGINT,
    records_invalid          BIGINT,
    records_processed        BIGINT,
    records_updated          BIGINT,
    records_failed           BIGINT,
    planned_adds             BIGINT NOT NULL DEFAULT 0,
    planned_changes          BIGINT NOT NULL DEFAULT 0,
    planned_removes          BIGINT NOT NULL DEFAULT 0,
    succeeded_adds           BIGINT NOT NULL DEFAULT 0,
    succeeded_changes        BIGINT NOT NULL DEFAULT 0,
    succeeded_removes        BIGINT NOT NULL DEFAULT 0,
    failed_adds              BIGINT NOT NULL DEFAULT 0,
    failed_changes           BIGINT NOT NULL DEFAULT 0,
    failed_removes           BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sync_runs_by_sync ON sync_runs (sync_id, id);
CREATE INDEX sync_runs_active ON sync_runs (sync_id) WHERE status IN ('queued', 'working');
-- At most one working run per sync, whatever the race between executors.
CREATE UNIQUE INDEX sync_runs_one_working ON sync_runs (sync_id) WHERE status = 'working';

-- One row per identifier the destination acknowledged: the fingerprint of what it holds.
-- sort_key orders identifiers byte-wise the way the source is read (integers before text,
-- integers numerically), so the diff is a streaming merge.
CREATE TABLE sync_state (
    sync_id     BIGINT NOT NULL,
    sort_key    BYTEA    NOT NULL,
    identifier  TEXT    NOT NULL,
    fingerprint BYTEA    NOT NULL,
    run_id      BIGINT NOT NULL,
    PRIMARY KEY (sync_id, sort_key)
);

-- Rows of a run that were not delivered: invalid in the source, or rejected by the destination.
CREATE TABLE run_records (
    id         BIGSERIAL PRIMARY KEY,
    run_id     BIGINT NOT NULL,
    sync_id    BIGINT NOT NULL,
    identifier TEXT,
    kind       TEXT    NOT NULL CHECK (kind IN ('invalid', 'rejected')),
    operation  TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    payload    TEXT,
    created_at TEXT    NOT NULL
);
CREATE INDEX run_records_by_run ON run_records (run_id, id);
