//! [`SweepStore`]: the sweeper's queries of the sparse `failing` index, the
//! conditional disable, and the bookkeeping that sends each auto-disable
//! e-mail exactly once.

use aws_sdk_dynamodb::types::AttributeValue;

use super::schema::{
    DUE_PARTITION, FAILING_INDEX, FAILING_PARTITION, FAILING_SK, FAILURE_SUMMARY, Item,
    NOTICE_PARTITION, attr, notice_count_key, s,
};
use super::update::Update;
use super::{DynamoStore, from_webhook_item, is_condition_failure, to_value, unavailable};
use crate::domain::history::{Recovery, SuccessSearch};
use crate::domain::{ProjectCode, Timestamp, Webhook};
use crate::ports::{Found, StoreError, SweepStore};

impl DynamoStore {
    /// Every item of one partition of the `failing` index, following
    /// pagination; `before` bounds the sort key. Answers how many it read.
    async fn query_failing(
        &self,
        partition: &str,
        before: Option<Timestamp>,
    ) -> Result<Found<Webhook>, StoreError> {
        let mut found = Found {
            items: Vec::new(),
            read: 0,
        };
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(FAILING_INDEX)
                .expression_attribute_names("#pk", attr::FAILING_PK)
                .expression_attribute_values(":pk", s(partition))
                .set_exclusive_start_key(start.take());
            query = match before {
                Some(before) => query
                    .key_condition_expression("#pk = :pk AND #since < :before")
                    .expression_attribute_names("#since", FAILING_SK)
                    .expression_attribute_values(":before", to_value(&before)?),
                None => query.key_condition_expression("#pk = :pk"),
            };
            let out = query.send().await.map_err(unavailable)?;
            found.read += usize::try_from(out.scanned_count).unwrap_or_default();
            for item in out.items.unwrap_or_default() {
                found.items.push(from_webhook_item(item)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(found),
            }
        }
    }

    /// An update of the notice bookkeeping, only while the notice is pending
    /// and, given `claim`, still held by the sweep that claimed it then.
    async fn update_notice(
        &self,
        webhook: &Webhook,
        mut update: Update,
        claim: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        let failing = update.name(attr::FAILING_PK);
        update
            .condition(format!("{failing} = :notice"))
            .value(":notice", s(NOTICE_PARTITION));
        if let Some(claim) = claim {
            held_by(&mut update, claim)?;
        }
        self.update_webhook(&webhook.project, webhook.id, update)
            .await
            .map(|hook| hook.is_some())
    }

    /// Runs an update of a project's e-mail count for `day`; `false` when its
    /// condition did not hold.
    /// Applies a counter's conditional update to the item at `key`;
    /// `false` when its condition (the limit) kept it from applying.
    pub(super) async fn update_count(&self, key: Item, update: Update) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update.expression())
            .set_condition_expression(update.condition_expression())
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// The update `count_notice` makes: one more, only below the limit.
fn count_update(limit: u32, expires_at: Timestamp) -> Update {
    let mut update = Update::default();
    let sent = update.name(attr::NOTICES_SENT);
    update
        .add(attr::NOTICES_SENT, ":one")
        .set(
            attr::EXPIRES_AT,
            AttributeValue::N(expires_at.unix_seconds().to_string()),
        )
        .condition(format!("attribute_not_exists({sent}) OR {sent} < :limit"))
        .value(":one", AttributeValue::N("1".into()))
        .value(":limit", AttributeValue::N(limit.to_string()));
    update
}

/// Conditions `update` on the notice's claim being the one made at
/// `claimed_at`: a sweep finishes only the notice it claimed, never one a
/// re-enable and a new disable filed meanwhile.
fn held_by(update: &mut Update, claimed_at: Timestamp) -> Result<(), StoreError> {
    let claimed = update.name(attr::NOTICE_CLAIMED_AT);
    update
        .condition(format!("{claimed} = :claim"))
        .value(":claim", to_value(&claimed_at)?);
    Ok(())
}

/// The update `claim_notice` makes: the claim, unless another sweep holds a
/// claim made after `stale_before` or the notice waits for a later day.
fn claim_update(now: Timestamp, stale_before: Timestamp) -> Result<Update, StoreError> {
    let mut update = Update::default();
    let claimed = update.name(attr::NOTICE_CLAIMED_AT);
    let deferred = update.name(attr::NOTICE_DEFERRED_UNTIL);
    update
        .set(attr::NOTICE_CLAIMED_AT, to_value(&now)?)
        .condition(format!(
            "attribute_not_exists({claimed}) OR {claimed} < :stale"
        ))
        .condition(format!(
            "attribute_not_exists({deferred}) OR {deferred} <= :now"
        ))
        .value(":stale", to_value(&stale_before)?)
        .value(":now", to_value(&now)?);
    Ok(update)
}

