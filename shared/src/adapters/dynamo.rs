//! The webhook table in DynamoDB. One table holds everything:
//!
//! | item            | `pk`              | `sk`            | notes |
//! |-----------------|-------------------|-----------------|-------|
//! | webhook         | `PROJECT#<code>`  | `WEBHOOK#<id>`  | ids are UUIDv7: a Query lists in creation order |
//! | project counter | `PROJECT#<code>`  | `PROJECT`       | `webhook_count`, kept in the same transaction as create/delete |
//! | token           | `TOKEN#<id>`      | `TOKEN`         | the id is a prefix of the token's SHA-256: one GetItem per request |
//!
//! The sparse global secondary index `failing` has partition key
//! `failing_pk` and sort key `failing_since`. Only webhooks the sweeper has
//! work for carry `failing_pk`: `FAILING` (enabled and failing), `DUE`
//! (marked due at once by the sender) and `NOTICE` (auto-disabled, e-mail
//! pending). "Failing since before T" is one Query over exactly those
//! webhooks, never a Scan of the table.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::error::TransactionCanceledException;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, ScalarAttributeType, TransactWriteItem,
};
use serde::{Deserialize, Serialize};

use crate::domain::{
    MAX_WEBHOOKS_PER_PROJECT, ProjectCode, Timestamp, TokenHash, TokenId, TokenRecord, Webhook,
    WebhookChanges, WebhookId,
};
use crate::ports::{
    DeliveryStore, Found, Page, StoreError, SweepStore, TokenStore, WebhookKey, WebhookStore,
};

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const FAILING_INDEX: &str = "failing";
pub const FAILING_PK: &str = "failing_pk";
pub const FAILING_SK: &str = "failing_since";
/// `failing_pk` of an enabled webhook that is failing.
pub const FAILING_PARTITION: &str = "FAILING";
/// `failing_pk` of a webhook the sender marked due for disabling at once.
pub const DUE_PARTITION: &str = "DUE";
/// `failing_pk` of an auto-disabled webhook whose e-mail is not sent yet.
pub const NOTICE_PARTITION: &str = "NOTICE";
const NOTICE_CLAIMED_AT: &str = "notice_claimed_at";
const NOTICE_SENT_AT: &str = "notice_sent_at";

const COUNTER_SK: &str = "PROJECT";
const TOKEN_SK: &str = "TOKEN";

type Item = HashMap<String, AttributeValue>;

fn project_pk(project: &ProjectCode) -> String {
    format!("PROJECT#{project}")
}

fn webhook_sk(id: WebhookId) -> String {
    format!("WEBHOOK#{id}")
}

fn token_pk(id: &TokenId) -> String {
    format!("TOKEN#{id}")
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

#[derive(Serialize, Deserialize)]
struct WebhookItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    webhook: Webhook,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failing_pk: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct TokenItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    record: TokenRecord,
}

fn unavailable<E>(e: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::Unavailable(Box::new(e))
}

fn corrupt(e: serde_dynamo::Error) -> StoreError {
    StoreError::Corrupt(Box::new(e))
}

fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(corrupt)
}

fn to_value<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(corrupt)
}

fn from_webhook_item(item: Item) -> Result<Webhook, StoreError> {
    serde_dynamo::from_item::<_, WebhookItem>(item)
        .map(|i| i.webhook)
        .map_err(corrupt)
}

