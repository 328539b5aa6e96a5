//! The shape of the webhook table: key formats, attribute names and the table
//! definition. Every expression in the store names attributes through the
//! constants here, and a unit test checks that a serialized webhook item
//! carries exactly these names, so a renamed field breaks a test, not
//! production. The design is described in `docs/ARCHITECTURE.md`, "Table".
//!
//! | item            | `pk`              | `sk`            | notes |
//! |-----------------|-------------------|-----------------|-------|
//! | webhook         | `PROJECT#<code>`  | `WEBHOOK#<id>`  | ids are UUIDv7: a Query lists in creation order |
//! | project counter | `PROJECT#<code>`  | `PROJECT`       | `webhook_count`, kept in the same transaction as create/delete |
//! | token           | `TOKEN#<id>`      | `TOKEN`         | the id is a prefix of the token's SHA-256: one GetItem per request |
//! | e-mail count    | `PROJECT#<code>`  | `NOTICES#<day>` | auto-disable e-mails sent that UTC day; expires (`expires_at`, TTL) |
//! | event           | `EVENT#<id>`      | `EVENT`         | a published event's exact envelope, stored once; expires |
//! | attempt         | `HISTORY#<code>#<webhook id>` | `DELIVERY#<delivery id>#<attempt, 5 digits>` | one per attempt; delivery ids are UUIDv7: a Query lists newest first; expires |
//! | retries exhausted | `EXHAUSTED#<delivery id>` | `EXHAUSTED` | put once when a delivery's last retry failed, with its operational event; expires |
//!
//! The sparse global secondary index `failing` has partition key
//! `failing_pk` and sort key `failing_since`. Only webhooks the sweeper has
//! work for carry `failing_pk`: `FAILING` (enabled and failing), `DUE`
//! (marked due at once by the sender) and `NOTICE` (auto-disabled, e-mail
//! pending). "Failing since before T" is one Query over exactly those
//! webhooks, never a Scan of the table. The index carries
//! [`FAILING_INDEX_ATTRIBUTES`]: what the sweeper reads, never the secret.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use serde::{Deserialize, Serialize};

use super::unavailable;
use uuid::Uuid;

use crate::domain::history::{AttemptCursor, attempt_text, first_id_at};
use crate::domain::{
    Attempt, ProjectCode, StoredEvent, Timestamp, TokenId, TokenRecord, Webhook, WebhookId,
};
use crate::ports::StoreError;

/// An item as the SDK sees it.
pub type Item = HashMap<String, AttributeValue>;

