//! The sender: one POST per queued delivery.
//!
//! Each SQS record is decoded on its own; the batch's webhooks are read in one
//! `BatchGetItem`; deliveries run concurrently under a limit; each outcome is
//! recorded on its webhook. Each delivery ends in a [`Verdict`]; the batch
//! response lists the records whose verdict returns them to the queue. Endpoint
//! failures are acknowledged (Qase does not retry); only internal faults before
//! a POST come back, for SQS to retry and finally dead-letter.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::stream::{self, StreamExt};
use shared::adapters::HttpPoster;
use shared::config::{ConfigError, Env};
use shared::domain::delivery::{
    DEFAULT_DEADLINE, RECORD_MARGIN, Skip, decide, eligible, may_start, prepare,
};
use shared::domain::history::masked_headers;
use shared::domain::retry::{
    MAX_QUEUE_DELAY, STANDARD_SCHEDULE, hop_delay, parse_retry_after, random_jitter, retry_delay,
};
use shared::domain::{
    AddressPolicy, Attempt, DeliveryLog, DeliveryMessage, FailureRules, Fault, Outcome, Record,
    RetryPolicy, SigningSecret, Timestamp, Trigger, Verdict, Webhook,
};
use shared::ports::{DeliveryQueue, DeliveryStore, EnqueueError, StoreError, WebhookKey};
use tokio::time::timeout_at;

pub mod poller;

/// Deliveries in flight at once, by default: a whole SQS batch.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// The sender function's timeout in `template.yaml` (a test compares them),
/// which local pollers give each batch too.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// `DISABLE_ON_TIMEOUT` and `DISABLE_ON_GONE`, both false by default.
    pub rules: FailureRules,
    /// `DELIVERY_QUEUE_URL`: where retries are queued. Without it, webhooks
    /// with `retry_policy: "standard"` get one attempt too.
    pub queue_url: Option<String>,
    /// `RETRY_SCHEDULE`: comma-separated waits (`5s,5m,30m`), the standard
    /// schedule by default; tests shorten it.
    pub retry_schedule: Vec<Duration>,
    /// `DELIVERY_LOG_DAYS`: how long attempts are kept in the delivery
    /// history, default 30; 0 records none.
    pub delivery_log: DeliveryLog,
}

impl SenderConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: env.required("TABLE_NAME")?,
            deadline: env.duration("DELIVERY_DEADLINE", DEFAULT_DEADLINE)?,
            concurrency: env.count("SENDER_CONCURRENCY", DEFAULT_CONCURRENCY)?,
            addresses: AddressPolicy::with_allow_list(env.cidrs("ENDPOINT_ALLOW_CIDRS")?),
            rules: FailureRules {
                disable_on_timeout: env.flag("DISABLE_ON_TIMEOUT", false)?,
                disable_on_gone: env.flag("DISABLE_ON_GONE", false)?,
            },
            queue_url: env.optional("DELIVERY_QUEUE_URL"),
            retry_schedule: match env.optional("RETRY_SCHEDULE") {
                None => STANDARD_SCHEDULE.to_vec(),
                Some(raw) => raw
                    .split(',')
                    .map(|part| humantime::parse_duration(part.trim()).ok())
                    .collect::<Option<Vec<_>>>()
                    .filter(|schedule| !schedule.is_empty())
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "RETRY_SCHEDULE",
                        reason: format!("expected waits such as 5s,5m,30m, got {raw:?}"),
                    })?,
            },
            delivery_log: env.delivery_log()?,
        })
    }
}

/// Where retries go: the delivery queue, and the waits between attempts.
#[derive(Debug)]
pub struct Retries<Q> {
    pub queue: Q,
    pub schedule: Vec<Duration>,
}

/// No queue: every delivery is one attempt.
#[derive(Debug, Clone, Copy)]
pub struct NoRetries;

impl DeliveryQueue for NoRetries {
    async fn enqueue(&self, bodies: Vec<String>) -> Result<usize, EnqueueError> {
        Err(EnqueueError {
            queued: 0,
            total: bodies.len(),
            source: None,
        })
    }

    async fn enqueue_delayed(&self, _body: String, _delay: Duration) -> Result<(), EnqueueError> {
        Err(EnqueueError {
            queued: 0,
            total: 1,
            source: None,
        })
    }
}

/// The sender with its clients, built once per cold start.
#[derive(Debug)]
pub struct Sender<S, Q = NoRetries> {
    store: S,
    http: HttpPoster,
    concurrency: usize,
    rules: FailureRules,
    retries: Option<Retries<Q>>,
    history: DeliveryLog,
}

