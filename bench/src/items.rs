//! The delivery history's item sizes, as DynamoDB bills them, for the event
//! every run uses and for the largest event accepted.

use std::time::Duration;

use serde_json::value::RawValue;
use shared::adapters::dynamo::schema::{attempt_item, event_item, item_size, webhook_item};
use shared::domain::delivery::{MAX_ENVELOPE_BYTES, RESPONSE_BODY_CAP, envelope_fits, prepare};
use shared::domain::history::masked_headers;
use shared::domain::{
    Attempt, DeliveryLog, DeliveryMessage, Event, EventName, FailureReason, Outcome, StoredEvent,
    Timestamp,
};

use crate::speed;

/// Bytes of the items the history writes.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// A delivered attempt of the typical event, its response `recorded\n`.
    pub attempt: usize,
    /// A failed attempt whose response body filled the 1 KiB kept.
    pub attempt_full_body: usize,
    /// The typical event, stored once per publish.
    pub event: usize,
    /// An event whose envelope is the largest accepted (256 KiB).
    pub largest_event: usize,
    /// The typical event's entry in the `events` index: the keys and what
    /// the index carries.
    pub event_index: usize,
}

fn attempt_bytes(event: &Event, outcome: Outcome, body: &[u8]) -> usize {
    let now = Timestamp::now();
    let hook = speed::webhook("https://hooks.example.com/qase".into());
    let signing = hook
        .signing_secret
        .clone()
        .unwrap_or_else(|| unreachable!());
    let message = DeliveryMessage::new(event, hook.id, event.envelope().unwrap());
    let dispatch = prepare(&hook, &signing, message.clone(), now).unwrap();
    let attempt = Attempt::of(&message, now).sent(
        masked_headers(&dispatch.headers),
        &outcome,
        Duration::from_millis(120),
        body,
    );
    let expires = DeliveryLog::default().expires_at(now).unwrap();
    item_size(&attempt_item(&attempt, expires).unwrap())
}

fn event_bytes(event: &Event) -> usize {
    item_size(&stored_event(event))
}

fn stored_event(event: &Event) -> shared::adapters::dynamo::schema::Item {
    let now = Timestamp::now();
    let envelope = event.envelope().unwrap();
    assert!(envelope_fits(&envelope));
    let stored = StoredEvent::new(event, &envelope, now);
    let expires = DeliveryLog::default().expires_at(now).unwrap();
    event_item(&stored, expires).unwrap()
}

/// The entry an event item makes in the `events` index: the table's keys,
/// the index's and the attributes it projects.
fn event_index_bytes(event: &Event) -> usize {
    use shared::adapters::dynamo::schema::{EVENTS_INDEX_ATTRIBUTES, EVENTS_SK, attr};
    let mut item = stored_event(event);
    let kept = [attr::PK, attr::SK, attr::EVENTS_PK, EVENTS_SK];
    item.retain(|name, _| {
        kept.contains(&name.as_str()) || EVENTS_INDEX_ATTRIBUTES.contains(&name.as_str())
    });
    assert!(
        item.contains_key(attr::EVENTS_PK),
        "a published event is indexed"
    );
    item_size(&item)
}

/// An event whose envelope is exactly the largest accepted.
fn largest_event() -> Event {
    let mut event = speed::event();
    event.name = EventName::RunCompleted;
    let frame = event.envelope().unwrap().get().len() - event.payload.get().len();
    let filler = MAX_ENVELOPE_BYTES - frame - r#"{"x":""}"#.len();
    event.payload = RawValue::from_string(format!(r#"{{"x":"{}"}}"#, "a".repeat(filler))).unwrap();
    assert_eq!(event.envelope().unwrap().get().len(), MAX_ENVELOPE_BYTES);
    event
}

pub fn sizes() -> Sizes {
    let event = speed::event();
    Sizes {
        attempt: attempt_bytes(&event, Outcome::Delivered { status: 200 }, b"recorded\n"),
        attempt_full_body: attempt_bytes(
            &event,
            Outcome::Failed {
                reason: FailureReason::Status(503),
            },
            &[b'x'; RESPONSE_BODY_CAP],
        ),
        event: event_bytes(&event),
        largest_event: event_bytes(&largest_event()),
        event_index: event_index_bytes(&event),
    }
}

/// A webhook item as publishing reads it: a secret, a signing secret, ten
/// events subscribed, two addresses to e-mail.
pub fn webhook_bytes() -> usize {
    let mut hook = speed::webhook("https://hooks.example.com/qase/receiver".into());
    hook.events = EventName::ALL.iter().copied().take(10).collect();
    hook.notify_emails = vec!["qa-lead@example.com".into(), "ops@example.com".into()];
    item_size(&webhook_item(&hook).unwrap_or_else(|e| panic!("{e}")))
}