/// Attribute names. Those of a webhook are its serde field names; the
/// bookkeeping ones exist only on the item.
pub mod attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";

    pub const ID: &str = "id";
    pub const PROJECT: &str = "project";
    pub const TITLE: &str = "title";
    pub const ENDPOINT: &str = "endpoint";
    pub const SECRET: &str = "secret";
    pub const EVENTS: &str = "events";
    pub const ENABLED: &str = "enabled";
    pub const NOTIFY_EMAILS: &str = "notify_emails";
    pub const RETRY_POLICY: &str = "retry_policy";
    pub const CREATED_AT: &str = "created_at";
    pub const UPDATED_AT: &str = "updated_at";
    pub const FAILING_SINCE: &str = "failing_since";
    pub const LAST_FAILURE_AT: &str = "last_failure_at";
    pub const LAST_FAILURE_REASON: &str = "last_failure_reason";
    pub const FAILURE_COUNT: &str = "failure_count";
    pub const SLOW_SINCE: &str = "slow_since";
    /// The custom headers: names to write-only values.
    pub const HEADERS: &str = "headers";
    pub const DISABLED_AT: &str = "disabled_at";
    pub const DISABLED_REASON: &str = "disabled_reason";
    pub const LAST_DISABLED_FROM: &str = "last_disabled_from";
    pub const LAST_DISABLED_UNTIL: &str = "last_disabled_until";
    pub const SIGNING_SECRET: &str = "signing_secret";
    pub const PREVIOUS_SIGNING_SECRET: &str = "previous_signing_secret";
    pub const PREVIOUS_SIGNING_UNTIL: &str = "previous_signing_until";

    /// Partition key of the `failing` index: which sweeper queue, if any.
    pub const FAILING_PK: &str = "failing_pk";
    /// When a sweep took the pending e-mail.
    pub const NOTICE_CLAIMED_AT: &str = "notice_claimed_at";
    /// When the auto-disable e-mail went out.
    pub const NOTICE_SENT_AT: &str = "notice_sent_at";
    /// A pending e-mail over its project's day of e-mails waits for the
    /// next day's: no sweep claims it before this.
    pub const NOTICE_DEFERRED_UNTIL: &str = "notice_deferred_until";

    /// On the project counter item.
    pub const WEBHOOK_COUNT: &str = "webhook_count";
    /// On a token item: hex SHA-256 of the token.
    pub const TOKEN_HASH: &str = "token_hash";

    /// On an e-mail count item: e-mails counted that day.
    pub const NOTICES_SENT: &str = "notices_sent";
    /// On a publish count item: publishes counted in its window.
    pub const PUBLISHES: &str = "publishes";
    /// On an idempotency item: the body's fingerprint, the event, its
    /// state, the claim and the webhooks queued so far.
    pub const FINGERPRINT: &str = "fingerprint";
    pub const EVENT_ID: &str = "event_id";
    pub const EVENT_TIMESTAMP: &str = "event_timestamp";
    pub const PUBLISH_STATE: &str = "publish_state";
    pub const CLAIMED_AT: &str = "claimed_at";
    pub const QUEUED: &str = "queued";
    /// On an attempt item: how it ended (`delivered`, `failed`, `skipped`).
    pub const OUTCOME: &str = "outcome";
    /// On an attempt item: when it ended.
    pub const COMPLETED_AT: &str = "completed_at";

    /// On a published event: partition key of the `events` index (its
    /// project), so a project's events are found by time.
    pub const EVENTS_PK: &str = "events_pk";
    /// On a stored event: its name.
    pub const EVENT_NAME: &str = "event_name";

    /// On a recovery item: its progress (`domain::recover::Progress`).
    pub const FOUND: &str = "found";
    pub const EXPIRED: &str = "expired";
    pub const SENT: &str = "sent";
    pub const DELIVERED: &str = "delivered";
    pub const FAILED: &str = "failed";
    pub const SKIPPED: &str = "skipped";
    pub const FOUND_ALL: &str = "found_all";
    pub const QUEUED_ALL: &str = "queued_all";
    pub const FINISHED_AT: &str = "finished_at";
    /// On a recovery's event mark: a resend delivered the event already.
    pub const SETTLED: &str = "settled";
    /// On a recovery's count of a second: the POSTs it started then.
    pub const SLOTS: &str = "slots";

    /// The table's time-to-live attribute (Unix seconds): DynamoDB deletes
    /// the item some time after.
    pub const EXPIRES_AT: &str = "expires_at";
}

/// What the `failing` index carries besides the table's and its own keys:
/// the webhook as the sweeper reads and e-mails it, without its secret and
/// without the e-mail bookkeeping (the sweeper's writes condition on those
/// in the table). `template.yaml` declares the same list (a test compares).
pub const FAILING_INDEX_ATTRIBUTES: [&str; 14] = [
    attr::ID,
    attr::PROJECT,
    attr::TITLE,
    attr::ENDPOINT,
    attr::EVENTS,
    attr::ENABLED,
    attr::NOTIFY_EMAILS,
    attr::CREATED_AT,
    attr::UPDATED_AT,
    attr::LAST_FAILURE_AT,
    attr::LAST_FAILURE_REASON,
    attr::FAILURE_COUNT,
    attr::DISABLED_AT,
    attr::DISABLED_REASON,
];

/// The webhook attributes the `failing` index leaves out (besides its keys).
pub const NOT_IN_FAILING_INDEX: [&str; 12] = [
    attr::RETRY_POLICY,
    attr::LAST_DISABLED_FROM,
    attr::LAST_DISABLED_UNTIL,
    attr::HEADERS,
    attr::SLOW_SINCE,
    attr::SECRET,
    attr::SIGNING_SECRET,
    attr::PREVIOUS_SIGNING_SECRET,
    attr::PREVIOUS_SIGNING_UNTIL,
    attr::NOTICE_CLAIMED_AT,
    attr::NOTICE_SENT_AT,
    attr::NOTICE_DEFERRED_UNTIL,
];

