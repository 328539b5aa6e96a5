//! The sender: one POST per queued delivery.
//!
//! Each SQS record is decoded on its own; the batch's webhooks are read in one
//! `BatchGetItem`; deliveries run concurrently under a limit; each outcome is
//! recorded on its webhook. Each delivery ends in a [`Verdict`]; the batch
//! response lists the records whose verdict returns them to the queue. Endpoint
//! failures are acknowledged (Qase does not retry); only internal faults before
//! a POST come back, for SQS to retry and finally dead-letter.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::stream::{self, StreamExt};
use shared::adapters::{EventBus, HttpPoster};
use shared::config::{ConfigError, Env};
use shared::domain::delivery::{
    DEFAULT_DEADLINE, Pace, Skip, Steps, coalesce, decide, eligible, may_start, prepare,
};
use shared::domain::history::masked_headers;
use shared::domain::lane::{SLOW_AFTER, retry_route, route};
use shared::domain::operational::{Change, DisableCause, OperationalEvent};
use shared::domain::retry::{STANDARD_SCHEDULE, parse_retry_after, random_jitter, retry_delay};
use shared::domain::{
    AddressPolicy, Attempt, DeliveryLog, DeliveryMessage, EventName, FailureRules, Fault, Lane,
    LaneNames, Outcome, ProjectCode, Record, RetryPolicy, Route, SigningSecret, Timestamp, Trigger,
    Verdict, Webhook, WebhookId,
};
use shared::ports::{
    DeliveryQueue, DeliveryStore, EnqueueError, RecoveryProgress, StoreError, WebhookKey,
};
use shared::recovery::RunStep;
use tokio::time::timeout_at;
use uuid::Uuid;

pub mod poller;
mod recovery;

/// How long the mark that a delivery's retries ran out is kept: longer than
/// SQS could deliver its last attempt again.
const EXHAUSTED_KEPT: Duration = Duration::from_secs(86_400);

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
    /// `DELIVERY_QUEUE_URL`, `SLOW_QUEUE_URL`, `WAITING_QUEUE_URL`: the
    /// lanes, where deliveries move and retries are queued. Without them
    /// every record is POSTed where it is, and webhooks with
    /// `retry_policy: "standard"` get one attempt too.
    pub lanes: Option<shared::adapters::sqs::LaneUrls>,
    /// The waits between attempts: always the standard schedule when read
    /// from the environment; tests build a shorter one.
    pub retry_schedule: Vec<Duration>,
    /// `DELIVERY_LOG_DAYS`: how long attempts are kept in the delivery
    /// history, default 30; 0 records none.
    pub delivery_log: DeliveryLog,
    /// `OPERATIONAL_EVENT_BUS`: the EventBridge bus (name or ARN) of the
    /// operational events; unset or empty puts none.
    pub event_bus: Option<String>,
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
            lanes: match (
                env.optional("DELIVERY_QUEUE_URL"),
                env.optional("SLOW_QUEUE_URL"),
                env.optional("WAITING_QUEUE_URL"),
            ) {
                (Some(fast), Some(slow), Some(waiting)) => Some(shared::adapters::sqs::LaneUrls {
                    fast,
                    slow,
                    waiting,
                }),
                (None, None, None) => None,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "SLOW_QUEUE_URL",
                        reason: "DELIVERY_QUEUE_URL, SLOW_QUEUE_URL and WAITING_QUEUE_URL are set together or not at all".into(),
                    });
                }
            },
            retry_schedule: STANDARD_SCHEDULE.to_vec(),
            delivery_log: env.delivery_log()?,
            event_bus: env.optional(shared::config::EVENT_BUS),
        })
    }
}

/// The lanes: the queues deliveries move between and retries wait in, the
/// lanes' queue names (to tell where a record came from), and the waits
/// between attempts.
#[derive(Debug)]
pub struct Lanes<Q> {
    pub queue: Q,
    pub names: LaneNames,
    pub schedule: Vec<Duration>,
}

/// No queues: every record is POSTed where it is, and every delivery is one
/// attempt.
#[derive(Debug, Clone, Copy)]
pub struct NoRetries;

impl DeliveryQueue for NoRetries {
    async fn enqueue(
        &self,
        _lane: Lane,
        _group: &str,
        bodies: Vec<String>,
    ) -> Result<usize, EnqueueError> {
        Err(EnqueueError::none_of(bodies.len(), None))
    }

