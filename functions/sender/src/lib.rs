//! The sender: one POST per queued delivery.
//!
//! Each SQS record is decoded on its own; the batch's webhooks are read in one
//! `BatchGetItem`; deliveries run concurrently under a limit; each outcome is
//! recorded on its webhook. Endpoint failures are acknowledged (Qase does not
//! retry); only internal faults before a POST come back as batch item
//! failures, for SQS to retry and finally dead-letter.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::stream::{self, StreamExt};
use shared::adapters::HttpPoster;
use shared::config::{ConfigError, Env};
use shared::domain::delivery::{DEFAULT_DEADLINE, decide, eligible};
use shared::domain::{AddressPolicy, DeliveryMessage, Outcome, Record, Timestamp, Webhook};
use shared::ports::{DeliveryStore, WebhookKey};

pub mod poller;

/// Deliveries in flight at once, by default: a whole SQS batch.
pub const DEFAULT_CONCURRENCY: usize = 10;

/// The sender's configuration, from the environment.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub table_name: String,
    /// `DELIVERY_DEADLINE`, default 15s: connect, send, response head.
    pub deadline: Duration,
    /// `SENDER_CONCURRENCY`, default 10.
    pub concurrency: usize,
    /// `ENDPOINT_ALLOW_CIDRS`, empty (off) by default.
    pub addresses: AddressPolicy,
    /// `DISABLE_ON_TIMEOUT`, default false.
    pub disable_on_timeout: bool,
}

impl SenderConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: env.required("TABLE_NAME")?,
            deadline: env.duration("DELIVERY_DEADLINE", DEFAULT_DEADLINE)?,
            concurrency: env.count("SENDER_CONCURRENCY", DEFAULT_CONCURRENCY)?,
            addresses: AddressPolicy::with_allow_list(env.cidrs("ENDPOINT_ALLOW_CIDRS")?),
            disable_on_timeout: env.flag("DISABLE_ON_TIMEOUT", false)?,
        })
    }
}

/// The sender with its clients, built once per cold start.
#[derive(Debug)]
pub struct Sender<S> {
    store: S,
    http: HttpPoster,
    concurrency: usize,
    disable_on_timeout: bool,
}

impl<S: DeliveryStore> Sender<S> {
    pub fn new(store: S, http: HttpPoster, concurrency: usize) -> Self {
        Self {
            store,
            http,
            concurrency: concurrency.max(1),
            disable_on_timeout: false,
        }
    }

    /// Makes a timeout mark the webhook due for disabling at the next sweep.
    pub fn disable_on_timeout(mut self, on: bool) -> Self {
        self.disable_on_timeout = on;
        self
    }

    /// Handles one SQS batch; answers the records SQS should deliver again.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut retry = Vec::new();
        let mut messages = Vec::with_capacity(event.records.len());
        for record in event.records {
            let id = record.message_id.unwrap_or_default();
            match DeliveryMessage::decode(record.body.as_deref().unwrap_or_default()) {
                Ok(message) => messages.push((id, message)),
                Err(err) => {
                    tracing::error!(message_id = %id, error = %shared::error_chain(&err), "undecodable record; returned to the queue");
                    retry.push(id);
                }
            }
        }
        let keys: Vec<WebhookKey> = messages
            .iter()
            .map(|(_, m)| (m.project.clone(), m.webhook_id))
            .collect();
        let webhooks = if keys.is_empty() {
            HashMap::new()
        } else {
            match self.store.get_many(&keys).await {
                Ok(found) => found,
                Err(err) => {
                    tracing::error!(error = %shared::error_chain(&err), records = messages.len(), "could not load webhooks; batch returned to the queue");
                    retry.extend(messages.into_iter().map(|(id, _)| id));
                    return response(retry);
                }
            }
        };
        // Every decoded record is acknowledged once attempted: endpoint
        // failures are recorded, not retried, and a POST is never repeated.
        stream::iter(messages)
            .for_each_concurrent(self.concurrency, |(_, message)| {
                let webhook = webhooks
                    .get(&message.webhook_id)
                    .filter(|hook| hook.project == message.project);
                self.deliver(message, webhook)
            })
            .await;
        response(retry)
    }

    /// One delivery: check, POST, record. Never POSTs twice: once sent, the
    /// record is acknowledged whatever the bookkeeping does.
    pub async fn deliver(&self, message: DeliveryMessage, webhook: Option<&Webhook>) {
        let webhook = match eligible(webhook, message.event_name) {
            Ok(webhook) => webhook,
            Err(skip) => {
                tracing::info!(
                    delivery_id = %message.delivery_id,
                    project = %message.project,
                    webhook_id = %message.webhook_id,
                    event_name = %message.event_name,
                    outcome = skip.as_str(),
                    "delivery"
                );
                return;
            }
        };
        let started = Instant::now();
        let DeliveryMessage {
            delivery_id,
            project,
            event_name,
            envelope,
            ..
        } = message;
        let outcome = self
            .http
            .post(
                &webhook.endpoint,
                delivery_id,
                event_name,
                envelope,
                webhook.secret.as_ref(),
            )
            .await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let recorded = match decide(webhook, &outcome, Timestamp::now(), self.disable_on_timeout) {
            Record::Nothing => Ok(()),
            Record::Recovered => self.store.record_recovery(webhook).await,
            Record::Failure {
                at,
                reason,
                due_now,
            } => {
                self.store
                    .record_failure(webhook, at, &reason, due_now)
                    .await
            }
        };
        if let Err(err) = recorded {
            tracing::error!(delivery_id = %delivery_id, webhook_id = %webhook.id, error = %shared::error_chain(&err), "could not record the outcome");
        }
        let (result, reason) = match &outcome {
            Outcome::Delivered { .. } => ("delivered", None),
            Outcome::Failed { reason } => ("failed", Some(reason.to_string())),
        };
        tracing::info!(
            delivery_id = %delivery_id,
            project = %project,
            webhook_id = %webhook.id,
            event_name = %event_name,
            outcome = result,
            reason,
            status = outcome.status(),
            latency_ms,
            "delivery"
        );
    }
}

fn response(ids: Vec<String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = ids
        .into_iter()
        .map(|item_identifier| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = item_identifier;
            failure
        })
        .collect();
    response
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn defaults_are_a_15_second_deadline_and_a_whole_batch_at_once() {
        let vars = HashMap::from([("TABLE_NAME", "t")]);
        let lookup = |k: &str| vars.get(k).map(|v| v.to_string());
        let config = SenderConfig::from_env(&Env::new(&lookup)).unwrap();
        assert_eq!(config.deadline, Duration::from_secs(15));
        assert_eq!(config.concurrency, 10);
        assert_eq!(config.addresses, AddressPolicy::public_only());
        assert!(!config.disable_on_timeout);
    }
}
