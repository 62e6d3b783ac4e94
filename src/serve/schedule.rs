//! Schedules run by the server, for users without an orchestrator (`--schedule SYNC=SPEC`):
//!
//! - `every:1h` (any duration of at least 1s): slots aligned to the Unix epoch in UTC, so
//!   `every:1h` triggers at the top of each hour and `every:15m` at :00, :15, :30, :45;
//! - `cron:0 */6 * * *`: a cron expression in UTC (5 fields, or 6 with seconds first; `@daily`
//!   and the other nicknames work), parsed and evaluated by the croner crate;
//! - `continuous` or `continuous:30s`: a new run as soon as the sync has no queued or working
//!   run, at most once per interval (default 10s).
//!
//! Each slot is one served run whose `scheduled_execution_time` is the slot's time. A unique
//! index on (sync, scheduled time) makes every slot trigger once, however many replicas run the
//! scheduler. Slots that passed while no replica ran are not made up; the first slot after a
//! start is the next one to come (a continuous schedule starts at once).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Shared;
use crate::config::SyncRef;
use crate::store::TriggerReason;

const TICK: Duration = Duration::from_millis(250);
const DEFAULT_CONTINUOUS: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub enum Spec {
    Every(Duration),
    Cron(croner::Cron),
    Continuous(Duration),
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub sync: SyncRef,
    pub spec: Spec,
    /// As written, for trigger reasons and the run page.
    pub text: String,
}

impl Schedule {
    /// `SYNC=every:1h`, `SYNC=cron:EXPR`, `SYNC=continuous[:DURATION]`.
    pub fn parse_arg(arg: &str) -> Result<Schedule, String> {
        let (sync, spec) = arg
            .split_once('=')
            .ok_or_else(|| format!("schedule {arg:?}: expected SYNC=SPEC, e.g. contacts=every:1h, 2=cron:0 */6 * * *, events=continuous"))?;
        if sync.trim().is_empty() {
            return Err(format!("schedule {arg:?}: the sync (id or name) before `=` is empty"));
        }
        let text = spec.trim().to_string();
        let spec = parse_spec(&text).map_err(|why| format!("schedule {arg:?}: {why}"))?;
        Ok(Schedule { sync: SyncRef::parse(sync), spec, text })
    }
}

/// `every:1h`, `cron:EXPR` or `continuous[:DURATION]` (also a sync's `schedule:` in the
/// project file).
pub fn parse_spec(spec: &str) -> Result<Spec, String> {
    {
        let spec_text = spec.trim();
        let arg = spec_text;
        let (kind, rest) = spec_text.split_once(':').map(|(k, r)| (k.trim(), Some(r.trim()))).unwrap_or((spec_text, None));
        let duration = |text: &str| {
            crate::config::parse_duration(text)
                .filter(|d| *d >= Duration::from_secs(1))
                .ok_or_else(|| format!("{text:?} is not a duration of at least 1s (e.g. 30s, 15m, 1h)"))
        };
        let spec = match (kind, rest) {
            ("every", Some(d)) => Spec::Every(duration(d)?),
            ("cron", Some(expr)) => Spec::Cron(
                croner::Cron::from_str(expr)
                    .map_err(|e| format!("{expr:?} is not a cron expression: {e}"))?,
            ),
            ("continuous", None) => Spec::Continuous(DEFAULT_CONTINUOUS),
            ("continuous", Some(d)) => Spec::Continuous(duration(d)?),
            _ => {
                return Err(format!("unknown schedule {spec_text:?}; use every:DURATION, cron:EXPRESSION or continuous[:DURATION]"));
            }
        };
        let _ = arg;
        Ok(spec)
    }
}

impl Schedule {
    /// Census's `schedule_frequency` for this schedule.
    pub fn frequency(&self) -> &'static str {
        match &self.spec {
            Spec::Every(d) if *d == Duration::from_secs(900) => "quarter_hourly",
            Spec::Every(d) if *d == Duration::from_secs(3600) => "hourly",
            Spec::Every(d) if *d == Duration::from_secs(86400) => "daily",
            Spec::Every(d) if *d == Duration::from_secs(7 * 86400) => "weekly",
            Spec::Every(_) | Spec::Cron(_) => "expression",
            Spec::Continuous(_) => "continuous",
        }
    }

    /// A cron expression equivalent to the schedule, when there is one.
    pub fn cron_expression(&self) -> Option<String> {
        match &self.spec {
            Spec::Cron(c) => Some(c.as_str().to_string()),
            _ => None,
        }
    }

    /// The latest slot at or before `now_ms` (Unix milliseconds, UTC).
    pub fn slot_at(&self, now_ms: i64) -> Option<i64> {
        match &self.spec {
            Spec::Every(d) | Spec::Continuous(d) => {
                let step = d.as_millis() as i64;
                Some(now_ms - now_ms.rem_euclid(step))
            }
            Spec::Cron(c) => {
                let now = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now_ms)?;
                c.find_previous_occurrence(&now, true).ok().map(|t| t.timestamp_millis())
            }
        }
    }

    /// The next slot after `now_ms`.
    pub fn next_slot(&self, now_ms: i64) -> Option<i64> {
        match &self.spec {
            Spec::Every(d) | Spec::Continuous(d) => {
                let step = d.as_millis() as i64;
                Some(now_ms - now_ms.rem_euclid(step) + step)
            }
            Spec::Cron(c) => {
                let now = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now_ms)?;
                c.find_next_occurrence(&now, false).ok().map(|t| t.timestamp_millis())
            }
        }
    }
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A slot as the store writes times.
pub fn slot_timestamp(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(crate::store::timestamp)
        .unwrap_or_default()
}

pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    if shared.schedules.is_empty() {
        return;
    }
    let start = now_ms();
    // The last slot handled per schedule: the current one at start (not made up), except for
    // continuous schedules, which start at once.
    let mut last: Vec<Option<i64>> = shared
        .schedules
        .iter()
        .map(|s| if matches!(s.spec, Spec::Continuous(_)) { None } else { s.slot_at(start) })
        .collect();
    loop {
        let now = now_ms();
        for (i, s) in shared.schedules.iter().enumerate() {
            let Some(slot) = s.slot_at(now) else { continue };
            if last[i].is_some_and(|l| slot <= l) {
                continue;
            }
            match tick(&shared, s, slot).await {
                Ok(done) => {
                    if done {
                        last[i] = Some(slot);
                    }
                }
                Err(e) => {
                    tracing::warn!(schedule = %s.text, "cannot trigger a scheduled run: {}", e.full_message());
                    last[i] = Some(slot);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Trigger one slot. `Ok(false)`: not now (a continuous sync still has a run), look again.
async fn tick(shared: &Shared, s: &Schedule, slot: i64) -> crate::Result<bool> {
    let engine = &shared.engine;
    let sync = engine.project().sync(&s.sync)?;
    if matches!(s.spec, Spec::Continuous(_)) {
        if let Some(latest) = engine.store().page_runs(Some(sync.id), 0, 1, false).await?.into_iter().next() {
            if !latest.status.is_terminal() {
                return Ok(false);
            }
        }
    }
    let reason = TriggerReason { ui_tag: "Schedule".into(), ui_detail: format!("Scheduled by sluicegate serve: {}", s.text) };
    let at = slot_timestamp(slot);
    match engine.trigger_served(&SyncRef::Id(sync.id), false, &reason, Some(&at)).await? {
        Some(run_id) => {
            tracing::info!(run_id, sync_id = sync.id, scheduled = %at, "scheduled run queued");
            shared.wake.notify_one();
        }
        None => tracing::debug!(sync_id = sync.id, scheduled = %at, "slot already triggered by another replica"),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_slots() {
        let s = Schedule::parse_arg("contacts=every:1h").unwrap();
        assert_eq!(s.sync, SyncRef::Name("contacts".into()));
        assert_eq!(s.frequency(), "hourly");
        // 2026-01-01T10:30:00Z → slot 10:00, next 11:00.
        let t = 1_767_263_400_000;
        assert_eq!(slot_timestamp(s.slot_at(t).unwrap()), "2026-01-01T10:00:00.000Z");
        assert_eq!(slot_timestamp(s.next_slot(t).unwrap()), "2026-01-01T11:00:00.000Z");

        let c = Schedule::parse_arg("2=cron:15 */6 * * *").unwrap();
        assert_eq!(c.sync, SyncRef::Id(2));
        assert_eq!(c.frequency(), "expression");
        assert_eq!(slot_timestamp(c.slot_at(t).unwrap()), "2026-01-01T06:15:00.000Z");
        assert_eq!(slot_timestamp(c.next_slot(t).unwrap()), "2026-01-01T12:15:00.000Z");

        let k = Schedule::parse_arg("events=continuous").unwrap();
        assert_eq!(k.frequency(), "continuous");
        assert!(matches!(k.spec, Spec::Continuous(d) if d == DEFAULT_CONTINUOUS));
    }

    #[test]
    fn refuses_bad_specs() {
        for (arg, needle) in [
            ("contacts", "expected SYNC=SPEC"),
            ("=every:1h", "is empty"),
            ("x=every:soon", "not a duration"),
            ("x=every:10ms", "at least 1s"),
            ("x=cron:61 * * * *", "not a cron expression"),
            ("x=hourly", "unknown schedule"),
        ] {
            let e = Schedule::parse_arg(arg).unwrap_err();
            assert!(e.contains(needle), "{arg}: {e}");
        }
    }
}
