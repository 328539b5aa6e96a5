//! Route handlers. Each checks the caller's reach first, then validates,
//! then calls the store.

pub mod catalog;
pub mod deliveries;
pub mod events;
pub mod recoveries;
pub mod tokens;
pub mod webhooks;