/// Conditions `update` on the webhook being enabled, in the sweeper's
/// `FAILING` or `DUE` partition, and failing since `since`, as it was read.
fn still_failing_since(update: &mut Update, since: Timestamp) -> Result<(), StoreError> {
    let enabled = update.name(attr::ENABLED);
    let failing_since = update.name(FAILING_SK);
    let failing = update.name(attr::FAILING_PK);
    update
        .condition(format!("{enabled} = :on"))
        .condition(format!("{failing_since} = :since"))
        .condition(format!("{failing} IN (:failing, :due)"))
        .value(":on", AttributeValue::Bool(true))
        .value(":since", to_value(&since)?)
        .value(":failing", s(FAILING_PARTITION))
        .value(":due", s(DUE_PARTITION));
    Ok(())
}

/// The update `disable` makes: only while still enabled and failing since
/// the time the webhook was read with.
fn disable_update(since: Timestamp, at: Timestamp, reason: &str) -> Result<Update, StoreError> {
    let mut update = Update::default();
    update
        .set(attr::ENABLED, AttributeValue::Bool(false))
        .set(attr::DISABLED_AT, to_value(&at)?)
        .set(attr::DISABLED_REASON, s(reason))
        .set(attr::UPDATED_AT, to_value(&at)?)
        .set(attr::FAILING_PK, s(NOTICE_PARTITION))
        .remove(attr::NOTICE_CLAIMED_AT)
        .remove(attr::NOTICE_SENT_AT)
        .remove(attr::NOTICE_DEFERRED_UNTIL);
    still_failing_since(&mut update, since)?;
    Ok(update)
}

/// The update `recover` makes: only while the webhook is enabled, not yet
/// disabled by a sweep, and failing exactly as it was read.
fn recover_update(
    since: Timestamp,
    last_failure: Option<Timestamp>,
    recovery: Recovery,
) -> Result<Update, StoreError> {
    let mut update = Update::default();
    match recovery {
        Recovery::Clear => {
            for field in FAILURE_SUMMARY {
                update.remove(field);
            }
        }
        // Failures came after the success: they begin there, and a `DUE`
        // mark (a timeout with `DisableOnTimeout`, before the success as far
        // as the sweeper can tell) goes: the webhook is back on the window.
        Recovery::FailingSince(at) => {
            update
                .set(attr::FAILING_SINCE, to_value(&at)?)
                .set(attr::FAILING_PK, s(FAILING_PARTITION));
        }
    }
    still_failing_since(&mut update, since)?;
    let last = update.name(attr::LAST_FAILURE_AT);
    match last_failure {
        Some(at) => {
            update
                .condition(format!("{last} = :last"))
                .value(":last", to_value(&at)?);
        }
        None => {
            update.condition(format!("attribute_not_exists({last})"));
        }
    }
    Ok(update)
}

impl SweepStore for DynamoStore {
    async fn delivered_after(
        &self,
        webhook: &Webhook,
        since: Timestamp,
    ) -> Result<SuccessSearch, StoreError> {
        self.latest_delivery_after(webhook, since).await
    }

    async fn recover(&self, webhook: &Webhook, recovery: Recovery) -> Result<bool, StoreError> {
        let Some(since) = webhook.failing_since else {
            return Ok(false);
        };
        let update = recover_update(since, webhook.last_failure_at, recovery)?;
        self.update_webhook(&webhook.project, webhook.id, update)
            .await
            .map(|hook| hook.is_some())
    }

    async fn due(&self, cutoff: Timestamp) -> Result<Found<Webhook>, StoreError> {
        let mut found = self.query_failing(FAILING_PARTITION, Some(cutoff)).await?;
        let due = self.query_failing(DUE_PARTITION, None).await?;
        found.items.extend(due.items);
        found.read += due.read;
        Ok(found)
    }

    async fn disable(
        &self,
        webhook: &Webhook,
        at: Timestamp,
        reason: &str,
    ) -> Result<Option<Webhook>, StoreError> {
        let Some(since) = webhook.failing_since else {
            return Ok(None);
        };
        let update = disable_update(since, at, reason)?;
        self.update_webhook(&webhook.project, webhook.id, update)
            .await
    }

    async fn pending_notices(&self) -> Result<Vec<Webhook>, StoreError> {
        Ok(self.query_failing(NOTICE_PARTITION, None).await?.items)
    }

