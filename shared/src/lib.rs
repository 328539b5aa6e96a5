//! The library every webhook Lambda uses.
//!
//! - [`domain`]: webhooks, projects, the event catalog, validation and the
//!   endpoint-address policy. Pure: no I/O, no clock. A crate of its own
//!   (`domain/`), re-exported here.
//! - [`ports`]: the small traits the functions need from the outside world.
//! - [`adapters`]: those traits implemented over AWS (DynamoDB, Secrets Manager).
//! - [`config`]: typed configuration read once at cold start.
//! - [`telemetry`]: log lines and CloudWatch metrics (embedded metric format).

pub mod adapters;
pub mod config;
pub use domain;
pub mod ports;
pub mod recovery;
pub mod telemetry;

/// The instant of a Lambda invocation's deadline, given (as the runtime's
/// `Context::deadline`) in milliseconds since the Unix epoch. A deadline
/// that is not in the future cannot be one Lambda set (cargo-lambda's
/// runtime emulator sends the timeout itself, e.g. `600000`): the invocation
/// then gets `fallback` from now, the function's configured timeout.
pub fn deadline_instant(deadline_ms: u64, fallback: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    match deadline_ms.checked_sub(now_ms) {
        Some(left) if left > 0 => now + std::time::Duration::from_millis(left),
        _ => now + fallback,
    }
}

/// An error and its sources on one line, for logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use super::deadline_instant;

    #[test]
    fn a_deadline_in_the_future_is_kept_and_any_other_means_the_fallback() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let fallback = Duration::from_secs(30);
        let soon = deadline_instant(now_ms + 5_000, fallback);
        assert!(soon > Instant::now() + Duration::from_secs(3));
        assert!(soon <= Instant::now() + Duration::from_secs(5));
        for odd in [600_000, 0, now_ms - 1] {
            let at = deadline_instant(odd, fallback);
            assert!(at > Instant::now() + Duration::from_secs(29), "{odd}");
        }
    }
}
