//! What the SQLite and Postgres stores share: the run columns, decoding a run row and writing
//! the counts, written once over sqlx's database-generic traits.

use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use super::{now, OpCounts, RecordFilter, RecordKind, StoredRecord, RunTotals, RunCounts, RunEnd, RunRecord, RunRecordOutcome, RunStatus, StateEntry, TriggerReason};
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

/// The whole `UPDATE sync_runs …` that records how a run ended. Only a working run is
/// finished: one already failed as "executor lost" stays as it is.
pub fn finish_query<DB>(run_id: i64, end: &RunEnd) -> QueryBuilder<DB>
where
    DB: Database,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> Option<i64>: Encode<'a, DB> + Type<DB>,
    for<'a> String: Encode<'a, DB> + Type<DB>,
    for<'a> Option<String>: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::<DB>::new("UPDATE sync_runs SET status = ");
    qb.push_bind(end.status.as_str().to_string())
        .push(", completed_at = ")
        .push_bind(now())
        .push(", canceled = ")
        .push_bind(i64::from(end.canceled))
        .push(", current_step = NULL, lease_expires_at = NULL, error_code = ")
        .push_bind(end.error_code.clone())
        .push(", error_message = ")
        .push_bind(end.error_message.clone())
        .push(", error_detail = ")
        .push_bind(end.error_detail.clone())
        .push(", ");
    push_counts(&mut qb, &end.counts);
    qb.push(" WHERE id = ").push_bind(run_id).push(" AND status = 'working'");
    qb
}

/// Decode a `SELECT sort_key, identifier, fingerprint` row of the sync state.
pub fn state_entry_from_row<R>(row: R, store: &str) -> Result<StateEntry>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let bad = |what: &str| Error::store(format!("state store {store}: {what}"));
    let key: Vec<u8> = row.try_get(0).map_err(|e| bad("bad sort key in sync state").with_source(e))?;
    let identifier: String = row.try_get(1).map_err(|e| bad("bad identifier in sync state").with_source(e))?;
    let fp: Vec<u8> = row.try_get(2).map_err(|e| bad("bad fingerprint in sync state").with_source(e))?;
    let bytes: [u8; 16] = fp
        .as_slice()
        .try_into()
        .map_err(|_| bad(&format!("fingerprint of {identifier:?} has {} bytes, expected 16", fp.len())))?;
    Ok(StateEntry { key, identifier, fingerprint: u128::from_be_bytes(bytes) })
}

/// Decode a `SELECT identifier, kind, operation, reason, payload FROM run_records` row.
pub fn outcome_from_row<R>(row: &R) -> Result<RunRecordOutcome>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    let bad = |e: sqlx::Error| Error::store("cannot decode a run record from the state store").with_source(e);
    let kind: String = row.try_get("kind").map_err(bad)?;
    Ok(RunRecordOutcome {
        identifier: row.try_get("identifier").map_err(bad)?,
        kind: if kind == "invalid" { RecordKind::Invalid } else { RecordKind::Rejected },
        operation: row.try_get("operation").map_err(bad)?,
        reason: row.try_get("reason").map_err(bad)?,
        payload: row.try_get("payload").map_err(bad)?,
    })
}

/// Decode a `SELECT identifier, kind, operation, reason, payload, created_at FROM run_records` row.
pub fn stored_record_from_row<R>(row: &R) -> Result<StoredRecord>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    let recorded_at: String =
        row.try_get("created_at").map_err(|e| Error::store("cannot decode a run record from the state store").with_source(e))?;
    Ok(StoredRecord { outcome: outcome_from_row(row)?, recorded_at })
}

/// ` AND …` for each filter of a records query (the query already says `WHERE run_id = …`).
pub fn push_record_filter<DB>(qb: &mut QueryBuilder<DB>, f: &RecordFilter)
where
    DB: Database,
    for<'a> String: Encode<'a, DB> + Type<DB>,
{
    if let Some(k) = f.kind {
        qb.push(" AND kind = ").push_bind(k.as_str().to_string());
    }
    if let Some(i) = &f.identifier {
        qb.push(" AND identifier = ").push_bind(i.clone());
    }
    if let Some(o) = &f.operation {
        qb.push(" AND operation = ").push_bind(o.clone());
    }
}

/// Decode a run-totals row: sync_id, status, canceled, runs, updated, failed, invalid.
pub fn totals_from_row<R>(row: &R) -> Result<RunTotals>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let bad = |e: sqlx::Error| Error::store("cannot decode run totals from the state store").with_source(e);
    Ok(RunTotals {
        sync_id: row.try_get(0).map_err(bad)?,
        status: row.try_get(1).map_err(bad)?,
        canceled: row.try_get::<i64, _>(2).map_err(bad)? != 0,
        runs: row.try_get(3).map_err(bad)?,
        records_updated: row.try_get(4).map_err(bad)?,
        records_failed: row.try_get(5).map_err(bad)?,
        records_invalid: row.try_get(6).map_err(bad)?,
    })
}

pub const TOTALS_SQL: &str = "SELECT sync_id, status, canceled, CAST(COUNT(*) AS BIGINT), \
    CAST(COALESCE(SUM(records_updated), 0) AS BIGINT), CAST(COALESCE(SUM(records_failed), 0) AS BIGINT), \
    CAST(COALESCE(SUM(records_invalid), 0) AS BIGINT) FROM sync_runs GROUP BY sync_id, status, canceled \
    ORDER BY sync_id, status, canceled";