    async fn claim_notice(
        &self,
        webhook: &Webhook,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> Result<bool, StoreError> {
        self.update_notice(webhook, claim_update(now, stale_before)?, None)
            .await
    }

    async fn notice_sent(
        &self,
        webhook: &Webhook,
        claimed_at: Timestamp,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut update = Update::default();
        update
            .set(attr::NOTICE_SENT_AT, to_value(&at)?)
            .remove(attr::NOTICE_CLAIMED_AT)
            .remove(attr::NOTICE_DEFERRED_UNTIL)
            .remove(attr::FAILING_PK);
        self.update_notice(webhook, update, Some(claimed_at)).await
    }

    async fn release_notice(
        &self,
        webhook: &Webhook,
        claimed_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut update = Update::default();
        update.remove(attr::NOTICE_CLAIMED_AT);
        self.update_notice(webhook, update, Some(claimed_at)).await
    }

    async fn defer_notice(
        &self,
        webhook: &Webhook,
        claimed_at: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut update = Update::default();
        update
            .set(attr::NOTICE_DEFERRED_UNTIL, to_value(&until)?)
            .remove(attr::NOTICE_CLAIMED_AT);
        self.update_notice(webhook, update, Some(claimed_at)).await
    }

    async fn count_notice(
        &self,
        project: &ProjectCode,
        day: &str,
        limit: u32,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.update_count(
            notice_count_key(project, day),
            count_update(limit, expires_at),
        )
        .await
    }

    async fn uncount_notice(&self, project: &ProjectCode, day: &str) -> Result<(), StoreError> {
        let mut update = Update::default();
        let sent = update.name(attr::NOTICES_SENT);
        update
            .add(attr::NOTICES_SENT, ":minus_one")
            .condition(format!("{sent} > :zero"))
            .value(":minus_one", AttributeValue::N("-1".into()))
            .value(":zero", AttributeValue::N("0".into()));
        self.update_count(notice_count_key(project, day), update)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_an_e_mail_holds_only_below_the_limit_and_sets_the_expiry() {
        let at = Timestamp::parse("2026-12-01T00:00:00Z").unwrap();
        let update = count_update(20, at);
        assert_eq!(
            update.condition_expression().as_deref(),
            Some("(attribute_not_exists(#notices_sent) OR #notices_sent < :limit)")
        );
        assert_eq!(update.values[":limit"], AttributeValue::N("20".into()));
        assert_eq!(
            update.values[":expires_at"],
            AttributeValue::N(at.unix_seconds().to_string())
        );
        assert_eq!(
            update.expression(),
            "SET #expires_at = :expires_at ADD #notices_sent :one"
        );
    }

    #[test]
    fn recovering_holds_only_while_failing_exactly_as_read() {
        let since = Timestamp::parse("2026-11-20T00:00:00Z").unwrap();
        let last = Timestamp::parse("2026-11-21T00:00:00Z").unwrap();
        let update = recover_update(since, Some(last), Recovery::Clear).unwrap();
        assert_eq!(
            update.condition_expression().as_deref(),
            Some(
                "(#enabled = :on) AND (#failing_since = :since) AND (#failing_pk IN (:failing, :due)) AND (#last_failure_at = :last)"
            )
        );
        assert!(update.expression().starts_with("REMOVE #failing_since"));
        let moved = recover_update(since, None, Recovery::FailingSince(last)).unwrap();
        assert_eq!(
            moved.expression(),
            "SET #failing_since = :failing_since, #failing_pk = :failing_pk",
            "and a DUE mark goes"
        );
        assert_eq!(moved.values[":failing_pk"], s(FAILING_PARTITION));
        assert!(
            moved
                .condition_expression()
                .unwrap()
                .ends_with("(attribute_not_exists(#last_failure_at))")
        );
        assert_eq!(moved.values[":failing_since"], to_value(&last).unwrap());
    }

    #[test]
    fn disabling_files_the_notice_only_while_still_failing_since_the_read() {
        let now = Timestamp::now();
        let update = disable_update(now, now, "failing").unwrap();
        assert_eq!(
            update.condition_expression().as_deref(),
            Some(
                "(#enabled = :on) AND (#failing_since = :since) AND (#failing_pk IN (:failing, :due))"
            )
        );
        assert_eq!(update.values[":failing_pk"], s(NOTICE_PARTITION));
        assert!(
            update
                .expression()
                .contains("REMOVE #notice_claimed_at, #notice_sent_at")
        );
    }
}
