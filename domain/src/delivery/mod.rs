//! Events and their delivery as pure steps (`docs/ARCHITECTURE.md`, "Rules"):
//! build the envelope ([`event`]) → the queue message ([`message`]) → check
//! eligibility and prepare the request ([`request`]) → (send) → classify the
//! outcome and decide what to record ([`outcome`]) → the verdict the batch
//! response is built from ([`verdict`]), all inside the invocation's time
//! ([`budget`]). Only sending and recording touch the world; they live in
//! the adapters.

pub mod budget;
pub mod event;
pub mod message;
pub mod outcome;
pub mod request;
pub mod verdict;

pub use budget::*;
pub use event::*;
pub use message::*;
pub use outcome::*;
pub use request::*;
pub use verdict::*;

#[cfg(test)]
pub(crate) mod test_support {
    use super::PublishInput;
    use crate::{ProjectCode, Webhook};

    pub fn project() -> ProjectCode {
        ProjectCode::parse("ID").unwrap()
    }

    pub fn input(json: &str) -> PublishInput {
        serde_json::from_str(json).unwrap()
    }

    pub fn webhook() -> Webhook {
        crate::testing::webhook("ID")
    }
}