    async fn enqueue_paced(
        &self,
        _lane: Lane,
        _group: &str,
        bodies: Vec<(String, Duration)>,
    ) -> Result<usize, EnqueueError> {
        Err(EnqueueError::none_of(bodies.len(), None))
    }

    async fn enqueue_one(
        &self,
        _lane: Lane,
        _group: &str,
        _body: String,
        _delay: Duration,
    ) -> Result<(), EnqueueError> {
        Err(EnqueueError::one(None))
    }

    async fn postpone(&self, _receipt: &str, _delay: Duration) -> Result<(), EnqueueError> {
        Err(EnqueueError::one(None))
    }
}

/// How one record's handling ended before the batch's writes. One per
/// record of a batch, moved once: its size does not matter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Done {
    /// Not POSTed (skipped, moved, postponed, returned): its verdict, and
    /// with the history on, its record.
    Unsent(Verdict, Option<Attempt>),
    /// POSTed: what is left to write and queue.
    Posted(Posted),
}

/// A POST made, and what it leaves for the batch to do.
#[derive(Debug)]
struct Posted {
    webhook_id: WebhookId,
    /// When the POST ended: the batch writes a webhook's records in this
    /// order.
    ended: Instant,
    record: Record,
    /// The next attempt and its wait, for a webhook that asked for retries.
    retry: Option<(DeliveryMessage, Duration)>,
    outcome: Outcome,
    attempt: Option<Attempt>,
    delivery_id: Uuid,
    project: ProjectCode,
    event_name: EventName,
    attempt_number: u32,
    latency_ms: u64,
    /// The last attempt of the webhook's retry schedule, and it failed.
    exhausted: bool,
}

/// One decoded record: its id and receipt handle, the lane it came from,
/// its body as received (a move forwards it unchanged) and the message.
#[derive(Debug)]
struct Incoming {
    id: String,
    receipt: Option<String>,
    lane: Lane,
    body: String,
    message: DeliveryMessage,
}

/// The sender with its clients, built once per cold start.
#[derive(Debug)]
pub struct Sender<S, Q = NoRetries> {
    store: S,
    http: HttpPoster,
    concurrency: usize,
    rules: FailureRules,
    lanes: Option<Lanes<Q>>,
    history: DeliveryLog,
    /// Runs the bulk recoveries' steps that come through the waiting lane.
    recoveries: Option<std::sync::Arc<dyn RunStep>>,
    /// Where the operational events of the state changes it makes go.
    events: EventBus,
}

impl<S: DeliveryStore> Sender<S> {
    /// A sender that records no delivery history and queues no retries.
    pub fn new(store: S, http: HttpPoster, concurrency: usize) -> Self {
        Self {
            store,
            http,
            concurrency: concurrency.max(1),
            rules: FailureRules::default(),
            lanes: None,
            history: DeliveryLog::off(),
            recoveries: None,
            events: EventBus::off(),
        }
    }

    /// Moves deliveries between the lanes of `queue` (named `names`) and
    /// queues retries of failed deliveries to webhooks with
    /// `retry_policy: "standard"`, on `schedule`.
    pub fn with_lanes<Q: DeliveryQueue>(
        self,
        queue: Q,
        names: LaneNames,
        schedule: Vec<Duration>,
    ) -> Sender<S, Q> {
        Sender {
            store: self.store,
            http: self.http,
            concurrency: self.concurrency,
            rules: self.rules,
            lanes: Some(Lanes {
                queue,
                names,
                schedule,
            }),
            history: self.history,
            recoveries: self.recoveries,
            events: self.events,
        }
    }
}

impl<S: DeliveryStore + RecoveryProgress, Q: DeliveryQueue> Sender<S, Q> {
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

    /// Puts the operational events of the state changes it makes on `bus`
    /// (`domain::operational`).
    pub fn with_events(mut self, bus: EventBus) -> Self {
        self.events = bus;
        self
    }

    /// Runs the steps of bulk recoveries that arrive in the waiting lane.
    pub fn with_recoveries(mut self, steps: std::sync::Arc<dyn RunStep>) -> Self {
        self.recoveries = Some(steps);
        self
    }

