//! The delivery layer shared by every destination: send a batch, retry transient failures with
//! jittered exponential backoff (honouring `Retry-After`), and turn whole-batch rejections into
//! per-record rejections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::RetryConfig;
use crate::destination::{Destination, Operation, OutRecord, Outcome, SendError};
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

/// Deliver one batch: one outcome per record, or the error that fails the run.
pub async fn send_with_retry(
    dest: &dyn Destination,
    retry: &RetryConfig,
    op: Operation,
    records: &[OutRecord<'_>],
) -> Result<Vec<Outcome>> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match dest.send(op, records).await {
            Ok(outcomes) => return Ok(outcomes),
            Err(SendError::BatchRejected { message }) => return Ok(vec![Outcome::Rejected(message); records.len()]),
            Err(SendError::Fatal { message }) => {
                return Err(Error::destination(format!("{}: {message}", dest.describe())));
            }
            Err(SendError::Transient { message, retry_after }) => {
                if attempt >= retry.max_attempts {
                    return Err(Error::destination(format!(
                        "{}: {message} (gave up after {attempt} attempt{})",
                        dest.describe(),
                        if attempt == 1 { "" } else { "s" }
                    )));
                }
                let wait = match retry_after {
                    Some(ra) if ra > MAX_RETRY_AFTER => {
                        return Err(Error::destination(format!(
                            "{}: {message}; the destination asks to wait {}s, longer than {}s: try again later",
                            dest.describe(),
                            ra.as_secs(),
                            MAX_RETRY_AFTER.as_secs()
                        )));
                    }
                    Some(ra) => ra.max(backoff(retry, attempt) / 4),
                    None => backoff(retry, attempt),
                };
                tracing::warn!(destination = %dest.describe(), attempt, wait_ms = wait.as_millis() as u64, "{message}; retrying");
                tokio::time::sleep(wait).await;
            }
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
}
