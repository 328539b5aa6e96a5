//! The delivery history in the webhook table ([`super::schema`]): events
//! stored once, one item per attempt in the webhook's own partition. Every
//! read is a GetItem or a Query of that partition, never a Scan; every write
//! of the sender is one `BatchWriteItem` per batch.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use uuid::Uuid;

use super::schema::{
    ATTEMPT_SK_PREFIX, AttemptItem, EventItem, Item, attempt_cursor, attr, delivery_sk_prefix,
    event_key, first_attempt_sk_at, history_pk, s,
};
use super::{DynamoStore, corrupt, to_value, unavailable};
use crate::domain::history::{AttemptCursor, AttemptOutcome, RECOVERY_LOOKBACK, StatusFilter};
use crate::domain::{Attempt, ProjectCode, StoredEvent, Timestamp, Webhook, WebhookId};
use crate::ports::{HistoryStore, Page, StoreError};

/// Items one `BatchWriteItem` takes.
const BATCH_WRITE_MAX: usize = 25;
/// Calls a `BatchWriteItem` makes for items DynamoDB leaves unprocessed
/// (throttling) before giving up; the caller's deadline usually ends it
/// first.
const BATCH_WRITE_TRIES: u32 = 6;
/// A filtered listing reads on until its page is full, at most this many
/// Query calls (each reads up to 1 MB).
const FILTERED_READS: usize = 10;
/// The sweeper's search for a success reads at most this many Query pages.
const RECOVERY_READS: usize = 20;

/// The attempts of these items that have not expired (DynamoDB deletes
/// expired items some time after they expire).
fn live_attempts(items: Vec<Item>, now: Timestamp) -> Result<Vec<Attempt>, StoreError> {
    let mut attempts = Vec::with_capacity(items.len());
    for item in items {
        let item: AttemptItem = serde_dynamo::from_item(item).map_err(corrupt)?;
        if item.expires_at > now.unix_seconds() {
            attempts.push(item.attempt);
        }
    }
    Ok(attempts)
}

impl DynamoStore {
    /// Writes the attempts, 25 per `BatchWriteItem`, sending unprocessed
    /// items again with a growing pause.
    pub(super) async fn write_attempts(
        &self,
        attempts: &[Attempt],
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        // One BatchWriteItem refuses two writes of one key, which SQS can
        // cause by handing one message to a batch twice: keep the last.
        let mut seen = std::collections::HashSet::new();
        let mut unique: Vec<&Attempt> = attempts
            .iter()
            .rev()
            .filter(|a| seen.insert((a.webhook_id, a.delivery_id, a.attempt)))
            .collect();
        unique.reverse();
        for chunk in unique.chunks(BATCH_WRITE_MAX) {
            let mut writes = Vec::with_capacity(chunk.len());
            for &attempt in chunk {
                let item = serde_dynamo::to_item(AttemptItem::new(attempt, expires_at))
                    .map_err(corrupt)?;
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(unavailable)?;
                writes.push(WriteRequest::builder().put_request(put).build());
            }
            let mut pause = Duration::from_millis(25);
            for tries in 1.. {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, writes)
                    .send()
                    .await
                    .map_err(unavailable)?;
                writes = out
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
                if writes.is_empty() {
                    break;
                }
                if tries >= BATCH_WRITE_TRIES {
                    return Err(StoreError::Unavailable(
                        format!("{} attempts left unprocessed", writes.len()).into(),
                    ));
                }
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        Ok(())
    }

    /// The latest completion of a delivered attempt to the webhook after
    /// `since`, among deliveries created from [`RECOVERY_LOOKBACK`] before
    /// it: newest first, stopping at the first page with one.
    pub(super) async fn latest_delivery_after(
        &self,
        webhook: &Webhook,
        since: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        let from = first_attempt_sk_at(since.before(RECOVERY_LOOKBACK));
        let mut start = None;
        for _ in 0..RECOVERY_READS {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk > :from")
                .filter_expression("#outcome = :delivered AND #completed_at > :since")
                .projection_expression("#completed_at")
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_names("#outcome", attr::OUTCOME)
                .expression_attribute_names("#completed_at", attr::COMPLETED_AT)
                .expression_attribute_values(":pk", s(history_pk(&webhook.project, webhook.id)))
                .expression_attribute_values(":from", s(from.clone()))
                .expression_attribute_values(":delivered", to_value(&AttemptOutcome::Delivered)?)
                .expression_attribute_values(":since", to_value(&since)?)
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            let latest = out
                .items
                .unwrap_or_default()
                .into_iter()
                .filter_map(|item| match item.get(attr::COMPLETED_AT) {
                    Some(AttributeValue::S(at)) => Timestamp::parse(at),
                    _ => None,
                })
                .max();
            if latest.is_some() {
                return Ok(latest);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

impl DynamoStore {
    /// A Query of one webhook's history partition, for sort keys that
    /// begin with `prefix`.
    fn history_query(
        &self,
        project: &ProjectCode,
        webhook: WebhookId,
        prefix: String,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", s(history_pk(project, webhook)))
            .expression_attribute_values(":prefix", s(prefix))
    }
}

impl HistoryStore for DynamoStore {
    async fn put_event(
        &self,
        event: &StoredEvent,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let item = serde_dynamo::to_item(EventItem::new(event, expires_at)).map_err(corrupt)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_event(
        &self,
        project: &ProjectCode,
        id: Uuid,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(event_key(id)))
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let item: EventItem = serde_dynamo::from_item(item).map_err(corrupt)?;
        Ok(
            (item.event.project == *project && item.expires_at > Timestamp::now().unix_seconds())
                .then_some(item.event),
        )
    }

    async fn list_attempts(
        &self,
        project: &ProjectCode,
        webhook: WebhookId,
        filter: Option<StatusFilter>,
        limit: u32,
        after: Option<AttemptCursor>,
    ) -> Result<Page<Attempt, AttemptCursor>, StoreError> {
        let now = Timestamp::now();
        let mut page = Page {
            items: Vec::new(),
            next: None,
        };
        let mut start = after.map(|cursor| super::schema::attempt_key(project, webhook, cursor));
        for _ in 0..FILTERED_READS {
            let wanted = limit.saturating_sub(page.items.len() as u32).max(1);
            let mut query = self
                .history_query(project, webhook, ATTEMPT_SK_PREFIX.to_owned())
                .scan_index_forward(false)
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            if let Some(filter) = filter {
                query = query
                    .filter_expression("#outcome = :outcome")
                    .expression_attribute_names("#outcome", attr::OUTCOME)
                    .expression_attribute_values(":outcome", to_value(&filter.outcome())?);
            }
            let out = query.send().await.map_err(unavailable)?;
            page.items
                .extend(live_attempts(out.items.unwrap_or_default(), now)?);
            page.next = out
                .last_evaluated_key
                .filter(|key| !key.is_empty())
                .and_then(|key| {
                    let cursor = attempt_cursor(&key);
                    start = Some(key);
                    cursor
                });
            if page.next.is_none() || page.items.len() >= limit as usize {
                break;
            }
        }
        Ok(page)
    }

    async fn delivery_attempts(
        &self,
        project: &ProjectCode,
        webhook: WebhookId,
        delivery: Uuid,
    ) -> Result<Vec<Attempt>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .history_query(project, webhook, delivery_sk_prefix(delivery))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        live_attempts(items, Timestamp::now())
    }
}