/// Every attribute a webhook item can carry.
pub const WEBHOOK_ATTRIBUTES: [&str; 30] = [
    attr::PK,
    attr::SK,
    attr::ID,
    attr::PROJECT,
    attr::TITLE,
    attr::ENDPOINT,
    attr::SECRET,
    attr::HEADERS,
    attr::EVENTS,
    attr::ENABLED,
    attr::NOTIFY_EMAILS,
    attr::RETRY_POLICY,
    attr::CREATED_AT,
    attr::UPDATED_AT,
    attr::FAILING_SINCE,
    attr::LAST_FAILURE_AT,
    attr::LAST_FAILURE_REASON,
    attr::FAILURE_COUNT,
    attr::SLOW_SINCE,
    attr::DISABLED_AT,
    attr::DISABLED_REASON,
    attr::LAST_DISABLED_FROM,
    attr::LAST_DISABLED_UNTIL,
    attr::FAILING_PK,
    attr::NOTICE_CLAIMED_AT,
    attr::NOTICE_SENT_AT,
    attr::NOTICE_DEFERRED_UNTIL,
    attr::SIGNING_SECRET,
    attr::PREVIOUS_SIGNING_SECRET,
    attr::PREVIOUS_SIGNING_UNTIL,
];

/// The fields that make up the failure state, cleared on re-enable (with
/// the slow mark: a re-enabled webhook starts in the fast lane).
pub const FAILURE_STATE: [&str; 11] = [
    attr::FAILING_SINCE,
    attr::LAST_FAILURE_AT,
    attr::LAST_FAILURE_REASON,
    attr::FAILURE_COUNT,
    attr::SLOW_SINCE,
    attr::DISABLED_AT,
    attr::DISABLED_REASON,
    attr::FAILING_PK,
    attr::NOTICE_CLAIMED_AT,
    attr::NOTICE_SENT_AT,
    attr::NOTICE_DEFERRED_UNTIL,
];

/// The failure summary a success clears.
pub const FAILURE_SUMMARY: [&str; 5] = [
    attr::FAILING_SINCE,
    attr::LAST_FAILURE_AT,
    attr::LAST_FAILURE_REASON,
    attr::FAILURE_COUNT,
    attr::FAILING_PK,
];

pub const FAILING_INDEX: &str = "failing";
/// A project's published events by time: partition `events_pk`, sort
/// `created_at` (fixed-width UTC text, so text order is time order). Only
/// published events carry `events_pk`, never a ping.
pub const EVENTS_INDEX: &str = "events";
pub const EVENTS_SK: &str = attr::CREATED_AT;
/// What the `events` index carries besides its keys: enough to pick the
/// events a webhook subscribes to, never the envelope.
pub const EVENTS_INDEX_ATTRIBUTES: [&str; 2] = [attr::ID, attr::EVENT_NAME];
/// Sort key of the `failing` index.
pub const FAILING_SK: &str = attr::FAILING_SINCE;
/// `failing_pk` of an enabled webhook that is failing.
pub const FAILING_PARTITION: &str = "FAILING";
/// `failing_pk` of a webhook the sender marked due for disabling at once.
pub const DUE_PARTITION: &str = "DUE";
/// `failing_pk` of an auto-disabled webhook whose e-mail is not sent yet.
pub const NOTICE_PARTITION: &str = "NOTICE";

/// Sort keys of webhook items start with this.
pub const WEBHOOK_SK_PREFIX: &str = "WEBHOOK#";
pub const COUNTER_SK: &str = "PROJECT";
pub const TOKEN_SK: &str = "TOKEN";
pub const NOTICE_COUNT_SK_PREFIX: &str = "NOTICES#";
pub const EVENT_SK: &str = "EVENT";
/// Sort keys of attempt items start with this.
pub const ATTEMPT_SK_PREFIX: &str = "DELIVERY#";

pub fn project_pk(project: &ProjectCode) -> String {
    format!("PROJECT#{project}")
}

pub fn webhook_sk(id: WebhookId) -> String {
    format!("{WEBHOOK_SK_PREFIX}{id}")
}

