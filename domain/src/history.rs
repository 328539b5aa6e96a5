//! The delivery history (`docs/ARCHITECTURE.md`, "Delivery history"): events
//! stored once, one record per attempt, and the rules that read them back:
//! pages of a webhook's attempts, redelivery and ping, and whether a success
//! clears a failure the summary still shows.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::delivery::{Header, Outcome, RESPONSE_BODY_CAP, Skip, Trigger};
use super::{
    DeliveryMessage, Event, EventName, ProjectCode, Secret, Timestamp, Webhook, WebhookId,
};

/// Days an event and its attempts are kept, by default (`DeliveryLogDays`).
pub const DEFAULT_DELIVERY_LOG_DAYS: u32 = 30;
/// The longest retention `DeliveryLogDays` accepts.
pub const MAX_DELIVERY_LOG_DAYS: u32 = 365;
/// What a masked header value shows instead of the secret.
pub const MASKED: &str = "***";
/// The sweeper looks for a success among deliveries created this long
/// before a webhook's failures began, and after: a delivery in flight (or
/// retried) when the first failure was recorded may succeed after it.
pub const RECOVERY_LOOKBACK: Duration = Duration::from_secs(24 * 3600);

/// How long the history is kept; zero days keeps none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryLog {
    days: u32,
}

impl Default for DeliveryLog {
    fn default() -> Self {
        Self::days(DEFAULT_DELIVERY_LOG_DAYS)
    }
}

impl DeliveryLog {
    /// Kept `days` days (at most [`MAX_DELIVERY_LOG_DAYS`]); 0 is off.
    pub fn days(days: u32) -> Self {
        Self {
            days: days.min(MAX_DELIVERY_LOG_DAYS),
        }
    }

    pub fn off() -> Self {
        Self { days: 0 }
    }

    /// Days kept; 0 when off.
    pub fn days_kept(&self) -> u32 {
        self.days
    }

    pub fn is_on(&self) -> bool {
        self.days > 0
    }

    /// When a record written at `now` expires; `None` when the log is off.
    pub fn expires_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.is_on()
            .then(|| now.after(Duration::from_secs(u64::from(self.days) * 24 * 3600)))
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    Failed,
    /// Not sent: the webhook was disabled or no longer subscribed when the
    /// message was handled (`skipped_reason` says which).
    Skipped,
}

/// Request headers by name, as recorded.
pub type Headers = BTreeMap<Cow<'static, str>, Cow<'static, str>>;

/// One attempt of one delivery, as recorded and shown. Never holds a secret:
/// sensitive header values are masked when the record is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub delivery_id: Uuid,
    pub attempt: u32,
    pub event_id: Uuid,
    pub event_name: EventName,
    pub project: ProjectCode,
    pub webhook_id: WebhookId,
    pub trigger: Trigger,
    pub started_at: Timestamp,
    pub completed_at: Timestamp,
    pub latency_ms: u64,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_reason: Option<String>,
    /// The HTTP status the endpoint answered, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The request headers as sent, secret values masked. Names and the
    /// values that never change are borrowed, so recording them copies
    /// only the per-delivery values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_headers: Headers,
    /// The first 1 KiB of the response body, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

impl Attempt {
    /// The record of `message`'s attempt, started at `started_at`; until an
    /// outcome is set, a skip with no reason.
    pub fn of(message: &DeliveryMessage, started_at: Timestamp) -> Self {
        Self {
            delivery_id: message.delivery_id,
            attempt: message.attempt,
            event_id: message.event_id,
            event_name: message.event_name,
            project: message.project.clone(),
            webhook_id: message.webhook_id,
            trigger: message.trigger,
            started_at,
            completed_at: started_at,
            latency_ms: 0,
            outcome: AttemptOutcome::Skipped,
            skipped_reason: None,
            status: None,
            failure_reason: None,
            request_headers: BTreeMap::new(),
            response_body: None,
        }
    }

    /// Acknowledged without a POST, for `skip`.
    pub fn skipped(mut self, skip: Skip) -> Self {
        self.outcome = AttemptOutcome::Skipped;
        self.skipped_reason = Some(skip.reason().to_owned());
        self
    }