    /// Handles one SQS batch within an invocation that ends at `ends`;
    /// answers the records SQS should deliver again: those whose [`Verdict`]
    /// returns them to the queue. Every AWS call is bounded so that the
    /// handler answers before `ends`; a POST that could not end and be
    /// recorded in time is not started. Each record first finds its way
    /// (`domain::lane::route`): POSTed here, moved to another lane, or, a
    /// retry not due yet in the waiting lane, postponed there.
    pub async fn handle(&self, event: SqsEvent, ends: Instant) -> SqsBatchResponse {
        let mut verdicts = Vec::with_capacity(event.records.len());
        let mut incoming = Vec::with_capacity(event.records.len());
        let mut steps = Vec::new();
        let now = Timestamp::now();
        // An event source mapping reads one queue: the batch's lane.
        let batch_lane = self.lane_of(
            event
                .records
                .first()
                .and_then(|r| r.event_source_arn.as_deref()),
        );
        for record in event.records {
            let id = record.message_id.unwrap_or_default();
            let lane = self.lane_of(record.event_source_arn.as_deref());
            let body = record.body.unwrap_or_default();
            match DeliveryMessage::decode(&body) {
                Ok(message) => incoming.push(Incoming {
                    id,
                    receipt: record.receipt_handle,
                    lane,
                    body,
                    message,
                }),
                Err(err) => match recovery::step_of(&body) {
                    Some(step) => steps.push((id, step)),
                    None => {
                        tracing::error!(message_id = %id, error = %shared::error_chain(&err), "undecodable record; returned to the queue");
                        verdicts.push((id, Verdict::Returned(Fault::Undecodable)));
                    }
                },
            }
        }
        // A retry not due yet waits where it is: no read, one queue call.
        let (waiting, incoming): (Vec<_>, Vec<_>) = incoming.into_iter().partition(|record| {
            record.lane == Lane::Waiting
                && matches!(
                    route(Lane::Waiting, Lane::Fast, record.message.not_before, now),
                    Route::Postpone(_)
                )
        });
        let postponed = stream::iter(waiting)
            .map(|record| async move {
                let verdict = self.postpone(&record, now, ends).await;
                (record.id, verdict)
            })
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>();
        let keys: Vec<WebhookKey> = incoming
            .iter()
            .map(|r| (r.message.project.clone(), r.message.webhook_id))
            .collect();
        let read = async {
            if keys.is_empty() {
                return Ok(HashMap::new());
            }
            timeout_at(
                Steps::new(ends).read_by().into(),
                self.store.get_many(&keys),
            )
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the read of the batch's webhooks timed out".into(),
                ))
            })
        };
        let stepped = self.run_steps(steps, ends);
        let (postponed, read, step_failures) = futures::join!(postponed, read, stepped);
        verdicts.extend(postponed);
        let webhooks = match read {
            Ok(found) => found,
            Err(err) => {
                tracing::error!(error = %shared::error_chain(&err), records = incoming.len(), "could not load webhooks; batch returned to the queue");
                verdicts.extend(
                    incoming
                        .into_iter()
                        .map(|r| (r.id, Verdict::Returned(Fault::StoreUnavailable))),
                );
                publish_metrics(batch_lane, &verdicts, &[], 0);
                return response(&verdicts, &step_failures);
            }
        };
        let paced = recovery::first_attempts(&incoming);
        let recovering = recovery::webhooks_of(&incoming);
        let slots = self.take_slots(&incoming).await;
        let slots = &slots;
        let done: Vec<(String, Done)> = stream::iter(incoming)
            .map(|record| {
                let webhook = webhooks
                    .get(&record.message.webhook_id)
                    .filter(|hook| hook.project == record.message.project);
                async move {
                    let id = record.id.clone();
                    (id, self.dispatch(record, webhook, slots, ends).await)
                }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut attempts = Vec::with_capacity(done.len());
        let mut posted = Vec::with_capacity(done.len());
        for (id, done) in done {
            match done {
                Done::Unsent(verdict, attempt) => {
                    verdicts.push((id, verdict));
                    attempts.extend(attempt);
                }
                Done::Posted(post) => posted.push((id, post)),
            }
        }
        // The webhooks' writes, then the retries (each failure is recorded
        // before its next attempt is queued), then the history.
        let (gone, mut changes) = self.record_batch(&posted, &webhooks, ends).await;
        changes.extend(self.exhausted(&posted, &webhooks, &gone, ends).await);
        let latencies: Vec<f64> = posted
            .iter()
            .map(|(_, post)| post.latency_ms as f64)
            .collect();
        let finished = stream::iter(posted)
            .map(|(id, post)| {
                let disabled = gone.contains(&post.webhook_id);
                let retries = post.retry.is_some() && self.lanes.is_some() && !disabled;
                async move { (id, retries, self.finish(post, disabled, ends).await) }
            })
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>()
            .await;
        let mut retries_queued = 0;
        for (id, retries, (verdict, attempt)) in finished {
            retries_queued += u64::from(retries && matches!(verdict, Verdict::Sent(_)));
            verdicts.push((id, verdict));
            attempts.extend(attempt);
        }
        // The history, and beside it the recoveries' progress and then the
        // batch's operational events (a finished recovery's among them).
        let announced = async {
            let finished = self.tally(&paced, &verdicts, ends).await;
            changes.extend(finished.into_iter().filter_map(|(recovery, progress)| {
                let change = Change::recovery_finished(recovery, &progress);
                let (project, webhook_id) = recovering.get(&recovery)?.clone();
                Some(match webhooks.get(&webhook_id) {
                    Some(hook) => OperationalEvent::of(hook, Timestamp::now(), change),
                    None => OperationalEvent::of_key(project, webhook_id, Timestamp::now(), change),
                })
            }));
            self.announce(&changes, ends).await;
        };
        futures::join!(self.record_attempts(&attempts, ends), announced);
        publish_metrics(batch_lane, &verdicts, &latencies, retries_queued);
        response(&verdicts, &step_failures)
    }

    /// The lane a record came from, by its event source (the fast lane
    /// without lanes or a source).
    fn lane_of(&self, source: Option<&str>) -> Lane {
        match (&self.lanes, source) {
            (Some(lanes), Some(source)) => lanes.names.lane_of_source(source),
            _ => Lane::Fast,
        }
    }

    /// Writes what the batch's POSTs changed on their webhooks: per
    /// webhook, its records in the order the POSTs ended, a run of failures
    /// as one write (`delivery::coalesce`), webhooks in parallel. Bounded by
    /// the invocation; an unfinished write is logged (the deliveries were
    /// sent and stand). Answers the webhooks a 410 disabled, and the
    /// operational events of the state changes the writes made.
    async fn record_batch(
        &self,
        posted: &[(String, Posted)],
        webhooks: &HashMap<WebhookId, Webhook>,
        ends: Instant,
    ) -> (HashSet<WebhookId>, Vec<OperationalEvent>) {
        let mut by_webhook: HashMap<WebhookId, Vec<(Instant, Record)>> = HashMap::new();
        for (_, post) in posted {
            if post.record != Record::Nothing {
                by_webhook
                    .entry(post.webhook_id)
                    .or_default()
                    .push((post.ended, post.record.clone()));
            }
        }
        let gone = by_webhook
            .iter()
            .filter(|(_, records)| {
                records
                    .iter()
                    .any(|(_, record)| matches!(record, Record::Gone { .. }))
            })
            .map(|(id, _)| *id)
            .collect();
        let steps = Steps::new(ends);
        let writes = by_webhook.into_iter().filter_map(|(id, mut records)| {
            let webhook = webhooks.get(&id)?;
            records.sort_by_key(|(ended, _)| *ended);
            let records = coalesce(records.into_iter().map(|(_, record)| record));
            Some(async move {
                let mut changes = Vec::new();
                for record in records {
                    let written = timeout_at(steps.writes_by().into(), self.record(webhook, record))
                        .await
                        .unwrap_or_else(|_| {
                            Err(StoreError::Unavailable(
                                "recording did not finish in its share of the invocation"
                                    .into(),
                            ))
                        });
                    match written {
                        Ok(change) => changes.extend(change),
                        Err(err) => {
                            tracing::error!(webhook_id = %webhook.id, error = %shared::error_chain(&err), "could not record the outcome");
                        }
                    }
                }
                changes
            })
        });
        let changes = stream::iter(writes)
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>()
            .await;
        (gone, changes.into_iter().flatten().collect())
    }

    /// The operational events of deliveries whose retries ran out in this
    /// batch (none for a webhook a 410 just disabled: its own event says
    /// so), each claimed once with a conditional put, so that a repeat of
    /// the last attempt puts none. No call without a bus.
    async fn exhausted(
        &self,
        posted: &[(String, Posted)],
        webhooks: &HashMap<WebhookId, Webhook>,
        gone: &HashSet<WebhookId>,
        ends: Instant,
    ) -> Vec<OperationalEvent> {
        if !self.events.is_on() {
            return Vec::new();
        }
        let until = Timestamp::now().after(EXHAUSTED_KEPT);
        let by = Steps::new(ends).writes_by();
        let claims = posted
            .iter()
            .filter(|(_, post)| post.exhausted && !gone.contains(&post.webhook_id))
            .filter_map(|(_, post)| {
                let webhook = webhooks.get(&post.webhook_id)?;
                let Outcome::Failed { reason } = &post.outcome else {
                    return None;
                };
                Some(async move {
                    let claimed = timeout_at(
                        by.into(),
                        self.store.claim_exhausted(webhook, post.delivery_id, until),
                    )
                    .await;
                    match claimed {
                        Ok(Ok(true)) => Some(OperationalEvent::of(
                            webhook,
                            Timestamp::now(),
                            Change::RetriesExhausted {
                                delivery_id: post.delivery_id,
                                event_name: post.event_name,
                                attempts: post.attempt_number,
                                last_error: reason.to_string(),
                            },
                        )),
                        Ok(Ok(false)) => None,
                        Ok(Err(err)) => {
                            tracing::error!(delivery_id = %post.delivery_id, error = %shared::error_chain(&err), "could not claim the end of the delivery's retries; no operational event");
                            None
                        }
                        Err(_) => None,
                    }
                })
            });
        // At most a batch's deliveries, each one conditional put.
        let claims: Vec<_> = claims.collect();
        futures::future::join_all(claims)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Puts the batch's operational events, bounded by the invocation.
    async fn announce(&self, events: &[OperationalEvent], ends: Instant) {
        if events.is_empty() {
            return;
        }
        if timeout_at(
            Steps::new(ends).history_by().into(),
            self.events.put(events),
        )
        .await
        .is_err()
        {
            tracing::error!(
                events = events.len(),
                "putting the operational events did not finish in time"
            );
        }
    }

    /// After the batch's writes: queues the next attempt of a failed
    /// delivery to a webhook that asked for retries (none once a 410
    /// disabled it); if it cannot be queued, this attempt goes back to the
    /// queue instead, so the delivery is not lost. Logs the delivery.
    async fn finish(
        &self,
        post: Posted,
        disabled: bool,
        ends: Instant,
    ) -> (Verdict, Option<Attempt>) {
        let mut retry_in = None;
        let mut verdict = Verdict::Sent(post.outcome.clone());
        if let (Some((retry, wait)), Some(lanes), false) = (post.retry, &self.lanes, disabled) {
            let (lane, delay) = retry_route(wait);
            let sent = match retry.encode() {
                Ok(body) => self.send_to(lanes, lane, &retry, body, delay, ends).await,
                Err(err) => {
                    tracing::error!(delivery_id = %retry.delivery_id, error = %err, "could not encode the retry");
                    Err(())
                }
            };
            match sent {
                Ok(()) => retry_in = Some(wait.as_millis() as u64),
                Err(()) => verdict = Verdict::Returned(Fault::QueueUnavailable),
            }
        }
        let reason = match &post.outcome {
            Outcome::Delivered { .. } => None,
            Outcome::Failed { reason } => Some(reason.to_string()),
        };
        tracing::info!(
            delivery_id = %post.delivery_id,
            project = %post.project,
            webhook_id = %post.webhook_id,
            event_name = %post.event_name,
            attempt = post.attempt_number,
            outcome = verdict.label(),
            reason,
            status = post.outcome.status(),
            latency_ms = post.latency_ms,
            retry_in_ms = retry_in,
            "delivery"
        );
        (verdict, post.attempt)
    }

    /// One record whose webhook was read: skipped, moved to another lane,
    /// or delivered here.
    async fn dispatch(
        &self,
        record: Incoming,
        webhook: Option<&Webhook>,
        slots: &recovery::Slots,
        ends: Instant,
    ) -> Done {
        let hook = match eligible(webhook, record.message.event_name, record.message.trigger) {
            Ok(hook) => hook,
            Err(skip) => {
                let (verdict, attempt) = self.skip(&record.message, skip);
                return Done::Unsent(verdict, attempt);
            }
        };
        let Some(lanes) = &self.lanes else {
            return self.deliver(record.message, hook, ends).await;
        };
        match route(
            record.lane,
            Lane::of(hook),
            record.message.not_before,
            Timestamp::now(),
        ) {
            Route::Post => match slots.pace(&record.message) {
                recovery::Slot::Free => self.deliver(record.message, hook, ends).await,
                recovery::Slot::Later => {
                    let to = record.lane;
                    let verdict = match self
                        .send_to(
                            lanes,
                            to,
                            &record.message,
                            record.body,
                            recovery::OVER_RATE_WAIT,
                            ends,
                        )
                        .await
                    {
                        Ok(()) => Verdict::Moved(to),
                        Err(()) => Verdict::Returned(Fault::QueueUnavailable),
                    };
                    Done::Unsent(unsent(&record.message, verdict), None)
                }
                recovery::Slot::Unknown => Done::Unsent(
                    unsent(&record.message, Verdict::Returned(Fault::StoreUnavailable)),
                    None,
                ),
            },
            Route::Move { to, delay } => {
                let verdict = match self
                    .send_to(lanes, to, &record.message, record.body, delay, ends)
                    .await
                {
                    Ok(()) => Verdict::Moved(to),
                    Err(()) => Verdict::Returned(Fault::QueueUnavailable),
                };
                Done::Unsent(unsent(&record.message, verdict), None)
            }
            // Not due when the batch began, due now: it waits once more.
            Route::Postpone(_) => {
                Done::Unsent(self.postpone(&record, Timestamp::now(), ends).await, None)
            }
        }
    }

    /// Keeps a waiting retry invisible until it is due (12 hours at most).
    async fn postpone(&self, record: &Incoming, now: Timestamp, ends: Instant) -> Verdict {
        let delay = match route(Lane::Waiting, Lane::Fast, record.message.not_before, now) {
            Route::Postpone(delay) => delay,
            _ => Duration::ZERO,
        };
        let (Some(lanes), Some(receipt)) = (&self.lanes, record.receipt.as_deref()) else {
            return unsent(&record.message, Verdict::Returned(Fault::QueueUnavailable));
        };
        let verdict = match timeout_at(
            Steps::new(ends).queue_by().into(),
            lanes.queue.postpone(receipt, delay),
        )
        .await
        {
            Ok(Ok(())) => Verdict::Postponed,
            Ok(Err(err)) => {
                tracing::error!(delivery_id = %record.message.delivery_id, error = %shared::error_chain(&err), "could not postpone the waiting retry; it comes back after the queue's visibility timeout");
                Verdict::Returned(Fault::QueueUnavailable)
            }
            Err(_) => Verdict::Returned(Fault::OutOfTime),
        };
        unsent(&record.message, verdict)
    }

    /// A record that is not to be sent; with the history on, its record
    /// (none for a deleted webhook).
    fn skip(&self, message: &DeliveryMessage, skip: Skip) -> (Verdict, Option<Attempt>) {
        let attempt = (self.history.is_on() && skip != Skip::Deleted)
            .then(|| Attempt::of(message, Timestamp::now()).skipped(skip));
        (unsent(message, Verdict::Skipped(skip)), attempt)
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
            Steps::new(ends).history_by().into(),
            self.store.record_attempts(attempts, expires_at),
        )
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "recording the history did not finish in its share of the invocation".into(),
            ))
        });
        if let Err(err) = written {
            tracing::error!(attempts = attempts.len(), error = %shared::error_chain(&err), "could not record the delivery history");
            shared::telemetry::count(&[(shared::telemetry::metric::HISTORY_WRITES_FAILED, 1)]);
        }
    }

    /// One delivery to an eligible webhook: prepare, POST (marking the
    /// webhook slow if it has not answered after `SLOW_AFTER`), decide what
    /// to record and whether to retry; the batch writes and queues those
    /// once all its POSTs are done. Never POSTs twice: once sent, the record
    /// is acknowledged whatever the bookkeeping does. Starts the POST only
    /// if it can end and be recorded before `ends`.
    async fn deliver(&self, message: DeliveryMessage, webhook: &Webhook, ends: Instant) -> Done {
        let signing = match &webhook.signing_secret {
            Some(secret) => Cow::Borrowed(secret),
            None => match self.assign_signing_secret(webhook, ends).await {
                Ok(secret) => Cow::Owned(secret),
                Err(err) => {
                    tracing::error!(delivery_id = %message.delivery_id, webhook_id = %webhook.id, error = %shared::error_chain(&*err), "could not give the webhook a signing secret; returned to the queue");
                    return Done::Unsent(
                        unsent(&message, Verdict::Returned(Fault::StoreUnavailable)),
                        None,
                    );
                }
            },
        };
        let started = Instant::now();
        if !may_start(started, ends, self.http.deadline()) {
            return Done::Unsent(unsent(&message, Verdict::Returned(Fault::OutOfTime)), None);
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
            && self.lanes.is_some())
        .then(|| message.clone());
        let mut headers = Default::default();
        let mut marked_slow = false;
        let answer = match prepare(webhook, &signing, message, Timestamp::now()) {
            Ok(dispatch) => {
                if entry.is_some() {
                    headers = masked_headers(&dispatch.headers);
                }
                let post = self.http.send_for_answer(dispatch);
                if Lane::of(webhook) == Lane::Fast {
                    // A healthy webhook whose endpoint has not answered
                    // after SLOW_AFTER is marked slow at once, while the
                    // POST goes on: deliveries read after this take the
                    // slow lane instead of waiting here behind it.
                    tokio::pin!(post);
                    tokio::select! {
                        answer = &mut post => answer,
                        () = tokio::time::sleep(SLOW_AFTER) => {
                            let (answer, marked) = tokio::join!(&mut post, self.mark_slow(webhook, delivery_id, ends));
                            marked_slow = marked;
                            answer
                        }
                    }
                } else {
                    post.await
                }
            }
            Err(reason) => Outcome::Failed { reason }.into(),
        };
        let latency = started.elapsed();
        let entry = entry.map(|e| {
            e.sent(headers, &answer.outcome, latency, &answer.body)
                .masking_all(
                    webhook
                        .secret
                        .iter()
                        .chain(webhook.headers.iter().map(|(_, value)| value)),
                )
        });
        let outcome = answer.outcome;
        let pace = Pace {
            latency,
            was_slow: webhook.slow_since.is_some() || marked_slow,
        };
        let now = Timestamp::now();
        let record = decide(webhook, &outcome, pace, now, self.rules);
        let retried = next.is_some();
        let retry = match (&outcome, next, &self.lanes) {
            (Outcome::Failed { .. }, Some(next), Some(lanes)) => {
                let asked = answer
                    .retry_after
                    .as_deref()
                    .and_then(|raw| parse_retry_after(raw, now));
                retry_delay(&lanes.schedule, attempt, random_jitter(), asked)
                    .map(|wait| (next.into_retry(now.after(wait)), wait))
            }
            _ => None,
        };
        Done::Posted(Posted {
            webhook_id: webhook.id,
            ended: Instant::now(),
            record,
            attempt: entry,
            delivery_id,
            project,
            event_name,
            exhausted: retried && retry.is_none() && matches!(outcome, Outcome::Failed { .. }),
            retry,
            outcome,
            attempt_number: attempt,
            latency_ms: latency.as_millis() as u64,
        })
    }

    /// Sends `body` (the message `message`) to `lane`, invisible for
    /// `delay`. Bounded by the invocation's end, like every AWS call of the
    /// handler.
    async fn send_to(
        &self,
        lanes: &Lanes<Q>,
        lane: Lane,
        message: &DeliveryMessage,
        body: String,
        delay: Duration,
        ends: Instant,
    ) -> Result<(), ()> {
        let sent = lanes.queue.enqueue_one(lane, message.group(), body, delay);
        match timeout_at(Steps::new(ends).queue_by().into(), sent).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                tracing::error!(delivery_id = %message.delivery_id, lane = lane.as_str(), error = %shared::error_chain(&err), "the lane did not take the delivery; it goes back to its queue");
                Err(())
            }
            Err(_) => {
                tracing::error!(delivery_id = %message.delivery_id, lane = lane.as_str(), "sending to the lane did not finish in its share of the invocation; the delivery goes back to its queue");
                Err(())
            }
        }
    }

    /// Marks a webhook slow while its POST goes on; `true` once stored.
    /// Bounded by the invocation; a failure is logged (the outcome decides
    /// again when the POST ends).
    async fn mark_slow(&self, webhook: &Webhook, delivery_id: Uuid, ends: Instant) -> bool {
        let by = Steps::new(ends).read_by();
        match timeout_at(by.into(), self.store.mark_slow(webhook, Timestamp::now())).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                tracing::warn!(delivery_id = %delivery_id, webhook_id = %webhook.id, error = %shared::error_chain(&err), "could not mark the webhook slow");
                false
            }
            Err(_) => false,
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
        let by = Steps::new(ends).read_by();
        Ok(timeout_at(by.into(), self.store.assign_signing_secret(webhook, fresh)).await??)
    }

    /// Writes one record on the webhook; answers the operational event of
    /// the state change the write made, if it made one.
    async fn record(
        &self,
        webhook: &Webhook,
        record: Record,
    ) -> Result<Option<OperationalEvent>, StoreError> {
        let change = match record {
            Record::Nothing => None,
            Record::Recovered { slow } => {
                let at = Timestamp::now();
                self.store
                    .record_recovery(webhook, slow, at)
                    .await?
                    .map(|cleared| {
                        (
                            at,
                            Change::Recovered {
                                failing_since: cleared.failing_since,
                                failures: cleared.failures,
                            },
                        )
                    })
            }
            Record::Slow { at } => {
                self.store.mark_slow(webhook, at).await?;
                None
            }
            Record::Failure {
                at,
                reason,
                due_now,
                count,
            } => self
                .store
                .record_failures(webhook, at, &reason, due_now, count)
                .await?
                .then_some((
                    at,
                    Change::Failing {
                        failing_since: at,
                        last_error: reason,
                    },
                )),
            Record::Gone { at } => {
                tracing::warn!(webhook_id = %webhook.id, project = %webhook.project, "the endpoint answered 410 Gone; webhook disabled");
                self.store.disable_gone(webhook, at).await?.then(|| {
                    (
                        at,
                        Change::Disabled {
                            reason: DisableCause::Gone,
                            failing_since: Some(webhook.failing_since.unwrap_or(at)),
                            last_error: Some(
                                shared::domain::FailureReason::Status(410).to_string(),
                            ),
                        },
                    )
                })
            }
        };
        Ok(change.map(|(at, change)| OperationalEvent::of(webhook, at, change)))
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

/// The batch's metrics (embedded metric format, one log line per batch, no
/// AWS call): its records by verdict, each POST's latency and the retries
/// queued, dimensioned by the lane the batch came from.
fn publish_metrics(lane: Lane, verdicts: &[(String, Verdict)], latencies: &[f64], retries: u64) {
    use shared::telemetry::{Emf, LANE_DIMENSION, metric};
    let mut counts = [0u64; 6];
    for (_, verdict) in verdicts {
        let slot = match verdict {
            Verdict::Sent(Outcome::Delivered { .. }) => 0,
            Verdict::Sent(Outcome::Failed { .. }) => 1,
            Verdict::Skipped(_) => 2,
            Verdict::Returned(_) => 3,
            Verdict::Moved(_) => 4,
            Verdict::Postponed => 5,
        };
        counts[slot] += 1;
    }
    Emf::new()
        .dimension(LANE_DIMENSION, lane.as_str())
        .count(metric::DELIVERED, counts[0])
        .count(metric::FAILED, counts[1])
        .count(metric::SKIPPED, counts[2])
        .count(metric::RETURNED, counts[3])
        .count(metric::MOVED, counts[4])
        .count(metric::RETRIES_WAITING, counts[5])
        .count(metric::RETRIES_QUEUED, retries)
        .milliseconds(metric::POST_LATENCY, latencies)
        .emit();
}

/// The batch response: every record whose verdict returns it to the
/// queue, and every recovery step that did not finish.
fn response(verdicts: &[(String, Verdict)], step_failures: &[String]) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = verdicts
        .iter()
        .filter(|(_, verdict)| verdict.returns_to_queue())
        .map(|(id, _)| id)
        .chain(step_failures)
        .map(|id| {
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
        let ids: Vec<String> = response(&verdicts, &["s".to_owned()])
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        assert_eq!(ids, ["b", "e", "s"]);
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
