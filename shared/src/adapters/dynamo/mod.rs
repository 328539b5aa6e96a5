//! The webhook table in DynamoDB, one module per port:
//!
//! - [`schema`]: key formats, attribute names and the table definition;
//! - [`update`]: UpdateItem expressions over those names;
//! - `webhooks`, `tokens`, `delivery`, `history`, `sweep`, `rate`:
//!   [`WebhookStore`], [`TokenStore`], [`DeliveryStore`], [`HistoryStore`],
//!   [`SweepStore`] and [`RateStore`] for [`DynamoStore`].
//!
//! [`WebhookStore`]: crate::ports::WebhookStore
//! [`TokenStore`]: crate::ports::TokenStore
//! [`DeliveryStore`]: crate::ports::DeliveryStore
//! [`HistoryStore`]: crate::ports::HistoryStore
//! [`SweepStore`]: crate::ports::SweepStore
//! [`RateStore`]: crate::ports::RateStore

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::ReturnValue;
use serde::Serialize;

use crate::domain::{ProjectCode, SigningSecret, Timestamp, Webhook, WebhookId};
use crate::ports::{Rotation, StoreError, WebhookStore as _};

mod delivery;
mod history;
mod idempotency;
mod rate;
mod recovery;
pub mod schema;
mod sweep;
mod tokens;
pub(crate) mod update;
mod webhooks;

use schema::{Item, WebhookItem, attr};
use update::Update;

fn unavailable<E>(e: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::Unavailable(Box::new(e))
}

fn corrupt(e: serde_dynamo::Error) -> StoreError {
    StoreError::Corrupt(Box::new(e))
}

fn to_value<T: Serialize>(
    value: &T,
) -> Result<aws_sdk_dynamodb::types::AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(corrupt)
}

fn from_webhook_item(item: Item) -> Result<Webhook, StoreError> {
    serde_dynamo::from_item::<_, WebhookItem>(item)
        .map(|i| i.webhook)
        .map_err(corrupt)
}

/// True when the call failed only because its condition did not hold.
fn is_condition_failure<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// DynamoDB storage for webhooks and tokens.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// Puts `item` unless an item with its key exists: `false` then, and
    /// nothing changes.
    async fn put_new(&self, item: Item) -> Result<bool, StoreError> {
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(unavailable(err)),
        }
    }

    pub fn from_sdk(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), table)
    }

    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table with its keys and the `failing` index
    /// ([`schema`]). Used by tests and the local stack.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        schema::create_table(&self.client, &self.table).await
    }

    /// Runs an UpdateItem on an existing webhook, under the update's
    /// conditions; answers the webhook as updated, `None` when it is gone or
    /// a condition did not hold.
    async fn update_webhook(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        update: Update,
    ) -> Result<Option<Webhook>, StoreError> {
        self.update_webhook_answering(project, id, update, ReturnValue::AllNew)
            .await
    }

    /// As [`Self::update_webhook`], answering the webhook as it was before
    /// the update: what the update changed, without a second read.
    async fn update_webhook_before(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        update: Update,
    ) -> Result<Option<Webhook>, StoreError> {
        self.update_webhook_answering(project, id, update, ReturnValue::AllOld)
            .await
    }

    async fn update_webhook_answering(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        mut update: Update,
        answer: ReturnValue,
    ) -> Result<Option<Webhook>, StoreError> {
        let pk = update.name(attr::PK);
        update.condition(format!("attribute_exists({pk})"));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(schema::webhook_key(project, id)))
            .update_expression(update.expression())
            .set_condition_expression(update.condition_expression())
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values((!update.values.is_empty()).then_some(update.values))
            .return_values(answer)
            .send()
            .await;
        match result {
            Ok(out) => out.attributes.map(from_webhook_item).transpose(),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The webhook's signing secret, `fresh` stored first if it has none.
    /// `if_not_exists` makes it one atomic write: two callers at once both
    /// answer the one that was stored.
    async fn ensure_signing_secret(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        fresh: SigningSecret,
    ) -> Result<Option<Webhook>, StoreError> {
        let mut update = Update::default();
        let current = update.name(attr::SIGNING_SECRET);
        update
            .set_expr(
                attr::SIGNING_SECRET,
                &format!("if_not_exists({current}, :fresh)"),
            )
            .value(":fresh", to_value(&fresh)?);
        Ok(self
            .update_webhook(project, id, update)
            .await?
            .map(|mut hook| {
                hook.signing_secret.get_or_insert(fresh);
                hook
            }))
    }

    /// Makes `new` the signing secret; the replaced one (or, for a webhook
    /// that had none, `new` itself) keeps signing until `until`. Right-hand
    /// sides read the item before the update, so this is one atomic write.
    async fn rotate_signing(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        new: SigningSecret,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Rotation, StoreError> {
        let mut update = Update::default();
        let current = update.name(attr::SIGNING_SECRET);
        let previous_until = update.name(attr::PREVIOUS_SIGNING_UNTIL);
        update
            .set_expr(
                attr::PREVIOUS_SIGNING_SECRET,
                &format!("if_not_exists({current}, :signing_secret)"),
            )
            .set(attr::PREVIOUS_SIGNING_UNTIL, to_value(&until)?)
            .set(attr::SIGNING_SECRET, to_value(&new)?)
            .condition(format!(
                "attribute_not_exists({previous_until}) OR {previous_until} <= :now"
            ))
            .value(":now", to_value(&now)?);
        if self.update_webhook(project, id, update).await?.is_some() {
            return Ok(Rotation::Rotated(new));
        }
        // Gone, or a previous overlap still lasts: the read tells which.
        Ok(match self.get(project, id).await? {
            None => Rotation::NotFound,
            Some(hook) => Rotation::Overlapping {
                until: hook.previous_signing_until.unwrap_or(now),
            },
        })
    }
}
