//! What the SQLite and Postgres stores share: the run columns, decoding a run row and writing
//! the counts, written once over sqlx's database-generic traits.

use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use super::{now, OpCounts, RunCounts, RunRecord, RunStatus, TriggerReason};
use crate::error::{Error, Result};

pub const RUN_COLUMNS: &str = "id, sync_id, sync_name, status, created_at, updated_at, started_at, completed_at, \
    scheduled_execution_time, error_code, error_message, error_detail, canceled, full_sync, trigger_tag, \
    trigger_detail, current_step, source_record_count, source_record_updates, source_record_deletes, \
    records_invalid, records_processed, records_updated, records_failed, planned_adds, planned_changes, \
    planned_removes, succeeded_adds, succeeded_changes, succeeded_removes, failed_adds, failed_changes, failed_removes";

/// Decode a `SELECT RUN_COLUMNS` row.
pub fn run_from_row<R>(row: &R) -> Result<RunRecord>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    let bad = |e: sqlx::Error| Error::store("cannot decode a run from the state store").with_source(e);
    let int = |c: &str| row.try_get::<i64, _>(c).map_err(bad);
    let opt_int = |c: &str| row.try_get::<Option<i64>, _>(c).map_err(bad);
    let text = |c: &str| row.try_get::<String, _>(c).map_err(bad);
    let opt_text = |c: &str| row.try_get::<Option<String>, _>(c).map_err(bad);
    let invalid = opt_int("records_invalid")?;
    Ok(RunRecord {
        id: int("id")?,
        sync_id: int("sync_id")?,
        sync_name: text("sync_name")?,
        status: RunStatus::parse(&text("status")?)?,
        created_at: text("created_at")?,
        updated_at: text("updated_at")?,
        started_at: opt_text("started_at")?,
        completed_at: opt_text("completed_at")?,
        scheduled_execution_time: opt_text("scheduled_execution_time")?,
        error_code: opt_text("error_code")?,
        error_message: opt_text("error_message")?,
        error_detail: opt_text("error_detail")?,
        canceled: int("canceled")? != 0,
        full_sync: int("full_sync")? != 0,
        sync_trigger_reason: TriggerReason { ui_tag: text("trigger_tag")?, ui_detail: text("trigger_detail")? },
        current_step: opt_text("current_step")?,
        counts: RunCounts {
            source_record_count: opt_int("source_record_count")?,
            source_record_updates: opt_int("source_record_updates")?,
            source_record_deletes: opt_int("source_record_deletes")?,
            records_invalid: invalid,
            records_processed: opt_int("records_processed")?,
            records_updated: opt_int("records_updated")?,
            records_failed: opt_int("records_failed")?,
            planned: OpCounts { adds: int("planned_adds")?, changes: int("planned_changes")?, removes: int("planned_removes")? },
            succeeded: OpCounts {
                adds: int("succeeded_adds")?,
                changes: int("succeeded_changes")?,
                removes: int("succeeded_removes")?,
            },
            failed: OpCounts { adds: int("failed_adds")?, changes: int("failed_changes")?, removes: int("failed_removes")? },
        },
        source_record_invalids: invalid,
    })
}

/// `col = value, …` for every count, and `updated_at`.
pub fn push_counts<DB>(qb: &mut QueryBuilder<DB>, c: &RunCounts)
where
    DB: Database,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> Option<i64>: Encode<'a, DB> + Type<DB>,
    for<'a> String: Encode<'a, DB> + Type<DB>,
{
    let fields: [(&str, Option<i64>); 7] = [
        ("source_record_count", c.source_record_count),
        ("source_record_updates", c.source_record_updates),
        ("source_record_deletes", c.source_record_deletes),
        ("records_invalid", c.records_invalid),
        ("records_processed", c.records_processed),
        ("records_updated", c.records_updated),
        ("records_failed", c.records_failed),
    ];
    let ops: [(&str, i64); 9] = [
        ("planned_adds", c.planned.adds),
        ("planned_changes", c.planned.changes),
        ("planned_removes", c.planned.removes),
        ("succeeded_adds", c.succeeded.adds),
        ("succeeded_changes", c.succeeded.changes),
        ("succeeded_removes", c.succeeded.removes),
        ("failed_adds", c.failed.adds),
        ("failed_changes", c.failed.changes),
        ("failed_removes", c.failed.removes),
    ];
    let mut sep = qb.separated(", ");
    for (col, v) in fields {
        sep.push(col).push_unseparated(" = ").push_bind_unseparated(v);
    }
    for (col, v) in ops {
        sep.push(col).push_unseparated(" = ").push_bind_unseparated(v);
    }
    sep.push("updated_at = ").push_bind_unseparated(now());
}
