//! Publishing from EventBridge: the ingest function, a target of rules on
//! the operator's bus (`PublishEventBus`). It runs the publish route's own
//! rules ([`crate::routes::events::publish_event`]: validation, the
//! project's share, fan-out) keyed by the EventBridge event's id
//! (`domain::ingest`), so a repeat of an event publishes nothing more. Who
//! may invoke it is IAM's business (the rules of that bus), not a token's.
//!
//! An event that can never be published (malformed, unknown event name,
//! too large, its key used with another body) goes to the ingest
//! dead-letter queue as received, with the reason; the invocation then
//! succeeds, so EventBridge does not try it again. A passing fault (the
//! table or a queue unavailable, the project over its share, the same key
//! under way) fails the invocation: Lambda tries it again, and after its
//! tries sends it to the same queue with the error.

use axum::http::StatusCode;
use serde::Serialize;
use shared::adapters::sqs::{DeadLetters, LaneUrls};
use shared::config::{ConfigError, Env};
use shared::domain::ingest::parse;
use shared::domain::{DeliveryLog, PublishShare};
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::events::{FullWindows, Publisher, publish_event};
use crate::{Queue, Store};

/// The ingest function's configuration, from the environment.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub table_name: String,
    /// The lanes publishing queues deliveries to.
    pub queue_urls: LaneUrls,
    /// `INGEST_DEAD_LETTER_QUEUE_URL`: where events that cannot be
    /// published go, with the reason.
    pub dead_letter_url: String,
    pub delivery_log: DeliveryLog,
    /// `PUBLISH_RATE_PER_PROJECT`, as for the API.
    pub publish_share: PublishShare,
}

impl IngestConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: env.required("TABLE_NAME")?,
            queue_urls: crate::lane_urls(env)?,
            dead_letter_url: env.required("INGEST_DEAD_LETTER_QUEUE_URL")?,
            delivery_log: env.delivery_log()?,
            publish_share: env.publish_share(0)?,
        })
    }
}

/// What came of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Ingested {
    Published {
        event_id: Uuid,
        deliveries: usize,
        /// A repeat of an event already published: nothing more queued.
        replayed: bool,
    },
    /// In the dead-letter queue, with this reason.
    DeadLettered { reason: String },
}

/// A fault that may pass: the invocation fails and Lambda tries again.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{code}: {message}")]
    Passing { code: &'static str, message: String },
    #[error("could not queue the refused event in the dead-letter queue")]
    DeadLetters(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The ingest function's state, built once per cold start.
#[derive(Debug)]
pub struct Ingest<S, Q> {
    store: S,
    queue: Q,
    delivery_log: DeliveryLog,
    publish_share: PublishShare,
    full_windows: FullWindows,
    dead_letters: DeadLetters,
}

impl<S: Store, Q: Queue> Ingest<S, Q> {
    pub fn new(
        store: S,
        queue: Q,
        delivery_log: DeliveryLog,
        publish_share: PublishShare,
        dead_letters: DeadLetters,
    ) -> Self {
        Self {
            store,
            queue,
            delivery_log,
            publish_share,
            full_windows: FullWindows::default(),
            dead_letters,
        }
    }

    /// Publishes one event as a rule delivered it (`raw`, its JSON).
    pub async fn handle(&self, raw: &str) -> Result<Ingested, IngestError> {
        let request = match parse(raw) {
            Ok(request) => request,
            Err(refusal) => return self.refuse(raw, "invalid_event", &refusal.0).await,
        };
        let publisher = Publisher {
            store: &self.store,
            queue: &self.queue,
            delivery_log: self.delivery_log,
            publish_share: self.publish_share,
            full_windows: &self.full_windows,
        };
        match publish_event(
            &publisher,
            request.project,
            request.input,
            Some(&request.key),
        )
        .await
        {
            Ok((published, replayed)) => Ok(Ingested::Published {
                event_id: published.event_id,
                deliveries: published.deliveries,
                replayed,
            }),
            Err(err) if passes(&err) => {
                tracing::warn!(code = err.code, error = %err.message, "publishing from the bus failed; Lambda tries again");
                Err(IngestError::Passing {
                    code: err.code,
                    message: err.message,
                })
            }
            Err(err) => {
                let reason = match &err.field {
                    Some(field) => format!("event.{field}: {}", err.message),
                    None => err.message.clone(),
                };
                self.refuse(raw, err.code, &reason).await
            }
        }
    }

    /// Queues `raw` in the dead-letter queue with the reason.
    async fn refuse(&self, raw: &str, code: &str, reason: &str) -> Result<Ingested, IngestError> {
        let body = if raw.is_empty() { "(empty)" } else { raw };
        self.dead_letters
            .put(body, code, reason)
            .await
            .map_err(IngestError::DeadLetters)?;
        tracing::warn!(
            code,
            reason,
            "event from the bus refused; in the dead-letter queue"
        );
        Ok(Ingested::DeadLettered {
            reason: reason.to_owned(),
        })
    }
}

/// Whether trying the same event again may succeed: the store or a queue
/// failed, the project is over its share, or the same key is under way.
/// Everything else (4xx) is the event's own fault.
fn passes(err: &ApiError) -> bool {
    err.status.is_server_error()
        || err.status == StatusCode::TOO_MANY_REQUESTS
        || err.code == "idempotency_in_progress"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_faults_that_may_pass_are_tried_again() {
        let of = |status: StatusCode, code: &'static str| ApiError::new(status, code, "m");
        assert!(passes(&of(
            StatusCode::SERVICE_UNAVAILABLE,
            "enqueue_failed"
        )));
        assert!(passes(&of(StatusCode::INTERNAL_SERVER_ERROR, "internal")));
        assert!(passes(&of(
            StatusCode::TOO_MANY_REQUESTS,
            "publish_rate_exceeded"
        )));
        assert!(passes(&of(StatusCode::CONFLICT, "idempotency_in_progress")));
        assert!(!passes(&of(StatusCode::CONFLICT, "idempotency_key_reused")));
        assert!(!passes(&of(StatusCode::BAD_REQUEST, "invalid_field")));
        assert!(!passes(&of(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large"
        )));
    }

    #[test]
    fn an_outcome_reads_as_json() {
        let published = Ingested::Published {
            event_id: Uuid::nil(),
            deliveries: 2,
            replayed: false,
        };
        assert_eq!(
            serde_json::to_value(&published).unwrap(),
            serde_json::json!({"outcome": "published", "event_id": Uuid::nil(), "deliveries": 2, "replayed": false})
        );
    }
}
