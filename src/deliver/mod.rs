//! The delivery layer shared by every destination.
//!
//! A [`Deliverer`] sends batches for one run and owns everything that is the same for every
//! destination:
//! - **Pacing**: a token bucket at the configured `rate_limit` (else the destination type's
//!   default), tightened, never loosened, by what the destination reports in its answers
//!   ([`RateInfo`]: HubSpot's `X-HubSpot-RateLimit-*`, Salesforce's `Sforce-Limit-Info`, …).
//!   Requests are spaced evenly (a burst of one), at `(limit − 1) / window`, so that no window
//!   of the destination's length, wherever it starts, sees more than `limit` requests. A 429
//!   pauses every sender until its `Retry-After` has passed.
//! - **Adaptive concurrency** (additive increase, multiplicative decrease): up to
//!   `max_concurrency` requests in flight; the window grows by one per window's worth of
//!   successes while it is the bottleneck, and halves on a 429, a 5xx or a timeout (at most
//!   once per round trip).
//! - **Retries** with jittered exponential backoff, honouring `Retry-After`; every retry takes
//!   a token and a concurrency slot like any request. A wait longer than
//!   [`MAX_RETRY_AFTER`] fails the run with the destination's message instead of spinning.
//! - **Per-record outcomes**: a batch the destination refuses as a whole is bisected until the
//!   records it objects to are isolated and rejected alone; records answered "retry" are sent
//!   again, and rejected with the destination's reason once attempts run out.
//! - **Yielding when throttled** (optional, [`ThrottleYield`]): when the rate limit would hold
//!   the next request back for at least the given time (a 429's wait, a spent window, an empty
//!   token bucket), no further request leaves and the batch fails with a "yielding" error; the
//!   engine commits the answers of the batches in flight and gives the run back to the queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::{DeliveryConfig, RateLimit, RetryConfig};
use crate::destination::{Destination, Limits, Operation, OutRecord, Outcome, RateInfo, SendError};
use crate::error::{Error, Result};

/// The longest `Retry-After` we wait for before failing the run instead.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

static SEED: AtomicU64 = AtomicU64::new(0);

