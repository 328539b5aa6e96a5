//! Pure rules of the webhook service.

pub mod address;
pub mod catalog;
pub mod delivery;
pub mod headers;
pub mod history;
pub mod idempotency;
pub mod ingest;
pub mod lane;
pub mod notice;
pub mod operational;
pub mod project;
pub mod rate;
pub mod recover;
pub mod retry;
pub mod secret;
pub mod time;
pub mod token;
pub mod validation;
pub mod webhook;

pub use address::{AddressClass, AddressPolicy, BlockedAddress};
pub use catalog::{Entity, EventName};
pub use delivery::{
    DeliveryMessage, Dispatch, Event, FailureReason, FailureRules, Fault, Outcome, PublishInput,
    Record, Skip, Trigger, Verdict,
};
pub use headers::CustomHeaders;
pub use history::{Attempt, AttemptOutcome, DeliveryLog, StoredEvent};
pub use idempotency::IdempotencyKey;
pub use lane::{Lane, LaneNames, Route};
pub use notice::{Mail, NoticeSettings};
pub use project::ProjectCode;
pub use rate::PublishShare;
pub use retry::RetryPolicy;
pub use secret::{Secret, SigningSecret};
pub use time::Timestamp;
pub use token::{ApiToken, TokenHash, TokenId, TokenRecord};
pub use validation::FieldError;
pub use webhook::{
    EndpointRules, MAX_WEBHOOKS_PER_PROJECT, NewWebhook, Status, Webhook, WebhookChanges,
    WebhookId, WebhookInput, WebhookPatch,
};

#[cfg(test)]
pub(crate) mod testing {
    //! What the rules' tests share.

    use crate::{ProjectCode, Timestamp, Webhook, WebhookId, WebhookInput};

    /// A valid webhook of `project` to `https://example.com/` for
    /// `run.completed`, created now.
    pub fn webhook(project: &str) -> Webhook {
        WebhookInput {
            title: Some("t".into()),
            endpoint: Some("https://example.com/".into()),
            events: Some(vec!["run.completed".into()]),
            ..WebhookInput::default()
        }
        .validate(&Default::default())
        .unwrap()
        .into_webhook(
            WebhookId::generate(),
            ProjectCode::parse(project).unwrap(),
            Timestamp::now(),
        )
    }
}
