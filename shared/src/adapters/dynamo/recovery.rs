//! [`RecoveryStore`]: a bulk recovery's item and its marks of the events it
//! found, in the recovery's own partition; the count of its POSTs per
//! second in another; a project's events by time from the `events` index.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use uuid::Uuid;

use super::delivery::MAX_BATCH_GET;
use super::schema::{
    EVENTS_INDEX, EVENTS_SK, EventItem, Item, MarkItem, RECOVERY_EVENT_SK_PREFIX, RECOVERY_SK,
    RecoveryItem, attr, event_key, events_pk, n, recovery_key, recovery_mark_key, recovery_pk,
    recovery_slot_key, s,
};
use super::update::Update;
use super::{DynamoStore, corrupt, is_condition_failure, to_value, unavailable};
use crate::domain::recover::{Progress, Recovery, Tally, Window};
use crate::domain::{EventName, ProjectCode, StoredEvent, Timestamp};
use crate::ports::{Page, Published, RecoveryProgress, RecoveryStore, StoreError};

/// Seconds a second's count of POSTs is kept after it.
const KEEP_SLOTS_SECS: i64 = 120;

/// Tries a sender makes to count a recovery's POSTs when other senders
/// count the same second at once.
const SLOT_TRIES: usize = 3;

/// The update that counts `wanted` more POSTs in a second whose count is
/// `seen` (`None`: not read; then only if they all fit under `limit`).
fn slot_update(second: i64, wanted: u32, limit: u32, seen: Option<u32>) -> Update {
    let mut update = Update::default();
    let slots = update.name(attr::SLOTS);
    update
        .add(attr::SLOTS, ":wanted")
        .set(attr::EXPIRES_AT, n(second.saturating_add(KEEP_SLOTS_SECS)))
        .value(":wanted", n(wanted));
    match seen {
        None => {
            update
                .condition(format!("attribute_not_exists({slots}) OR {slots} <= :room"))
                .value(":room", n(limit.saturating_sub(wanted)));
        }
        Some(seen) => {
            update
                .condition(format!("{slots} = :seen"))
                .value(":seen", n(seen));
        }
    }
    update
}

/// The progress of a recovery item's attributes (numbers absent count 0).
fn progress_of(item: Item) -> Result<Progress, StoreError> {
    serde_dynamo::from_item::<_, RecoveryItem>(item)
        .map(|item| item.progress)
        .map_err(corrupt)
}

impl DynamoStore {
    /// Applies `update` to an existing recovery item and answers its
    /// progress after it.
    async fn update_recovery(&self, id: Uuid, mut update: Update) -> Result<Progress, StoreError> {
        let pk = update.name(attr::PK);
        update.condition(format!("attribute_exists({pk})"));
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(recovery_key(id)))
            .update_expression(update.expression())
            .set_condition_expression(update.condition_expression())
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => progress_of(out.attributes.unwrap_or_default()),
            Err(err) if is_condition_failure(&err) => Err(StoreError::NotFound),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// The marks the recovery holds already among `events`.
    async fn marked(&self, recovery: Uuid, events: &[Uuid]) -> Result<HashSet<Uuid>, StoreError> {
        let mut marked = HashSet::new();
        for chunk in events.chunks(MAX_BATCH_GET) {
            let keys = chunk
                .iter()
                .map(|event| recovery_mark_key(recovery, *event))
                .collect();
            for item in self.batch_get(keys).await? {
                let mark: MarkItem = serde_dynamo::from_item(item).map_err(corrupt)?;
                marked.insert(mark.event_id);
            }
        }
        Ok(marked)
    }
}