/// A uniformly random fraction in [0, 1), good enough for jitter.
fn random_fraction() -> f64 {
    let mut x = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Backoff before attempt `attempt + 1` (attempt counts from 1): exponential, capped, with
/// jitter in [½, 1] of the step.
pub fn backoff(retry: &RetryConfig, attempt: u32) -> Duration {
    let base = retry.initial_backoff.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
    let capped = base.min(retry.max_backoff.as_secs_f64());
    Duration::from_secs_f64(capped * (0.5 + 0.5 * random_fraction()))
}

// ---------------------------------------------------------------------------------------------
// Pacing

struct PacerState {
    /// Seconds between requests; 0 = unpaced.
    interval: f64,
    /// The configured (or default) interval, which hints may tighten but never loosen.
    floor_interval: f64,
    /// When the next request may start.
    next: Instant,
    /// Nothing starts before this (a 429's `Retry-After`).
    paused_until: Option<Instant>,
}

/// A token bucket with a burst of one.
pub struct Pacer {
    state: Mutex<PacerState>,
}

fn interval_of(rate: &RateLimit) -> f64 {
    // Evenly spaced at (limit − 1) / window: any window of that length holds at most `limit`.
    let n = (rate.requests as f64 - 1.0).max(0.5);
    rate.per.as_secs_f64() / n
}

impl Pacer {
    pub fn new(rate: Option<RateLimit>) -> Self {
        let interval = rate.as_ref().map(interval_of).unwrap_or(0.0);
        Pacer { state: Mutex::new(PacerState { interval, floor_interval: interval, next: Instant::now(), paused_until: None }) }
    }

    /// Wait for this request's turn.
    pub async fn acquire(&self) {
        let at = {
            let mut s = self.state.lock().unwrap();
            let now = Instant::now();
            let mut at = s.next.max(now);
            if let Some(p) = s.paused_until {
                if p > at {
                    at = p;
                } else if p <= now {
                    s.paused_until = None;
                }
            }
            s.next = at + Duration::from_secs_f64(s.interval);
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// Hold every request back until `wait` has passed.
    pub fn pause(&self, wait: Duration) {
        let mut s = self.state.lock().unwrap();
        let until = Instant::now() + wait;
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Take what the destination said about its limit into account.
    pub fn observe(&self, info: &RateInfo) {
        // Whatever a destination claims, a window longer than a day is not one to pace by (and
        // must not overflow the clock arithmetic below).
        let clamped;
        let info = match info.window {
            Some(w) if w > Duration::from_secs(86_400) => {
                clamped = RateInfo { window: Some(Duration::from_secs(86_400)), ..info.clone() };
                &clamped
            }
            _ => info,
        };
        let mut s = self.state.lock().unwrap();
        let mut interval = s.floor_interval;
        if let (Some(limit), Some(window)) = (info.limit, info.window) {
            if limit > 0 && !window.is_zero() {
                interval = interval.max(interval_of(&RateLimit { requests: limit.min(u32::MAX as u64) as u32, per: window }));
                // The budget is spent (other clients share it): nothing more this window's
                // share of a request. A lone client pacing at (limit − 1) / window normally sees
                // a remaining of 1 or 2 in a rolling window, which is no reason to slow down;
                // destinations that can tell other clients' use apart report a smaller `limit`.
                if info.remaining == Some(0) {
                    s.paused_until = Some(Instant::now() + window / limit.clamp(1, u32::MAX as u64) as u32);
                }
            }
        }
        if (interval - s.interval).abs() > 1e-9 {
            tracing::debug!(interval_ms = interval * 1000.0, "pacing changed by the destination's rate-limit answer");
        }
        s.interval = interval;
    }

    /// How long the next request would wait for its turn now (zero when it may start at once).
    pub fn throttled_for(&self) -> Duration {
        let s = self.state.lock().unwrap();
        let now = Instant::now();
        let at = s.paused_until.map_or(s.next, |p| p.max(s.next));
        at.saturating_duration_since(now)
    }

    /// Requests per second now allowed (infinite when unpaced).
    pub fn rate(&self) -> f64 {
        let s = self.state.lock().unwrap();
        if s.interval == 0.0 { f64::INFINITY } else { 1.0 / s.interval }
    }
}

// ---------------------------------------------------------------------------------------------
// Adaptive concurrency

struct AimdState {
    limit: f64,
    in_flight: usize,
    /// No second decrease before this (one per round trip).
    calm_until: Option<Instant>,
}

/// An additive-increase, multiplicative-decrease limit on requests in flight.
pub struct Aimd {
    max: usize,
    state: Mutex<AimdState>,
    freed: Notify,
}

/// A slot in the concurrency window; returned on drop.
pub struct Slot<'a> {
    aimd: &'a Aimd,
    /// The window was full when this slot was taken: the limit is what holds us back.
    saturated: bool,
    started: Instant,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.aimd.state.lock().unwrap().in_flight -= 1;
        self.aimd.freed.notify_waiters();
        self.aimd.freed.notify_one();
    }
}

impl Aimd {
    pub fn new(initial: usize, max: usize) -> Self {
        let max = max.max(1);
        Aimd {
            max,
            state: Mutex::new(AimdState { limit: initial.clamp(1, max) as f64, in_flight: 0, calm_until: None }),
            freed: Notify::new(),
        }
    }

    pub async fn acquire(&self) -> Slot<'_> {
        loop {
            let notified = self.freed.notified();
            {
                let mut s = self.state.lock().unwrap();
                let limit = s.limit.floor() as usize;
                if s.in_flight < limit {
                    s.in_flight += 1;
                    return Slot { aimd: self, saturated: s.in_flight >= limit, started: Instant::now() };
                }
            }
            notified.await;
        }
    }

    fn success(&self, slot: &Slot<'_>) {
        if slot.saturated {
            let mut s = self.state.lock().unwrap();
            s.limit = (s.limit + 1.0 / s.limit).min(self.max as f64);
        }
    }

    fn backpressure(&self, slot: &Slot<'_>) {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        if s.calm_until.is_some_and(|c| c > now) {
            return;
        }
        s.limit = (s.limit / 2.0).max(1.0);
        s.calm_until = Some(now + slot.started.elapsed().max(Duration::from_millis(10)));
    }

    pub fn limit(&self) -> usize {
        self.state.lock().unwrap().limit.floor() as usize
    }
}

// ---------------------------------------------------------------------------------------------
// The deliverer

/// Counters of one run's requests (for logs, metrics and benchmarks).
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub transient: AtomicU64,
    pub bisections: AtomicU64,
}

/// Asks a run's deliverer to stop sending once the destination's rate limit would hold the
/// next request back for at least `after`, and remembers how long that wait was.
#[derive(Debug)]
pub struct ThrottleYield {
    after: Duration,
    wait: Mutex<Option<Duration>>,
}

impl ThrottleYield {
    pub fn new(after: Duration) -> Self {
        ThrottleYield { after, wait: Mutex::new(None) }
    }

    /// The threshold.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// `Some(wait)` once the deliverer yielded: the longest wait it saw (resume no earlier).
    pub fn yielded(&self) -> Option<Duration> {
        *self.wait.lock().unwrap()
    }

