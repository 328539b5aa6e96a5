//! The delivery history in the webhook table ([`super::schema`]): events
//! stored once, one item per attempt in one of the webhook's own
//! partitions ([`HISTORY_SHARDS`], by delivery). Every read is a GetItem or
//! a Query of those partitions, never a Scan; the sender writes a batch's
//! attempts in one `BatchWriteItem` per 25, and a skip as a conditional put.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use uuid::Uuid;

use super::schema::{
    ATTEMPT_SK_PREFIX, AttemptItem, EventItem, HISTORY_SHARDS, Item, attempt_cursor, attempt_sk,
    attr, delivery_history_pk, delivery_sk_prefix, event_key, first_attempt_sk_at, history_pk, s,
};
use super::{DynamoStore, corrupt, to_value, unavailable};
use crate::domain::history::{
    AttemptCursor, AttemptOutcome, RECOVERY_LOOKBACK, StatusFilter, SuccessSearch,
};
use crate::domain::{Attempt, ProjectCode, StoredEvent, Timestamp, Webhook, WebhookId};
use crate::ports::{HistoryStore, Page, StoreError};

/// Items one `BatchWriteItem` takes.
const BATCH_WRITE_MAX: usize = 25;
/// Calls a `BatchWriteItem` makes for items DynamoDB leaves unprocessed
/// (throttling) before giving up; the caller's deadline usually ends it
/// first.
const BATCH_WRITE_TRIES: u32 = 6;
/// A filtered listing reads on until its page is full, at most this many
/// rounds of one Query per history partition.
const FILTERED_READS: usize = 10;
/// Items a filtered listing's Query reads in a partition (before the
/// filter, at most 1 MB): a page of failures is found among this many
/// successes per partition and round, up to 20,000 items in all.
const FILTERED_READ_ITEMS: u32 = 500;
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
        // cause by handing one message to a batch twice: keep the last POST
        // made, else the last record.
        let mut seen = std::collections::HashSet::new();
        let (skipped, sent): (Vec<&Attempt>, Vec<&Attempt>) = attempts
            .iter()
            .partition(|a| a.outcome == AttemptOutcome::Skipped);
        let mut unique: Vec<&Attempt> = sent
            .into_iter()
            .rev()
            .chain(skipped.into_iter().rev())
            .filter(|a| seen.insert((a.webhook_id, a.delivery_id, a.attempt)))
            .collect();
        unique.reverse();
        let (skipped, sent): (Vec<&Attempt>, Vec<&Attempt>) = unique
            .into_iter()
            .partition(|a| a.outcome == AttemptOutcome::Skipped);
        // A skip never replaces a POST the endpoint got: the same attempt
        // can come back after its POST (its retry could not be queued) and
        // find its webhook disabled. Conditional puts, as BatchWriteItem
        // takes no condition; skips are rare and go in parallel.
        futures::future::try_join_all(
            skipped
                .into_iter()
                .map(|attempt| self.put_skip(attempt, expires_at)),
        )
        .await?;
        let items = sent
            .into_iter()
            .map(|attempt| {
                serde_dynamo::to_item(AttemptItem::new(attempt, expires_at)).map_err(corrupt)
            })
            .collect::<Result<Vec<Item>, _>>()?;
        self.batch_put(items).await
    }

    /// Puts the items, 25 per `BatchWriteItem`, sending unprocessed items
    /// again with a growing pause.
    pub(super) async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        for chunk in items.chunks(BATCH_WRITE_MAX) {
            let mut writes = Vec::with_capacity(chunk.len());
            for item in chunk {
                let put = PutRequest::builder()
                    .set_item(Some(item.clone()))
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
                        format!("{} items left unprocessed", writes.len()).into(),
                    ));
                }
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        Ok(())
    }

    /// Records a skipped attempt unless the attempt is recorded already.
    async fn put_skip(&self, attempt: &Attempt, expires_at: Timestamp) -> Result<(), StoreError> {
        let item = serde_dynamo::to_item(AttemptItem::new(attempt, expires_at)).map_err(corrupt)?;
        self.put_new(item).await.map(drop)
    }

    /// The latest completion of a delivered attempt to the webhook after
    /// `since`, among deliveries created from [`RECOVERY_LOOKBACK`] before
    /// it: in each of its history partitions, newest first, stopping at the
    /// first page with one; the latest of those. `NoneFound` only when every
    /// partition was read to the end without one; `GaveUp` when one was not
    /// read to the end in [`RECOVERY_READS`] pages.
    pub(super) async fn latest_delivery_after(
        &self,
        webhook: &Webhook,
        since: Timestamp,
    ) -> Result<SuccessSearch, StoreError> {
        let found = futures::future::try_join_all(
            (0..HISTORY_SHARDS).map(|shard| self.latest_delivery_in(webhook, shard, since)),
        )
        .await?;
        Ok(found
            .into_iter()
            .fold(SuccessSearch::NoneFound, SuccessSearch::and))
    }

    /// [`Self::latest_delivery_after`] in one history partition.
    async fn latest_delivery_in(
        &self,
        webhook: &Webhook,
        shard: u8,
        since: Timestamp,
    ) -> Result<SuccessSearch, StoreError> {
        let from = first_attempt_sk_at(since.before(RECOVERY_LOOKBACK));
        let pk = history_pk(&webhook.project, webhook.id, shard);
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
                .expression_attribute_values(":pk", s(pk.clone()))
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
            if let Some(at) = latest {
                return Ok(SuccessSearch::Delivered(at));
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(SuccessSearch::NoneFound),
            }
        }
        Ok(SuccessSearch::GaveUp)
    }
}

