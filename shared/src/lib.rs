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