/// Partitions one webhook's delivery history is spread over, by delivery:
/// DynamoDB takes at most 1,000 write units a second per partition key,
/// and the sort keys (UUIDv7 delivery ids) only grow, so one key could not
/// be split for heat. Four take a webhook's 1,000 deliveries a second (and
/// their 2-unit failed attempts) with room to spare; a listing reads all
/// four (`list_attempts`), one delivery reads one.
pub const HISTORY_SHARDS: u8 = 4;

/// The history partition a delivery's attempts are kept in: its id's last
/// byte (random in a UUIDv7) picks it.
pub fn history_shard(delivery: Uuid) -> u8 {
    delivery.as_bytes()[15] % HISTORY_SHARDS
}

/// One of a webhook's history partitions. The first keeps the key the
/// history had before it was spread, so attempts stored then stay readable.
pub fn history_pk(project: &ProjectCode, webhook: WebhookId, shard: u8) -> String {
    match shard {
        0 => format!("HISTORY#{project}#{webhook}"),
        shard => format!("HISTORY#{project}#{webhook}#{shard}"),
    }
}

/// The partition of one delivery's attempts.
pub fn delivery_history_pk(project: &ProjectCode, webhook: WebhookId, delivery: Uuid) -> String {
    history_pk(project, webhook, history_shard(delivery))
}

/// The sort keys of one delivery's attempts start with this.
pub fn delivery_sk_prefix(delivery: Uuid) -> String {
    format!("{ATTEMPT_SK_PREFIX}{}#", delivery.hyphenated())
}

pub fn attempt_sk(delivery: Uuid, attempt: u32) -> String {
    format!("{}{}", delivery_sk_prefix(delivery), attempt_text(attempt))
}

/// The sort key below every attempt of a delivery created at or after
/// `at` (delivery ids are UUIDv7, so text order is creation order).
pub fn first_attempt_sk_at(at: Timestamp) -> String {
    format!("{ATTEMPT_SK_PREFIX}{}", first_id_at(at))
}

/// The cursor of the attempt item with this key; `None` for any other key.
pub fn attempt_cursor(key: &Item) -> Option<AttemptCursor> {
    let AttributeValue::S(sk) = key.get(attr::SK)? else {
        return None;
    };
    let (id, attempt) = sk.strip_prefix(ATTEMPT_SK_PREFIX)?.split_once('#')?;
    Some(AttemptCursor {
        delivery_id: Uuid::try_parse(id).ok()?,
        attempt: attempt.parse().ok()?,
    })
}

pub fn event_pk(id: Uuid) -> String {
    format!("EVENT#{}", id.hyphenated())
}

pub fn token_pk(id: &TokenId) -> String {
    format!("TOKEN#{id}")
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([(attr::PK.to_owned(), s(pk)), (attr::SK.to_owned(), s(sk))])
}

/// The key of a webhook item.
pub fn webhook_key(project: &ProjectCode, id: WebhookId) -> Item {
    key(project_pk(project), webhook_sk(id))
}

/// The key of a project's count of auto-disable e-mails on `day`.
pub fn notice_count_key(project: &ProjectCode, day: &str) -> Item {
    key(
        project_pk(project),
        format!("{NOTICE_COUNT_SK_PREFIX}{day}"),
    )
}

/// The key of the item counting a project's publishes in one window (Unix
/// seconds). Its own partition, apart from the project's webhooks, so a busy
/// project's counting does not heat the partition its publishes read.
pub fn publish_count_key(project: &ProjectCode, window: i64) -> Item {
    key(format!("RATE#{project}"), format!("PUBLISHES#{window}"))
}

/// The key of a publish's idempotency item: one partition per key.
pub fn idempotency_key(project: &ProjectCode, key: &str) -> Item {
    crate::adapters::dynamo::schema::key(
        format!("IDEMPOTENCY#{project}#{key}"),
        "PUBLISH".to_owned(),
    )
}

/// The key of a project's counter item.
pub fn counter_key(project: &ProjectCode) -> Item {
    key(project_pk(project), COUNTER_SK.to_owned())
}