impl RecoveryProgress for DynamoStore {
    async fn take_recovery_slots(
        &self,
        recovery: Uuid,
        second: i64,
        wanted: u32,
        limit: u32,
    ) -> Result<u32, StoreError> {
        let wanted = wanted.min(limit);
        if wanted == 0 {
            return Ok(0);
        }
        let key = recovery_slot_key(recovery, second);
        // Usually all fit; when they do not, the rest of the second is
        // taken on the count read back, unless another sender counts first.
        if self
            .update_count(key.clone(), slot_update(second, wanted, limit, None))
            .await?
        {
            return Ok(wanted);
        }
        for _ in 0..SLOT_TRIES {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key.clone()))
                .consistent_read(true)
                .send()
                .await
                .map_err(unavailable)?;
            let seen = match out.item.as_ref().and_then(|item| item.get(attr::SLOTS)) {
                Some(AttributeValue::N(count)) => count.parse().unwrap_or(limit),
                _ => 0,
            };
            let room = limit.saturating_sub(seen).min(wanted);
            if room == 0 {
                return Ok(0);
            }
            let update = if seen == 0 {
                slot_update(second, room, limit, None)
            } else {
                slot_update(second, room, limit, Some(seen))
            };
            if self.update_count(key.clone(), update).await? {
                return Ok(room);
            }
        }
        Ok(0)
    }

    async fn tally_recovery(&self, recovery: Uuid, tally: Tally) -> Result<Progress, StoreError> {
        let mut update = Update::default();
        let counts = [
            (attr::SENT, tally.delivered + tally.failed),
            (attr::DELIVERED, tally.delivered),
            (attr::FAILED, tally.failed),
            (attr::SKIPPED, tally.skipped),
        ];
        for (field, count) in counts {
            let placeholder = format!(":{field}");
            update
                .add(field, &placeholder)
                .value(&placeholder, n(count));
        }
        self.update_recovery(recovery, update).await
    }

    async fn finish_recovery(&self, recovery: Uuid, at: Timestamp) -> Result<bool, StoreError> {
        let mut update = Update::default();
        update.set(attr::FINISHED_AT, to_value(&at)?);
        let finished = update.name(attr::FINISHED_AT);
        let pk = update.name(attr::PK);
        update.condition(format!(
            "attribute_exists({pk}) AND attribute_not_exists({finished})"
        ));
        self.update_count(recovery_key(recovery), update).await
    }
}

impl RecoveryStore for DynamoStore {
    async fn create_recovery(
        &self,
        recovery: &Recovery,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let item = serde_dynamo::to_item(RecoveryItem {
            pk: recovery_pk(recovery.id),
            sk: RECOVERY_SK.to_owned(),
            recovery: recovery.clone(),
            progress: Progress::default(),
            expires_at: expires_at.unix_seconds(),
        })
        .map_err(corrupt)?;
        if self.put_new(item).await? {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists)
        }
    }

    async fn get_recovery(
        &self,
        project: &ProjectCode,
        id: Uuid,
    ) -> Result<Option<(Recovery, Progress)>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(recovery_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let item: RecoveryItem = serde_dynamo::from_item(item).map_err(corrupt)?;
        Ok((item.recovery.project == *project).then_some((item.recovery, item.progress)))
    }

    async fn record_found(
        &self,
        recovery: &Recovery,
        seen: &[(Published, bool)],
        found_all: bool,
        expires_at: Timestamp,
    ) -> Result<Progress, StoreError> {
        // First sightings only: within this call, then against the marks.
        let mut first = HashSet::new();
        let seen: Vec<&(Published, bool)> = seen
            .iter()
            .filter(|(event, _)| first.insert(event.id))
            .collect();
        let ids: Vec<Uuid> = seen.iter().map(|(event, _)| event.id).collect();
        let marked = self.marked(recovery.id, &ids).await?;
        let new: Vec<&(Published, bool)> = seen
            .into_iter()
            .filter(|(event, _)| !marked.contains(&event.id))
            .collect();
        let items = new
            .iter()
            .map(|(event, settled)| {
                serde_dynamo::to_item(MarkItem {
                    pk: recovery_pk(recovery.id),
                    sk: format!("{RECOVERY_EVENT_SK_PREFIX}{}", event.id.hyphenated()),
                    event_id: event.id,
                    event_name: event.name,
                    settled: *settled,
                    expires_at: expires_at.unix_seconds(),
                })
                .map_err(corrupt)
            })
            .collect::<Result<Vec<Item>, _>>()?;
        self.batch_put(items).await?;
        let found = new.iter().filter(|(_, settled)| !settled).count();
        let mut update = Update::default();
        update.add(attr::FOUND, ":found").value(":found", n(found));
        if found_all {
            update.set(attr::FOUND_ALL, AttributeValue::Bool(true));
        }
        self.update_recovery(recovery.id, update).await
    }

    async fn found_events(
        &self,
        recovery: Uuid,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Page<Published, Uuid>, StoreError> {
        let mut items = Vec::new();
        let mut start = after.map(|event| recovery_mark_key(recovery, event));
        let mut next = None;
        loop {
            let wanted = limit.saturating_sub(items.len()).max(1);
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .filter_expression("#settled = :no")
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_names("#settled", attr::SETTLED)
                .expression_attribute_values(":pk", s(recovery_pk(recovery)))
                .expression_attribute_values(":prefix", s(RECOVERY_EVENT_SK_PREFIX))
                .expression_attribute_values(":no", AttributeValue::Bool(false))
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in out.items.unwrap_or_default() {
                let mark: MarkItem = serde_dynamo::from_item(item).map_err(corrupt)?;
                items.push(Published {
                    id: mark.event_id,
                    name: mark.event_name,
                });
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => {
                    if items.len() >= limit {
                        next = items.last().map(|event| event.id);
                        break;
                    }
                    start = Some(key);
                }
                _ => break,
            }
        }
        Ok(Page { items, next })
    }

    async fn record_queued(
        &self,
        recovery: Uuid,
        queued: u64,
        expired: u64,
        queued_all: bool,
    ) -> Result<Progress, StoreError> {
        let mut update = Update::default();
        update
            .add(attr::QUEUED, ":queued")
            .value(":queued", n(queued))
            .add(attr::EXPIRED, ":expired")
            .value(":expired", n(expired));
        if queued_all {
            update.set(attr::QUEUED_ALL, AttributeValue::Bool(true));
        }
        self.update_recovery(recovery, update).await
    }

    async fn events_between(
        &self,
        project: &ProjectCode,
        window: Window,
        after: Option<String>,
        limit: usize,
    ) -> Result<Page<Published, String>, StoreError> {
        let start = after.as_deref().and_then(decode_position);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(EVENTS_INDEX)
            .key_condition_expression("#pk = :pk AND #at BETWEEN :from AND :to")
            .expression_attribute_names("#pk", attr::EVENTS_PK)
            .expression_attribute_names("#at", EVENTS_SK)
            .expression_attribute_values(":pk", s(events_pk(project)))
            .expression_attribute_values(":from", to_value(&window.from)?)
            .expression_attribute_values(":to", to_value(&window.to)?)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(unavailable)?;
        let mut items = Vec::new();
        for item in out.items.unwrap_or_default() {
            let event: IndexedEvent = serde_dynamo::from_item(item).map_err(corrupt)?;
            // BETWEEN includes the end; the window does not.
            if event.created_at < window.to {
                items.push(Published {
                    id: event.id,
                    name: event.event_name,
                });
            }
        }
        let next = out
            .last_evaluated_key
            .filter(|key| !key.is_empty())
            .and_then(|key| encode_position(&key));
        Ok(Page { items, next })
    }

    async fn get_events(
        &self,
        project: &ProjectCode,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, StoredEvent>, StoreError> {
        let now = Timestamp::now().unix_seconds();
        let mut events = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_BATCH_GET) {
            let keys = chunk.iter().map(|id| event_key(*id)).collect();
            for item in self.batch_get(keys).await? {
                let item: EventItem = serde_dynamo::from_item(item).map_err(corrupt)?;
                if item.event.project == *project && item.expires_at > now {
                    events.insert(item.event.id, item.event);
                }
            }
        }
        Ok(events)
    }
}