impl<S: DeliveryStore> Sender<S> {
    /// A sender that records no delivery history and queues no retries.
    pub fn new(store: S, http: HttpPoster, concurrency: usize) -> Self {
        Self {
            store,
            http,
            concurrency: concurrency.max(1),
            rules: FailureRules::default(),
            retries: None,
            history: DeliveryLog::off(),
        }
    }

    /// Queues retries of failed deliveries to webhooks with
    /// `retry_policy: "standard"`, on `schedule`.
    pub fn with_retries<Q: DeliveryQueue>(self, queue: Q, schedule: Vec<Duration>) -> Sender<S, Q> {
        Sender {
            store: self.store,
            http: self.http,
            concurrency: self.concurrency,
            rules: self.rules,
            retries: Some(Retries { queue, schedule }),
            history: self.history,
        }
    }
}

impl<S: DeliveryStore, Q: DeliveryQueue> Sender<S, Q> {
    /// What to do about timeouts and 410 Gone beyond recording them.
    pub fn with_rules(mut self, rules: FailureRules) -> Self {
        self.rules = rules;
        self
    }

    /// Records every attempt in the delivery history, kept as `log` says.
    pub fn with_history(mut self, log: DeliveryLog) -> Self {
        self.history = log;
        self
    }

    /// Handles one SQS batch within an invocation that ends at `ends`;
    /// answers the records SQS should deliver again: those whose [`Verdict`]
    /// returns them to the queue. Every AWS call is bounded so that the
    /// handler answers before `ends`; a POST that could not end and be
    /// recorded in time is not started.
    pub async fn handle(&self, event: SqsEvent, ends: Instant) -> SqsBatchResponse {
        let mut verdicts = Vec::with_capacity(event.records.len());
        let mut messages = Vec::with_capacity(event.records.len());
        for record in event.records {
            let id = record.message_id.unwrap_or_default();
            match DeliveryMessage::decode(record.body.as_deref().unwrap_or_default()) {
                Ok(message) => messages.push((id, message)),
                Err(err) => {
                    tracing::error!(message_id = %id, error = %shared::error_chain(&err), "undecodable record; returned to the queue");
                    verdicts.push((id, Verdict::Returned(Fault::Undecodable)));
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
            let read_by = ends.checked_sub(RECORD_MARGIN).unwrap_or(ends);
            let read = timeout_at(read_by.into(), self.store.get_many(&keys)).await;
            match read.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the read of the batch's webhooks timed out".into(),
                ))
            }) {
                Ok(found) => found,
                Err(err) => {
                    tracing::error!(error = %shared::error_chain(&err), records = messages.len(), "could not load webhooks; batch returned to the queue");
                    verdicts.extend(
                        messages
                            .into_iter()
                            .map(|(id, _)| (id, Verdict::Returned(Fault::StoreUnavailable))),
                    );
                    return response(&verdicts);
                }
            }
        };
        let sent: Vec<(String, (Verdict, Option<Attempt>))> = stream::iter(messages)
            .map(|(id, message)| {
                let webhook = webhooks
                    .get(&message.webhook_id)
                    .filter(|hook| hook.project == message.project);
                async move { (id, self.deliver(message, webhook, ends).await) }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut attempts = Vec::with_capacity(sent.len());
        for (id, (verdict, attempt)) in sent {
            verdicts.push((id, verdict));
            attempts.extend(attempt);
        }
        self.record_attempts(&attempts, ends).await;
        response(&verdicts)
    }

    /// Adds the batch's attempts to the delivery history in one call,
    /// bounded by the invocation; a failure is logged (the deliveries stand).
    async fn record_attempts(&self, attempts: &[Attempt], ends: Instant) {
        let Some(expires_at) = self.history.expires_at(Timestamp::now()) else {
            return;
        };
        if attempts.is_empty() {
            return;
        }
        let written = timeout_at(
            ends.into(),
            self.store.record_attempts(attempts, expires_at),
        )
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "recording the history did not finish before the invocation's deadline".into(),
            ))
        });
        if let Err(err) = written {
            tracing::error!(attempts = attempts.len(), error = %shared::error_chain(&err), "could not record the delivery history");
        }
    }

    /// One delivery: check, prepare, POST, record; answers the verdict and,
    /// with the history on, the attempt's record (none for a message that
    /// goes back to the queue or waits, and none for a deleted webhook).
    /// Never POSTs twice: once sent, the record is acknowledged whatever the
    /// bookkeeping does. Starts the POST only if it can end and be recorded
    /// before `ends`.
    pub async fn deliver(
        &self,
        message: DeliveryMessage,
        webhook: Option<&Webhook>,
        ends: Instant,
    ) -> (Verdict, Option<Attempt>) {
        let webhook = match eligible(webhook, message.event_name, message.trigger) {
            Ok(webhook) => webhook,
            Err(skip) => {
                let attempt = (self.history.is_on() && skip != Skip::Deleted)
                    .then(|| Attempt::of(&message, Timestamp::now()).skipped(skip));
                return (unsent(&message, Verdict::Skipped(skip)), attempt);
            }
        };
        // A retry that is not due yet hops through the queue again.
        if let (Some(retries), Some(not_before)) = (&self.retries, message.not_before)
            && let Some(delay) = hop_delay(Timestamp::now(), not_before)
        {
            let verdict = match self.requeue(retries, &message, delay, ends).await {
                Ok(()) => Verdict::Deferred,
                Err(()) => Verdict::Returned(Fault::QueueUnavailable),
            };
            return (unsent(&message, verdict), None);
        }
        let signing = match &webhook.signing_secret {
            Some(secret) => Cow::Borrowed(secret),
            None => match self.assign_signing_secret(webhook, ends).await {
                Ok(secret) => Cow::Owned(secret),
                Err(err) => {
                    tracing::error!(delivery_id = %message.delivery_id, webhook_id = %webhook.id, error = %shared::error_chain(&*err), "could not give the webhook a signing secret; returned to the queue");
                    return (
                        unsent(&message, Verdict::Returned(Fault::StoreUnavailable)),
                        None,
                    );
                }
            },
        };
        let started = Instant::now();
        if !may_start(started, ends, self.http.deadline()) {
            return (unsent(&message, Verdict::Returned(Fault::OutOfTime)), None);
        }
        let entry = self
            .history
            .is_on()
            .then(|| Attempt::of(&message, Timestamp::now()));
        let (delivery_id, project, event_name, attempt) = (
            message.delivery_id,
            message.project.clone(),
            message.event_name,
            message.attempt,
        );
        // What a retry would carry: the same delivery and bytes. A
        // redelivery or ping a person asked for is one attempt.
        let next = (webhook.retry_policy == RetryPolicy::Standard
            && message.trigger == Trigger::Event
            && self.retries.is_some())
        .then(|| message.clone());
        let mut headers = Default::default();
        let answer = match prepare(webhook, &signing, message, Timestamp::now()) {
            Ok(dispatch) => {
                if entry.is_some() {
                    headers = masked_headers(&dispatch.headers);
                }
                self.http.send_for_answer(dispatch).await
            }
            Err(reason) => Outcome::Failed { reason }.into(),
        };
        let latency = started.elapsed();
        let entry = entry.map(|e| {
            e.sent(headers, &answer.outcome, latency, &answer.body)
                .masking(webhook.secret.as_ref())
        });
        let outcome = answer.outcome;
        let latency_ms = latency.as_millis() as u64;
        let record = decide(webhook, &outcome, Timestamp::now(), self.rules);
        let disabled_now = matches!(record, Record::Gone { .. });
        // Bounded by the invocation: an unfinished write is logged, and the
        // delivery is still acknowledged (it was sent). A healthy delivery
        // writes nothing and sets no timer.
        let recorded = match record {
            Record::Nothing => Ok(()),
            record => timeout_at(ends.into(), self.record(webhook, record))
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unavailable(
                        "recording did not finish before the invocation's deadline".into(),
                    ))
                }),
        };
        if let Err(err) = recorded {
            tracing::error!(delivery_id = %delivery_id, webhook_id = %webhook.id, error = %shared::error_chain(&err), "could not record the outcome");
        }
        // The next attempt, for a webhook that asked for retries (a 410 that
        // disabled it gets none). If it cannot be queued, this attempt goes
        // back to the queue instead, so the delivery is not lost.
        let mut retry_in = None;
        let mut verdict = None;
        if let (Outcome::Failed { .. }, Some(next), Some(retries)) = (&outcome, next, &self.retries)
            && !disabled_now
        {
            let now = Timestamp::now();
            let asked = answer
                .retry_after
                .as_deref()
                .and_then(|raw| parse_retry_after(raw, now));
            if let Some(wait) = retry_delay(&retries.schedule, attempt, random_jitter(), asked) {
                let retry = next.into_retry(now.after(wait));
                match self
                    .requeue(retries, &retry, wait.min(MAX_QUEUE_DELAY), ends)
                    .await
                {
                    Ok(()) => retry_in = Some(wait.as_millis() as u64),
                    Err(()) => verdict = Some(Verdict::Returned(Fault::QueueUnavailable)),
                }
            }
        }
        let reason = match &outcome {
            Outcome::Delivered { .. } => None,
            Outcome::Failed { reason } => Some(reason.to_string()),
        };
        let status = outcome.status();
        let verdict = verdict.unwrap_or(Verdict::Sent(outcome));
        tracing::info!(
            delivery_id = %delivery_id,
            project = %project,
            webhook_id = %webhook.id,
            event_name = %event_name,
            attempt,
            outcome = verdict.label(),
            reason,
            status,
            latency_ms,
            retry_in_ms = retry_in,
            "delivery"
        );
        (verdict, entry)
    }

    /// Queues `message` again, invisible for `delay`.
    /// Bounded by the invocation's end, like every AWS call of the handler.
    async fn requeue(
        &self,
        retries: &Retries<Q>,
        message: &DeliveryMessage,
        delay: Duration,
        ends: Instant,
    ) -> Result<(), ()> {
        let body = message.encode().map_err(|err| {
            tracing::error!(delivery_id = %message.delivery_id, error = %err, "could not encode the retry");
        })?;
        match timeout_at(ends.into(), retries.queue.enqueue_delayed(body, delay)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                tracing::error!(delivery_id = %message.delivery_id, error = %shared::error_chain(&err), "could not queue the retry; the attempt goes back to the queue");
                Err(())
            }
            Err(_) => {
                tracing::error!(delivery_id = %message.delivery_id, "queueing the retry did not finish before the invocation's deadline; the attempt goes back to the queue");
                Err(())
            }
        }
    }
}