fn canceled(err: &TransactWriteItemsError) -> Option<&TransactionCanceledException> {
    match err {
        TransactWriteItemsError::TransactionCanceledException(e) => Some(e),
        _ => None,
    }
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

    /// Creates the table with its keys and the `failing` index, on-demand
    /// billing: the definition `template.yaml` also declares. Used by tests and
    /// the local stack.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attr = |name: &str| {
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
            .key_schema(key(FAILING_PK, KeyType::Hash)?)
            .key_schema(key(FAILING_SK, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(unavailable)?;
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(PK)?)
            .attribute_definitions(attr(SK)?)
            .attribute_definitions(attr(FAILING_PK)?)
            .attribute_definitions(attr(FAILING_SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .global_secondary_indexes(index)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn counter_key(&self, project: &ProjectCode) -> Item {
        key(project_pk(project), COUNTER_SK.to_owned())
    }

    /// Runs an UpdateItem on an existing webhook; `NotFound` if it is gone.
    async fn update_webhook(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        update: Update,
        extra_condition: Option<&str>,
    ) -> Result<Option<Webhook>, StoreError> {
        let condition = match extra_condition {
            Some(extra) => format!("attribute_exists({PK}) AND {extra}"),
            None => format!("attribute_exists({PK})"),
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(project_pk(project), webhook_sk(id))))
            .update_expression(update.expression())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values((!update.values.is_empty()).then_some(update.values))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => out.attributes.map(from_webhook_item).transpose(),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// An UpdateItem expression under construction: `SET` and `REMOVE` clauses
/// with their placeholders.
#[derive(Default)]
struct Update {
    sets: Vec<String>,
    removes: Vec<String>,
    names: HashMap<String, String>,
    values: Item,
}

impl Update {
    fn set(&mut self, field: &str, value: AttributeValue) -> &mut Self {
        self.names.insert(format!("#{field}"), field.to_owned());
        self.values.insert(format!(":{field}"), value);
        self.sets.push(format!("#{field} = :{field}"));
        self
    }

    /// `SET #field = <rhs>`, where `rhs` is an expression over placeholders.
    fn set_expr(&mut self, field: &str, rhs: &str) -> &mut Self {
        self.names.insert(format!("#{field}"), field.to_owned());
        self.sets.push(format!("#{field} = {rhs}"));
        self
    }

    fn remove(&mut self, field: &str) -> &mut Self {
        self.names.insert(format!("#{field}"), field.to_owned());
        self.removes.push(format!("#{field}"));
        self
    }

    fn value(&mut self, placeholder: &str, value: AttributeValue) -> &mut Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }

    fn expression(&self) -> String {
        let mut clauses = Vec::with_capacity(2);
        if !self.sets.is_empty() {
            clauses.push(format!("SET {}", self.sets.join(", ")));
        }
        if !self.removes.is_empty() {
            clauses.push(format!("REMOVE {}", self.removes.join(", ")));
        }
        clauses.join(" ")
    }
}

/// The fields that make up the failure state, cleared on re-enable.
const FAILURE_STATE: [&str; 9] = [
    "failing_since",
    "last_failure_at",
    "last_failure_reason",
    "failure_count",
    "disabled_at",
    "disabled_reason",
    FAILING_PK,
    NOTICE_CLAIMED_AT,
    NOTICE_SENT_AT,
];

fn changes_update(changes: &WebhookChanges, now: Timestamp) -> Result<Update, StoreError> {
    let mut update = Update::default();
    update.set("updated_at", to_value(&now)?);
    if let Some(title) = &changes.title {
        update.set("title", s(title.clone()));
    }
    if let Some(endpoint) = &changes.endpoint {
        update.set("endpoint", s(endpoint.as_str()));
    }
    match &changes.secret {
        Some(Some(secret)) => {
            update.set("secret", s(secret.expose()));
        }
        Some(None) => {
            update.remove("secret");
        }
        None => {}
    }
    if let Some(events) = &changes.events {
        update.set("events", to_value(events)?);
    }
    if let Some(emails) = &changes.notify_emails {
        update.set("notify_emails", to_value(emails)?);
    }
    if changes.enabled == Some(false) {
        // The history stays visible; `update` takes it out of the index.
        update.set("enabled", AttributeValue::Bool(false));
    }
    Ok(update)
}

impl WebhookStore for DynamoStore {
    async fn create(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let item = to_item(&WebhookItem {
            pk: project_pk(&webhook.project),
            sk: webhook_sk(webhook.id),
            webhook: webhook.clone(),
            failing_pk: None,
        })?;
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!("attribute_not_exists({PK})"))
            .build()
            .map_err(unavailable)?;
        let count = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .set_key(Some(self.counter_key(&webhook.project)))
            .update_expression("SET webhook_count = if_not_exists(webhook_count, :zero) + :one")
            .condition_expression("attribute_not_exists(webhook_count) OR webhook_count < :max")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(MAX_WEBHOOKS_PER_PROJECT))
            .build()
            .map_err(unavailable)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(count).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let reasons: Vec<Option<String>> = err
                    .as_service_error()
                    .and_then(canceled)
                    .map(|e| {
                        e.cancellation_reasons()
                            .iter()
                            .map(|r| r.code().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let failed = |i: usize| {
                    reasons
                        .get(i)
                        .and_then(|c| c.as_deref())
                        .is_some_and(|c| c == "ConditionalCheckFailed")
                };
                if failed(1) {
                    Err(StoreError::LimitReached(MAX_WEBHOOKS_PER_PROJECT))
                } else if failed(0) {
                    Err(StoreError::AlreadyExists)
                } else {
                    Err(unavailable(err))
                }
            }
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
            .set_key(Some(key(project_pk(project), webhook_sk(id))))
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
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(project_pk(project)))
            .expression_attribute_values(":prefix", s("WEBHOOK#"))
            .set_exclusive_start_key(after.map(|id| key(project_pk(project), webhook_sk(id))))
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
    ) -> Result<Webhook, StoreError> {
        if changes.enabled == Some(true) {
            // Turning a disabled webhook back on clears its failure state.
            // The condition makes this a no-op on an enabled one, whose
            // failure history must survive an unrelated edit.
            let mut update = changes_update(changes, now)?;
            update.set("enabled", AttributeValue::Bool(true));
            for field in FAILURE_STATE {
                update.remove(field);
            }
            update.value(":off", AttributeValue::Bool(false));
            if let Some(hook) = self
                .update_webhook(project, id, update, Some("enabled = :off"))
                .await?
            {
                return Ok(hook);
            }
        }
        if changes.enabled == Some(false) {
            // Out of the sweeper's index while disabled, unless the sweeper
            // still owes the owner the auto-disable e-mail (`NOTICE`).
            let mut update = changes_update(changes, now)?;
            update
                .remove(FAILING_PK)
                .value(":notice", s(NOTICE_PARTITION));
            let not_owed =
                format!("(attribute_not_exists(#{FAILING_PK}) OR #{FAILING_PK} <> :notice)");
            if let Some(hook) = self
                .update_webhook(project, id, update, Some(&not_owed))
                .await?
            {
                return Ok(hook);
            }
        }
        self.update_webhook(project, id, changes_update(changes, now)?, None)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn delete(&self, project: &ProjectCode, id: WebhookId) -> Result<(), StoreError> {
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(project_pk(project), webhook_sk(id))))
            .condition_expression(format!("attribute_exists({PK})"))
            .build()
            .map_err(unavailable)?;
        let count = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .set_key(Some(self.counter_key(project)))
            .update_expression("ADD webhook_count :minus_one")
            .expression_attribute_values(":minus_one", n(-1))
            .build()
            .map_err(unavailable)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(TransactWriteItem::builder().update(count).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let missing = err
                    .as_service_error()
                    .and_then(canceled)
                    .and_then(|e| e.cancellation_reasons().first())
                    .and_then(|r| r.code())
                    .is_some_and(|c| c == "ConditionalCheckFailed");
                if missing {
                    Err(StoreError::NotFound)
                } else {
                    Err(unavailable(err))
                }
            }
        }
    }
}

