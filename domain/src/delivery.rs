//! Events and their delivery as pure steps (`docs/ARCHITECTURE.md`, "Rules"):
//! build the envelope → check eligibility → prepare the dispatch (endpoint,
//! headers, body) → (send) → classify the outcome → decide what to record →
//! the verdict the batch response is built from. Only sending and recording
//! touch the world; they live in the adapters.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use url::Url;
use uuid::Uuid;

use super::history::{REDELIVERY_HEADER, Trigger};
use super::lane::{Lane, SLOW_AFTER};
use super::validation::{integer, integer_or_null, not_null};
use super::{EventName, FieldError, ProjectCode, SigningSecret, Timestamp, Webhook, WebhookId};

/// Largest envelope accepted for publishing. The SQS message carrying it adds
/// a few hundred bytes and stays well inside the queue's 1 MiB limit.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;
/// The version of [`DeliveryMessage`] this code writes and reads.
pub const MESSAGE_VERSION: u32 = 1;
/// Response bodies are read at most this far, then dropped.
pub const RESPONSE_BODY_CAP: usize = 1024;
/// The default request deadline: connecting, sending and the response head.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(15);
/// Time a sender invocation keeps in hand after its last POST, to record the
/// outcomes: a POST starts only if it can end this long before the
/// invocation does.
pub const RECORD_MARGIN: Duration = Duration::from_secs(2);
/// Time the sender allows the batch's one read of its webhooks.
pub const READ_BUDGET: Duration = Duration::from_secs(3);

/// Whether a POST with `post_deadline`, started at `now`, can end and be
/// recorded before the invocation ends at `ends`. One that cannot is not
/// started: its record goes back to the queue unsent, instead of the whole
/// batch (successes included) being retried after a Lambda timeout.
pub fn may_start(now: Instant, ends: Instant, post_deadline: Duration) -> bool {
    now.checked_add(post_deadline + RECORD_MARGIN)
        .is_some_and(|done| done <= ends)
}

/// The shortest sender timeout in which a batch of `batch` records, sent
/// `concurrency` at a time, all start: the read, one deadline per wave, and
/// the recording margin.
pub fn required_timeout(post_deadline: Duration, batch: u32, concurrency: u32) -> Duration {
    let waves = batch.div_ceil(concurrency.max(1));
    READ_BUDGET + post_deadline * waves + RECORD_MARGIN
}

/// The body of `POST /projects/{project}/events`, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishInput {
    #[serde(default, deserialize_with = "not_null")]
    pub event_name: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pub payload: Option<Box<RawValue>>,
    /// `null` is allowed: Qase sends it for events no person caused.
    #[serde(default, deserialize_with = "integer_or_null")]
    pub team_member_id: Option<i64>,
    #[serde(default, deserialize_with = "integer")]
    pub timestamp: Option<i64>,
}

/// The latest `timestamp` accepted: the last second of year 9999.
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// An event accepted for publishing.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub project: ProjectCode,
    pub name: EventName,
    /// Unix seconds when the event happened.
    pub timestamp: i64,
    pub payload: Box<RawValue>,
    pub team_member_id: Option<i64>,
}

/// The JSON an endpoint receives, fields in Qase's order.
#[derive(Serialize)]
struct Envelope<'a> {
    event_name: EventName,
    timestamp: i64,
    payload: &'a RawValue,
    team_member_id: Option<i64>,
    project_code: &'a ProjectCode,
}

impl PublishInput {
    /// Checks the fields; `now` fills a missing timestamp.
    pub fn validate(self, project: ProjectCode, now: Timestamp) -> Result<Event, FieldError> {
        let raw_name = self
            .event_name
            .ok_or_else(|| FieldError::new("event_name", "is required"))?;
        let name = raw_name.parse::<EventName>().map_err(|_| {
            FieldError::new(
                "event_name",
                format!("unknown event name {raw_name:?}; GET /event-types lists them"),
            )
        })?;
        let payload = self
            .payload
            .ok_or_else(|| FieldError::new("payload", "is required"))?;
        if !payload.get().trim_start().starts_with('{') {
            return Err(FieldError::new("payload", "must be a JSON object"));
        }
        if let Some(c) = payload.get().chars().find(|c| !queue_carries(*c)) {
            return Err(FieldError::new(
                "payload",
                format!(
                    "contains U+{:04X}, a character the delivery queue cannot carry; \
                     send it escaped (\\u{:04x}) or leave it out",
                    u32::from(c),
                    u32::from(c)
                ),
            ));
        }
        let timestamp = match self.timestamp {
            Some(t) if !(0..=MAX_TIMESTAMP).contains(&t) => {
                return Err(FieldError::new(
                    "timestamp",
                    format!("must be Unix seconds from 0 to {MAX_TIMESTAMP}"),
                ));
            }
            Some(t) => t,
            None => now.unix_seconds(),
        };
        Ok(Event {
            id: Uuid::now_v7(),
            project,
            name,
            timestamp,
            payload,
            team_member_id: self.team_member_id,
        })
    }
}

