//! The integration tests, one binary with a module per area: handlers against
//! the local AWS emulator (one per test process, started on first use) and
//! real HTTP receivers on 127.0.0.1. `cargo test -p integration-tests <area>`
//! runs one area, e.g. `sweeper`.

mod aws_calls;
mod config_api;
mod delivery;
mod events;
mod headers;
mod history;
mod idempotency;
mod ingest;
mod invocation;
mod lanes;
mod openapi;
mod operational;
mod recovery;
mod retries;
mod signing;
mod store;
mod sweeper;
mod template;