/// An event as the `events` index holds it.
#[derive(serde::Deserialize)]
struct IndexedEvent {
    id: Uuid,
    event_name: EventName,
    created_at: Timestamp,
}

/// The position after an `events` index item, as text: the four key
/// attributes (the table's and the index's), all strings.
fn encode_position(key: &Item) -> Option<String> {
    let part = |name: &str| match key.get(name) {
        Some(AttributeValue::S(value)) => Some(value.as_str()),
        _ => None,
    };
    let parts = [
        part(attr::PK)?,
        part(attr::SK)?,
        part(attr::EVENTS_PK)?,
        part(EVENTS_SK)?,
    ];
    serde_json::to_string(&parts).ok()
}

fn decode_position(raw: &str) -> Option<Item> {
    let [pk, sk, events, at]: [String; 4] = serde_json::from_str(raw).ok()?;
    Some(Item::from([
        (attr::PK.to_owned(), s(pk)),
        (attr::SK.to_owned(), s(sk)),
        (attr::EVENTS_PK.to_owned(), s(events)),
        (EVENTS_SK.to_owned(), s(at)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_only_while_they_fit_and_expire() {
        let update = slot_update(1_800_000_000, 3, 7, None);
        assert_eq!(
            update.condition_expression().as_deref(),
            Some("(attribute_not_exists(#slots) OR #slots <= :room)")
        );
        assert_eq!(update.values[":room"], n(4));
        assert_eq!(update.values[":wanted"], n(3));
        assert_eq!(update.values[":expires_at"], n(1_800_000_120_i64));
        // On a count read back: only while it is still that count.
        let update = slot_update(1_800_000_000, 2, 7, Some(5));
        assert_eq!(
            update.condition_expression().as_deref(),
            Some("(#slots = :seen)")
        );
        assert_eq!(update.values[":seen"], n(5));
    }

    #[test]
    fn a_position_in_the_events_index_reads_back_as_written() {
        let key = Item::from([
            (attr::PK.to_owned(), s("EVENT#1")),
            (attr::SK.to_owned(), s("EVENT")),
            (attr::EVENTS_PK.to_owned(), s("EVENTS#P")),
            (EVENTS_SK.to_owned(), s("2026-12-01T10:00:00.000Z")),
        ]);
        let text = encode_position(&key).unwrap();
        assert_eq!(decode_position(&text), Some(key));
        assert_eq!(decode_position("[1]"), None);
        assert_eq!(decode_position("not json"), None);
    }
}