/// Whether SQS carries `c` in a message body: tab, line feed, carriage
/// return, U+0020 to U+D7FF, U+E000 to U+FFFD and U+10000 to U+10FFFF. It
/// refuses the rest (U+FFFE, U+FFFF, other control characters), so an event
/// holding one could never be queued.
pub fn queue_carries(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Whether an envelope is small enough to publish (at most 256 KiB).
pub fn envelope_fits(envelope: &RawValue) -> bool {
    envelope.get().len() <= MAX_ENVELOPE_BYTES
}

impl Event {
    /// The exact bytes every subscribed endpoint receives.
    pub fn envelope(&self) -> Result<Box<RawValue>, serde_json::Error> {
        let text = serde_json::to_string(&Envelope {
            event_name: self.name,
            timestamp: self.timestamp,
            payload: &self.payload,
            team_member_id: self.team_member_id,
            project_code: &self.project,
        })?;
        RawValue::from_string(text)
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

/// Why a queued delivery is acknowledged without a POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Deleted,
    Disabled,
    Unsubscribed,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Deleted => "skipped: webhook deleted",
            Skip::Disabled => "skipped: webhook disabled",
            Skip::Unsubscribed => "skipped: not subscribed",
        }
    }

    /// Why, as the delivery history says it.
    pub fn reason(self) -> &'static str {
        match self {
            Skip::Deleted => "webhook deleted",
            Skip::Disabled => "webhook disabled",
            Skip::Unsubscribed => "not subscribed",
        }
    }
}

/// Whether a queued message is still to be sent (a disabled or
/// deleted webhook receives nothing, even for messages already queued). A
/// redelivery or ping a person asked for goes to any webhook that exists.
pub fn eligible(
    webhook: Option<&Webhook>,
    event: EventName,
    trigger: Trigger,
) -> Result<&Webhook, Skip> {
    let webhook = webhook.ok_or(Skip::Deleted)?;
    if !trigger.is_event() {
        Ok(webhook)
    } else if !webhook.enabled {
        Err(Skip::Disabled)
    } else if !webhook.subscribes_to(event) {
        Err(Skip::Unsubscribed)
    } else {
        Ok(webhook)
    }
}

/// `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("ProjectWebhooks/", env!("CARGO_PKG_VERSION"));
/// Carries the shared secret, when the webhook has one.
pub const SECRET_HEADER: &str = "X-Qase-Secret";
/// Unique per delivery, so receivers can de-duplicate.
pub const DELIVERY_ID_HEADER: &str = "X-Qase-Delivery-Id";
/// The event name, so receivers can route without parsing the body.
pub const EVENT_HEADER: &str = "X-Qase-Event";
/// Standard Webhooks: the event's id, the same for every attempt of it (a
/// receiver de-duplicates on it).
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// Standard Webhooks: the attempt's Unix seconds, signed with the body.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Standard Webhooks: `v1,<signature>`, one per signing secret in use,
/// space-separated.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";

/// One request header of a dispatch.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub name: &'static str,
    /// Borrowed for the values that never change, so that sending them
    /// copies nothing.
    pub value: Cow<'static, str>,
    /// Kept out of logs and debug output (the webhook secret).
    pub sensitive: bool,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.sensitive { "***" } else { &*self.value };
        write!(f, "{}: {value}", self.name)
    }
}

/// One POST, fully prepared: where it goes, its headers, the exact bytes.
/// The HTTP adapter sends it as it is and adds nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub endpoint: Url,
    pub headers: Vec<Header>,
    pub body: String,
}

impl Dispatch {
    /// A header's value, by name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| &*h.value)
    }
}

