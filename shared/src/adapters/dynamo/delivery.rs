//! [`DeliveryStore`]: the sender's one read per batch and its conditional
//! failure and recovery writes.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use uuid::Uuid;

use super::schema::{
    DUE_PARTITION, FAILING_PARTITION, FAILING_SK, FAILURE_SUMMARY, Item, NOTICE_PARTITION, attr,
    exhausted_key, n, s, webhook_key,
};
use super::update::Update;
use super::{DynamoStore, from_webhook_item, to_value, unavailable};
use crate::domain::delivery::GONE_REASON;
use crate::domain::{Attempt, FailureReason, SigningSecret, Timestamp, Webhook, WebhookId};
use crate::ports::{Cleared, DeliveryStore, StoreError, WebhookKey};

/// Most keys one `BatchGetItem` takes.
pub(super) const MAX_BATCH_GET: usize = 100;
/// Tries for keys DynamoDB leaves unprocessed (throttling), with backoff.
const UNPROCESSED_TRIES: u32 = 5;

impl DynamoStore {
    /// One `BatchGetItem` (per 100 keys), re-asking for unprocessed keys.
    pub(super) async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        let mut pending = keys;
        for attempt in 0..UNPROCESSED_TRIES {
            if pending.is_empty() {
                return Ok(found);
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(unavailable)?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(mut responses) = out.responses {
                found.extend(responses.remove(&self.table).unwrap_or_default());
            }
            if let Some(left) = out
                .unprocessed_keys
                .and_then(|mut unprocessed| unprocessed.remove(&self.table))
            {
                pending = left.keys;
            }
        }
        if pending.is_empty() {
            Ok(found)
        } else {
            Err(StoreError::Unavailable(
                format!("{} keys left unprocessed by BatchGetItem", pending.len()).into(),
            ))
        }
    }
}

/// The update `record_failure` makes.
fn failure_update(
    at: Timestamp,
    reason: &str,
    due_now: bool,
    failures: u32,
) -> Result<Update, StoreError> {
    let mut update = Update::default();
    if due_now {
        update.set(attr::FAILING_PK, s(DUE_PARTITION));
    } else {
        // A webhook already marked due stays due.
        let failing = update.name(attr::FAILING_PK);
        update
            .set_expr(
                attr::FAILING_PK,
                &format!("if_not_exists({failing}, :failing)"),
            )
            .value(":failing", s(FAILING_PARTITION));
    }
    let since = update.name(FAILING_SK);
    let count = update.name(attr::FAILURE_COUNT);
    let enabled = update.name(attr::ENABLED);
    update
        .set(attr::LAST_FAILURE_AT, to_value(&at)?)
        .set(attr::LAST_FAILURE_REASON, s(reason))
        // The first failure since the last success is kept.
        .set_expr(FAILING_SK, &format!("if_not_exists({since}, :at)"))
        .set_expr(
            attr::FAILURE_COUNT,
            &format!("if_not_exists({count}, :zero) + :count"),
        )
        // Only while enabled: a disabled webhook stays out of the index.
        .condition(format!("{enabled} = :on"))
        .value(":at", to_value(&at)?)
        .value(":zero", n(0))
        .value(":count", n(failures))
        .value(":on", AttributeValue::Bool(true));
    Ok(update)
}

/// The update `record_recovery` makes: only while the webhook is enabled and
/// owes no auto-disable e-mail. A sweep may have disabled it while the
/// successful POST was in flight; its notice (`NOTICE`) must survive. A
/// slow success keeps (or sets) the slow mark; a quick one removes it.
fn recovery_update(slow: bool, at: Timestamp) -> Result<Update, StoreError> {
    let mut update = Update::default();
    for field in FAILURE_SUMMARY {
        update.remove(field);
    }
    if slow {
        let marked = update.name(attr::SLOW_SINCE);
        update
            .set_expr(
                attr::SLOW_SINCE,
                &format!("if_not_exists({marked}, :slow_at)"),
            )
            .value(":slow_at", to_value(&at)?);
    } else {
        update.remove(attr::SLOW_SINCE);
    }
    let enabled = update.name(attr::ENABLED);
    let failing = update.name(attr::FAILING_PK);
    update
        .condition(format!("{enabled} = :on"))
        .condition(format!(
            "attribute_not_exists({failing}) OR {failing} <> :notice"
        ))
        .value(":on", AttributeValue::Bool(true))
        .value(":notice", s(NOTICE_PARTITION));
    Ok(update)
}

/// The update `mark_slow` makes: the first mark is kept; only while
/// enabled.
fn slow_update(at: Timestamp) -> Result<Update, StoreError> {
    let mut update = Update::default();
    let marked = update.name(attr::SLOW_SINCE);
    let enabled = update.name(attr::ENABLED);
    update
        .set_expr(
            attr::SLOW_SINCE,
            &format!("if_not_exists({marked}, :slow_at)"),
        )
        .condition(format!("{enabled} = :on"))
        .value(":slow_at", to_value(&at)?)
        .value(":on", AttributeValue::Bool(true));
    Ok(update)
}