    /// Yield when `wait` reaches the threshold (or a yield happened already).
    fn check(&self, wait: Duration, describe: &dyn Fn() -> String) -> Result<()> {
        let mut w = self.wait.lock().unwrap();
        if wait >= self.after {
            *w = Some(w.map_or(wait, |old| old.max(wait)));
        }
        match *w {
            Some(longest) => Err(Error::destination(format!(
                "{}: rate limited for the next {:.1}s (at least yield_when_throttled = {:.1}s); yielding the run, which resumes from what the destination acknowledged",
                describe(),
                longest.as_secs_f64(),
                self.after.as_secs_f64()
            ))),
            None => Ok(()),
        }
    }
}

/// Sends batches to one destination for one run.
pub struct Deliverer {
    dest: Arc<dyn Destination>,
    limits: Limits,
    retry: RetryConfig,
    batch_size: usize,
    max_concurrency: usize,
    pacer: Pacer,
    aimd: Aimd,
    yield_on: Option<Arc<ThrottleYield>>,
    pub stats: Stats,
}

impl Deliverer {
    pub fn new(dest: Arc<dyn Destination>, cfg: &DeliveryConfig) -> Self {
        let limits = dest.limits();
        let batch_size = cfg.batch_size.unwrap_or(limits.default_batch).clamp(1, limits.max_records.max(1));
        let max_concurrency = cfg.max_concurrency.unwrap_or(limits.default_concurrency).max(1);
        let rate = cfg.rate_limit.or(limits.default_rate);
        Deliverer {
            pacer: Pacer::new(rate),
            // Start at one request in flight and grow while the destination keeps up.
            aimd: Aimd::new(1, max_concurrency),
            dest,
            limits,
            retry: cfg.retry.clone(),
            batch_size,
            max_concurrency,
            yield_on: None,
            stats: Stats::default(),
        }
    }

    /// Stop sending (each batch fails with a "yielding" error) once the rate limit would hold
    /// the next request back for at least `y`'s threshold. `None`: wait as long as it takes.
    pub fn yield_when_throttled(mut self, y: Option<Arc<ThrottleYield>>) -> Self {
        self.yield_on = y;
        self
    }

    /// How long the destination's rate limit holds the next request back now: a 429's
    /// `Retry-After`, a spent window, or the token bucket's next token (zero: it may go now).
    pub fn throttled_for(&self) -> Duration {
        self.pacer.throttled_for()
    }

    fn check_yield(&self, wait: Duration) -> Result<()> {
        match &self.yield_on {
            Some(y) => y.check(wait, &|| self.dest.describe()),
            None => Ok(()),
        }
    }

    pub fn destination(&self) -> &Arc<dyn Destination> {
        &self.dest
    }

    /// Records per request.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Most bytes of records per request (`None`: no limit).
    pub fn max_batch_bytes(&self) -> Option<usize> {
        self.limits.max_bytes.map(|b| b.saturating_sub(self.limits.overhead_bytes).max(1))
    }

    /// Most batches worth having in flight at once.
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// The current concurrency window (for logs and tests).
    pub fn concurrency(&self) -> usize {
        self.aimd.limit()
    }