/// Whether `value` can travel in an HTTP header as it is: visible ASCII,
/// spaces and tabs.
fn header_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Builds the request for one eligible delivery, signed with `signing` (and
/// with the webhook's previous signing secret while a rotation overlaps) as
/// of `now`. The envelope is moved into the body, not copied. Refuses a
/// secret that cannot be a header value (validation admits none; a webhook
/// is never sent without its secret) and a signing secret that cannot sign.
pub fn prepare(
    webhook: &Webhook,
    signing: &SigningSecret,
    message: DeliveryMessage,
    now: Timestamp,
) -> Result<Dispatch, FailureReason> {
    let body = String::from(Box::<str>::from(message.envelope));
    let webhook_id = message.event_id.to_string();
    let timestamp = now.unix_seconds();
    let mut signatures = Vec::with_capacity(2);
    for secret in std::iter::once(signing).chain(webhook.previous_signing(signing, now)) {
        signatures.push(
            secret
                .sign(&webhook_id, timestamp, &body)
                .ok_or(FailureReason::BadSigningSecret)?,
        );
    }
    let mut headers = vec![
        Header {
            name: "Content-Type",
            value: Cow::Borrowed("application/json"),
            sensitive: false,
        },
        Header {
            name: "User-Agent",
            value: Cow::Borrowed(USER_AGENT),
            sensitive: false,
        },
        Header {
            name: DELIVERY_ID_HEADER,
            value: Cow::Owned(message.delivery_id.to_string()),
            sensitive: false,
        },
        Header {
            name: EVENT_HEADER,
            value: Cow::Borrowed(message.event_name.as_str()),
            sensitive: false,
        },
        Header {
            name: WEBHOOK_ID_HEADER,
            value: Cow::Owned(webhook_id),
            sensitive: false,
        },
        Header {
            name: WEBHOOK_TIMESTAMP_HEADER,
            value: Cow::Owned(timestamp.to_string()),
            sensitive: false,
        },
        Header {
            name: WEBHOOK_SIGNATURE_HEADER,
            value: Cow::Owned(signatures.join(" ")),
            sensitive: false,
        },
    ];
    if message.trigger == Trigger::Redelivery {
        headers.push(Header {
            name: REDELIVERY_HEADER,
            value: Cow::Borrowed("true"),
            sensitive: false,
        });
    }
    if let Some(secret) = &webhook.secret {
        if !header_safe(secret.expose()) {
            return Err(FailureReason::UnsendableSecret);
        }
        headers.push(Header {
            name: SECRET_HEADER,
            value: Cow::Owned(secret.expose().to_owned()),
            sensitive: true,
        });
    }
    Ok(Dispatch {
        endpoint: webhook.endpoint.clone(),
        headers,
        body,
    })
}

/// Why a POST failed, in the short form recorded as `last_failure_reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    Timeout(Duration),
    Status(u16),
    ConnectionRefused,
    BlockedAddress,
    Dns,
    Tls,
    Connection,
    /// The stored secret cannot be sent as a header value.
    UnsendableSecret,
    /// The stored signing secret is not `whsec_` and base64.
    BadSigningSecret,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::Timeout(d) if d.subsec_millis() == 0 => {
                write!(f, "timeout after {}s", d.as_secs())
            }
            FailureReason::Timeout(d) => write!(f, "timeout after {}ms", d.as_millis()),
            FailureReason::Status(code) if (300..400).contains(code) => {
                write!(f, "HTTP {code} (redirects are not followed)")
            }
            FailureReason::Status(code) => write!(f, "HTTP {code}"),
            FailureReason::ConnectionRefused => f.write_str("connection refused"),
            FailureReason::BlockedAddress => f.write_str("blocked address"),
            FailureReason::Dns => f.write_str("DNS lookup failed"),
            FailureReason::Tls => f.write_str("TLS error"),
            FailureReason::Connection => f.write_str("connection failed"),
            FailureReason::UnsendableSecret => {
                f.write_str("the secret cannot be sent as a header value")
            }
            FailureReason::BadSigningSecret => f.write_str("the signing secret cannot sign"),
        }
    }
}

/// What came of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered { status: u16 },
    Failed { reason: FailureReason },
}

impl Outcome {
    /// Any 2xx is success; everything else, redirects included, is a failure.
    pub fn from_status(status: u16) -> Self {
        if (200..300).contains(&status) {
            Outcome::Delivered { status }
        } else {
            Outcome::Failed {
                reason: FailureReason::Status(status),
            }
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { status }
            | Outcome::Failed {
                reason: FailureReason::Status(status),
            } => Some(*status),
            Outcome::Failed { .. } => None,
        }
    }
}

/// What to write on the webhook after a POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A success on a healthy webhook writes nothing.
    Nothing,
    /// A success after failures, or a quick one after slow ones, clears the
    /// failure state; `slow` keeps the webhook marked slow (the success
    /// itself took [`SLOW_AFTER`] or more), otherwise the mark goes too.
    Recovered { slow: bool },
    /// A success that took [`SLOW_AFTER`] or more, on a webhook not marked
    /// slow yet: marks it, so its next deliveries take the slow lane.
    Slow { at: Timestamp },
    /// A failure; `due_now` asks the sweeper to disable the webhook at its
    /// next run instead of after the window.
    Failure {
        at: Timestamp,
        reason: String,
        due_now: bool,
        /// Failures this record stands for: 1 from one POST, more once
        /// [`coalesce`] merged a run of them.
        count: u32,
    },
    /// The endpoint answered 410 Gone and the operator chose to disable at
    /// once: the webhook is disabled now and its owner mailed by the next
    /// sweep, as for an auto-disable.
    Gone { at: Timestamp },
}

/// The `disabled_reason` of a webhook disabled by a 410 answer.
pub const GONE_REASON: &str = "endpoint answered 410 Gone";

/// What the operator chose to do about some failures, beyond recording them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureRules {
    /// `DisableOnTimeout`: a timeout makes the webhook due for disabling at
    /// the next sweep (the literal reading of "does not respond within 15
    /// seconds").
    pub disable_on_timeout: bool,
    /// `DisableOnGone`: a 410 Gone disables the webhook at once.
    pub disable_on_gone: bool,
}

/// How long a POST took, and whether its webhook counted as slow when it
/// answered: marked slow as stored, or marked while this POST waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub latency: Duration,
    pub was_slow: bool,
}

impl Pace {
    /// Whether this POST took long enough to make its webhook slow.
    pub fn is_slow(self) -> bool {
        self.latency >= SLOW_AFTER
    }
}