/// The key of an attempt item.
pub fn attempt_key(project: &ProjectCode, webhook: WebhookId, cursor: AttemptCursor) -> Item {
    key(
        delivery_history_pk(project, webhook, cursor.delivery_id),
        attempt_sk(cursor.delivery_id, cursor.attempt),
    )
}

/// The key of a stored event.
pub fn event_key(id: Uuid) -> Item {
    key(event_pk(id), EVENT_SK.to_owned())
}

/// The key of the mark that a delivery's retries ran out (its
/// operational event was put): one partition per delivery.
pub fn exhausted_key(delivery: Uuid) -> Item {
    key(
        format!("EXHAUSTED#{}", delivery.hyphenated()),
        "EXHAUSTED".to_owned(),
    )
}

/// The key of a token item.
pub fn token_key(id: &TokenId) -> Item {
    key(token_pk(id), TOKEN_SK.to_owned())
}

/// An attempt as stored: the record, its keys and its expiry.
#[derive(Serialize, Deserialize)]
pub(super) struct AttemptItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub attempt: Attempt,
    pub expires_at: i64,
}

impl AttemptItem {
    pub fn new(attempt: &Attempt, expires_at: Timestamp) -> Self {
        Self {
            pk: delivery_history_pk(&attempt.project, attempt.webhook_id, attempt.delivery_id),
            sk: attempt_sk(attempt.delivery_id, attempt.attempt),
            attempt: attempt.clone(),
            expires_at: expires_at.unix_seconds(),
        }
    }
}

/// A stored event: the event, its keys and its expiry; a published one
/// also its project's key in the `events` index.
#[derive(Serialize, Deserialize)]
pub(super) struct EventItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub event: StoredEvent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_pk: Option<String>,
    pub expires_at: i64,
}

impl EventItem {
    pub fn new(event: &StoredEvent, expires_at: Timestamp) -> Self {
        Self {
            pk: event_pk(event.id),
            sk: EVENT_SK.to_owned(),
            event: event.clone(),
            events_pk: (event.event_name != crate::domain::EventName::Ping)
                .then(|| events_pk(&event.project)),
            expires_at: expires_at.unix_seconds(),
        }
    }
}

/// The `events` index partition of a project's published events.
pub fn events_pk(project: &ProjectCode) -> String {
    format!("EVENTS#{project}")
}

/// The partition of a recovery: its item and its marks of the events it
/// found.
pub fn recovery_pk(id: Uuid) -> String {
    format!("RECOVERY#{}", id.hyphenated())
}

pub const RECOVERY_SK: &str = "RECOVERY";
/// Sort keys of a recovery's event marks start with this; event ids are
/// UUIDv7, so the marks read in publish order.
pub const RECOVERY_EVENT_SK_PREFIX: &str = "EVENT#";

/// The key of a recovery item.
pub fn recovery_key(id: Uuid) -> Item {
    key(recovery_pk(id), RECOVERY_SK.to_owned())
}

/// The key of a recovery's mark of one event.
pub fn recovery_mark_key(recovery: Uuid, event: Uuid) -> Item {
    key(
        recovery_pk(recovery),
        format!("{RECOVERY_EVENT_SK_PREFIX}{}", event.hyphenated()),
    )
}

/// The key of the count of a recovery's POSTs in one second: its own
/// partition, apart from the recovery's item.
pub fn recovery_slot_key(recovery: Uuid, second: i64) -> Item {
    key(
        format!("RATE#RECOVERY#{}", recovery.hyphenated()),
        format!("SECOND#{second}"),
    )
}

/// A recovery as stored: what it was asked, and its progress.
#[derive(Serialize, Deserialize)]
pub(super) struct RecoveryItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub recovery: crate::domain::recover::Recovery,
    #[serde(flatten)]
    pub progress: crate::domain::recover::Progress,
    pub expires_at: i64,
}

/// A recovery's mark of one event: found to send, or settled.
#[derive(Serialize, Deserialize)]
pub(super) struct MarkItem {
    pub pk: String,
    pub sk: String,
    pub event_id: Uuid,
    pub event_name: crate::domain::EventName,
    pub settled: bool,
    pub expires_at: i64,
}

