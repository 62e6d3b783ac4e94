//! Postgres state store, for shared use (several Airflow workers, `sluicegate serve` replicas).
//! Tables live in the schema `sluicegate` of the database the URL names; TLS, `sslmode` and
//! `sslrootcert` (private CAs) come from the URL as libpq spells them. Sessions use
//! `synchronous_commit = off`: a server crash may forget the last batches' state, so those rows
//! are sent again, but state never claims a row that was not acknowledged.

use std::str::FromStr;

use futures_util::stream::{BoxStream, StreamExt};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, QueryBuilder, Row};

use super::common::{
    finish_query, outcome_from_row, push_counts, push_record_filter, run_from_row, state_entry_from_row, stored_record_from_row,
    totals_from_row, RUN_COLUMNS, TOTALS_SQL,
};
use super::migrations::POSTGRES as MIGRATIONS;
use super::*;
use crate::error::{Context, ErrorKind};

pub struct PgStore {
    pool: PgPool,
    /// The URL without credentials, for messages.
    shown: String,
}

/// Any number that identifies our migration lock among the database's advisory locks.
const MIGRATION_LOCK: i64 = 0x5149_6765_5347;

impl PgStore {
    pub async fn open(url: &str) -> Result<PgStore> {
        let shown = crate::config::redact_url(url);
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| Error::store(format!("invalid Postgres state store URL {shown}")).with_source(e))?
            .application_name("sluicegate")
            .disable_statement_logging();
        // One connection of our own first: a server that is down, unreachable or refuses us is
        // reported at once with its own error, not after the pool's 30 s acquire timeout.
        let probe = opts.connect().await.map_err(|e| {
            Error::store(format!(
                "cannot connect to the state store {shown}; check that the Postgres server runs and is reachable from \
                 here, and the state store URL (--state, SLUICEGATE_STATE, the project's `state:`, or the Airflow \
                 connection's `state` field)"
            ))
            .with_source(e)
        })?;
        let _ = sqlx::Connection::close(probe).await;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Commits need not wait for the WAL flush: if the server crashes, the last
                    // few batches' state is lost and those rows are sent again. The state never
                    // claims a row the destination did not accept, which is what must hold.
                    conn.execute("SET search_path TO sluicegate; SET synchronous_commit TO off").await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| Error::store(format!("cannot connect to the state store {shown}")).with_source(e))?;
        let store = PgStore { pool, shown };
        store.migrate().await?;
        Ok(store)
    }

    fn err(&self, what: &str) -> impl FnOnce() -> String {
        let msg = format!("state store {}: {what}", self.shown);
        move || msg
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await.context(ErrorKind::Store, self.err("cannot begin the migration"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .context(ErrorKind::Store, self.err("cannot lock for migration"))?;
        sqlx::raw_sql(
            "CREATE SCHEMA IF NOT EXISTS sluicegate; \
             CREATE TABLE IF NOT EXISTS sluicegate_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .context(ErrorKind::Store, self.err("cannot create the sluicegate schema (does the user have CREATE on the database?)"))?;
        let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0)::BIGINT FROM sluicegate_migrations")
            .fetch_one(&mut *tx)
            .await
            .context(ErrorKind::Store, self.err("cannot read the schema version"))?;
        let latest = MIGRATIONS.last().map(|m| m.version).unwrap_or(0);
        if current > latest {
            return Err(Error::store(format!(
                "state store {} has schema version {current}, newer than this sluicegate understands ({latest}); upgrade sluicegate",
                self.shown
            )));
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            sqlx::raw_sql(m.sql)
                .execute(&mut *tx)
                .await
                .context(ErrorKind::Store, self.err(&format!("migration {} ({}) failed", m.version, m.name)))?;
            sqlx::query("INSERT INTO sluicegate_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(m.version)
                .bind(m.name)
                .bind(now())
                .execute(&mut *tx)
                .await
                .context(ErrorKind::Store, self.err("cannot record a migration"))?;
        }
        tx.commit().await.context(ErrorKind::Store, self.err("cannot commit the migration"))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn create_run(&self, sync_id: i64, sync_name: &str, full_sync: bool, reason: &TriggerReason) -> Result<i64> {
        let ts = now();
        sqlx::query_scalar(
            "INSERT INTO sync_runs (sync_id, sync_name, status, created_at, updated_at, full_sync, trigger_tag, trigger_detail, current_step) \
             VALUES ($1, $2, 'queued', $3, $3, $4, $5, $6, 'Queued') RETURNING id",
        )
        .bind(sync_id)
        .bind(sync_name)
        .bind(&ts)
        .bind(i64::from(full_sync))
        .bind(&reason.ui_tag)
        .bind(&reason.ui_detail)
        .fetch_one(&self.pool)
        .await
        .context(ErrorKind::Store, self.err("cannot create a run"))
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
             SELECT $1, $2, 'working', $3, $3, $3, $3, $4, $5, $6, $7, $8, 'Checking source and destination configuration' \
             WHERE NOT EXISTS (SELECT 1 FROM sync_runs WHERE sync_id = $1 AND status = 'working') RETURNING id",
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
            "UPDATE sync_runs SET status = 'working', executor = $1, started_at = $2, updated_at = $2, heartbeat_at = $2, \
             lease_expires_at = $3, current_step = 'Checking source and destination configuration' \
             WHERE id = $4 AND status = 'queued' AND NOT EXISTS \
             (SELECT 1 FROM sync_runs o WHERE o.sync_id = sync_runs.sync_id AND o.status = 'working')",
        )
        .bind(executor)
        .bind(&ts)
        .bind(now_plus(lease))
        .bind(run_id)
        .execute(&self.pool)
        .await;
        // Two executors racing for two runs of one sync: the unique index lets one through.
        let claimed = match done {
            Ok(d) => d.rows_affected() == 1,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => false,
            Err(e) => return Err(Error::store(format!("state store {}: cannot claim a run", self.shown)).with_source(e)),
        };
        let run = self.get_run(run_id).await?;
        if claimed {
            return Ok(Claim::Claimed(run));
        }
        if run.status != RunStatus::Queued {
            return Ok(Claim::NotQueued(run));
        }
        let other: Option<i64> =
            sqlx::query_scalar("SELECT id FROM sync_runs WHERE sync_id = $1 AND status = 'working' ORDER BY id LIMIT 1")
                .bind(run.sync_id)
                .fetch_optional(&self.pool)
                .await
                .context(ErrorKind::Store, self.err("cannot read runs"))?;
        Ok(Claim::Busy { working_run: other.unwrap_or(0) })
    }

    async fn heartbeat(&self, run_id: i64, executor: &str, lease: Duration) -> Result<Beat> {
        let row = sqlx::query(
            "UPDATE sync_runs SET heartbeat_at = $1, lease_expires_at = $2 \
             WHERE id = $3 AND status = 'working' AND executor = $4 RETURNING cancel_requested",
        )
        .bind(now())
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
            let Some(why) = lost_reason(&executor, lease.as_deref(), &ts, alive) else { continue };
            let done = sqlx::query(
                "UPDATE sync_runs SET status = 'failed', completed_at = $1, updated_at = $1, error_code = 'EXECUTOR_LOST', \
                 error_message = $2, current_step = NULL, lease_expires_at = NULL WHERE id = $3 AND status = 'working' AND executor = $4",
            )
            .bind(&ts)
            .bind(&why)
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
        let sql = match run.status {
            RunStatus::Queued => {
                "UPDATE sync_runs SET status = 'failed', canceled = 1, cancel_requested = 1, completed_at = $1, updated_at = $1, \
                 error_code = 'CANCELED', error_message = 'canceled before it started', current_step = NULL WHERE id = $2 AND status = 'queued'"
            }
            RunStatus::Working => "UPDATE sync_runs SET cancel_requested = 1, updated_at = $1 WHERE id = $2 AND status = 'working'",
            RunStatus::Completed | RunStatus::Failed => {
                return Err(Error::new(
                    ErrorKind::RunState,
                    format!("run {run_id} already ended ({}); there is nothing to cancel", run.status.as_str()),
                ));
            }
        };
        sqlx::query(sql)
            .bind(&ts)
            .bind(run_id)
            .execute(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot cancel a run"))?;
        self.get_run(run_id).await
    }

    async fn get_run(&self, run_id: i64) -> Result<RunRecord> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM sync_runs WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot read a run"))?;
        match row {
            Some(row) => run_from_row(&row),
            None => Err(Error::new(ErrorKind::RunNotFound, format!("no sync run with id {run_id} in {}", self.shown))),
        }
    }

    async fn list_runs(&self, sync_id: Option<i64>, limit: i64) -> Result<Vec<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM sync_runs WHERE ($1::BIGINT IS NULL OR sync_id = $1) ORDER BY id DESC LIMIT $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sync_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot list runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    async fn update_progress(&self, run_id: i64, step: &str, counts: &RunCounts) -> Result<()> {
        let mut qb = QueryBuilder::<sqlx::Postgres>::new("UPDATE sync_runs SET current_step = ");
        qb.push_bind(step.to_string()).push(", ");
        push_counts(&mut qb, counts);
        qb.push(" WHERE id = ").push_bind(run_id).push(" AND status = 'working'");
        qb.build().execute(&self.pool).await.context(ErrorKind::Store, self.err("cannot record progress"))?;
        Ok(())
    }

    fn state_stream(&self, sync_id: i64) -> BoxStream<'_, Result<StateEntry>> {
        let shown = self.shown.clone();
        sqlx::query("SELECT sort_key, identifier, fingerprint FROM sync_state WHERE sync_id = $1 ORDER BY sort_key")
            .bind(sync_id)
            .fetch(&self.pool)
            .map(move |row| {
                let row = row.map_err(|e| Error::store(format!("state store {shown}: cannot read sync state")).with_source(e))?;
                state_entry_from_row(row, &shown)
            })
            .boxed()
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
        let (mut keys, mut ids, mut fps, mut removed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for c in changes {
            match c {
                StateChange::Put(e) => {
                    keys.push(e.key.clone());
                    ids.push(e.identifier.clone());
                    fps.push(e.fingerprint.to_be_bytes().to_vec());
                }
                StateChange::Remove(k) => removed.push(k.clone()),
            }
        }
        let ids_o: Vec<Option<String>> = outcomes.iter().map(|o| o.identifier.clone()).collect();
        let kinds: Vec<&str> = outcomes.iter().map(|o| o.kind.as_str()).collect();
        let ops: Vec<&str> = outcomes.iter().map(|o| o.operation.as_str()).collect();
        let reasons: Vec<&str> = outcomes.iter().map(|o| o.reason.as_str()).collect();
        let payloads: Vec<Option<String>> = outcomes.iter().map(|o| o.payload.clone()).collect();
        // One statement with only the parts this batch needs: one round trip, one atomic commit
        // of state, outcomes and counts. `own` locks the run's row while it is working under
        // this executor; every write depends on it, so a stale executor (its lease taken over)
        // writes nothing.
        let mut qb = QueryBuilder::<sqlx::Postgres>::new("WITH own AS (SELECT id FROM sync_runs WHERE id = ");
        qb.push_bind(run_id).push(" AND status = 'working' AND executor = ").push_bind(executor.to_string()).push(" FOR UPDATE)");
        if !keys.is_empty() {
            qb.push(", put AS (INSERT INTO sync_state (sync_id, sort_key, identifier, fingerprint, run_id) SELECT ")
                .push_bind(sync_id)
                .push(", k, i, f, ")
                .push_bind(run_id)
                .push(" FROM UNNEST(")
                .push_bind(keys)
                .push("::BYTEA[], ")
                .push_bind(ids)
                .push("::TEXT[], ")
                .push_bind(fps)
                .push(
                    "::BYTEA[]) AS t(k, i, f) WHERE EXISTS (SELECT 1 FROM own) ON CONFLICT (sync_id, sort_key) DO UPDATE SET identifier = EXCLUDED.identifier, \
                     fingerprint = EXCLUDED.fingerprint, run_id = EXCLUDED.run_id)",
                );
        }
        if !removed.is_empty() {
            qb.push(", del AS (DELETE FROM sync_state WHERE sync_id = ")
                .push_bind(sync_id)
                .push(" AND sort_key = ANY(")
                .push_bind(removed)
                .push("::BYTEA[]) AND EXISTS (SELECT 1 FROM own))");
        }
        if !outcomes.is_empty() {
            qb.push(", rec AS (INSERT INTO run_records (run_id, sync_id, identifier, kind, operation, reason, payload, created_at) SELECT ")
                .push_bind(run_id)
                .push(", ")
                .push_bind(sync_id)
                .push(", i, k, o, r, p, ")
                .push_bind(now())
                .push(" FROM UNNEST(")
                .push_bind(ids_o)
                .push("::TEXT[], ")
                .push_bind(kinds)
                .push("::TEXT[], ")
                .push_bind(ops)
                .push("::TEXT[], ")
                .push_bind(reasons)
                .push("::TEXT[], ")
                .push_bind(payloads)
                .push("::TEXT[]) WITH ORDINALITY AS t(i, k, o, r, p, n) WHERE EXISTS (SELECT 1 FROM own) ORDER BY n)");
        }
        qb.push(" UPDATE sync_runs SET ");
        push_counts(&mut qb, counts);
        qb.push(" WHERE id = ").push_bind(run_id).push(" AND id IN (SELECT id FROM own) RETURNING cancel_requested");
        let cancel: Option<i64> = qb
            .build_query_scalar()
            .fetch_optional(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot commit a batch"))?;
        match cancel {
            Some(c) => Ok(c != 0),
            None => Err(super::lease_lost(run_id)),
        }
    }

    async fn finish_run(&self, run_id: i64, end: &RunEnd) -> Result<RunRecord> {
        finish_query::<sqlx::Postgres>(run_id, end)
            .build()
            .execute(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot finish a run"))?;
        self.get_run(run_id).await
    }

    async fn run_records(&self, run_id: i64, limit: i64) -> Result<Vec<RunRecordOutcome>> {
        let rows = sqlx::query(
            "SELECT identifier, kind, operation, reason, payload FROM run_records WHERE run_id = $1 ORDER BY id LIMIT $2",
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
             current_step, scheduled_execution_time, served) VALUES ($1, $2, 'queued', $3, $3, $4, $5, $6, 'Queued', $7, 1) RETURNING id",
        )
        .bind(sync_id)
        .bind(sync_name)
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
        // The classic queue: lock the candidate row, skipping rows another replica has locked,
        // so concurrent claims never wait on each other and never take the same run. A sync's
        // runs go in trigger order (no older queued run of the same sync), and the unique index
        // on working runs refuses a second working run of one sync whatever happens.
        // started_at is the server's clock when the claim executes, not when it was sent: it
        // is then never before the previous run of the sync ended.
        let claimed = sqlx::query_scalar(
            "WITH t AS (SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS ts) \
             UPDATE sync_runs SET status = 'working', executor = $1, started_at = t.ts, updated_at = t.ts, heartbeat_at = t.ts, \
             lease_expires_at = $2, current_step = 'Checking source and destination configuration' FROM t \
             WHERE status = 'queued' AND id = (SELECT q.id FROM sync_runs q WHERE q.status = 'queued' AND q.served = 1 \
             AND q.sync_id = ANY($3) \
             AND NOT EXISTS (SELECT 1 FROM sync_runs w WHERE w.sync_id = q.sync_id AND w.status = 'working') \
             AND NOT EXISTS (SELECT 1 FROM sync_runs e WHERE e.sync_id = q.sync_id AND e.status = 'queued' AND e.served = 1 AND e.id < q.id) \
             ORDER BY q.id LIMIT 1 FOR UPDATE OF q SKIP LOCKED) RETURNING id",
        )
        .bind(executor)
        .bind(now_plus(lease))
        .bind(sync_ids)
        .fetch_optional(&self.pool)
        .await;
        let claimed: Option<i64> = match claimed {
            Ok(id) => id,
            // Another executor made a run of that sync working meanwhile: nothing to claim now.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => None,
            Err(e) => return Err(Error::store(format!("state store {}: cannot claim a run", self.shown)).with_source(e)),
        };
        match claimed {
            Some(id) => Ok(Some(self.get_run(id).await?)),
            None => Ok(None),
        }
    }

    async fn release_run(&self, run_id: i64, executor: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE sync_runs SET status = 'queued', executor = NULL, lease_expires_at = NULL, heartbeat_at = NULL, \
             current_step = 'Queued', updated_at = $1 WHERE id = $2 AND status = 'working' AND executor = $3",
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
        sqlx::query_scalar("SELECT COUNT(*)::BIGINT FROM sync_runs WHERE ($1::BIGINT IS NULL OR sync_id = $1)")
            .bind(sync_id)
            .fetch_one(&self.pool)
            .await
            .context(ErrorKind::Store, self.err("cannot count runs"))
    }

    async fn page_runs(&self, sync_id: Option<i64>, offset: i64, limit: i64, ascending: bool) -> Result<Vec<RunRecord>> {
        let order = if ascending { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM sync_runs WHERE ($1::BIGINT IS NULL OR sync_id = $1) ORDER BY id {order} LIMIT $2 OFFSET $3"
        );
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
        let mut qb = QueryBuilder::<sqlx::Postgres>::new(
            "SELECT identifier, kind, operation, reason, payload, created_at FROM run_records WHERE run_id = ",
        );
        qb.push_bind(run_id);
        push_record_filter(&mut qb, filter);
        qb.push(" ORDER BY id LIMIT ").push_bind(limit).push(" OFFSET ").push_bind(offset);
        let rows = qb.build().fetch_all(&self.pool).await.context(ErrorKind::Store, self.err("cannot read run records"))?;
        rows.iter().map(stored_record_from_row).collect()
    }

    async fn count_records(&self, run_id: i64, filter: &RecordFilter) -> Result<i64> {
        let mut qb = QueryBuilder::<sqlx::Postgres>::new("SELECT COUNT(*)::BIGINT FROM run_records WHERE run_id = ");
        qb.push_bind(run_id);
        push_record_filter(&mut qb, filter);
        qb.build_query_scalar().fetch_one(&self.pool).await.context(ErrorKind::Store, self.err("cannot count run records"))
    }

    async fn run_totals(&self) -> Result<Vec<RunTotals>> {
        let rows = sqlx::query(TOTALS_SQL).fetch_all(&self.pool).await.context(ErrorKind::Store, self.err("cannot total runs"))?;
        rows.iter().map(totals_from_row).collect()
    }
}
