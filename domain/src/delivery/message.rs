//! The queue message: one event for one webhook, and what made it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::delivery::Event;
use crate::{EventName, ProjectCode, Timestamp, WebhookId};

/// The version of [`DeliveryMessage`] this code writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// What made an attempt happen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A published event.
    #[default]
    Event,
    /// A person asked to send a recorded delivery again.
    Redelivery,
    /// A person asked for a `webhook.ping`.
    Ping,
    /// A bulk recovery resends a delivery that failed, or an event the
    /// webhook missed while it was disabled (`crate::recover`).
    Recovery,
}

impl Trigger {
    pub fn is_event(&self) -> bool {
        *self == Trigger::Event
    }

    /// Whether the endpoint is told this is a delivery sent again
    /// (`X-Qase-Redelivery: true`).
    pub fn is_resend(&self) -> bool {
        matches!(self, Trigger::Redelivery | Trigger::Recovery)
    }
}

/// One SQS message: one event for one webhook. It never holds the webhook's
/// endpoint or secret; those are read at send time, so changes apply to
/// messages already queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryMessage {
    pub v: u32,
    pub delivery_id: Uuid,
    pub event_id: Uuid,
    pub project: ProjectCode,
    pub webhook_id: WebhookId,
    pub event_name: EventName,
    /// Embedded verbatim: the bytes read back are the bytes written.
    pub envelope: Box<RawValue>,
    /// 1 for the first attempt; a retry (`retry_policy: "standard"`) counts
    /// up. Absent on first attempts, so they read as before retries existed.
    #[serde(default = "first_attempt", skip_serializing_if = "is_first_attempt")]
    pub attempt: u32,
    /// A retry is not sent before this: until then it hops through the
    /// queue (SQS delays a message 15 minutes at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    /// What made this delivery: absent for a published event; a
    /// redelivery or ping is sent even to a disabled webhook, once.
    #[serde(default, skip_serializing_if = "Trigger::is_event")]
    pub trigger: Trigger,
    /// The bulk recovery that queued it (trigger `recovery`): its progress
    /// counts this delivery's first attempt, and its pace bounds the POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<crate::recover::Paced>,
}

fn first_attempt() -> u32 {
    1
}

fn is_first_attempt(attempt: &u32) -> bool {
    *attempt == 1
}

/// A queue message this code cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a delivery message")]
    Malformed(#[from] serde_json::Error),
    #[error("unsupported message version {0}")]
    Version(u32),
}

impl DeliveryMessage {
    pub fn new(event: &Event, webhook_id: WebhookId, envelope: Box<RawValue>) -> Self {
        Self::for_event(
            event.id,
            event.project.clone(),
            event.name,
            webhook_id,
            envelope,
        )
    }

    /// The first attempt of a new delivery (a new delivery id) of an event.
    pub fn for_event(
        event_id: Uuid,
        project: ProjectCode,
        event_name: EventName,
        webhook_id: WebhookId,
        envelope: Box<RawValue>,
    ) -> Self {
        Self {
            v: MESSAGE_VERSION,
            delivery_id: Uuid::now_v7(),
            event_id,
            project,
            webhook_id,
            event_name,
            envelope,
            attempt: 1,
            not_before: None,
            trigger: Trigger::Event,
            recovery: None,
        }
    }

    /// The next attempt of this delivery, not before `not_before`: the same
    /// delivery and event ids, the same bytes.
    pub fn into_retry(self, not_before: Timestamp) -> Self {
        Self {
            attempt: self.attempt.saturating_add(1),
            not_before: Some(not_before),
            ..self
        }
    }

    /// Its message group in the slow lane, where SQS serves groups fairly:
    /// the project's, recoveries included, so that one project's backlog
    /// (failing deliveries, or recoveries of all its webhooks) does not hold
    /// up the others'. A group per recovering webhook would give a project
    /// with a hundred of them a hundred shares.
    pub fn group(&self) -> &str {
        self.project.as_str()
    }

    pub fn decode(body: &str) -> Result<Self, DecodeError> {
        let message: Self = serde_json::from_str(body)?;
        if message.v != MESSAGE_VERSION {
            return Err(DecodeError::Version(message.v));
        }
        Ok(message)
    }