    /// POSTed with `headers`; `outcome` came of it after `latency`, with
    /// `body` (at most the first 1 KiB is kept).
    pub fn sent(
        mut self,
        headers: Headers,
        outcome: &Outcome,
        latency: Duration,
        body: &[u8],
    ) -> Self {
        self.latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.completed_at = self.started_at.after(latency);
        self.request_headers = headers;
        self.status = outcome.status();
        match outcome {
            Outcome::Delivered { .. } => self.outcome = AttemptOutcome::Delivered,
            Outcome::Failed { reason } => {
                self.outcome = AttemptOutcome::Failed;
                self.failure_reason = Some(reason.to_string());
            }
        }
        self.response_body = (!body.is_empty()).then(|| response_text(body));
        self
    }

    /// Masks the webhook's secret wherever the response body repeats it
    /// (an endpoint that echoes its request, say), and a start of it cut off
    /// by the 1 KiB limit: the secret is write-only, and the history is shown
    /// to anyone holding a token of the project.
    pub fn masking(self, secret: Option<&Secret>) -> Self {
        self.masking_all(secret)
    }

    /// [`Attempt::masking`] for each of `secrets` (the webhook's secret and
    /// its custom header values).
    pub fn masking_all<'a>(mut self, secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        if let Some(body) = &mut self.response_body {
            // Longest first: one value may hold another.
            let mut secrets: Vec<&Secret> = secrets.into_iter().collect();
            secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
            for secret in secrets {
                *body = mask(body, secret.expose());
            }
        }
        self
    }
}

/// The shortest run of base64 characters masked: a shorter one could be
/// any text's.
const MIN_BASE64_RUN: usize = 8;

/// The forms an endpoint may echo `secret` in, longest first: as sent;
/// JSON-escaped (`"`, `\`, and `/` as `\/` as some encoders write it);
/// URL-encoded (`+` or `%20` for a space, upper- or lower-case hex); and
/// base64 (standard and URL-safe alphabets): whole, padded, and as the
/// characters that encode only the secret's bytes at each of the three
/// alignments a longer encoded text may give it (so it is found inside an
/// encoded header block too).
fn echo_forms(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut forms = vec![secret.to_owned()];
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(secret)
        .to_owned();
    forms.push(json.replace('/', "\\/"));
    forms.push(json);
    let form_encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let percent = form_encoded.replace('+', "%20");
    forms.push(lower_hex(&percent));
    forms.push(lower_hex(&form_encoded));
    forms.push(percent);
    forms.push(form_encoded);
    let n = secret.len();
    for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
        for offset in 0..3 {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(secret.as_bytes());
            let encoded = engine.encode(&bytes);
            // Characters whose 6 bits all come from the secret.
            let start = (8 * offset).div_ceil(6);
            let end = (8 * (offset + n)) / 6;
            if let Some(run) = encoded.get(start..end)
                && run.len() >= MIN_BASE64_RUN
            {
                forms.push(run.to_owned());
            }
        }
    }
    for engine in [STANDARD, URL_SAFE] {
        let whole = engine.encode(secret);
        if whole.len() >= MIN_BASE64_RUN {
            forms.push(whole);
        }
    }
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    forms
}

