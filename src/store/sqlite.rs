//! SQLite state store: one file, WAL mode, every write batched into one transaction.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use sqlx::{ConnectOptions, QueryBuilder, Row, Sqlite};

use super::common::{
    finish_query, outcome_from_row, push_counts, push_record_filter, run_from_row, stored_record_from_row, totals_from_row, RUN_COLUMNS,
    TOTALS_SQL,
};
use super::migrations::SQLITE as MIGRATIONS;
use super::*;
use crate::error::{Context, ErrorKind};

pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

/// SQLite allows 32766 bound parameters per statement; stay well below.
const ROWS_PER_INSERT: usize = 2000;

fn store_err(what: impl Into<String>) -> impl FnOnce() -> String {
    let what = what.into();
    move || what
}

/// Rows of sync state read per page.
const STATE_PAGE: usize = 4096;

impl SqliteStore {
    /// Up to `STATE_PAGE` state entries of a sync with keys after `after`, in key order.
    ///
    /// Read through SQLite's C API on this thread, with the connection's worker paused: sqlx
    /// would hand each row over a channel from its worker thread, which costs a thread wake-up
    /// per row and dominated no-change runs of large syncs.
    async fn state_page(&self, sync_id: i64, after: &[u8]) -> Result<Vec<StateEntry>> {
        use libsqlite3_sys as ffi;
        use std::ffi::{c_int, c_void, CStr};

        let mut conn = self.pool.acquire().await.context(ErrorKind::Store, self.err("cannot connect"))?;
        let mut handle = conn.lock_handle().await.context(ErrorKind::Store, self.err("cannot lock a connection"))?;
        let db = handle.as_raw_handle().as_ptr();
        let sql = c"SELECT sort_key, identifier, fingerprint FROM sync_state WHERE sync_id = ?1 AND sort_key > ?2 ORDER BY sort_key LIMIT ?3";
        let fail = |what: &str| {
            // SAFETY: `db` is the open connection we hold locked; sqlite3_errmsg returns a
            // NUL-terminated string owned by SQLite, valid until the next call on `db`.
            let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }.to_string_lossy().into_owned();
            Error::store(format!("state store {}: {what}: {msg}", self.path.display()))
        };
        let mut out = Vec::with_capacity(STATE_PAGE);
        let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
        // SAFETY: `db` stays valid and unused by anyone else while `handle` is held (sqlx's
        // worker is paused); the statement is prepared, bound, stepped and finalized here, and
        // column pointers are copied before the next step.
        unsafe {
            if ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut stmt, std::ptr::null_mut()) != ffi::SQLITE_OK {
                return Err(fail("cannot read sync state"));
            }
            let bound = ffi::sqlite3_bind_int64(stmt, 1, sync_id) == ffi::SQLITE_OK
                && ffi::sqlite3_bind_blob(stmt, 2, after.as_ptr().cast::<c_void>(), after.len() as c_int, ffi::SQLITE_TRANSIENT())
                    == ffi::SQLITE_OK
                && ffi::sqlite3_bind_int64(stmt, 3, STATE_PAGE as i64) == ffi::SQLITE_OK;
            let mut result = if bound { Ok(()) } else { Err(fail("cannot read sync state")) };
            while result.is_ok() {
                match ffi::sqlite3_step(stmt) {
                    ffi::SQLITE_ROW => {
                        let bytes = |col: c_int| -> &[u8] {
                            let p = ffi::sqlite3_column_blob(stmt, col).cast::<u8>();
                            let n = ffi::sqlite3_column_bytes(stmt, col) as usize;
                            if p.is_null() || n == 0 { &[] } else { std::slice::from_raw_parts(p, n) }
                        };
                        let key = bytes(0).to_vec();
                        let identifier = String::from_utf8_lossy(bytes(1)).into_owned();
                        match <[u8; 16]>::try_from(bytes(2)) {
                            Ok(fp) => out.push(StateEntry { key, identifier, fingerprint: u128::from_be_bytes(fp) }),
                            Err(_) => {
                                result = Err(Error::store(format!(
                                    "state store {}: the fingerprint of {identifier:?} is not 16 bytes",
                                    self.path.display()
                                )))
                            }
                        }
                    }
                    ffi::SQLITE_DONE => break,
                    _ => result = Err(fail("reading sync state failed")),
                }
            }
            ffi::sqlite3_finalize(stmt);
            result?;
        }
        Ok(out)
    }

    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                std::fs::create_dir_all(parent).context(ErrorKind::Store, || {
                    format!("cannot create the directory of the state store {}", parent.display())
                })?;
            }
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .context(ErrorKind::Store, store_err("invalid SQLite options"))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            // SQLite's default page cache (2 MB) makes each state write of a changed row in a
            // large table read and write ~19 pages (measured: bench/ S3); 32 MB per connection
            // keeps the B-tree's inner pages and recently written leaves in memory.
            .pragma("cache_size", "-32768")
            // Reading a large sync's state takes long by design: no slow-statement warnings.
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .context(ErrorKind::Store, || format!("cannot open the state store {}", path.display()))?;
        let store = SqliteStore { pool, path: path.to_path_buf() };
        store.migrate().await?;
        Ok(store)
    }

    fn err(&self, what: &str) -> impl FnOnce() -> String {
        let msg = format!("state store {}: {what}", self.path.display());
        move || msg
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.context(ErrorKind::Store, self.err("cannot connect"))?;
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await.context(ErrorKind::Store, self.err("cannot lock for migration"))?;
        let result: Result<()> = async {
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS sluicegate_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
            )
            .execute(&mut *conn)
            .await
            .context(ErrorKind::Store, self.err("cannot create the migrations table"))?;
            let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM sluicegate_migrations")
                .fetch_one(&mut *conn)
                .await
                .context(ErrorKind::Store, self.err("cannot read the schema version"))?;
            let latest = MIGRATIONS.last().map(|m| m.version).unwrap_or(0);
            if current > latest {
                return Err(Error::store(format!(
                    "state store {} has schema version {current}, newer than this sluicegate understands ({latest}); upgrade sluicegate",
                    self.path.display()
                )));
            }
            for m in MIGRATIONS.iter().filter(|m| m.version > current) {
                sqlx::raw_sql(m.sql)
                    .execute(&mut *conn)
                    .await
                    .context(ErrorKind::Store, self.err(&format!("migration {} ({}) failed", m.version, m.name)))?;
                sqlx::query("INSERT INTO sluicegate_migrations (version, name, applied_at) VALUES (?, ?, ?)")
                    .bind(m.version)
                    .bind(m.name)
                    .bind(now())
                    .execute(&mut *conn)
                    .await
                    .context(ErrorKind::Store, self.err("cannot record a migration"))?;
            }
            Ok(())
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::raw_sql(end).execute(&mut *conn).await.context(ErrorKind::Store, self.err("cannot finish the migration"))?;
        result
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_run(&self, sync_id: i64, sync_name: &str, full_sync: bool, reason: &TriggerReason) -> Result<i64> {
        let ts = now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sync_runs (sync_id, sync_name, status, created_at, updated_at, full_sync, trigger_tag, trigger_detail, current_step) \
             VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, 'Queued') RETURNING id",
        )
        .bind(sync_id)
        .bind(sync_name)
        .bind(&ts)
        .bind(&ts)
        .bind(i64::from(full_sync))
        .bind(&reason.ui_tag)
        .bind(&reason.ui_detail)
        .fetch_one(&self.pool)
        .await
        .context(ErrorKind::Store, self.err("cannot create a run"))?;
        Ok(id)
    }

    async fn create_claimed_run(
        &self,
        sync_id: i64,
        sync_name: &str,
        full_sync: bool,
        reason: &TriggerReason,
        executor: &str,
        lease: Duration,
    ) -> Result<Option<RunRecord>> {
        let ts = now();
        let done: std::result::Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO sync_runs (sync_id, sync_name, status, created_at, updated_at, started_at, heartbeat_at, lease_expires_at, \
             executor, full_sync, trigger_tag, trigger_detail, current_step) \
             SELECT ?1, ?2, 'working', ?3, ?3, ?3, ?3, ?4, ?5, ?6, ?7, ?8, 'Checking source and destination configuration' \
             WHERE NOT EXISTS (SELECT 1 FROM sync_runs WHERE sync_id = ?1 AND status = 'working') RETURNING id",
        )
        .bind(sync_id)
        .bind(sync_name)
        .bind(&ts)
        .bind(now_plus(lease))
        .bind(executor)
        .bind(i64::from(full_sync))
        .bind(&reason.ui_tag)
        .bind(&reason.ui_detail)
        .fetch_optional(&self.pool)
        .await;
        match done {
            Ok(Some(id)) => Ok(Some(self.get_run(id).await?)),
            Ok(None) => Ok(None),
            // The unique index on working runs refuses a second one: the sync is busy.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(None),
            Err(e) => Err(e).context(ErrorKind::Store, self.err("cannot create a run")),
        }
    }

    async fn claim_run(&self, run_id: i64, executor: &str, lease: Duration) -> Result<Claim> {
        let ts = now();
        let done = sqlx::query(
            "UPDATE sync_runs SET status = 'working', executor = ?, started_at = ?, updated_at = ?, heartbeat_at = ?, \
             lease_expires_at = ?, current_step = 'Checking source and destination configuration' \
             WHERE id = ? AND status = 'queued' AND NOT EXISTS \
             (SELECT 1 FROM sync_runs o WHERE o.sync_id = sync_runs.sync_id AND o.status = 'working')",
        )
        .bind(executor)
        .bind(&ts)
        .bind(&ts)
        .bind(&ts)
        .bind(now_plus(lease))
        .bind(run_id)
        .execute(&self.pool)
        .await;
        // The unique index on working runs refuses a second one: the sync is busy.
        let claimed = match done {
            Ok(d) => d.rows_affected() == 1,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => false,
            Err(e) => return Err(Error::store(format!("state store {}: cannot claim a run", self.path.display())).with_source(e)),
        };
        let run = self.get_run(run_id).await?;
        if claimed {
            return Ok(Claim::Claimed(run));
        }
        if run.status != RunStatus::Queued {
            return Ok(Claim::NotQueued(run));
        }
        let other: Option<i64> =
            sqlx::query_scalar("SELECT id FROM sync_runs WHERE sync_id = ? AND status = 'working' ORDER BY id LIMIT 1")
                .bind(run.sync_id)
                .fetch_optional(&self.pool)
                .await
                .context(ErrorKind::Store, self.err("cannot read runs"))?;
        match other {
            Some(working_run) => Ok(Claim::Busy { working_run }),
            // The other run ended between the two statements: let the caller try again.
            None => Ok(Claim::Busy { working_run: 0 }),
        }
    }

    async fn heartbeat(&self, run_id: i64, executor: &str, lease: Duration) -> Result<Beat> {
        let ts = now();
        let row = sqlx::query(
            "UPDATE sync_runs SET heartbeat_at = ?, lease_expires_at = ? \
             WHERE id = ? AND status = 'working' AND executor = ? RETURNING cancel_requested",
        )
        .bind(&ts)
        .bind(now_plus(lease))
        .bind(run_id)
        .bind(executor)
        .fetch_optional(&self.pool)
        .await
        .context(ErrorKind::Store, self.err("cannot record a heartbeat"))?;
        Ok(match row {
            Some(r) => Beat { still_owner: true, cancel_requested: r.try_get::<i64, _>(0).unwrap_or(0) != 0 },
            None => Beat { still_owner: false, cancel_requested: false },
        })
    }

    async fn reap_lost_runs(&self, alive: Liveness<'_>) -> Result<u64> {
        let ts = now();
        let rows = sqlx::query("SELECT id, executor, lease_expires_at FROM sync_runs WHERE status = 'working'")
            .fetch_all(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot read working runs"))?;
        let mut reaped = 0;
        for row in rows {
            let id: i64 = row.try_get(0).context(ErrorKind::Store, self.err("bad run"))?;
            let executor: Option<String> = row.try_get(1).context(ErrorKind::Store, self.err("bad run"))?;
            let lease: Option<String> = row.try_get(2).context(ErrorKind::Store, self.err("bad run"))?;
            let executor = executor.unwrap_or_default();
            let Some(msg) = lost_reason(&executor, lease.as_deref(), &ts, alive) else { continue };
            let done = sqlx::query(
                "UPDATE sync_runs SET status = 'failed', completed_at = ?, updated_at = ?, error_code = 'EXECUTOR_LOST', \
                 error_message = ?, current_step = NULL, lease_expires_at = NULL WHERE id = ? AND status = 'working' AND executor IS ?",
            )
            .bind(&ts)
            .bind(&ts)
            .bind(&msg)
            .bind(id)
            .bind(&executor)
            .execute(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot fail a lost run"))?;
            reaped += done.rows_affected();
        }
        Ok(reaped)
    }

    async fn request_cancel(&self, run_id: i64) -> Result<RunRecord> {
        let ts = now();
        let run = self.get_run(run_id).await?;
        match run.status {
            RunStatus::Queued => {
                sqlx::query(
                    "UPDATE sync_runs SET status = 'failed', canceled = 1, cancel_requested = 1, completed_at = ?, updated_at = ?, \
                     error_code = 'CANCELED', error_message = 'canceled before it started', current_step = NULL WHERE id = ? AND status = 'queued'",
                )
                .bind(&ts)
                .bind(&ts)
                .bind(run_id)
                .execute(&self.pool)
                .await
                .context(ErrorKind::Store, self.err("cannot cancel a run"))?;
            }
            RunStatus::Working => {
                sqlx::query("UPDATE sync_runs SET cancel_requested = 1, updated_at = ? WHERE id = ? AND status = 'working'")
                    .bind(&ts)
                    .bind(run_id)
                    .execute(&self.pool)
                    .await
                    .context(ErrorKind::Store, self.err("cannot cancel a run"))?;
            }
            RunStatus::Completed | RunStatus::Failed => {
                return Err(Error::new(
                    ErrorKind::RunState,
                    format!("run {run_id} already ended ({}); there is nothing to cancel", run.status.as_str()),
                ));
            }
        }
        self.get_run(run_id).await
    }

    async fn get_run(&self, run_id: i64) -> Result<RunRecord> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM sync_runs WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot read a run"))?;
        match row {
            Some(row) => run_from_row(&row),
            None => Err(Error::new(ErrorKind::RunNotFound, format!("no sync run with id {run_id} in {}", self.path.display()))),
        }
    }

    async fn list_runs(&self, sync_id: Option<i64>, limit: i64) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM sync_runs WHERE (?1 IS NULL OR sync_id = ?1) ORDER BY id DESC LIMIT ?2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sync_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot list runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    async fn update_progress(&self, run_id: i64, step: &str, counts: &RunCounts) -> Result<()> {
        let mut qb = QueryBuilder::<Sqlite>::new("UPDATE sync_runs SET current_step = ");
        qb.push_bind(step.to_string()).push(", ");
        push_counts(&mut qb, counts);
        qb.push(" WHERE id = ").push_bind(run_id).push(" AND status = 'working'");
        qb.build().execute(&self.pool).await.context(ErrorKind::Store, self.err("cannot record progress"))?;
        Ok(())
    }

    fn state_stream(&self, sync_id: i64) -> BoxStream<'_, Result<StateEntry>> {
        // Keyset pages read on the engine's own thread. Paging needs no snapshot: every state
        // change a run commits has a key at or before the entry the merge holds, which was
        // read already, so a later page never sees the run's own writes.
        let pages = futures_util::stream::try_unfold((Vec::new(), false), move |(after, done)| async move {
            if done {
                return Ok(None);
            }
            let page = self.state_page(sync_id, &after).await?;
            let last = page.last().map(|e| e.key.clone());
            let done = page.len() < STATE_PAGE;
            Ok(last.map(|l| (futures_util::stream::iter(page.into_iter().map(Ok)), (l, done))))
        });
        pages.try_flatten().boxed()
    }

    async fn commit_batch(
        &self,
        run_id: i64,
        executor: &str,
        sync_id: i64,
        changes: &[StateChange],
        outcomes: &[RunRecordOutcome],
        counts: &RunCounts,
    ) -> Result<bool> {
        let puts: Vec<&StateEntry> = changes.iter().filter_map(|c| if let StateChange::Put(e) = c { Some(e) } else { None }).collect();
        let removes: Vec<&Vec<u8>> = changes.iter().filter_map(|c| if let StateChange::Remove(k) = c { Some(k) } else { None }).collect();
        let mut tx = self.pool.begin().await.context(ErrorKind::Store, self.err("cannot begin a transaction"))?;
        // First, and in the same transaction: is the run still ours? A stale executor (its lease
        // taken over) writes nothing.
        let mut qb = QueryBuilder::<Sqlite>::new("UPDATE sync_runs SET ");
        push_counts(&mut qb, counts);
        qb.push(" WHERE id = ")
            .push_bind(run_id)
            .push(" AND status = 'working' AND executor = ")
            .push_bind(executor.to_string())
            .push(" RETURNING cancel_requested");
        let cancel: Option<i64> = qb
            .build_query_scalar()
            .fetch_optional(&mut *tx)
            .await
            .context(ErrorKind::Store, self.err("cannot record run counts"))?;
        let Some(cancel) = cancel else {
            drop(tx);
            return Err(super::lease_lost(run_id));
        };
        for chunk in puts.chunks(ROWS_PER_INSERT) {
            let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO sync_state (sync_id, sort_key, identifier, fingerprint, run_id) ");
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(sync_id)
                    .push_bind(e.key.clone())
                    .push_bind(e.identifier.clone())
                    .push_bind(e.fingerprint.to_be_bytes().to_vec())
                    .push_bind(run_id);
            });
            qb.push(" ON CONFLICT (sync_id, sort_key) DO UPDATE SET identifier = excluded.identifier, fingerprint = excluded.fingerprint, run_id = excluded.run_id");
            qb.build().execute(&mut *tx).await.context(ErrorKind::Store, self.err("cannot write sync state"))?;
        }
        for chunk in removes.chunks(ROWS_PER_INSERT) {
            let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM sync_state WHERE sync_id = ");
            qb.push_bind(sync_id).push(" AND sort_key IN (");
            let mut sep = qb.separated(", ");
            for k in chunk {
                sep.push_bind((*k).clone());
            }
            qb.push(")");
            qb.build().execute(&mut *tx).await.context(ErrorKind::Store, self.err("cannot remove sync state"))?;
        }
        let ts = now();
        for chunk in outcomes.chunks(ROWS_PER_INSERT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO run_records (run_id, sync_id, identifier, kind, operation, reason, payload, created_at) ",
            );
            qb.push_values(chunk, |mut b, o| {
                b.push_bind(run_id)
                    .push_bind(sync_id)
                    .push_bind(o.identifier.clone())
                    .push_bind(o.kind.as_str())
                    .push_bind(o.operation.clone())
                    .push_bind(o.reason.clone())
                    .push_bind(o.payload.clone())
                    .push_bind(ts.clone());
            });
            qb.build().execute(&mut *tx).await.context(ErrorKind::Store, self.err("cannot record rejected rows"))?;
        }
        tx.commit().await.context(ErrorKind::Store, self.err("cannot commit a batch"))?;
        Ok(cancel != 0)
    }

    async fn finish_run(&self, run_id: i64, end: &RunEnd) -> Result<RunRecord> {
        finish_query::<Sqlite>(run_id, end)
            .build()
            .execute(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot finish a run"))?;
        self.get_run(run_id).await
    }

    async fn run_records(&self, run_id: i64, limit: i64) -> Result<Vec<RunRecordOutcome>> {
        let rows = sqlx::query(
            "SELECT identifier, kind, operation, reason, payload FROM run_records WHERE run_id = ? ORDER BY id LIMIT ?",
        )
        .bind(run_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context(ErrorKind::Store, self.err("cannot read run records"))?;
        rows.iter().map(outcome_from_row)
            .collect()
    }

    async fn create_served_run(
        &self,
        sync_id: i64,
        sync_name: &str,
        full_sync: bool,
        reason: &TriggerReason,
        scheduled_execution_time: Option<&str>,
    ) -> Result<Option<i64>> {
        let ts = now();
        let id: std::result::Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO sync_runs (sync_id, sync_name, status, created_at, updated_at, full_sync, trigger_tag, trigger_detail, \
             current_step, scheduled_execution_time, served) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, 'Queued', ?, 1) RETURNING id",
        )
        .bind(sync_id)
        .bind(sync_name)
        .bind(&ts)
        .bind(&ts)
        .bind(i64::from(full_sync))
        .bind(&reason.ui_tag)
        .bind(&reason.ui_detail)
        .bind(scheduled_execution_time)
        .fetch_one(&self.pool)
        .await;
        match id {
            Ok(id) => Ok(Some(id)),
            // That slot of a schedule was triggered already (by another replica).
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(None),
            Err(e) => Err(e).context(ErrorKind::Store, self.err("cannot create a run")),
        }
    }

    async fn claim_next_served(&self, executor: &str, lease: Duration, sync_ids: &[i64]) -> Result<Option<RunRecord>> {
        if sync_ids.is_empty() {
            return Ok(None);
        }
        // SQLite runs one writer at a time, so the pick and the update cannot interleave with
        // another claim.
        // started_at is the time the claim executes (never before the previous run ended).
        let mut qb = QueryBuilder::<Sqlite>::new("UPDATE sync_runs SET status = 'working', executor = ");
        qb.push_bind(executor.to_string())
            .push(
                ", started_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                 heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            )
            .push(", lease_expires_at = ")
            .push_bind(now_plus(lease))
            .push(
                ", current_step = 'Checking source and destination configuration' WHERE status = 'queued' AND id = \
                 (SELECT q.id FROM sync_runs q WHERE q.status = 'queued' AND q.served = 1 AND q.sync_id IN (",
            );
        let mut sep = qb.separated(", ");
        for id in sync_ids {
            sep.push_bind(*id);
        }
        qb.push(
            ") AND NOT EXISTS (SELECT 1 FROM sync_runs w WHERE w.sync_id = q.sync_id AND w.status = 'working') \
             AND NOT EXISTS (SELECT 1 FROM sync_runs e WHERE e.sync_id = q.sync_id AND e.status = 'queued' AND e.served = 1 AND e.id < q.id) \
             ORDER BY q.id LIMIT 1) RETURNING id",
        );
        let claimed: Option<i64> = match qb.build_query_scalar().fetch_optional(&self.pool).await {
            Ok(id) => id,
            // A run of that sync was claimed in-task meanwhile: nothing to claim now.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => None,
            Err(e) => return Err(Error::store(format!("state store {}: cannot claim a run", self.path.display())).with_source(e)),
        };
        match claimed {
            Some(id) => Ok(Some(self.get_run(id).await?)),
            None => Ok(None),
        }
    }

    async fn release_run(&self, run_id: i64, executor: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE sync_runs SET status = 'queued', executor = NULL, lease_expires_at = NULL, heartbeat_at = NULL, \
             current_step = 'Queued', updated_at = ? WHERE id = ? AND status = 'working' AND executor = ?",
        )
        .bind(now())
        .bind(run_id)
        .bind(executor)
        .execute(&self.pool)
        .await
        .context(ErrorKind::Store, self.err("cannot release a run"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_runs(&self, sync_id: Option<i64>) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM sync_runs WHERE (?1 IS NULL OR sync_id = ?1)")
            .bind(sync_id)
            .fetch_one(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot count runs"))
    }

    async fn page_runs(&self, sync_id: Option<i64>, offset: i64, limit: i64, ascending: bool) -> Result<Vec<RunRecord>> {
        let order = if ascending { "ASC" } else { "DESC" };
        let sql = format!("SELECT {RUN_COLUMNS} FROM sync_runs WHERE (?1 IS NULL OR sync_id = ?1) ORDER BY id {order} LIMIT ?2 OFFSET ?3");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sync_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot list runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    async fn last_runs(&self) -> Result<Vec<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM sync_runs WHERE id IN (SELECT MAX(id) FROM sync_runs GROUP BY sync_id) ORDER BY sync_id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot list runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    async fn page_records(&self, run_id: i64, filter: &RecordFilter, offset: i64, limit: i64) -> Result<Vec<StoredRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT identifier, kind, operation, reason, payload, created_at FROM run_records WHERE run_id = ",
        );
        qb.push_bind(run_id);
        push_record_filter(&mut qb, filter);
        qb.push(" ORDER BY id LIMIT ").push_bind(limit).push(" OFFSET ").push_bind(offset);
        let rows = qb.build().fetch_all(&self.pool).await.context(ErrorKind::Store, self.err("cannot read run records"))?;
        rows.iter().map(stored_record_from_row).collect()
    }

    async fn count_records(&self, run_id: i64, filter: &RecordFilter) -> Result<i64> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM run_records WHERE run_id = ");
        qb.push_bind(run_id);
        push_record_filter(&mut qb, filter);
        qb.build_query_scalar().fetch_one(&self.pool).await.context(ErrorKind::Store, self.err("cannot count run records"))
    }

    async fn run_totals(&self) -> Result<Vec<RunTotals>> {
        let rows = sqlx::query(TOTALS_SQL).fetch_all(&self.pool).await.context(ErrorKind::Store, self.err("cannot total runs"))?;
        rows.iter().map(totals_from_row).collect()
    }
}
