//! [`WebhookStore`]: the config API's webhooks, and the per-project counter
//! kept in the same transaction as create and delete.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::error::TransactionCanceledException;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};

use super::schema::{
    FAILURE_STATE, NOTICE_PARTITION, WEBHOOK_SK_PREFIX, attr, counter_key, n, project_pk, s,
    webhook_item, webhook_key,
};
use super::update::Update;
use super::{DynamoStore, corrupt, from_webhook_item, to_value, unavailable};
use crate::domain::{
    MAX_WEBHOOKS_PER_PROJECT, ProjectCode, SigningSecret, Timestamp, Webhook, WebhookChanges,
    WebhookId,
};
use crate::ports::{Page, Rotation, StoreError, Updated, WebhookStore};

fn canceled(err: &TransactWriteItemsError) -> Option<&TransactionCanceledException> {
    match err {
        TransactWriteItemsError::TransactionCanceledException(e) => Some(e),
        _ => None,
    }
}

/// Whether the transaction was cancelled because the condition of its
/// `index`-th item did not hold.
fn condition_failed<R>(
    err: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>,
    index: usize,
) -> bool {
    err.as_service_error()
        .and_then(canceled)
        .and_then(|e| e.cancellation_reasons().get(index))
        .and_then(|r| r.code())
        .is_some_and(|c| c == "ConditionalCheckFailed")
}

/// The counter update of a transaction, as the SDK's transaction item.
fn counter_update(
    table: &str,
    project: &ProjectCode,
    update: Update,
) -> Result<aws_sdk_dynamodb::types::Update, StoreError> {
    aws_sdk_dynamodb::types::Update::builder()
        .table_name(table)
        .set_key(Some(counter_key(project)))
        .update_expression(update.expression())
        .set_condition_expression(update.condition_expression())
        .set_expression_attribute_names(Some(update.names))
        .set_expression_attribute_values(Some(update.values))
        .build()
        .map_err(unavailable)
}

/// The update for `changes`, without the re-enable bookkeeping.
pub(super) fn changes_update(
    changes: &WebhookChanges,
    now: Timestamp,
) -> Result<Update, StoreError> {
    let mut update = Update::default();
    update.set(attr::UPDATED_AT, to_value(&now)?);
    if let Some(title) = &changes.title {
        update.set(attr::TITLE, s(title.clone()));
    }
    if let Some(endpoint) = &changes.endpoint {
        update.set(attr::ENDPOINT, s(endpoint.as_str()));
    }
    match &changes.secret {
        Some(Some(secret)) => {
            update.set(attr::SECRET, s(secret.expose()));
        }
        Some(None) => {
            update.remove(attr::SECRET);
        }
        None => {}
    }
    match &changes.headers {
        Some(headers) if headers.is_empty() => {
            update.remove(attr::HEADERS);
        }
        Some(headers) => {
            update.set(attr::HEADERS, to_value(headers)?);
        }
        None => {}
    }
    if let Some(events) = &changes.events {
        update.set(attr::EVENTS, to_value(events)?);
    }
    if let Some(emails) = &changes.notify_emails {
        update.set(attr::NOTIFY_EMAILS, to_value(emails)?);
    }
    if let Some(policy) = &changes.retry_policy {
        update.set(attr::RETRY_POLICY, to_value(policy)?);
    }
    if changes.enabled == Some(false) {
        // The history stays visible; `update` takes it out of the index.
        // When it was disabled is kept from the first disable (a sweep's,
        // or this one), for the span a replay of missed events covers.
        update.set(attr::ENABLED, AttributeValue::Bool(false));
        let disabled_at = update.name(attr::DISABLED_AT);
        update.set_expr(
            attr::DISABLED_AT,
            &format!("if_not_exists({disabled_at}, :updated_at)"),
        );
    }
    Ok(update)
}

/// Tries an update that turns a webhook on gets before it answers a conflict.
const ENABLE_TRIES: usize = 3;

