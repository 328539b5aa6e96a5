//! Pure rules of the webhook service.

pub mod address;
pub mod catalog;
pub mod delivery;
pub mod history;
pub mod notice;
pub mod project;
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
    Record, Skip, Verdict,
};
pub use history::{Attempt, AttemptOutcome, DeliveryLog, StoredEvent, Trigger};
pub use notice::{Mail, NoticeSettings};
pub use project::ProjectCode;
pub use retry::RetryPolicy;
pub use secret::{Secret, SigningSecret};
pub use time::Timestamp;
pub use token::{ApiToken, TokenHash, TokenId, TokenRecord};
pub use validation::FieldError;
pub use webhook::{
    EndpointRules, MAX_WEBHOOKS_PER_PROJECT, NewWebhook, Status, Webhook, WebhookChanges,
    WebhookId, WebhookInput, WebhookPatch,
};
