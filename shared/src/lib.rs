//! The library every webhook Lambda uses.
//!
//! - [`domain`]: webhooks, projects, the event catalog, validation and the
//!   endpoint-address policy. Pure: no I/O, no clock.
//! - [`ports`]: the small traits the functions need from the outside world.
//! - [`adapters`]: those traits implemented over AWS (DynamoDB, Secrets Manager).
//! - [`config`]: typed configuration read once at cold start.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod ports;

/// The instant of a Lambda invocation's deadline, given (as the runtime's
/// `Context::deadline`) in milliseconds since the Unix epoch.
pub fn deadline_instant(deadline_ms: u64) -> std::time::Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(deadline_ms);
    std::time::Instant::now() + std::time::Duration::from_millis(deadline_ms.saturating_sub(now_ms))
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