    /// Deliver one batch: one final outcome per record (accepted or rejected), or the error
    /// that fails the run.
    pub async fn deliver(&self, op: Operation, records: &[OutRecord<'_>]) -> Result<Vec<Outcome>> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut todo: Vec<usize> = (0..records.len()).collect();
        let mut round = 0u32;
        while !todo.is_empty() {
            round += 1;
            let batch: Vec<OutRecord> = todo.iter().map(|&i| records[i].clone()).collect();
            let got = self.deliver_part(op, &batch).await?;
            let mut again = Vec::new();
            for (&i, o) in todo.iter().zip(got) {
                match o {
                    Outcome::Retry(reason) if round < self.retry.max_attempts => {
                        again.push(i);
                        outcomes[i] = Some(Outcome::Retry(reason));
                    }
                    Outcome::Retry(reason) => {
                        outcomes[i] = Some(Outcome::Rejected(format!("{reason} (still failing after {round} attempts)")))
                    }
                    o => outcomes[i] = Some(o),
                }
            }
            if !again.is_empty() {
                let wait = backoff(&self.retry, round);
                tracing::info!(destination = %self.dest.describe(), records = again.len(), wait_ms = wait.as_millis() as u64, "records answered retry; sending them again");
                tokio::time::sleep(wait).await;
            }
            todo = again;
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Rejected("no outcome".into()))).collect())
    }

    /// One batch with whole-batch retries; bisects a batch refused as a whole.
    fn deliver_part<'a>(
        &'a self,
        op: Operation,
        records: &'a [OutRecord<'a>],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Outcome>>> + Send + 'a>> {
        Box::pin(async move {
            match self.send_with_retry(op, records).await? {
                Ok(outcomes) => Ok(outcomes),
                Err(message) if records.len() <= 1 => Ok(vec![Outcome::Rejected(message); records.len()]),
                Err(message) => {
                    self.stats.bisections.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(destination = %self.dest.describe(), records = records.len(), "batch refused as a whole ({message}); splitting it to isolate the records at fault");
                    let mid = records.len() / 2;
                    let mut left = self.deliver_part(op, &records[..mid]).await?;
                    let right = self.deliver_part(op, &records[mid..]).await?;
                    left.extend(right);
                    Ok(left)
                }
            }
        })
    }

    /// Send until the destination answers: `Ok(Ok(outcomes))`, or `Ok(Err(message))` when it
    /// refused the batch as a whole.
    async fn send_with_retry(&self, op: Operation, records: &[OutRecord<'_>]) -> Result<std::result::Result<Vec<Outcome>, String>> {
        let describe = || self.dest.describe();
        // Failures count as attempts; 429s do not (the destination is asking us to slow down,
        // not failing), but a batch answered 429 for longer than MAX_RETRY_AFTER fails the run.
        let mut attempt = 0u32;
        let mut throttled_since: Option<Instant> = None;
        let mut throttles = 0u32;
        loop {
            attempt += 1;
            let slot = self.aimd.acquire().await;
            self.check_yield(self.throttled_for())?;
            self.pacer.acquire().await;
            // A wait that began before another request's 429 paused everyone.
            self.check_yield(Duration::ZERO)?;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let result = self.dest.send(op, records).await;
            let (message, retry_after, throttled) = match result {
                Ok(reply) => {
                    self.aimd.success(&slot);
                    if let Some(info) = &reply.rate {
                        self.pacer.observe(info);
                    }
                    if reply.outcomes.len() != records.len() {
                        return Err(Error::destination(format!(
                            "{}: answered {} outcomes for {} records; report this as a sluicegate bug",
                            describe(),
                            reply.outcomes.len(),
                            records.len()
                        )));
                    }
                    return Ok(Ok(reply.outcomes));
                }
                Err(SendError::BatchRejected { message }) => {
                    self.aimd.success(&slot);
                    return Ok(Err(message));
                }
                Err(SendError::Fatal { message }) => return Err(Error::destination(format!("{}: {message}", describe()))),
                Err(SendError::RateLimited { message, retry_after, rate }) => {
                    self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                    self.aimd.backpressure(&slot);
                    if let Some(info) = &rate {
                        self.pacer.observe(info);
                    }
                    if let Some(ra) = retry_after.filter(|ra| *ra <= MAX_RETRY_AFTER) {
                        self.pacer.pause(ra);
                    }
                    let since = *throttled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < MAX_RETRY_AFTER && retry_after.is_none_or(|ra| ra <= MAX_RETRY_AFTER) {
                        attempt -= 1;
                        throttles += 1;
                    } else if retry_after.is_none_or(|ra| ra <= MAX_RETRY_AFTER) {
                        return Err(Error::destination(format!(
                            "{}: {message}; still rate limited after {} minutes of waiting: lower `rate_limit`, or run the sync when the destination is less busy",
                            describe(),
                            MAX_RETRY_AFTER.as_secs() / 60
                        )));
                    }
                    (message, retry_after, true)
                }
                Err(SendError::Transient { message, retry_after }) => {
                    self.stats.transient.fetch_add(1, Ordering::Relaxed);
                    self.aimd.backpressure(&slot);
                    (message, retry_after, false)
                }
            };
            drop(slot);
            if attempt >= self.retry.max_attempts {
                return Err(Error::destination(format!(
                    "{}: {message} (gave up after {attempt} attempt{})",
                    describe(),
                    if attempt == 1 { "" } else { "s" }
                )));
            }
            let wait = match retry_after {
                Some(ra) if ra > MAX_RETRY_AFTER => {
                    return Err(Error::destination(format!(
                        "{}: {message}; the destination asks to wait {}s, longer than {}s: run the sync again later",
                        describe(),
                        ra.as_secs(),
                        MAX_RETRY_AFTER.as_secs()
                    )));
                }
                Some(ra) => ra.max(backoff(&self.retry, attempt.max(1) + throttles) / 4),
                None => backoff(&self.retry, attempt.max(1) + throttles),
            };
            if throttled {
                self.check_yield(wait.max(self.throttled_for()))?;
            }
            tracing::warn!(destination = %describe(), attempt, wait_ms = wait.as_millis() as u64, "{message}; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = RetryConfig { max_attempts: 10, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(1) };
        for _ in 0..50 {
            let b1 = backoff(&r, 1);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100), "{b1:?}");
            let b3 = backoff(&r, 3);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400), "{b3:?}");
            let b9 = backoff(&r, 9);
            assert!(b9 >= Duration::from_millis(500) && b9 <= Duration::from_secs(1), "{b9:?}");
        }
    }

    #[test]
    fn hints_tighten_but_never_loosen() {
        let p = Pacer::new(Some(RateLimit { requests: 11, per: Duration::from_secs(1) }));
        assert!((p.rate() - 10.0).abs() < 1e-6, "{}", p.rate());
        // The destination allows more than configured: keep ours.
        p.observe(&RateInfo { limit: Some(1000), remaining: Some(900), window: Some(Duration::from_secs(1)) });
        assert!((p.rate() - 10.0).abs() < 1e-6, "{}", p.rate());
        // It allows less: follow it.
        p.observe(&RateInfo { limit: Some(6), remaining: Some(5), window: Some(Duration::from_secs(1)) });
        assert!((p.rate() - 5.0).abs() < 1e-6, "{}", p.rate());
        // A lone client at full pace sees little remaining: no reason to slow down.
        p.observe(&RateInfo { limit: Some(100), remaining: Some(2), window: Some(Duration::from_secs(10)) });
        assert!((p.rate() - 100.0 / 10.0 * 0.99).abs() < 1e-6, "{}", p.rate());
        // Spent: the next request waits a request's share of the window.
        p.observe(&RateInfo { limit: Some(100), remaining: Some(0), window: Some(Duration::from_secs(10)) });
        assert!(p.state.lock().unwrap().paused_until.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_spaces_requests_evenly() {
        let p = Pacer::new(Some(RateLimit { requests: 11, per: Duration::from_secs(1) }));
        let t0 = Instant::now();
        for _ in 0..21 {
            p.acquire().await;
        }
        // 21 requests at 10/s: the first at once, the last after 2 s.
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
        p.pause(Duration::from_secs(5));
        let t1 = Instant::now();
        p.acquire().await;
        assert_eq!(t1.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_for_reports_the_wait_of_the_next_request() {
        let p = Pacer::new(Some(RateLimit { requests: 3, per: Duration::from_secs(4) }));
        assert_eq!(p.throttled_for(), Duration::ZERO);
        p.acquire().await;
        // Two seconds between requests: the next one waits that long.
        assert_eq!(p.throttled_for(), Duration::from_secs(2));
        p.pause(Duration::from_secs(7));
        assert_eq!(p.throttled_for(), Duration::from_secs(7));
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(p.throttled_for(), Duration::ZERO);
    }

    #[test]
    fn throttle_yield_fires_at_its_threshold_and_stays_fired() {
        let y = ThrottleYield::new(Duration::from_secs(1));
        let describe = || "test".to_string();
        assert!(y.check(Duration::from_millis(999), &describe).is_ok());
        assert_eq!(y.yielded(), None);
        let err = y.check(Duration::from_secs(3), &describe).unwrap_err();
        assert!(err.full_message().contains("yielding the run"), "{}", err.full_message());
        assert_eq!(y.yielded(), Some(Duration::from_secs(3)));
        // Once yielded, nothing else is sent, and the longest wait is kept.
        assert!(y.check(Duration::ZERO, &describe).is_err());
        assert!(y.check(Duration::from_secs(2), &describe).is_err());
        assert_eq!(y.yielded(), Some(Duration::from_secs(3)));
    }

    #[tokio::test]
    async fn aimd_grows_when_saturated_and_halves_on_backpressure() {
        let a = Aimd::new(1, 8);
        for _ in 0..200 {
            // Use the whole window, as a busy run does.
            let mut slots = Vec::new();
            for _ in 0..a.limit() {
                slots.push(a.acquire().await);
            }
            for s in &slots {
                a.success(s);
            }
        }
        assert_eq!(a.limit(), 8);
        {
            let s = a.acquire().await;
            a.backpressure(&s);
            // A second sign of trouble within the same round trip does not halve again.
            a.backpressure(&s);
        }
        assert_eq!(a.limit(), 4);
        // Successes that do not fill the window do not grow it.
        let a = Aimd::new(4, 8);
        for _ in 0..40 {
            let s = a.acquire().await;
            a.success(&s);
        }
        assert_eq!(a.limit(), 4);
    }
}