impl TokenStore for DynamoStore {
    async fn put_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let item = to_item(&TokenItem {
            pk: token_pk(&record.id),
            sk: TOKEN_SK.to_owned(),
            record: record.clone(),
        })?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!("attribute_not_exists({PK})"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::AlreadyExists),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(token_pk(&hash.id()), TOKEN_SK.to_owned())))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let record = serde_dynamo::from_item::<_, TokenItem>(item)
            .map_err(corrupt)?
            .record;
        Ok(record.matches(hash).then_some(record))
    }

    async fn revoke_token(&self, project: &ProjectCode, id: &TokenId) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(token_pk(id), TOKEN_SK.to_owned())))
            .condition_expression("#project = :project")
            .expression_attribute_names("#project", "project")
            .expression_attribute_values(":project", s(project.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::NotFound),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// Most keys one `BatchGetItem` takes.
const MAX_BATCH_GET: usize = 100;
/// Tries for keys DynamoDB leaves unprocessed (throttling), with backoff.
const UNPROCESSED_TRIES: u32 = 5;

impl DynamoStore {
    /// One `BatchGetItem` (per 100 keys), re-asking for unprocessed keys.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        let mut pending = keys;
        for attempt in 0..UNPROCESSED_TRIES {
            if pending.is_empty() {
                return Ok(found);
            }
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
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
                .map(|(project, id)| key(project_pk(project), webhook_sk(*id)))
                .collect();
            for item in self.batch_get(keys).await? {
                let hook = from_webhook_item(item)?;
                webhooks.insert(hook.id, hook);
            }
        }
        Ok(webhooks)
    }

    async fn record_failure(
        &self,
        webhook: &Webhook,
        at: Timestamp,
        reason: &str,
        due_now: bool,
    ) -> Result<(), StoreError> {
        let mut update = Update::default();
        if due_now {
            update.set(FAILING_PK, s(DUE_PARTITION));
        } else {
            // A webhook already marked due stays due.
            update
                .set_expr(
                    FAILING_PK,
                    &format!("if_not_exists(#{FAILING_PK}, :failing)"),
                )
                .value(":failing", s(FAILING_PARTITION));
        }
        update
            .set("last_failure_at", to_value(&at)?)
            .set("last_failure_reason", s(reason))
            // The first failure since the last success is kept.
            .set_expr(FAILING_SK, &format!("if_not_exists(#{FAILING_SK}, :at)"))
            .set_expr(
                "failure_count",
                "if_not_exists(#failure_count, :zero) + :one",
            )
            .value(":at", to_value(&at)?)
            .value(":zero", n(0))
            .value(":one", n(1))
            .value(":on", AttributeValue::Bool(true));
        update.names.insert("#enabled".into(), "enabled".into());
        // Only while enabled: a disabled webhook stays out of the index.
        self.update_webhook(&webhook.project, webhook.id, update, Some("#enabled = :on"))
            .await
            .map(drop)
    }

    async fn record_recovery(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let mut update = Update::default();
        for field in [
            "failing_since",
            "last_failure_at",
            "last_failure_reason",
            "failure_count",
            FAILING_PK,
        ] {
            update.remove(field);
        }
        self.update_webhook(&webhook.project, webhook.id, update, None)
            .await
            .map(drop)
    }
}

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
                .expression_attribute_names("#pk", FAILING_PK)
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

    /// An update of the notice bookkeeping, only while the notice is pending.
    async fn update_notice(
        &self,
        webhook: &Webhook,
        mut update: Update,
        extra: Option<&str>,
    ) -> Result<bool, StoreError> {
        update
            .names
            .insert(format!("#{FAILING_PK}"), FAILING_PK.to_owned());
        update.value(":notice", s(NOTICE_PARTITION));
        let condition = match extra {
            Some(extra) => format!("#{FAILING_PK} = :notice AND ({extra})"),
            None => format!("#{FAILING_PK} = :notice"),
        };
        self.update_webhook(&webhook.project, webhook.id, update, Some(&condition))
            .await
            .map(|hook| hook.is_some())
    }
}