    pub fn encode(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::test_support::{input, project};
    use crate::delivery::{MAX_ENVELOPE_BYTES, envelope_fits};

    #[test]
    fn message_round_trips_with_the_exact_envelope() {
        let event = input(
            r#"{"event_name":"defect.created","payload":{"x": "é\"q"},"team_member_id":null}"#,
        )
        .validate(project(), Timestamp::now())
        .unwrap();
        let envelope = event.envelope().unwrap();
        let message = DeliveryMessage::new(&event, WebhookId::generate(), envelope.clone());
        let decoded = DeliveryMessage::decode(&message.encode().unwrap()).unwrap();
        assert_eq!(decoded.envelope.get(), envelope.get());
        assert_eq!(decoded.delivery_id, message.delivery_id);
        let text = message.encode().unwrap();
        assert!(!text.contains("endpoint") && !text.contains("secret"));
    }

    #[test]
    fn a_retry_carries_the_same_delivery_the_next_attempt_and_when_it_is_due() {
        let event = input(r#"{"event_name":"run.completed","payload":{"a":1}}"#)
            .validate(project(), Timestamp::now())
            .unwrap();
        let first = DeliveryMessage::new(&event, WebhookId::generate(), event.envelope().unwrap());
        let text = first.encode().unwrap();
        assert!(
            !text.contains("attempt") && !text.contains("not_before"),
            "{text}"
        );
        assert_eq!(DeliveryMessage::decode(&text).unwrap().attempt, 1);
        let due = Timestamp::parse("2026-11-29T12:05:00Z").unwrap();
        let second = first.clone().into_retry(due);
        let decoded = DeliveryMessage::decode(&second.encode().unwrap()).unwrap();
        assert_eq!(decoded.attempt, 2);
        assert_eq!(decoded.not_before, Some(due));
        assert_eq!(decoded.delivery_id, first.delivery_id);
        assert_eq!(decoded.event_id, first.event_id);
        assert_eq!(decoded.envelope.get(), first.envelope.get());
        assert_eq!(decoded.into_retry(due).attempt, 3);
    }

    #[test]
    fn the_largest_event_with_retry_metadata_fits_in_a_queue_message() {
        const SQS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
        let shell = input(r#"{"event_name":"run.completed","payload":{"p":""}}"#)
            .validate(project(), Timestamp::now())
            .unwrap();
        let padding = MAX_ENVELOPE_BYTES - shell.envelope().unwrap().get().len();
        let payload = format!(
            r#"{{"p":"{}"}}"#,
            "\\u00e9".repeat(padding / 6) + &"x".repeat(padding % 6)
        );
        let event = input(&format!(
            r#"{{"event_name":"run.completed","payload":{payload}}}"#
        ))
        .validate(project(), Timestamp::now())
        .unwrap();
        let envelope = event.envelope().unwrap();
        assert_eq!(
            envelope.get().len(),
            MAX_ENVELOPE_BYTES,
            "exactly the largest accepted"
        );
        assert!(envelope_fits(&envelope));
        let mut message = DeliveryMessage::new(&event, WebhookId::generate(), envelope);
        message.attempt = u32::MAX - 1;
        let retry = message.into_retry(Timestamp::parse("9999-12-31T23:59:59Z").unwrap());
        let encoded = retry.encode().unwrap();
        assert!(encoded.len() <= SQS_MAX_MESSAGE_BYTES, "{}", encoded.len());
        assert!(
            encoded.len() < MAX_ENVELOPE_BYTES + 1024,
            "the metadata is small: {}",
            encoded.len()
        );
        assert_eq!(retry.attempt, u32::MAX);
    }

    #[test]
    fn decode_refuses_garbage_and_other_versions() {
        assert!(matches!(
            DeliveryMessage::decode("not json"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            DeliveryMessage::decode("{}"),
            Err(DecodeError::Malformed(_))
        ));
        let event = input(r#"{"event_name":"run.started","payload":{}}"#)
            .validate(project(), Timestamp::now())
            .unwrap();
        let mut message =
            DeliveryMessage::new(&event, WebhookId::generate(), event.envelope().unwrap());
        message.v = 2;
        assert!(matches!(
            DeliveryMessage::decode(&message.encode().unwrap()),
            Err(DecodeError::Version(2))
        ));
    }
}