impl DynamoStore {
    /// Applies `changes` with `enabled: true`, and answers the webhook
    /// enabled, or [`StoreError::Conflict`]; never a success it did not make.
    /// A disabled webhook is re-enabled with its failure state cleared; an
    /// enabled one keeps its failure history and gets the other changes,
    /// only while it is still enabled. A sweep that disables it between the
    /// two attempts sends the loop round again.
    async fn enable(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        changes: &WebhookChanges,
        now: Timestamp,
    ) -> Result<Updated, StoreError> {
        for _ in 0..ENABLE_TRIES {
            let mut update = changes_update(changes, now)?;
            update.set(attr::ENABLED, AttributeValue::Bool(true));
            // The span it was disabled, for a replay of what it missed.
            let disabled_at = update.name(attr::DISABLED_AT);
            update
                .set_expr(
                    attr::LAST_DISABLED_FROM,
                    &format!("if_not_exists({disabled_at}, :updated_at)"),
                )
                .set_expr(attr::LAST_DISABLED_UNTIL, ":updated_at");
            for field in FAILURE_STATE {
                update.remove(field);
            }
            let enabled = update.name(attr::ENABLED);
            update
                .condition(format!("{enabled} = :off"))
                .value(":off", AttributeValue::Bool(false));
            if let Some(webhook) = self.update_webhook(project, id, update).await? {
                return Ok(Updated {
                    webhook,
                    re_enabled: true,
                });
            }
            let mut update = changes_update(changes, now)?;
            let enabled = update.name(attr::ENABLED);
            update
                .condition(format!("{enabled} = :on"))
                .value(":on", AttributeValue::Bool(true));
            if let Some(webhook) = self.update_webhook(project, id, update).await? {
                return Ok(Updated {
                    webhook,
                    re_enabled: false,
                });
            }
            if self.get(project, id).await?.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        Err(StoreError::Conflict)
    }
}

impl WebhookStore for DynamoStore {
    async fn create(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(webhook_item(webhook).map_err(corrupt)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .build()
            .map_err(unavailable)?;
        let mut count = Update::default();
        let counter = count.name(attr::WEBHOOK_COUNT);
        count
            .set_expr(
                attr::WEBHOOK_COUNT,
                &format!("if_not_exists({counter}, :zero) + :one"),
            )
            .condition(format!(
                "attribute_not_exists({counter}) OR {counter} < :max"
            ))
            .value(":zero", n(0))
            .value(":one", n(1))
            .value(":max", n(MAX_WEBHOOKS_PER_PROJECT));
        let count = counter_update(&self.table, &webhook.project, count)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(count).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err, 1) => {
                Err(StoreError::LimitReached(MAX_WEBHOOKS_PER_PROJECT))
            }
            Err(err) if condition_failed(&err, 0) => Err(StoreError::AlreadyExists),
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn get(
        &self,
        project: &ProjectCode,
        id: WebhookId,
    ) -> Result<Option<Webhook>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(webhook_key(project, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item.map(from_webhook_item).transpose()
    }

    async fn list(
        &self,
        project: &ProjectCode,
        limit: u32,
        after: Option<WebhookId>,
    ) -> Result<Page<Webhook>, StoreError> {
        let limit = limit.clamp(1, MAX_WEBHOOKS_PER_PROJECT);
        // One more than asked tells whether another page follows, without
        // handing out a cursor to an empty page.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", s(project_pk(project)))
            .expression_attribute_values(":prefix", s(WEBHOOK_SK_PREFIX))
            .set_exclusive_start_key(after.map(|id| webhook_key(project, id)))
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let mut items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_webhook_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|w| w.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn update(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        changes: &WebhookChanges,
        now: Timestamp,
    ) -> Result<Updated, StoreError> {
        if changes.enabled == Some(true) {
            return self.enable(project, id, changes, now).await;
        }
        if changes.enabled == Some(false) {
            // Out of the sweeper's index while disabled, unless the sweeper
            // still owes the owner the auto-disable e-mail (`NOTICE`): then
            // the notice keeps its place (the plain update below).
            let mut update = changes_update(changes, now)?;
            let failing = update.name(attr::FAILING_PK);
            update
                .remove(attr::FAILING_PK)
                .condition(format!(
                    "attribute_not_exists({failing}) OR {failing} <> :notice"
                ))
                .value(":notice", s(NOTICE_PARTITION));
            if let Some(webhook) = self.update_webhook(project, id, update).await? {
                return Ok(Updated {
                    webhook,
                    re_enabled: false,
                });
            }
        }
        self.update_webhook(project, id, changes_update(changes, now)?)
            .await?
            .map(|webhook| Updated {
                webhook,
                re_enabled: false,
            })
            .ok_or(StoreError::NotFound)
    }

    async fn delete(&self, project: &ProjectCode, id: WebhookId) -> Result<(), StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(webhook_key(project, id)))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .build()
            .map_err(unavailable)?;
        let mut count = Update::default();
        count
            .add(attr::WEBHOOK_COUNT, ":minus_one")
            .value(":minus_one", n(-1));
        let count = counter_update(&self.table, project, count)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(TransactWriteItem::builder().update(count).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err, 0) => Err(StoreError::NotFound),
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn signing_secret(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        fresh: SigningSecret,
    ) -> Result<Option<Webhook>, StoreError> {
        self.ensure_signing_secret(project, id, fresh).await
    }

    async fn rotate_signing_secret(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        new: SigningSecret,
        now: Timestamp,
        overlap_until: Timestamp,
    ) -> Result<Rotation, StoreError> {
        self.rotate_signing(project, id, new, now, overlap_until)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_expression_sets_only_what_changed() {
        let changes = WebhookChanges {
            title: Some("New".into()),
            secret: Some(None),
            ..WebhookChanges::default()
        };
        let update = changes_update(&changes, Timestamp::now()).unwrap();
        assert_eq!(
            update.expression(),
            "SET #updated_at = :updated_at, #title = :title REMOVE #secret"
        );
        assert!(!update.names.contains_key("#endpoint"));
    }

    #[test]
    fn disabling_sets_enabled_and_leaves_the_index_to_update() {
        let changes = WebhookChanges {
            enabled: Some(false),
            ..WebhookChanges::default()
        };
        let expr = changes_update(&changes, Timestamp::now())
            .unwrap()
            .expression();
        assert!(expr.contains("#enabled = :enabled"), "{expr}");
        assert!(!expr.contains(attr::FAILING_PK), "{expr}");
    }

    fn shared_retry() -> crate::domain::RetryPolicy {
        crate::domain::RetryPolicy::Standard
    }

    #[test]
    fn every_field_a_change_can_write_is_a_webhook_attribute() {
        let changes = WebhookChanges {
            title: Some("t".into()),
            endpoint: Some("https://example.com/".parse().unwrap()),
            secret: Some(None),
            headers: Some(Default::default()),
            events: Some(Default::default()),
            notify_emails: Some(vec![]),
            enabled: Some(false),
            retry_policy: Some(shared_retry()),
        };
        let update = changes_update(&changes, Timestamp::now()).unwrap();
        for name in update.names.values() {
            assert!(
                super::super::schema::WEBHOOK_ATTRIBUTES.contains(&name.as_str()),
                "{name}"
            );
        }
        // The nine fields, and `disabled_at` a disable keeps from the first.
        assert_eq!(update.names.len(), 10);
        assert!(
            update
                .expression()
                .contains("#disabled_at = if_not_exists(#disabled_at, :updated_at)"),
            "{}",
            update.expression()
        );
    }
}