/// The update `disable_gone` makes: disabled, the failure recorded, the
/// e-mail pending in the sweeper's `NOTICE` partition (which needs
/// `failing_since`, the index's sort key); only while enabled.
fn gone_update(at: Timestamp) -> Result<Update, StoreError> {
    let mut update = Update::default();
    let enabled = update.name(attr::ENABLED);
    let since = update.name(attr::FAILING_SINCE);
    update
        .set(attr::ENABLED, AttributeValue::Bool(false))
        .set(attr::DISABLED_AT, to_value(&at)?)
        .set(attr::DISABLED_REASON, s(GONE_REASON))
        .set(attr::UPDATED_AT, to_value(&at)?)
        .set(attr::LAST_FAILURE_AT, to_value(&at)?)
        .set(
            attr::LAST_FAILURE_REASON,
            s(FailureReason::Status(410).to_string()),
        )
        .set_expr(
            attr::FAILING_SINCE,
            &format!("if_not_exists({since}, :gone_at)"),
        )
        .set(attr::FAILING_PK, s(NOTICE_PARTITION))
        .add(attr::FAILURE_COUNT, ":one")
        .remove(attr::NOTICE_CLAIMED_AT)
        .remove(attr::NOTICE_SENT_AT)
        .remove(attr::NOTICE_DEFERRED_UNTIL)
        .condition(format!("{enabled} = :on"))
        .value(":on", AttributeValue::Bool(true))
        .value(":one", AttributeValue::N("1".into()))
        .value(":gone_at", to_value(&at)?);
    Ok(update)
}

impl DeliveryStore for DynamoStore {
    async fn get_many(
        &self,
        keys: &[WebhookKey],
    ) -> Result<HashMap<WebhookId, Webhook>, StoreError> {
        let mut unique: Vec<&WebhookKey> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        let mut webhooks = HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(MAX_BATCH_GET) {
            let keys = chunk
                .iter()
                .map(|(project, id)| webhook_key(project, *id))
                .collect();
            for item in self.batch_get(keys).await? {
                let hook = from_webhook_item(item)?;
                webhooks.insert(hook.id, hook);
            }
        }
        Ok(webhooks)
    }

    async fn record_failures(
        &self,
        webhook: &Webhook,
        at: Timestamp,
        reason: &str,
        due_now: bool,
        count: u32,
    ) -> Result<bool, StoreError> {
        let update = failure_update(at, reason, due_now, count)?;
        // The webhook before the write: without a failure, this one began it.
        Ok(self
            .update_webhook_before(&webhook.project, webhook.id, update)
            .await?
            .is_some_and(|before| before.failing_since.is_none()))
    }

    async fn record_recovery(
        &self,
        webhook: &Webhook,
        slow: bool,
        at: Timestamp,
    ) -> Result<Option<Cleared>, StoreError> {
        let update = recovery_update(slow, at)?;
        Ok(self
            .update_webhook_before(&webhook.project, webhook.id, update)
            .await?
            .and_then(|before| {
                Some(Cleared {
                    failing_since: before.failing_since?,
                    failures: before.failure_count,
                })
            }))
    }

    async fn mark_slow(&self, webhook: &Webhook, at: Timestamp) -> Result<(), StoreError> {
        self.update_webhook(&webhook.project, webhook.id, slow_update(at)?)
            .await
            .map(drop)
    }

    async fn assign_signing_secret(
        &self,
        webhook: &Webhook,
        fresh: SigningSecret,
    ) -> Result<SigningSecret, StoreError> {
        self.ensure_signing_secret(&webhook.project, webhook.id, fresh)
            .await?
            .and_then(|hook| hook.signing_secret)
            .ok_or(StoreError::NotFound)
    }

    async fn record_attempts(
        &self,
        attempts: &[Attempt],
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.write_attempts(attempts, expires_at).await
    }

    async fn disable_gone(&self, webhook: &Webhook, at: Timestamp) -> Result<bool, StoreError> {
        self.update_webhook(&webhook.project, webhook.id, gone_update(at)?)
            .await
            .map(|hook| hook.is_some())
    }

    async fn claim_exhausted(
        &self,
        _webhook: &Webhook,
        delivery: Uuid,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut item = exhausted_key(delivery);
        item.insert(attr::EXPIRES_AT.to_owned(), n(until.unix_seconds()));
        self.put_new(item).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_first_failing_since_and_counts() {
        let update = failure_update(Timestamp::now(), "HTTP 503", false, 3).unwrap();
        let expr = update.expression();
        assert!(
            expr.contains("#failing_since = if_not_exists(#failing_since, :at)"),
            "{expr}"
        );
        assert!(
            expr.contains("#failure_count = if_not_exists(#failure_count, :zero) + :count"),
            "{expr}"
        );
        assert_eq!(
            update.values[":count"],
            n(3),
            "a run of 3 failures counts 3"
        );
        assert!(
            expr.contains("#failing_pk = if_not_exists(#failing_pk, :failing)"),
            "{expr}"
        );
        assert_eq!(
            update.condition_expression().as_deref(),
            Some("(#enabled = :on)")
        );
        let due = failure_update(Timestamp::now(), "timeout", true, 1).unwrap();
        assert_eq!(due.values[":failing_pk"], s(DUE_PARTITION));
    }

    #[test]
    fn a_recovery_holds_only_while_enabled_and_no_notice_is_owed() {
        let update = recovery_update(false, Timestamp::now()).unwrap();
        assert_eq!(
            update.condition_expression().as_deref(),
            Some(
                "(#enabled = :on) AND (attribute_not_exists(#failing_pk) OR #failing_pk <> :notice)"
            )
        );
        assert_eq!(update.values[":notice"], s(NOTICE_PARTITION));
    }
}