impl SweepStore for DynamoStore {
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
        let mut update = Update::default();
        update
            .set("enabled", AttributeValue::Bool(false))
            .set("disabled_at", to_value(&at)?)
            .set("disabled_reason", s(reason))
            .set("updated_at", to_value(&at)?)
            .set(FAILING_PK, s(NOTICE_PARTITION))
            .remove(NOTICE_CLAIMED_AT)
            .remove(NOTICE_SENT_AT)
            .value(":on", AttributeValue::Bool(true))
            .value(":since", to_value(&since)?)
            .value(":failing", s(FAILING_PARTITION))
            .value(":due", s(DUE_PARTITION));
        update
            .names
            .insert(format!("#{FAILING_SK}"), FAILING_SK.to_owned());
        let condition = format!(
            "#enabled = :on AND #{FAILING_SK} = :since AND #{FAILING_PK} IN (:failing, :due)"
        );
        self.update_webhook(&webhook.project, webhook.id, update, Some(&condition))
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
        let mut update = Update::default();
        update
            .set(NOTICE_CLAIMED_AT, to_value(&now)?)
            .value(":stale", to_value(&stale_before)?);
        let free =
            format!("attribute_not_exists(#{NOTICE_CLAIMED_AT}) OR #{NOTICE_CLAIMED_AT} < :stale");
        self.update_notice(webhook, update, Some(&free)).await
    }

    async fn notice_sent(&self, webhook: &Webhook, at: Timestamp) -> Result<(), StoreError> {
        let mut update = Update::default();
        update
            .set(NOTICE_SENT_AT, to_value(&at)?)
            .remove(NOTICE_CLAIMED_AT)
            .remove(FAILING_PK);
        self.update_notice(webhook, update, None).await.map(drop)
    }

    async fn release_notice(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let mut update = Update::default();
        update.remove(NOTICE_CLAIMED_AT);
        self.update_notice(webhook, update, None).await.map(drop)
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
        assert!(!expr.contains("failing_pk"), "{expr}");
    }
}