/// A webhook as stored: the webhook, its keys and the sweeper's bookkeeping.
#[derive(Serialize, Deserialize)]
pub(super) struct WebhookItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub webhook: Webhook,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_claimed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_sent_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_deferred_until: Option<Timestamp>,
}

impl WebhookItem {
    pub fn new(webhook: &Webhook) -> Self {
        Self {
            pk: project_pk(&webhook.project),
            sk: webhook_sk(webhook.id),
            webhook: webhook.clone(),
            failing_pk: None,
            notice_claimed_at: None,
            notice_sent_at: None,
            notice_deferred_until: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct TokenItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub record: TokenRecord,
}

/// The item a new webhook is stored as.
pub fn webhook_item(webhook: &Webhook) -> Result<Item, serde_dynamo::Error> {
    serde_dynamo::to_item(WebhookItem::new(webhook))
}

/// An attempt as the sender stores it.
pub fn attempt_item(attempt: &Attempt, expires_at: Timestamp) -> Result<Item, serde_dynamo::Error> {
    serde_dynamo::to_item(AttemptItem::new(attempt, expires_at))
}

/// An event as publishing stores it.
pub fn event_item(event: &StoredEvent, expires_at: Timestamp) -> Result<Item, serde_dynamo::Error> {
    serde_dynamo::to_item(EventItem::new(event, expires_at))
}

/// An item's size as DynamoDB bills it: attribute names plus values
/// (strings their UTF-8 bytes, numbers about one byte per two digits plus
/// one, booleans and nulls one byte, lists and maps 3 bytes plus one per
/// element). Writes cost one unit per started KiB.
pub fn item_size(item: &Item) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(items) => 3 + items.iter().map(|i| value(i) + 1).sum::<usize>(),
            AttributeValue::M(map) => {
                3 + map
                    .iter()
                    .map(|(k, v)| k.len() + value(v) + 1)
                    .sum::<usize>()
            }
            AttributeValue::Ss(items) => items.iter().map(String::len).sum(),
            AttributeValue::Ns(items) => items.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
            _ => 0,
        }
    }
    item.iter().map(|(name, v)| name.len() + value(v)).sum()
}

