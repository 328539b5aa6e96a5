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