/// `text` with each `%XX` escape's hex digits in lower case.
fn lower_hex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut escape = 0;
    for c in text.chars() {
        if c == '%' {
            escape = 2;
            out.push(c);
        } else if escape > 0 {
            escape -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` with every occurrence of `secret` in any form an echo takes
/// ([`echo_forms`]), and a trailing start of it as sent of at least 4
/// characters (or all of a shorter secret's), shown as `***`.
fn mask(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    let mut masked = text.to_owned();
    for form in echo_forms(secret) {
        masked = masked.replace(&form, MASKED);
    }
    let shortest = secret.len().min(4);
    if let Some(cut) = (shortest..secret.len())
        .rev()
        .find(|&n| secret.get(..n).is_some_and(|start| masked.ends_with(start)))
    {
        masked.truncate(masked.len() - cut);
        masked.push_str(MASKED);
    }
    masked
}

impl Attempt {
    /// The attempt as a listing shows it: without request headers and
    /// response body (one delivery's detail has them).
    pub fn summary(mut self) -> Self {
        self.request_headers.clear();
        self.response_body = None;
        self
    }
}

/// The headers of a dispatch as the history shows them: sensitive values
/// (the webhook secret) masked.
pub fn masked_headers(headers: &[Header]) -> Headers {
    headers
        .iter()
        .map(|h| {
            let value = if h.sensitive {
                Cow::Borrowed(MASKED)
            } else {
                h.value.clone()
            };
            (h.name.clone(), value)
        })
        .collect()
}

/// A response body as text: at most [`RESPONSE_BODY_CAP`] bytes, invalid
/// UTF-8 replaced, a character cut at the cap dropped.
fn response_text(body: &[u8]) -> String {
    let kept = &body[..body.len().min(RESPONSE_BODY_CAP)];
    match std::str::from_utf8(kept) {
        Ok(text) => text.to_owned(),
        Err(err) if err.error_len().is_none() => {
            String::from_utf8_lossy(&kept[..err.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(kept).into_owned(),
    }
}

/// An event as stored once for the history, with the exact bytes every
/// webhook received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: Uuid,
    pub project: ProjectCode,
    pub event_name: EventName,
    pub envelope: String,
    pub created_at: Timestamp,
}

impl StoredEvent {
    pub fn new(event: &Event, envelope: &RawValue, created_at: Timestamp) -> Self {
        Self {
            id: event.id,
            project: event.project.clone(),
            event_name: event.name,
            envelope: envelope.get().to_owned(),
            created_at,
        }
    }

    /// A new delivery of this event's exact bytes to `webhook`, marked as a
    /// redelivery.
    pub fn redelivery(&self, webhook: WebhookId) -> Result<DeliveryMessage, serde_json::Error> {
        let envelope = RawValue::from_string(self.envelope.clone())?;
        Ok(DeliveryMessage {
            trigger: Trigger::Redelivery,
            ..DeliveryMessage::for_event(
                self.id,
                self.project.clone(),
                self.event_name,
                webhook,
                envelope,
            )
        })
    }
}

/// The payload of `webhook.ping`.
#[derive(Serialize)]
struct PingPayload<'a> {
    webhook_id: WebhookId,
    title: &'a str,
}

/// The `webhook.ping` event for `webhook`, at `now`.
pub fn ping_event(webhook: &Webhook, now: Timestamp) -> Result<Event, serde_json::Error> {
    let payload = serde_json::value::to_raw_value(&PingPayload {
        webhook_id: webhook.id,
        title: &webhook.title,
    })?;
    Ok(Event {
        id: Uuid::now_v7(),
        project: webhook.project.clone(),
        name: EventName::Ping,
        timestamp: now.unix_seconds(),
        payload,
        team_member_id: None,
    })
}

/// Which attempts a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Delivered,
    Failed,
}

impl StatusFilter {
    pub fn outcome(self) -> AttemptOutcome {
        match self {
            StatusFilter::Delivered => AttemptOutcome::Delivered,
            StatusFilter::Failed => AttemptOutcome::Failed,
        }
    }
}

/// Where a page of attempts starts: after this attempt (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptCursor {
    pub delivery_id: Uuid,
    pub attempt: u32,
}

impl AttemptCursor {
    /// `<delivery id>.<attempt>`, as [`fmt::Display`] writes it.
    pub fn parse(raw: &str) -> Option<Self> {
        let (id, attempt) = raw.split_once('.')?;
        let delivery_id = Uuid::try_parse(id).ok()?;
        let cursor = Self {
            delivery_id,
            attempt: attempt.parse().ok().filter(|a| *a > 0)?,
        };
        // Only the form handed out: one cursor, one text.
        (cursor.to_string() == raw).then_some(cursor)
    }
}

impl fmt::Display for AttemptCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.delivery_id.hyphenated(), self.attempt)
    }
}

/// An attempt number as stored in a sort key: fixed width, so that text
/// order is number order.
pub fn attempt_text(attempt: u32) -> String {
    format!("{attempt:05}")
}

/// The smallest UUIDv7 (as text) of a delivery created at or after `at`:
/// delivery ids are UUIDv7, so text order is creation order.
pub fn first_id_at(at: Timestamp) -> String {
    let millis = u64::try_from(at.as_datetime().timestamp_millis()).unwrap_or(0);
    let high = millis & 0xFFFF_FFFF_FFFF;
    format!(
        "{:08x}-{:04x}-7000-8000-000000000000",
        high >> 16,
        high & 0xFFFF
    )
}

/// What the sweeper's look in the history for a success after a webhook's
/// failures began found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessSearch {
    /// A delivery completed after the failures began; the latest found.
    Delivered(Timestamp),
    /// Every page to read was read: no delivery completed after they began.
    NoneFound,
    /// The search stopped before it read every page: it cannot tell, so the
    /// webhook is not disabled this time.
    GaveUp,
}

impl SuccessSearch {
    /// The answer of two parts of one search (the history's partitions): a
    /// part that could not tell leaves the whole unable to tell; otherwise
    /// the latest delivery found.
    pub fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::GaveUp, _) | (_, Self::GaveUp) => Self::GaveUp,
            (Self::Delivered(a), Self::Delivered(b)) => Self::Delivered(a.max(b)),
            (Self::Delivered(at), Self::NoneFound) | (Self::NoneFound, Self::Delivered(at)) => {
                Self::Delivered(at)
            }
            (Self::NoneFound, Self::NoneFound) => Self::NoneFound,
        }
    }
}

/// What a success recorded after a webhook began failing does to its
/// failure state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// No failure came after the success: the webhook is healthy.
    Clear,
    /// Failures came after the success: they began no earlier than it.
    FailingSince(Timestamp),
}

/// The sweeper's rule for a webhook failing since `failing_since` with a
/// delivered attempt completed at `delivered_at` (after that).
pub fn recovery(webhook: &Webhook, delivered_at: Timestamp) -> Recovery {
    match webhook.last_failure_at {
        Some(last) if last > delivered_at => Recovery::FailingSince(delivered_at),
        _ => Recovery::Clear,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{FailureReason, REDELIVERY_HEADER, eligible, prepare};

    #[test]
    fn a_search_part_that_gave_up_leaves_the_whole_search_unable_to_tell() {
        use SuccessSearch::{Delivered, GaveUp, NoneFound};
        let early = Timestamp::parse("2026-11-01T00:00:00Z").unwrap();
        let late = Timestamp::parse("2026-11-02T00:00:00Z").unwrap();
        for other in [Delivered(late), NoneFound, GaveUp] {
            assert_eq!(GaveUp.and(other), GaveUp, "{other:?}");
            assert_eq!(other.and(GaveUp), GaveUp, "{other:?}");
        }
        assert_eq!(Delivered(early).and(Delivered(late)), Delivered(late));
        assert_eq!(Delivered(late).and(Delivered(early)), Delivered(late));
        assert_eq!(Delivered(early).and(NoneFound), Delivered(early));
        assert_eq!(NoneFound.and(Delivered(early)), Delivered(early));
        assert_eq!(NoneFound.and(NoneFound), NoneFound);
    }
    use crate::{SigningSecret, WebhookInput};

    fn at(raw: &str) -> Timestamp {
        Timestamp::parse(raw).unwrap()
    }

    fn webhook(secret: Option<&str>) -> Webhook {
        WebhookInput {
            title: Some("Build bot".into()),
            endpoint: Some("https://example.com/hook".into()),
            events: Some(vec!["run.completed".into()]),
            secret: secret.map(str::to_owned),
            ..WebhookInput::default()
        }
        .validate(&Default::default())
        .unwrap()
        .into_webhook(
            WebhookId::generate(),
            ProjectCode::parse("DEMO").unwrap(),
            at("2026-11-01T00:00:00Z"),
        )
    }

    fn stored_event() -> StoredEvent {
        StoredEvent {
            id: Uuid::now_v7(),
            project: ProjectCode::parse("DEMO").unwrap(),
            event_name: EventName::RunCompleted,
            envelope: r#"{"event_name":"run.completed","timestamp":1,"payload":{ "a" : 1 },"team_member_id":null,"project_code":"DEMO"}"#.into(),
            created_at: at("2026-11-29T10:00:00Z"),
        }
    }

    #[test]
    fn the_log_keeps_30_days_by_default_at_most_a_year_and_nothing_when_off() {
        let now = at("2026-11-29T10:00:00Z");
        assert_eq!(
            DeliveryLog::default().expires_at(now),
            Some(at("2026-12-29T10:00:00Z"))
        );
        assert_eq!(
            DeliveryLog::days(1000).expires_at(now),
            Some(at("2027-11-29T10:00:00Z"))
        );
        assert_eq!(DeliveryLog::days(0).expires_at(now), None);
        assert!(!DeliveryLog::off().is_on());
        assert!(DeliveryLog::days(1).is_on());
        assert_eq!(DeliveryLog::days(1000).days_kept(), 365);
        assert_eq!(DeliveryLog::default().days_kept(), 30);
    }

    #[test]
    fn a_sent_attempt_records_outcome_status_latency_headers_and_body() {
        let hook = webhook(Some("s3cret-value"));
        let event = stored_event();
        let message = event.redelivery(hook.id).unwrap();
        let signing = SigningSecret::generate().unwrap();
        let started = at("2026-11-29T10:00:00Z");
        let record = Attempt::of(&message, started);
        let dispatch = prepare(&hook, &signing, message.clone(), started).unwrap();
        let headers = masked_headers(&dispatch.headers);
        let failed = record.clone().sent(
            headers.clone(),
            &Outcome::Failed {
                reason: FailureReason::Status(503),
            },
            Duration::from_millis(1250),
            b"busy",
        );
        assert_eq!(failed.outcome, AttemptOutcome::Failed);
        assert_eq!(failed.status, Some(503));
        assert_eq!(failed.failure_reason.as_deref(), Some("HTTP 503"));
        assert_eq!(failed.latency_ms, 1250);
        assert_eq!(failed.completed_at, at("2026-11-29T10:00:01.250Z"));
        assert_eq!(failed.response_body.as_deref(), Some("busy"));
        assert_eq!(failed.trigger, Trigger::Redelivery);
        assert_eq!(failed.attempt, 1);
        assert_eq!(failed.delivery_id, message.delivery_id);
        assert_eq!(failed.event_id, event.id);
        assert_eq!(failed.headers_named("X-Qase-Secret"), Some(MASKED));
        assert_eq!(failed.headers_named("X-Qase-Redelivery"), Some("true"));
        let text = serde_json::to_string(&failed).unwrap();
        assert!(!text.contains("s3cret-value"), "{text}");
        assert!(!text.contains(signing.expose()), "{text}");

        let timed_out = record.clone().sent(
            headers.clone(),
            &Outcome::Failed {
                reason: FailureReason::Timeout(Duration::from_secs(15)),
            },
            Duration::from_secs(15),
            b"",
        );
        assert_eq!(timed_out.status, None);
        assert_eq!(
            timed_out.failure_reason.as_deref(),
            Some("timeout after 15s")
        );
        assert_eq!(timed_out.response_body, None);

        let delivered = record.sent(
            headers,
            &Outcome::Delivered { status: 204 },
            Duration::from_millis(3),
            b"",
        );
        assert_eq!(delivered.outcome, AttemptOutcome::Delivered);
        assert_eq!(delivered.status, Some(204));
        assert_eq!(delivered.failure_reason, None);
    }

    impl Attempt {
        fn headers_named(&self, name: &str) -> Option<&str> {
            self.request_headers.get(name).map(|v| &**v)
        }
    }

    #[test]
    fn a_skipped_attempt_says_why() {
        let hook = webhook(None);
        let message = stored_event().redelivery(hook.id).unwrap();
        let record = Attempt::of(&message, Timestamp::now()).skipped(Skip::Disabled);
        assert_eq!(record.outcome, AttemptOutcome::Skipped);
        assert_eq!(record.skipped_reason.as_deref(), Some("webhook disabled"));
        assert_eq!(Skip::Unsubscribed.reason(), "not subscribed");
        assert_eq!(Skip::Deleted.reason(), "webhook deleted");
    }

    /// A delivered attempt to `hook` whose endpoint answered `body`.
    fn answered(hook: &Webhook, body: &[u8]) -> Attempt {
        Attempt::of(
            &stored_event().redelivery(hook.id).unwrap(),
            Timestamp::now(),
        )
        .sent(
            Headers::new(),
            &Outcome::Delivered { status: 200 },
            Duration::ZERO,
            body,
        )
    }

    #[test]
    fn a_response_that_repeats_the_secret_is_recorded_without_it() {
        let hook = webhook(Some("s3cret-value"));
        let record = |body: &[u8]| {
            answered(&hook, body)
                .masking(hook.secret.as_ref())
                .response_body
                .unwrap()
        };
        assert_eq!(
            record(br#"{"X-Qase-Secret":"s3cret-value","again":"s3cret-value"}"#),
            r#"{"X-Qase-Secret":"***","again":"***"}"#
        );
        // Cut off by the 1 KiB limit after its first characters.
        let mut cut = vec![b'a'; 1024 - 6];
        cut.extend_from_slice(b"s3cret");
        assert_eq!(record(&cut), format!("{}***", "a".repeat(1018)));
        // Three characters are too few to hide.
        assert_eq!(record(b"body ends s3c"), "body ends s3c");
        assert_eq!(record(b"nothing secret"), "nothing secret");
        let without = answered(&hook, b"s3cret-value").masking(None);
        assert_eq!(without.response_body.as_deref(), Some("s3cret-value"));
        assert_eq!(mask("a s", "s"), "a ***");
        assert_eq!(mask("abc", ""), "abc");
    }

    #[test]
    fn a_secret_echoed_json_escaped_is_masked() {
        let secret = r#"quote"back\slash/x"#;
        let json = serde_json::json!({ "x-qase-secret": secret }).to_string();
        assert!(!json.contains(secret), "escaped: {json}");
        assert_eq!(mask(&json, secret), r#"{"x-qase-secret":"***"}"#);
        // PHP's json_encode also escapes '/'.
        let php = r#"{"s":"quote\"back\\slash\/x"}"#;
        assert_eq!(mask(php, secret), r#"{"s":"***"}"#);
    }

    #[test]
    fn a_secret_echoed_url_encoded_is_masked() {
        let secret = "s3cret value/&=+?";
        for echoed in [
            "s3cret+value%2F%26%3D%2B%3F",
            "s3cret%20value%2F%26%3D%2B%3F",
            "s3cret+value%2f%26%3d%2b%3f",
            "s3cret%20value%2f%26%3d%2b%3f",
        ] {
            assert_eq!(
                mask(&format!("?secret={echoed}&x=1"), secret),
                "?secret=***&x=1",
                "{echoed}"
            );
        }
        assert_eq!(lower_hex("a%2Fb%3DC"), "a%2fb%3dC");
    }

    #[test]
    fn a_secret_echoed_base64_encoded_is_masked_at_any_alignment() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let secret = "s3cret-value>>??";
        for engine in [STANDARD, URL_SAFE] {
            let whole = engine.encode(secret);
            assert_eq!(mask(&whole, secret), "***", "{whole}");
            // Inside a longer encoded text, after 0, 1 or 2 other bytes.
            for prefix in ["", "X", "XY", "XYZ", "x-qase-secret: "] {
                let encoded = engine.encode(format!("{prefix}{secret}\r\n"));
                let masked = mask(&encoded, secret);
                assert!(masked.contains(MASKED), "{prefix:?}: {encoded}");
                let core = &engine.encode(secret)[2..18];
                assert!(!masked.contains(core), "{prefix:?}: {masked}");
            }
        }
        // A short secret's runs are too short to be told from other text.
        assert!(echo_forms("abc").iter().all(|f| f.len() < MIN_BASE64_RUN));
        assert_eq!(mask("YWJj", "abc"), "YWJj");
    }

    #[test]
    fn every_write_only_value_is_masked_the_longest_first() {
        let hook = webhook(None);
        let values = [
            Secret::new("token-1234".into()),
            Secret::new("Bearer token-1234-and-more".into()),
        ];
        let body = b"auth=Bearer token-1234-and-more; again token-1234";
        let masked = answered(&hook, body)
            .masking_all(&values)
            .response_body
            .unwrap();
        assert_eq!(masked, "auth=***; again ***");
    }

    #[test]
    fn the_echo_forms_are_longest_first_and_each_once() {
        let forms = echo_forms("a b");
        assert_eq!(forms, ["a%20b", "a b", "a+b"]);
        let forms = echo_forms("0123456789ab");
        assert!(forms.windows(2).all(|w| w[0].len() >= w[1].len()));
        assert!(forms.contains(&"MDEyMzQ1Njc4OWFi".to_owned()));
        assert_eq!(forms.iter().filter(|f| *f == "0123456789ab").count(), 1);
    }

    #[test]
    fn response_text_keeps_1_kib_and_never_splits_a_character() {
        assert_eq!(response_text(b"ok"), "ok");
        assert_eq!(response_text(&[b'a'; 2000]).len(), 1024);
        let mut cut = vec![b'a'; 1023];
        cut.extend_from_slice("é".as_bytes());
        assert_eq!(response_text(&cut), "a".repeat(1023));
        assert_eq!(response_text(&[b'a', 0xff, b'b']), "a\u{FFFD}b");
    }

    #[test]
    fn a_redelivery_carries_the_same_bytes_a_new_id_and_says_so() {
        let hook = webhook(None);
        let event = stored_event();
        let first = event.redelivery(hook.id).unwrap();
        let second = event.redelivery(hook.id).unwrap();
        assert_ne!(first.delivery_id, second.delivery_id);
        assert_eq!(first.envelope.get(), event.envelope);
        assert_eq!(first.event_id, event.id);
        let decoded = DeliveryMessage::decode(&first.encode().unwrap()).unwrap();
        assert_eq!(decoded.trigger, Trigger::Redelivery);
        assert_eq!(decoded.envelope.get(), event.envelope);
        let signing = SigningSecret::generate().unwrap();
        let dispatch = prepare(&hook, &signing, first, Timestamp::now()).unwrap();
        assert_eq!(dispatch.body, event.envelope);
        assert_eq!(dispatch.header(REDELIVERY_HEADER), Some("true"));
        let published = DeliveryMessage {
            trigger: Trigger::Event,
            ..second
        };
        assert!(!published.encode().unwrap().contains("trigger"));
        let dispatch = prepare(&hook, &signing, published, Timestamp::now()).unwrap();
        assert_eq!(dispatch.header(REDELIVERY_HEADER), None);
    }

    #[test]
    fn redeliveries_and_pings_reach_disabled_and_unsubscribed_webhooks_not_deleted_ones() {
        let mut hook = webhook(None);
        hook.enabled = false;
        for trigger in [Trigger::Redelivery, Trigger::Ping] {
            assert!(eligible(Some(&hook), EventName::CaseCreated, trigger).is_ok());
            assert_eq!(
                eligible(None, EventName::Ping, trigger).unwrap_err(),
                Skip::Deleted
            );
        }
        assert_eq!(
            eligible(Some(&hook), EventName::RunCompleted, Trigger::Event).unwrap_err(),
            Skip::Disabled
        );
        hook.enabled = true;
        assert_eq!(
            eligible(Some(&hook), EventName::CaseCreated, Trigger::Event).unwrap_err(),
            Skip::Unsubscribed
        );
    }

    #[test]
    fn a_recoverys_delivery_is_a_marked_resend_to_an_enabled_webhook_in_its_own_group() {
        use crate::recover::{Paced, Plan, Recovery, Window};
        let mut hook = webhook(None);
        let event = stored_event();
        let now = Timestamp::now();
        let recovery = Recovery {
            id: Uuid::now_v7(),
            project: hook.project.clone(),
            webhook_id: hook.id,
            plan: Plan {
                window: Window { from: now, to: now },
                missed: None,
                rate: 7,
            },
            created_at: now,
            finished_at: None,
        };
        let message = recovery.delivery(&event).unwrap();
        assert_eq!(message.trigger, Trigger::Recovery);
        assert_eq!(
            message.recovery,
            Some(Paced {
                id: recovery.id,
                rate: 7
            })
        );
        assert_eq!(message.event_id, event.id);
        assert_eq!(
            message.group(),
            hook.project.as_str(),
            "one share per project"
        );
        let decoded = DeliveryMessage::decode(&message.encode().unwrap()).unwrap();
        assert_eq!(decoded.recovery, message.recovery);
        assert_eq!(decoded.trigger, Trigger::Recovery);
        // A published delivery keeps the project's group and no recovery.
        let published = event.redelivery(hook.id).unwrap();
        assert_eq!(published.group(), hook.project.as_str());
        assert!(!published.encode().unwrap().contains("recovery"));
        let signing = SigningSecret::generate().unwrap();
        let dispatch = prepare(&hook, &signing, message, Timestamp::now()).unwrap();
        assert_eq!(dispatch.header(REDELIVERY_HEADER), Some("true"));
        assert_eq!(dispatch.body, event.envelope);
        // Enabled: sent whatever it subscribes to now; disabled: skipped.
        assert!(eligible(Some(&hook), EventName::CaseCreated, Trigger::Recovery).is_ok());
        hook.enabled = false;
        assert_eq!(
            eligible(Some(&hook), EventName::RunCompleted, Trigger::Recovery).unwrap_err(),
            Skip::Disabled
        );
        assert_eq!(
            eligible(None, EventName::RunCompleted, Trigger::Recovery).unwrap_err(),
            Skip::Deleted
        );
        assert!(Trigger::Recovery.is_resend() && Trigger::Redelivery.is_resend());
        assert!(!Trigger::Event.is_resend() && !Trigger::Ping.is_resend());
    }

    #[test]
    fn a_ping_is_the_usual_envelope_naming_the_webhook() {
        let hook = webhook(None);
        let now = at("2026-11-29T10:00:00Z");
        let event = ping_event(&hook, now).unwrap();
        let envelope: serde_json::Value =
            serde_json::from_str(event.envelope().unwrap().get()).unwrap();
        assert_eq!(
            envelope,
            serde_json::json!({
                "event_name": "webhook.ping",
                "timestamp": now.unix_seconds(),
                "payload": {"webhook_id": hook.id.to_string(), "title": "Build bot"},
                "team_member_id": null,
                "project_code": "DEMO",
            })
        );
    }

    #[test]
    fn cursors_round_trip_and_only_the_form_handed_out_is_accepted() {
        let id = Uuid::now_v7();
        let cursor = AttemptCursor {
            delivery_id: id,
            attempt: 3,
        };
        assert_eq!(AttemptCursor::parse(&cursor.to_string()), Some(cursor));
        for bad in [
            String::new(),
            id.to_string(),
            format!("{id}.0"),
            format!("{id}.03"),
            format!("{id}.x"),
            format!("{}.3", id.to_string().to_uppercase()),
            "nope.3".to_owned(),
        ] {
            assert_eq!(AttemptCursor::parse(&bad), None, "{bad}");
        }
        assert_eq!(attempt_text(7), "00007");
        assert!(attempt_text(10) > attempt_text(9));
    }

    #[test]
    fn the_first_id_at_a_time_sorts_before_every_id_made_then_and_after_every_earlier_one() {
        let t = at("2026-11-29T10:00:00.123Z");
        let secs = t.unix_seconds() as u64;
        let made = |nanos: u32| {
            Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos)).to_string()
        };
        let bound = first_id_at(t);
        assert!(made(123_000_000) >= bound);
        assert!(made(124_000_000) > bound);
        assert!(made(122_999_999) < bound);
        assert_eq!(
            first_id_at(at("1970-01-01T00:00:00Z")),
            "00000000-0000-7000-8000-000000000000"
        );
    }

    #[test]
    fn the_sweeper_looks_a_day_back_for_a_success() {
        assert_eq!(RECOVERY_LOOKBACK, Duration::from_secs(86_400));
    }

    #[test]
    fn a_success_clears_the_failure_unless_failures_came_after_it() {
        let mut hook = webhook(None);
        hook.failing_since = Some(at("2026-11-20T00:00:00Z"));
        hook.last_failure_at = Some(at("2026-11-20T00:00:00Z"));
        assert_eq!(recovery(&hook, at("2026-11-20T00:00:01Z")), Recovery::Clear);
        assert_eq!(recovery(&hook, at("2026-11-20T00:00:00Z")), Recovery::Clear);
        hook.last_failure_at = Some(at("2026-11-21T00:00:00Z"));
        assert_eq!(
            recovery(&hook, at("2026-11-20T00:00:01Z")),
            Recovery::FailingSince(at("2026-11-20T00:00:01Z"))
        );
    }
}