/// Creates the table with its keys, the `failing` index and the
/// time-to-live attribute, on-demand billing: the definition `template.yaml`
/// also declares (a test compares them). Used by tests and the local stack.
pub(super) async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), StoreError> {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(unavailable)
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(unavailable)
    };
    let index = GlobalSecondaryIndex::builder()
        .index_name(FAILING_INDEX)
        .key_schema(key(attr::FAILING_PK, KeyType::Hash)?)
        .key_schema(key(FAILING_SK, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(FAILING_INDEX_ATTRIBUTES.map(str::to_owned).to_vec()))
                .build(),
        )
        .build()
        .map_err(unavailable)?;
    let events = GlobalSecondaryIndex::builder()
        .index_name(EVENTS_INDEX)
        .key_schema(key(attr::EVENTS_PK, KeyType::Hash)?)
        .key_schema(key(EVENTS_SK, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(EVENTS_INDEX_ATTRIBUTES.map(str::to_owned).to_vec()))
                .build(),
        )
        .build()
        .map_err(unavailable)?;
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(attr::PK)?)
        .attribute_definitions(attribute(attr::SK)?)
        .attribute_definitions(attribute(attr::FAILING_PK)?)
        .attribute_definitions(attribute(FAILING_SK)?)
        .attribute_definitions(attribute(attr::EVENTS_PK)?)
        .attribute_definitions(attribute(EVENTS_SK)?)
        .key_schema(key(attr::PK, KeyType::Hash)?)
        .key_schema(key(attr::SK, KeyType::Range)?)
        .global_secondary_indexes(index)
        .global_secondary_indexes(events)
        .send()
        .await
        .map_err(unavailable)?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(attr::EXPIRES_AT)
                .enabled(true)
                .build()
                .map_err(unavailable)?,
        )
        .send()
        .await
        .map_err(unavailable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::domain::{Secret, WebhookInput};

    fn full_item() -> Item {
        let now = Timestamp::parse("2026-11-28T10:00:00Z").unwrap();
        let mut webhook = WebhookInput {
            title: Some("t".into()),
            endpoint: Some("https://example.com/".into()),
            secret: Some("s3cret".into()),
            events: Some(vec!["run.completed".into()]),
            notify_emails: Some(vec!["a@example.com".into()]),
            ..WebhookInput::default()
        }
        .validate(&Default::default())
        .unwrap()
        .into_webhook(WebhookId::generate(), ProjectCode::parse("P").unwrap(), now);
        webhook.failing_since = Some(now);
        webhook.last_failure_at = Some(now);
        webhook.last_failure_reason = Some("HTTP 503".into());
        webhook.failure_count = 1;
        webhook.slow_since = Some(now);
        webhook.disabled_at = Some(now);
        webhook.disabled_reason = Some("r".into());
        webhook.last_disabled_from = Some(now);
        webhook.last_disabled_until = Some(now);
        webhook.signing_secret = Some(crate::domain::SigningSecret::generate().unwrap());
        webhook.previous_signing_secret = Some(crate::domain::SigningSecret::generate().unwrap());
        webhook.previous_signing_until = Some(now);
        webhook.headers = crate::domain::CustomHeaders::validate(
            [("Authorization".to_owned(), "Bearer t".to_owned())].into(),
        )
        .unwrap();
        assert!(
            webhook
                .secret
                .as_ref()
                .is_some_and(|s: &Secret| !s.expose().is_empty())
        );
        let mut item = WebhookItem::new(&webhook);
        item.failing_pk = Some(NOTICE_PARTITION.into());
        item.notice_claimed_at = Some(now);
        item.notice_sent_at = Some(now);
        item.notice_deferred_until = Some(now);
        serde_dynamo::to_item(item).unwrap()
    }

    #[test]
    fn a_webhook_item_carries_exactly_the_named_attributes() {
        let item = full_item();
        let names: BTreeSet<&str> = item.keys().map(String::as_str).collect();
        let expected: BTreeSet<&str> = WEBHOOK_ATTRIBUTES.into_iter().collect();
        assert_eq!(names, expected);
        assert_eq!(
            WEBHOOK_ATTRIBUTES.len(),
            expected.len(),
            "a name is listed twice"
        );
    }

    #[test]
    fn the_cleared_states_and_the_index_name_webhook_attributes() {
        for name in FAILURE_STATE
            .iter()
            .chain(&FAILURE_SUMMARY)
            .chain([&FAILING_SK])
        {
            assert!(WEBHOOK_ATTRIBUTES.contains(name), "{name}");
        }
        let summary: BTreeSet<_> = FAILURE_SUMMARY.into_iter().collect();
        assert!(summary.is_subset(&FAILURE_STATE.into_iter().collect()));
    }

    #[test]
    fn the_failing_index_leaves_out_the_secret_and_reads_back_as_a_webhook() {
        let keys = [attr::PK, attr::SK, attr::FAILING_PK, FAILING_SK];
        let mut classified: Vec<&str> = keys.to_vec();
        classified.extend(FAILING_INDEX_ATTRIBUTES);
        classified.extend(NOT_IN_FAILING_INDEX);
        let classified_set: BTreeSet<&str> = classified.iter().copied().collect();
        assert_eq!(
            classified.len(),
            classified_set.len(),
            "a name is listed twice"
        );
        assert_eq!(
            classified_set,
            WEBHOOK_ATTRIBUTES.into_iter().collect::<BTreeSet<_>>(),
            "every webhook attribute is projected or left out on purpose"
        );
        assert!(NOT_IN_FAILING_INDEX.contains(&attr::SECRET));

        // An item as the index returns it reads back, without a secret.
        let mut item = full_item();
        item.retain(|name, _| {
            keys.contains(&name.as_str()) || FAILING_INDEX_ATTRIBUTES.contains(&name.as_str())
        });
        let webhook = super::super::from_webhook_item(item).unwrap();
        assert!(webhook.secret.is_none());
        assert_eq!(webhook.notify_emails, ["a@example.com"]);
    }

    #[test]
    fn a_stored_item_reads_back_with_its_bookkeeping() {
        let item: WebhookItem = serde_dynamo::from_item(full_item()).unwrap();
        assert_eq!(item.failing_pk.as_deref(), Some(NOTICE_PARTITION));
        assert!(item.notice_sent_at.is_some());
        assert_eq!(item.pk, project_pk(&item.webhook.project));
        assert_eq!(item.sk, webhook_sk(item.webhook.id));
    }

    #[test]
    fn a_token_item_names_its_hash_and_project() {
        let hash = crate::domain::ApiToken::presented("x").hash();
        let record = TokenRecord::new(&hash, ProjectCode::parse("P").unwrap(), Timestamp::now());
        let item: Item = serde_dynamo::to_item(TokenItem {
            pk: token_pk(&record.id),
            sk: TOKEN_SK.into(),
            record,
        })
        .unwrap();
        for name in [attr::PK, attr::SK, attr::PROJECT, attr::TOKEN_HASH] {
            assert!(item.contains_key(name), "{name}");
        }
    }

    #[test]
    fn item_sizes_count_names_and_values_as_dynamodb_bills_them() {
        let item: Item = HashMap::from([
            ("pk".to_owned(), s("abc")),
            ("n".to_owned(), AttributeValue::N("12345".into())),
            ("on".to_owned(), AttributeValue::Bool(true)),
            (
                "m".to_owned(),
                AttributeValue::M(HashMap::from([("k".to_owned(), s("vv"))])),
            ),
            ("l".to_owned(), AttributeValue::L(vec![s("x"), s("yz")])),
        ]);
        // pk 2+3, n 1+(3+1), on 2+1, m 1+(3+1+2+1), l 1+(3+2+3)
        assert_eq!(item_size(&item), 5 + 5 + 3 + 8 + 9);
    }

    #[test]
    fn a_delivery_picks_its_history_partition_by_its_last_byte() {
        let project = ProjectCode::parse("DEMO").unwrap();
        let id = WebhookId::generate();
        let ending = |byte: u8| {
            let mut bytes = *Uuid::now_v7().as_bytes();
            bytes[15] = byte;
            Uuid::from_bytes(bytes)
        };
        assert_eq!(history_shard(ending(0)), 0);
        assert_eq!(history_shard(ending(5)), 1);
        assert_eq!(history_shard(ending(255)), 3);
        // The first partition keeps the key from before the history was spread.
        assert_eq!(
            delivery_history_pk(&project, id, ending(4)),
            format!("HISTORY#DEMO#{id}")
        );
        assert_eq!(
            delivery_history_pk(&project, id, ending(6)),
            format!("HISTORY#DEMO#{id}#2")
        );
        let all: std::collections::BTreeSet<u8> =
            (0..=255).map(|b| history_shard(ending(b))).collect();
        assert_eq!(all.len(), usize::from(HISTORY_SHARDS));
    }

    #[test]
    fn keys_have_their_documented_formats() {
        let project = ProjectCode::parse("DEMO").unwrap();
        let id = WebhookId::generate();
        assert_eq!(webhook_key(&project, id)[attr::PK], s("PROJECT#DEMO"));
        assert_eq!(
            webhook_key(&project, id)[attr::SK],
            s(format!("WEBHOOK#{id}"))
        );
        assert_eq!(counter_key(&project)[attr::SK], s("PROJECT"));
        let delivery = Uuid::parse_str("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        let attempt = attempt_key(
            &project,
            id,
            AttemptCursor {
                delivery_id: delivery,
                attempt: 2,
            },
        );
        // 0x5b = 91: the fourth partition.
        assert_eq!(attempt[attr::PK], s(format!("HISTORY#DEMO#{id}#3")));
        assert_eq!(
            attempt[attr::SK],
            s("DELIVERY#0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b#00002")
        );
        assert_eq!(
            event_key(delivery)[attr::PK],
            s("EVENT#0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
        );
        assert_eq!(event_key(delivery)[attr::SK], s("EVENT"));
        let cursor = AttemptCursor {
            delivery_id: delivery,
            attempt: 2,
        };
        assert_eq!(attempt_cursor(&attempt), Some(cursor));
        assert_eq!(attempt_cursor(&webhook_key(&project, id)), None);
        assert_eq!(
            first_attempt_sk_at(Timestamp::parse("1970-01-01T00:00:00Z").unwrap()),
            "DELIVERY#00000000-0000-7000-8000-000000000000"
        );
    }
}