/// What to record for `outcome`, which took `pace`, under `rules`. Writes
/// only when the webhook's state changes: a quick success on a healthy
/// webhook writes nothing.
pub fn decide(
    webhook: &Webhook,
    outcome: &Outcome,
    pace: Pace,
    now: Timestamp,
    rules: FailureRules,
) -> Record {
    let slow = pace.is_slow();
    match outcome {
        Outcome::Delivered { .. } if webhook.failing_since.is_some() => Record::Recovered { slow },
        Outcome::Delivered { .. } if slow && !pace.was_slow => Record::Slow { at: now },
        Outcome::Delivered { .. } if !slow && pace.was_slow => Record::Recovered { slow: false },
        Outcome::Delivered { .. } => Record::Nothing,
        Outcome::Failed {
            reason: FailureReason::Status(410),
        } if rules.disable_on_gone => Record::Gone { at: now },
        Outcome::Failed { reason } => Record::Failure {
            at: now,
            reason: reason.to_string(),
            due_now: rules.disable_on_timeout && matches!(reason, FailureReason::Timeout(_)),
            count: 1,
        },
    }
}

/// The writes a batch makes on one webhook, from its records in the order
/// their POSTs ended: a run of failures becomes one write (the last
/// failure's time and reason, their count, due if any was), so a webhook
/// failing hundreds of times a second is written once per batch; nothing is
/// dropped, and every other record keeps its place, so the stored state is
/// the one the records written one by one would leave.
pub fn coalesce(records: impl IntoIterator<Item = Record>) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    for record in records {
        match (out.last_mut(), record) {
            (_, Record::Nothing) => {}
            (
                Some(Record::Failure {
                    at,
                    reason,
                    due_now,
                    count,
                }),
                Record::Failure {
                    at: next_at,
                    reason: next_reason,
                    due_now: next_due,
                    count: next_count,
                },
            ) => {
                *at = (*at).max(next_at);
                *reason = next_reason;
                *due_now |= next_due;
                *count = count.saturating_add(next_count);
            }
            (_, record) => out.push(record),
        }
    }
    out
}

/// Why a record goes back to the queue unsent, for SQS to deliver again
/// (and, after five receives, to the dead-letter queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The message is not one this code can read.
    Undecodable,
    /// The webhooks of the batch could not be read.
    StoreUnavailable,
    /// Too little of the invocation was left to send it and record the outcome.
    OutOfTime,
    /// The queue it was to go to did not take it: a retry (the attempt is
    /// made again instead) or a lane move (the move is tried again).
    QueueUnavailable,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Undecodable => "returned: undecodable message",
            Fault::StoreUnavailable => "returned: storage unavailable",
            Fault::OutOfTime => "returned: not enough time left in the invocation",
            Fault::QueueUnavailable => "returned: the queue it was to go to did not take it",
        }
    }
}

/// What came of one queued delivery; the batch response is built from these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Acknowledged without a POST.
    Skipped(Skip),
    /// POSTed once; acknowledged whatever the endpoint answered, so a POST
    /// is never repeated by SQS.
    Sent(Outcome),
    /// Not sent; SQS delivers it again.
    Returned(Fault),
    /// Taken by another lane (the slow lane, or the waiting lane for a
    /// retry not due yet), then acknowledged here.
    Moved(Lane),
    /// A retry not due yet, left in the waiting lane invisible until it is
    /// due or for 12 hours (its visibility changed), whichever is sooner.
    Postponed,
}

impl Verdict {
    /// Whether the record goes back to its queue (a batch item failure).
    pub fn returns_to_queue(&self) -> bool {
        matches!(self, Verdict::Returned(_) | Verdict::Postponed)
    }

    /// The `outcome` field of the delivery's log line.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Skipped(skip) => skip.as_str(),
            Verdict::Sent(Outcome::Delivered { .. }) => "delivered",
            Verdict::Sent(Outcome::Failed { .. }) => "failed",
            Verdict::Returned(fault) => fault.as_str(),
            Verdict::Moved(Lane::Fast) => "moved to the fast lane",
            Verdict::Moved(Lane::Slow) => "moved to the slow lane",
            Verdict::Moved(Lane::Waiting) => "deferred: retry not due yet",
            Verdict::Postponed => "postponed: retry not due yet",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::WebhookId;

    fn project() -> ProjectCode {
        ProjectCode::parse("ID").unwrap()
    }

    fn input(json: &str) -> PublishInput {
        serde_json::from_str(json).unwrap()
    }

    fn webhook() -> Webhook {
        crate::testing::webhook("ID")
    }

    #[test]
    fn envelope_matches_the_qase_example_byte_for_byte() {
        let event = input(
            r#"{"event_name":"run.completed","timestamp":1650540194,"payload":{"id":2,"cases":14,"passed":0,"failed":0,"blocked":0,"duration":0},"team_member_id":40}"#,
        )
        .validate(project(), Timestamp::now())
        .unwrap();
        let fixture = r#"{"event_name":"run.completed","timestamp":1650540194,"payload":{"id":2,"cases":14,"passed":0,"failed":0,"blocked":0,"duration":0},"team_member_id":40,"project_code":"ID"}"#;
        assert_eq!(event.envelope().unwrap().get(), fixture);
    }