/// What one history partition answered to a listing's Query: its items,
/// newest first, and the sort key it stopped at when it has more.
struct ShardPage {
    items: Vec<Item>,
    stopped_at: Option<String>,
}

/// The sort key of an item.
fn sort_key(item: &Item) -> Option<&str> {
    match item.get(attr::SK) {
        Some(AttributeValue::S(sk)) => Some(sk),
        _ => None,
    }
}

/// Merges the pages of all of a webhook's history partitions, newest
/// first: the items every partition has read past (a partition that
/// stopped early has read down to its stopping point and no further), and
/// the sort key below which the next read must continue, if any. Sort keys
/// are unique across partitions (each delivery lives in one), so the order
/// is the order one partition would give.
fn merge_shards(pages: Vec<ShardPage>) -> (Vec<Item>, Option<String>) {
    let frontier = pages
        .iter()
        .filter_map(|page| page.stopped_at.clone())
        .max();
    let mut items: Vec<Item> = pages
        .into_iter()
        .flat_map(|page| page.items)
        .filter(|item| {
            frontier
                .as_deref()
                .is_none_or(|frontier| sort_key(item).is_some_and(|sk| sk >= frontier))
        })
        .collect();
    items.sort_by(|a, b| sort_key(b).cmp(&sort_key(a)));
    (items, frontier)
}

impl DynamoStore {
    /// A Query of one history partition, for sort keys that begin with
    /// `prefix`.
    fn history_query(
        &self,
        pk: String,
        prefix: String,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
    }

    /// One listing read of one history partition: up to `limit` items
    /// below `before` (all when `None`), newest first, with `filter`.
    async fn shard_page(
        &self,
        pk: String,
        before: Option<&str>,
        filter: Option<StatusFilter>,
        limit: u32,
    ) -> Result<ShardPage, StoreError> {
        let mut query = match before {
            None => self.history_query(pk, ATTEMPT_SK_PREFIX.to_owned()),
            Some(before) => self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk < :before")
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":before", s(before)),
        }
        .scan_index_forward(false)
        .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        if let Some(filter) = filter {
            query = query
                .filter_expression("#outcome = :outcome")
                .expression_attribute_names("#outcome", attr::OUTCOME)
                .expression_attribute_values(":outcome", to_value(&filter.outcome())?);
        }
        let out = query.send().await.map_err(unavailable)?;
        Ok(ShardPage {
            items: out.items.unwrap_or_default(),
            stopped_at: out
                .last_evaluated_key
                .as_ref()
                .and_then(sort_key)
                .map(str::to_owned),
        })
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
        let limit = limit.max(1);
        let mut page = Page {
            items: Vec::new(),
            next: None,
        };
        // Every partition is read below the same sort key: the last one
        // shown, then the lowest point any partition read down to.
        let mut before = after.map(|cursor| attempt_sk(cursor.delivery_id, cursor.attempt));
        for _ in 0..FILTERED_READS {
            let wanted = limit.saturating_sub(page.items.len() as u32).max(1);
            // The filter applies after the read: read widely, or a page of
            // failures among many successes would come back empty.
            let wanted = match filter {
                Some(_) => wanted.max(FILTERED_READ_ITEMS),
                None => wanted,
            };
            let pages = futures::future::try_join_all((0..HISTORY_SHARDS).map(|shard| {
                self.shard_page(
                    history_pk(project, webhook, shard),
                    before.as_deref(),
                    filter,
                    wanted,
                )
            }))
            .await?;
            let (items, frontier) = merge_shards(pages);
            let mut last = None;
            for item in items {
                if page.items.len() >= limit as usize {
                    break;
                }
                last = sort_key(&item).map(str::to_owned);
                page.items.extend(live_attempts(vec![item], now)?);
            }
            if page.items.len() >= limit as usize {
                page.next = last.and_then(|sk| cursor_of(&sk));
                break;
            }
            match frontier {
                None => {
                    page.next = None;
                    break;
                }
                Some(frontier) => {
                    page.next = cursor_of(&frontier);
                    before = Some(frontier);
                }
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
                .history_query(
                    delivery_history_pk(project, webhook, delivery),
                    delivery_sk_prefix(delivery),
                )
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

/// The listing cursor of an attempt's sort key.
fn cursor_of(sk: &str) -> Option<AttemptCursor> {
    attempt_cursor(&Item::from([(attr::SK.to_owned(), s(sk))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sk: &str) -> Item {
        Item::from([(attr::SK.to_owned(), s(sk))])
    }

    fn keys(items: &[Item]) -> Vec<&str> {
        items.iter().filter_map(sort_key).collect()
    }

    #[test]
    fn merged_partitions_list_newest_first_and_stop_where_one_stopped() {
        let (items, frontier) = merge_shards(vec![
            ShardPage {
                items: vec![item("D#9"), item("D#5")],
                stopped_at: Some("D#5".into()),
            },
            ShardPage {
                items: vec![item("D#8"), item("D#4"), item("D#1")],
                stopped_at: None,
            },
            ShardPage {
                items: vec![item("D#7"), item("D#6")],
                stopped_at: Some("D#6".into()),
            },
        ]);
        // The third partition may hold more below D#6: D#5 and D#4 wait for
        // the next read, which starts below D#6.
        assert_eq!(keys(&items), ["D#9", "D#8", "D#7", "D#6"]);
        assert_eq!(frontier.as_deref(), Some("D#6"));
        let (items, frontier) = merge_shards(vec![
            ShardPage {
                items: vec![item("D#2")],
                stopped_at: None,
            },
            ShardPage {
                items: vec![item("D#3"), item("D#1")],
                stopped_at: None,
            },
        ]);
        assert_eq!(keys(&items), ["D#3", "D#2", "D#1"]);
        assert_eq!(frontier, None, "every partition read to its end");
    }
}
