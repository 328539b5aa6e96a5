//! [`IdempotencyStore`]: one item per publish key (`IDEMPOTENCY#<project>#<key>`),
//! claimed by a conditional put, taken over by a conditional update when
//! its publish failed part way or died, settled under the claim that holds
//! it; kept for the key's window by TTL.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;

use super::schema::{Item, attr, idempotency_key, n, s};
use super::update::Update;
use super::{DynamoStore, is_condition_failure, to_value, unavailable};
use crate::domain::idempotency::claim_is_stale;
use crate::domain::{IdempotencyKey, ProjectCode, Timestamp, WebhookId};
use crate::ports::{IdempotencyStore, PublishAttempt, PublishClaim, StoreError};

const CLAIMED: &str = "claimed";
const PARTIAL: &str = "partial";
const DONE: &str = "done";

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

fn number(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

fn queued(item: &Item) -> BTreeSet<WebhookId> {
    match item.get(attr::QUEUED) {
        Some(AttributeValue::Ss(ids)) => ids.iter().filter_map(|id| WebhookId::parse(id)).collect(),
        _ => BTreeSet::new(),
    }
}

/// What an earlier publish with the key left, for a claim at `now` of the
/// body `fingerprint`: settled (done, another body, under way), or to take
/// over (its publish failed part way or died) from the claim it was made
/// under.
fn earlier(item: &Item, fingerprint: &str, now: Timestamp) -> Result<Earlier, StoreError> {
    if text(item, attr::FINGERPRINT) != Some(fingerprint) {
        return Ok(Earlier::Settled(PublishClaim::Mismatch));
    }
    let event_id = text(item, attr::EVENT_ID)
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .ok_or_else(|| StoreError::Corrupt("an idempotency item without its event".into()))?;
    let claimed_at = text(item, attr::CLAIMED_AT)
        .and_then(Timestamp::parse)
        .ok_or_else(|| StoreError::Corrupt("an idempotency item without its claim".into()))?;
    match text(item, attr::PUBLISH_STATE) {
        Some(DONE) => Ok(Earlier::Settled(PublishClaim::Done {
            event_id,
            deliveries: queued(item).len(),
        })),
        Some(CLAIMED) if !claim_is_stale(claimed_at, now) => {
            Ok(Earlier::Settled(PublishClaim::InProgress))
        }
        _ => Ok(Earlier::TakeOver {
            claimed_at,
            resume: PublishClaim::Resume {
                event_id,
                timestamp: number(item, attr::EVENT_TIMESTAMP).ok_or_else(|| {
                    StoreError::Corrupt("an idempotency item without its timestamp".into())
                })?,
                queued: queued(item),
            },
        }),
    }
}

enum Earlier {
    Settled(PublishClaim),
    TakeOver {
        claimed_at: Timestamp,
        resume: PublishClaim,
    },
}

impl DynamoStore {
    async fn put_claim(
        &self,
        project: &ProjectCode,
        key: &IdempotencyKey,
        attempt: PublishAttempt<'_>,
    ) -> Result<bool, StoreError> {
        let mut item = idempotency_key(project, key.as_str());
        item.insert(attr::FINGERPRINT.into(), s(attempt.fingerprint));
        item.insert(attr::EVENT_ID.into(), s(attempt.event_id.to_string()));
        item.insert(attr::EVENT_TIMESTAMP.into(), n(attempt.timestamp));
        item.insert(attr::PUBLISH_STATE.into(), s(CLAIMED));
        item.insert(attr::CLAIMED_AT.into(), to_value(&attempt.now)?);
        item.insert(
            attr::EXPIRES_AT.into(),
            n(attempt.expires_at.unix_seconds()),
        );
        // New, or an expired one the TTL has not removed yet.
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #expires_at <= :now")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#expires_at", attr::EXPIRES_AT)
            .expression_attribute_values(":now", n(attempt.now.unix_seconds()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(unavailable(err)),
        }
    }
}

impl IdempotencyStore for DynamoStore {
    async fn claim_publish(
        &self,
        project: &ProjectCode,
        key: &IdempotencyKey,
        attempt: PublishAttempt<'_>,
    ) -> Result<PublishClaim, StoreError> {
        if self.put_claim(project, key, attempt).await? {
            return Ok(PublishClaim::Fresh);
        }
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(idempotency_key(project, key.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?
            .item
            // Removed by the TTL between the two calls: a claim again would
            // race nothing new; say so and let the client repeat.
            .ok_or(StoreError::Conflict)?;
        let (claimed_at, resume) = match earlier(&item, attempt.fingerprint, attempt.now)? {
            Earlier::Settled(claim) => return Ok(claim),
            Earlier::TakeOver { claimed_at, resume } => (claimed_at, resume),
        };
        // Take it over, unless another repeat did first.
        let mut update = Update::default();
        let claim = update.name(attr::CLAIMED_AT);
        update
            .set(attr::PUBLISH_STATE, s(CLAIMED))
            .set(attr::CLAIMED_AT, to_value(&attempt.now)?)
            .condition(format!("{claim} = :held"))
            .value(":held", to_value(&claimed_at)?);
        if self
            .update_count(idempotency_key(project, key.as_str()), update)
            .await?
        {
            Ok(resume)
        } else {
            Ok(PublishClaim::InProgress)
        }
    }

    async fn settle_publish(
        &self,
        project: &ProjectCode,
        key: &IdempotencyKey,
        claimed_at: Timestamp,
        queued: &[WebhookId],
        done: bool,
    ) -> Result<(), StoreError> {
        let mut update = Update::default();
        let claim = update.name(attr::CLAIMED_AT);
        update
            .set(attr::PUBLISH_STATE, s(if done { DONE } else { PARTIAL }))
            .condition(format!("{claim} = :held"))
            .value(":held", to_value(&claimed_at)?);
        if !queued.is_empty() {
            update.add(attr::QUEUED, ":queued").value(
                ":queued",
                AttributeValue::Ss(queued.iter().map(ToString::to_string).collect()),
            );
        }
        if self
            .update_count(idempotency_key(project, key.as_str()), update)
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }
}