impl<S: DeliveryStore, Q: DeliveryQueue> Sender<S, Q> {
    /// A signing secret for a webhook stored before deliveries were signed,
    /// stored before the first signed delivery; bounded by the invocation.
    async fn assign_signing_secret(
        &self,
        webhook: &Webhook,
        ends: Instant,
    ) -> Result<SigningSecret, Box<dyn std::error::Error + Send + Sync>> {
        let fresh = SigningSecret::generate()?;
        let by = ends.checked_sub(RECORD_MARGIN).unwrap_or(ends);
        Ok(timeout_at(by.into(), self.store.assign_signing_secret(webhook, fresh)).await??)
    }

    async fn record(&self, webhook: &Webhook, record: Record) -> Result<(), StoreError> {
        match record {
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
            Record::Gone { at } => {
                tracing::warn!(webhook_id = %webhook.id, project = %webhook.project, "the endpoint answered 410 Gone; webhook disabled");
                self.store.disable_gone(webhook, at).await
            }
        }
    }
}

/// Logs a delivery that ends without a POST, and answers its verdict.
fn unsent(message: &DeliveryMessage, verdict: Verdict) -> Verdict {
    tracing::info!(
        delivery_id = %message.delivery_id,
        project = %message.project,
        webhook_id = %message.webhook_id,
        event_name = %message.event_name,
        outcome = verdict.label(),
        "delivery"
    );
    verdict
}