    #[test]
    fn publish_defaults_timestamp_and_keeps_payload_bytes() {
        let now = Timestamp::parse("2026-11-28T10:00:00Z").unwrap();
        let event = input(r#"{"event_name":"case.created","payload":{ "b" : 1,"a":[ ] }}"#)
            .validate(project(), now)
            .unwrap();
        assert_eq!(event.timestamp, now.unix_seconds());
        assert_eq!(
            event.envelope().unwrap().get(),
            format!(
                r#"{{"event_name":"case.created","timestamp":{},"payload":{{ "b" : 1,"a":[ ] }},"team_member_id":null,"project_code":"ID"}}"#,
                now.unix_seconds()
            )
        );
    }

    #[test]
    fn publish_validation_names_the_field() {
        for (json, field) in [
            (r#"{"payload":{}}"#, "event_name"),
            (
                r#"{"event_name":"run.exploded","payload":{}}"#,
                "event_name",
            ),
            (r#"{"event_name":"run.completed"}"#, "payload"),
            (r#"{"event_name":"run.completed","payload":[1]}"#, "payload"),
            (r#"{"event_name":"run.completed","payload":"x"}"#, "payload"),
            (
                r#"{"event_name":"run.completed","payload":{},"timestamp":-1}"#,
                "timestamp",
            ),
        ] {
            let err = input(json)
                .validate(project(), Timestamp::now())
                .unwrap_err();
            assert_eq!(err.field, field, "{json}");
        }
    }

    #[test]
    fn an_envelope_of_exactly_256_kib_fits_and_one_byte_more_does_not() {
        let envelope_of = |len: usize| {
            let text = format!("\"{}\"", "a".repeat(len - 2));
            RawValue::from_string(text).unwrap()
        };
        assert!(envelope_fits(&envelope_of(256 * 1024)));
        assert!(!envelope_fits(&envelope_of(256 * 1024 + 1)));
    }

    #[test]
    fn characters_the_queue_refuses_are_refused_at_publish() {
        for (c, shown) in [
            ('\u{FFFE}', "U+FFFE"),
            ('\u{FFFF}', "U+FFFF"),
            ('\u{1FFFF}', ""),
        ] {
            let json = format!(r#"{{"event_name":"run.completed","payload":{{"x":"a{c}b"}}}}"#);
            let result = input(&json).validate(project(), Timestamp::now());
            if shown.is_empty() {
                assert!(result.is_ok(), "U+1FFFF is carried");
                continue;
            }
            let err = result.unwrap_err();
            assert_eq!(err.field, "payload");
            assert!(err.message.contains(shown), "{}", err.message);
        }
        // Escaped, the same characters are plain ASCII and travel.
        let escaped = r#"{"event_name":"run.completed","payload":{"x":"\uffff"}}"#;
        assert!(input(escaped).validate(project(), Timestamp::now()).is_ok());
    }

    #[test]
    fn the_queue_carries_exactly_the_xml_character_ranges() {
        for c in [
            '\t',
            '\n',
            '\r',
            ' ',
            '\u{D7FF}',
            '\u{E000}',
            '\u{FFFD}',
            '\u{10000}',
            '\u{10FFFF}',
            'é',
        ] {
            assert!(queue_carries(c), "{:04X}", u32::from(c));
        }
        for c in [
            '\u{0}', '\u{8}', '\u{B}', '\u{C}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
        ] {
            assert!(!queue_carries(c), "{:04X}", u32::from(c));
        }
    }

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

    #[test]
    fn eligibility_skips_deleted_disabled_and_unsubscribed() {
        let mut hook = webhook();
        assert_eq!(
            eligible(None, EventName::RunCompleted, Trigger::Event).unwrap_err(),
            Skip::Deleted
        );
        assert!(eligible(Some(&hook), EventName::RunCompleted, Trigger::Event).is_ok());
        assert_eq!(
            eligible(Some(&hook), EventName::CaseCreated, Trigger::Event).unwrap_err(),
            Skip::Unsubscribed
        );
        hook.enabled = false;
        assert_eq!(
            eligible(Some(&hook), EventName::RunCompleted, Trigger::Event).unwrap_err(),
            Skip::Disabled
        );
        hook.events = BTreeSet::new();
        assert_eq!(
            eligible(Some(&hook), EventName::RunCompleted, Trigger::Event).unwrap_err(),
            Skip::Disabled
        );
    }

    #[test]
    fn only_2xx_is_success() {
        for ok in [200, 201, 204, 299] {
            assert_eq!(Outcome::from_status(ok), Outcome::Delivered { status: ok });
        }
        for bad in [100, 199, 301, 302, 304, 400, 404, 500, 503] {
            assert!(
                matches!(Outcome::from_status(bad), Outcome::Failed { .. }),
                "{bad}"
            );
            assert_eq!(Outcome::from_status(bad).status(), Some(bad));
        }
    }

    #[test]
    fn failure_reasons_are_short() {
        assert_eq!(
            FailureReason::Timeout(Duration::from_secs(15)).to_string(),
            "timeout after 15s"
        );
        assert_eq!(
            FailureReason::Timeout(Duration::from_millis(1500)).to_string(),
            "timeout after 1500ms"
        );
        assert_eq!(FailureReason::Status(503).to_string(), "HTTP 503");
        assert_eq!(
            FailureReason::Status(302).to_string(),
            "HTTP 302 (redirects are not followed)"
        );
        assert_eq!(
            FailureReason::ConnectionRefused.to_string(),
            "connection refused"
        );
        assert_eq!(FailureReason::BlockedAddress.to_string(), "blocked address");
    }

    #[test]
    fn decide_writes_only_when_state_changes() {
        let now = Timestamp::now();
        let mut hook = webhook();
        let ok = Outcome::Delivered { status: 200 };
        let failed = Outcome::Failed {
            reason: FailureReason::Status(500),
        };
        let timeouts = FailureRules {
            disable_on_timeout: true,
            ..FailureRules::default()
        };
        assert_eq!(
            decide(&hook, &ok, quick(), now, FailureRules::default()),
            Record::Nothing
        );
        assert_eq!(
            decide(&hook, &failed, quick(), now, timeouts),
            Record::Failure {
                at: now,
                reason: "HTTP 500".into(),
                due_now: false,
                count: 1
            }
        );
        hook.failing_since = Some(now);
        assert_eq!(
            decide(&hook, &ok, quick(), now, FailureRules::default()),
            Record::Recovered { slow: false }
        );
    }

    #[test]
    fn a_run_of_failures_is_one_write_and_every_other_record_keeps_its_place() {
        let t = |s: u32| Timestamp::parse(&format!("2026-12-01T10:00:{s:02}Z")).unwrap();
        let failure = |s, reason: &str, due_now| Record::Failure {
            at: t(s),
            reason: reason.into(),
            due_now,
            count: 1,
        };
        assert_eq!(coalesce([]), vec![]);
        assert_eq!(coalesce([Record::Nothing, Record::Nothing]), vec![]);
        assert_eq!(
            coalesce([
                failure(1, "HTTP 503", false),
                Record::Nothing,
                failure(3, "timeout after 15s", true),
                failure(2, "HTTP 500", false),
            ]),
            vec![Record::Failure {
                at: t(3),
                reason: "HTTP 500".into(),
                due_now: true,
                count: 3
            }],
            "the latest time, the last reason, due if any was, every failure counted"
        );
        let recovered = Record::Recovered { slow: false };
        assert_eq!(
            coalesce([
                failure(1, "HTTP 503", false),
                recovered.clone(),
                failure(3, "HTTP 502", false),
                failure(4, "HTTP 503", false),
                Record::Gone { at: t(5) },
                failure(6, "HTTP 503", false),
            ]),
            vec![
                failure(1, "HTTP 503", false),
                recovered,
                Record::Failure {
                    at: t(4),
                    reason: "HTTP 503".into(),
                    due_now: false,
                    count: 2
                },
                Record::Gone { at: t(5) },
                failure(6, "HTTP 503", false),
            ]
        );
        assert_eq!(
            coalesce([
                Record::Failure {
                    at: t(1),
                    reason: "a".into(),
                    due_now: false,
                    count: u32::MAX
                },
                failure(2, "b", false)
            ]),
            vec![Record::Failure {
                at: t(2),
                reason: "b".into(),
                due_now: false,
                count: u32::MAX
            }]
        );
    }

    fn quick() -> Pace {
        Pace {
            latency: Duration::from_millis(100),
            was_slow: false,
        }
    }

    #[test]
    fn a_slow_success_marks_the_webhook_slow_once_and_a_quick_one_clears_it() {
        let now = Timestamp::now();
        let mut hook = webhook();
        let ok = Outcome::Delivered { status: 200 };
        let rules = FailureRules::default();
        let pace = |millis, was_slow| Pace {
            latency: Duration::from_millis(millis),
            was_slow,
        };
        assert_eq!(
            decide(&hook, &ok, pace(2000, false), now, rules),
            Record::Slow { at: now }
        );
        assert_eq!(
            decide(&hook, &ok, pace(1999, false), now, rules),
            Record::Nothing
        );
        // Marked already (stored, or while the POST waited): nothing more.
        assert_eq!(
            decide(&hook, &ok, pace(5000, true), now, rules),
            Record::Nothing
        );
        assert_eq!(
            decide(&hook, &ok, pace(1999, true), now, rules),
            Record::Recovered { slow: false }
        );
        // A failing webhook recovers; a slow success keeps it slow.
        hook.failing_since = Some(now);
        assert_eq!(
            decide(&hook, &ok, pace(2000, false), now, rules),
            Record::Recovered { slow: true }
        );
        assert_eq!(
            decide(&hook, &ok, pace(10, true), now, rules),
            Record::Recovered { slow: false }
        );
        // A slow failure is a failure.
        let failed = Outcome::Failed {
            reason: FailureReason::Status(503),
        };
        assert!(matches!(
            decide(&hook, &failed, pace(3000, false), now, rules),
            Record::Failure { .. }
        ));
    }

    #[test]
    fn a_410_disables_at_once_only_when_the_option_is_on() {
        let now = Timestamp::now();
        let hook = webhook();
        let gone = Outcome::Failed {
            reason: FailureReason::Status(410),
        };
        let on = FailureRules {
            disable_on_gone: true,
            ..FailureRules::default()
        };
        assert_eq!(
            decide(&hook, &gone, quick(), now, on),
            Record::Gone { at: now }
        );
        assert_eq!(
            decide(&hook, &gone, quick(), now, FailureRules::default()),
            Record::Failure {
                at: now,
                reason: "HTTP 410".into(),
                due_now: false,
                count: 1
            }
        );
        let other = Outcome::Failed {
            reason: FailureReason::Status(404),
        };
        assert!(matches!(
            decide(&hook, &other, quick(), now, on),
            Record::Failure { .. }
        ));
        assert_eq!(
            decide(&hook, &Outcome::Delivered { status: 200 }, quick(), now, on),
            Record::Nothing
        );
    }

    #[test]
    fn a_timeout_is_due_at_once_only_when_the_option_is_on() {
        let hook = webhook();
        let timeout = Outcome::Failed {
            reason: FailureReason::Timeout(DEFAULT_DEADLINE),
        };
        let due = |on| {
            let rules = FailureRules {
                disable_on_timeout: on,
                disable_on_gone: true,
            };
            matches!(
                decide(&hook, &timeout, quick(), Timestamp::now(), rules),
                Record::Failure { due_now: true, .. }
            )
        };
        assert!(due(true));
        assert!(!due(false));
    }

    fn signing() -> SigningSecret {
        SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
    }

    fn at(raw: &str) -> Timestamp {
        Timestamp::parse(raw).unwrap()
    }

    fn message_for(hook: &Webhook) -> DeliveryMessage {
        let event = input(r#"{"event_name":"run.completed","payload":{"id":1}}"#)
            .validate(project(), Timestamp::now())
            .unwrap();
        DeliveryMessage::new(&event, hook.id, event.envelope().unwrap())
    }

    #[test]
    fn a_dispatch_carries_the_envelope_and_the_qase_headers() {
        let hook = webhook();
        let message = message_for(&hook);
        let (id, envelope) = (message.delivery_id, message.envelope.get().to_owned());
        let dispatch = prepare(&hook, &signing(), message, Timestamp::now()).unwrap();
        assert_eq!(dispatch.endpoint, hook.endpoint);
        assert_eq!(dispatch.body, envelope);
        assert_eq!(dispatch.header("content-type"), Some("application/json"));
        assert_eq!(dispatch.header("User-Agent"), Some(USER_AGENT));
        assert!(USER_AGENT.starts_with("ProjectWebhooks/"));
        assert_eq!(
            dispatch.header(DELIVERY_ID_HEADER),
            Some(id.to_string().as_str())
        );
        assert_eq!(dispatch.header(EVENT_HEADER), Some("run.completed"));
        assert_eq!(dispatch.header(SECRET_HEADER), None);
        assert_eq!(dispatch.headers.len(), 7);
    }

    #[test]
    fn a_dispatch_is_signed_over_the_exact_body_as_standard_webhooks_describes() {
        let hook = webhook();
        let message = message_for(&hook);
        let event_id = message.event_id.to_string();
        let now = at("2026-11-29T12:00:00Z");
        let dispatch = prepare(&hook, &signing(), message, now).unwrap();
        assert_eq!(dispatch.header(WEBHOOK_ID_HEADER), Some(event_id.as_str()));
        assert_eq!(
            dispatch.header(WEBHOOK_TIMESTAMP_HEADER),
            Some("1795953600")
        );
        let expected = signing()
            .sign(&event_id, 1795953600, &dispatch.body)
            .unwrap();
        assert_eq!(
            dispatch.header(WEBHOOK_SIGNATURE_HEADER),
            Some(expected.as_str())
        );
        assert!(expected.starts_with("v1,"));
    }

    #[test]
    fn during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one() {
        let mut hook = webhook();
        let new = SigningSecret::generate().unwrap();
        hook.previous_signing_secret = Some(signing());
        hook.previous_signing_until = Some(at("2026-11-30T12:00:00Z"));
        let sigs = |hook: &Webhook, now: &str| {
            let message = message_for(hook);
            let id = message.event_id.to_string();
            let d = prepare(hook, &new, message, at(now)).unwrap();
            let ts = d.header(WEBHOOK_TIMESTAMP_HEADER).unwrap().parse().unwrap();
            let expect = |s: &SigningSecret| s.sign(&id, ts, &d.body).unwrap();
            (
                d.header(WEBHOOK_SIGNATURE_HEADER).unwrap().to_owned(),
                expect(&new),
                expect(&signing()),
            )
        };
        let (during, new_sig, old_sig) = sigs(&hook, "2026-11-30T11:59:59Z");
        assert_eq!(during, format!("{new_sig} {old_sig}"));
        let (after, new_sig, _) = sigs(&hook, "2026-11-30T12:00:00Z");
        assert_eq!(after, new_sig, "the overlap has ended");
        // A previous secret equal to the current one signs once.
        hook.previous_signing_secret = Some(new.clone());
        let (same, new_sig, _) = sigs(&hook, "2026-11-29T00:00:00Z");
        assert_eq!(same, new_sig);
    }

    #[test]
    fn a_signing_secret_that_cannot_sign_sends_nothing() {
        let hook = webhook();
        let broken: SigningSecret = serde_json::from_str(r#""whsec_%%%""#).unwrap();
        assert_eq!(
            prepare(&hook, &broken, message_for(&hook), Timestamp::now()).unwrap_err(),
            FailureReason::BadSigningSecret
        );
        assert_eq!(
            FailureReason::BadSigningSecret.to_string(),
            "the signing secret cannot sign"
        );
    }

    #[test]
    fn the_secret_travels_as_a_sensitive_header_and_never_in_debug_output() {
        let mut hook = webhook();
        hook.secret = Some(crate::Secret::new("s3cret value".into()));
        let dispatch = prepare(&hook, &signing(), message_for(&hook), Timestamp::now()).unwrap();
        assert_eq!(dispatch.header("x-qase-secret"), Some("s3cret value"));
        let secret = dispatch
            .headers
            .iter()
            .find(|h| h.name == SECRET_HEADER)
            .unwrap();
        assert!(secret.sensitive);
        assert!(dispatch.headers.iter().filter(|h| h.sensitive).count() == 1);
        let shown = format!("{dispatch:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("X-Qase-Secret: ***"), "{shown}");
    }

    #[test]
    fn a_secret_that_cannot_be_a_header_value_is_never_sent() {
        for bad in ["line\nbreak", "nul\0", "del\x7f", "é"] {
            let mut hook = webhook();
            hook.secret = Some(crate::Secret::new(bad.into()));
            assert_eq!(
                prepare(&hook, &signing(), message_for(&hook), Timestamp::now()).unwrap_err(),
                FailureReason::UnsendableSecret,
                "{bad:?}"
            );
        }
        let mut hook = webhook();
        hook.secret = Some(crate::Secret::new("tab\tinside ~".into()));
        assert!(prepare(&hook, &signing(), message_for(&hook), Timestamp::now()).is_ok());
    }

    #[test]
    fn only_returned_records_go_back_to_the_queue() {
        let returned = [
            Verdict::Returned(Fault::Undecodable),
            Verdict::Returned(Fault::StoreUnavailable),
        ];
        for verdict in &returned {
            assert!(verdict.returns_to_queue());
        }
        for verdict in [
            Verdict::Skipped(Skip::Deleted),
            Verdict::Sent(Outcome::Delivered { status: 200 }),
            Verdict::Sent(Outcome::Failed {
                reason: FailureReason::Status(503),
            }),
        ] {
            assert!(!verdict.returns_to_queue(), "{verdict:?}");
        }
        assert_eq!(
            Verdict::Skipped(Skip::Disabled).label(),
            "skipped: webhook disabled"
        );
        assert_eq!(
            Verdict::Sent(Outcome::Delivered { status: 204 }).label(),
            "delivered"
        );
        assert_eq!(
            Verdict::Sent(Outcome::Failed {
                reason: FailureReason::Dns
            })
            .label(),
            "failed"
        );
        assert_eq!(returned[1].label(), "returned: storage unavailable");
    }

    #[test]
    fn a_post_starts_only_if_it_ends_and_is_recorded_in_the_invocation() {
        let now = Instant::now();
        let deadline = Duration::from_secs(15);
        let exactly = now + deadline + RECORD_MARGIN;
        assert!(may_start(now, exactly, deadline), "ends exactly in time");
        assert!(!may_start(
            now,
            exactly - Duration::from_millis(1),
            deadline
        ));
        assert!(may_start(now, now + Duration::from_secs(60), deadline));
        assert!(!may_start(now, now, deadline), "no time left");
        assert_eq!(
            Fault::OutOfTime.as_str(),
            "returned: not enough time left in the invocation"
        );
        assert!(Verdict::Returned(Fault::OutOfTime).returns_to_queue());
    }

    #[test]
    fn the_timeout_a_batch_needs_counts_its_waves() {
        let deadline = Duration::from_secs(15);
        let one_wave = READ_BUDGET + deadline + RECORD_MARGIN;
        assert_eq!(required_timeout(deadline, 10, 10), one_wave);
        assert_eq!(required_timeout(deadline, 10, 20), one_wave);
        assert_eq!(required_timeout(deadline, 10, 9), one_wave + deadline);
        assert_eq!(required_timeout(deadline, 10, 1), one_wave + deadline * 9);
        assert_eq!(
            required_timeout(deadline, 10, 0),
            one_wave + deadline * 9,
            "0 counts as 1"
        );
        assert_eq!(
            required_timeout(Duration::from_secs(25), 10, 10),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn the_default_deadline_is_15_seconds() {
        assert_eq!(DEFAULT_DEADLINE, Duration::from_secs(15));
    }
}