/// The batch response: every record whose verdict returns it to the queue.
fn response(verdicts: &[(String, Verdict)]) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = verdicts
        .iter()
        .filter(|(_, verdict)| verdict.returns_to_queue())
        .map(|(id, _)| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.clone();
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
    fn the_batch_response_lists_exactly_the_returned_records() {
        use shared::domain::{FailureReason, Skip};
        let verdicts = vec![
            (
                "a".to_owned(),
                Verdict::Sent(Outcome::Delivered { status: 200 }),
            ),
            ("b".to_owned(), Verdict::Returned(Fault::Undecodable)),
            ("c".to_owned(), Verdict::Skipped(Skip::Deleted)),
            (
                "d".to_owned(),
                Verdict::Sent(Outcome::Failed {
                    reason: FailureReason::Status(503),
                }),
            ),
            ("e".to_owned(), Verdict::Returned(Fault::StoreUnavailable)),
        ];
        let ids: Vec<String> = response(&verdicts)
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        assert_eq!(ids, ["b", "e"]);
    }

    #[test]
    fn defaults_are_a_15_second_deadline_and_a_whole_batch_at_once() {
        let vars = HashMap::from([("TABLE_NAME", "t")]);
        let lookup = |k: &str| vars.get(k).map(|v| v.to_string());
        let config = SenderConfig::from_env(&Env::new(&lookup)).unwrap();
        assert_eq!(config.deadline, Duration::from_secs(15));
        assert_eq!(config.concurrency, 10);
        assert_eq!(config.addresses, AddressPolicy::public_only());
        assert_eq!(config.rules, FailureRules::default());
    }
}
