//! Drives a bulk recovery (`domain::recover`) in steps. The config API runs
//! the first step while it answers; each later step is a message in the
//! waiting lane that the sender runs, so no invocation does a whole
//! recovery of any size: a step finds (reads the history, then the missed
//! events) while its time lasts, or queues one chunk of deliveries paced
//! at the recovery's rate, and then queues the step after it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use uuid::Uuid;

use crate::adapters::EventBus;
use crate::domain::history::{AttemptCursor, first_id_at};
use crate::domain::operational::{Change, OperationalEvent};
use crate::domain::recover::{
    FIND_PAGE, Phase, Progress, Recovery, Release, Sighting, Step, judge, misses, send_chunk,
};
use crate::domain::{DeliveryLog, Lane, Timestamp};
use crate::ports::{
    DeliveryQueue, EnqueueError, Published, RecoveryStore, StoreError, WebhookStore,
};

/// The first sending step, once everything is found.
const SEND_FIRST: Phase = Phase::Send {
    after: None,
    release_from: None,
};

/// Why a step did not finish; SQS runs it again.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("storage failed")]
    Store(#[from] StoreError),
    #[error("queueing failed")]
    Queue(#[from] EnqueueError),
    #[error("could not encode a message")]
    Encode(#[from] serde_json::Error),
}

/// Runs recovery steps; object-safe, so the sender holds one without
/// knowing its store's type.
pub trait RunStep: Send + Sync + std::fmt::Debug {
    /// Runs `step` and the steps after it while time is left before
    /// `until`; queues the one after that.
    fn run(&self, step: Step, until: Instant) -> BoxFuture<'_, Result<Progress, StepError>>;
}

/// Recovery steps over a store and the lanes, owning both (the sender's).
#[derive(Debug, Clone)]
pub struct Recoverer<S, Q> {
    store: S,
    queue: Q,
    log: DeliveryLog,
    events: EventBus,
}

impl<S, Q> Recoverer<S, Q> {
    pub fn new(store: S, queue: Q, log: DeliveryLog) -> Self {
        Self {
            store,
            queue,
            log,
            events: EventBus::off(),
        }
    }

    /// Puts a recovery's finish on `bus` (`domain::operational`).
    pub fn with_events(mut self, bus: EventBus) -> Self {
        self.events = bus;
        self
    }
}

/// Recovery steps over a borrowed store and lanes (the config API's).
#[derive(Debug)]
pub struct Driver<'a, S, Q> {
    store: &'a S,
    queue: &'a Q,
    log: DeliveryLog,
    events: Option<&'a EventBus>,
}

/// What one phase of a step left.
enum Next {
    /// Go on with this phase now.
    Now(Phase),
    /// Go on with this phase after a pause (the deliveries it queued are
    /// being released).
    After(Phase, Duration),
    /// Nothing left to do.
    Done,
}

impl<'a, S: RecoveryStore + WebhookStore, Q: DeliveryQueue> Driver<'a, S, Q> {
    pub fn new(store: &'a S, queue: &'a Q, log: DeliveryLog) -> Self {
        Self {
            store,
            queue,
            log,
            events: None,
        }
    }

    /// Puts a recovery's finish on `bus` (`domain::operational`).
    pub fn with_events(mut self, bus: &'a EventBus) -> Self {
        self.events = Some(bus);
        self
    }

    /// When the recovery's records expire: with the history.
    fn expires_at(&self, now: Timestamp) -> Timestamp {
        self.log
            .expires_at(now)
            .unwrap_or_else(|| now.after(Duration::from_secs(86_400)))
    }

    /// Stores a new recovery and runs its first steps until `until`;
    /// answers its progress then.
    pub async fn start(&self, recovery: &Recovery, until: Instant) -> Result<Progress, StepError> {
        self.store
            .create_recovery(recovery, self.expires_at(recovery.created_at))
            .await?;
        self.steps(Step::first(recovery), until).await
    }

    async fn steps(&self, step: Step, until: Instant) -> Result<Progress, StepError> {
        let recovery = step.recovery();
        let mut phase = step.recovery_step.phase;
        let mut progress = None;
        loop {
            let next = match phase {
                Phase::Failed { before } => {
                    self.find_failed(&recovery, before, &mut progress).await?
                }
                Phase::Missed { after } => {
                    self.find_missed(&recovery, after, &mut progress).await?
                }
                Phase::Send {
                    after,
                    release_from,
                } => {
                    self.send(&recovery, after, release_from, &mut progress)
                        .await?
                }
            };
            match next {
                Next::Done => break,
                Next::Now(next) if Instant::now() < until => phase = next,
                Next::Now(next) => {
                    self.schedule(&recovery, next, Duration::ZERO).await?;
                    break;
                }
                Next::After(next, delay) => {
                    self.schedule(&recovery, next, delay).await?;
                    break;
                }
            }
        }
        match progress {
            Some(progress) => Ok(progress),
            None => Ok(self
                .store
                .get_recovery(&recovery.project, recovery.id)
                .await?
                .map(|(_, progress)| progress)
                .unwrap_or_default()),
        }
    }

    /// Queues the recovery's next step in the waiting lane.
    async fn schedule(
        &self,
        recovery: &Recovery,
        phase: Phase,
        delay: Duration,
    ) -> Result<(), StepError> {
        let body = Step::at(recovery, phase).encode()?;
        self.queue
            .enqueue_one(Lane::Waiting, recovery.project.as_str(), body, delay)
            .await?;
        Ok(())
    }

    /// After the failed deliveries: the missed events, if asked for.
    fn after_failed(recovery: &Recovery) -> Phase {
        match recovery.plan.missed {
            Some(_) => Phase::Missed { after: None },
            None => SEND_FIRST,
        }
    }

    /// One page of the webhook's history, newest first, below `before`
    /// (from the recovery's making down to the window's start): each
    /// delivery judged by its latest attempt; only those of the window are
    /// sent again, but a later one that delivered an event settles it.
    async fn find_failed(
        &self,
        recovery: &Recovery,
        before: Option<String>,
        progress: &mut Option<Progress>,
    ) -> Result<Next, StepError> {
        let window = recovery.plan.window;
        let start = before
            .as_deref()
            .and_then(AttemptCursor::parse)
            .unwrap_or_else(|| AttemptCursor {
                delivery_id: Uuid::parse_str(&first_id_at(recovery.created_at)).unwrap_or_default(),
                attempt: 1,
            });
        let page = self
            .store
            .list_attempts(
                &recovery.project,
                recovery.webhook_id,
                None,
                FIND_PAGE,
                Some(start),
            )
            .await?;
        let oldest = first_id_at(window.from);
        let newest = first_id_at(window.to);
        let mut deliveries: Vec<Uuid> = Vec::new();
        let mut seen = HashSet::new();
        let mut latest = Vec::new();
        let mut ended = page.next.is_none();
        for attempt in page.items {
            if attempt.delivery_id.hyphenated().to_string() < oldest {
                ended = true;
                break;
            }
            if seen.insert(attempt.delivery_id) {
                deliveries.push(attempt.delivery_id);
                latest.push(attempt);
            }
        }
        // The page may end inside a delivery: unless it is the last, that
        // delivery is judged on the next page, from its latest attempt.
        let resume = match (ended, latest.last()) {
            (false, Some(last)) => {
                let cursor = AttemptCursor {
                    delivery_id: last.delivery_id,
                    attempt: 99_999,
                };
                latest.pop();
                Some(cursor.to_string())
            }
            _ => None,
        };
        let sightings: Vec<(Published, bool)> = latest
            .iter()
            .filter_map(|attempt| {
                let event = Published {
                    id: attempt.event_id,
                    name: attempt.event_name,
                };
                let in_window = attempt.delivery_id.hyphenated().to_string() < newest;
                match judge(attempt) {
                    Sighting::Resend if in_window => Some((event, false)),
                    Sighting::Resend => None,
                    Sighting::Settled => Some((event, true)),
                    Sighting::Ignore => None,
                }
            })
            .collect();
        let next = match resume {
            Some(before) if !ended => Next::Now(Phase::Failed {
                before: Some(before),
            }),
            _ => Next::Now(Self::after_failed(recovery)),
        };
        let found_all = matches!(&next, Next::Now(Phase::Send { .. }));
        if !sightings.is_empty() || found_all {
            *progress = Some(self.found(recovery, &sightings, found_all).await?);
        }
        Ok(next)
    }

    async fn found(
        &self,
        recovery: &Recovery,
        sightings: &[(Published, bool)],
        found_all: bool,
    ) -> Result<Progress, StepError> {
        Ok(self
            .store
            .record_found(
                recovery,
                sightings,
                found_all,
                self.expires_at(Timestamp::now()),
            )
            .await?)
    }

    /// One page of the project's events published in the missed window
    /// that the webhook subscribes to.
    async fn find_missed(
        &self,
        recovery: &Recovery,
        after: Option<String>,
        progress: &mut Option<Progress>,
    ) -> Result<Next, StepError> {
        let Some(window) = recovery.plan.missed else {
            *progress = Some(self.found(recovery, &[], true).await?);
            return Ok(Next::Now(SEND_FIRST));
        };
        let Some(webhook) = self
            .store
            .get(&recovery.project, recovery.webhook_id)
            .await?
        else {
            *progress = Some(self.found(recovery, &[], true).await?);
            return Ok(Next::Now(SEND_FIRST));
        };
        let page = self
            .store
            .events_between(&recovery.project, window, after, FIND_PAGE as usize)
            .await?;
        let sightings: Vec<(Published, bool)> = page
            .items
            .into_iter()
            .filter(|event| misses(&webhook.events, event.name))
            .map(|event| (event, false))
            .collect();
        let found_all = page.next.is_none();
        if !sightings.is_empty() || found_all {
            *progress = Some(self.found(recovery, &sightings, found_all).await?);
        }
        Ok(match page.next {
            Some(after) => Next::Now(Phase::Missed { after: Some(after) }),
            None => Next::Now(SEND_FIRST),
        })
    }

    /// Queues one chunk of what was found, oldest event first, the
    /// recovery's rate per second, in the webhook's lane.
    async fn send(
        &self,
        recovery: &Recovery,
        after: Option<Uuid>,
        release_from: Option<Timestamp>,
        progress: &mut Option<Progress>,
    ) -> Result<Next, StepError> {
        let rate = recovery.plan.rate;
        let started = Timestamp::now();
        let release = Release::at(rate, release_from, started);
        let webhook = self
            .store
            .get(&recovery.project, recovery.webhook_id)
            .await?;
        let page = match &webhook {
            Some(_) => {
                self.store
                    .found_events(recovery.id, after, send_chunk(rate))
                    .await?
            }
            // Deleted: nothing left to send it.
            None => crate::ports::Page {
                items: Vec::new(),
                next: None,
            },
        };
        let ids: Vec<Uuid> = page.items.iter().map(|event| event.id).collect();
        let kept = self.store.get_events(&recovery.project, &ids).await?;
        let mut bodies = Vec::with_capacity(kept.len());
        for id in &ids {
            if let Some(event) = kept.get(id) {
                let body = recovery.delivery(event)?.encode()?;
                bodies.push((body, release.delay(bodies.len())));
            }
        }
        let queued = bodies.len();
        let expired = ids.len() - queued;
        // The slow lane, in the project's message group: live deliveries
        // in the fast lane never wait behind a recovery, and one project's
        // recoveries get one project's share of the slow lane.
        if webhook.is_some() && !bodies.is_empty() {
            self.queue
                .enqueue_paced(Lane::Slow, recovery.project.as_str(), bodies)
                .await?;
        }
        let done = page.next.is_none();
        let now = self
            .store
            .record_queued(recovery.id, queued as u64, expired as u64, done)
            .await?;
        if now.is_finished()
            && self
                .store
                .finish_recovery(recovery.id, Timestamp::now())
                .await?
        {
            tracing::info!(recovery_id = %recovery.id, webhook_id = %recovery.webhook_id, "recovery finished");
            if let Some(bus) = self.events {
                let (at, change) = (
                    Timestamp::now(),
                    Change::recovery_finished(recovery.id, &now),
                );
                let event = match &webhook {
                    Some(hook) => OperationalEvent::of(hook, at, change),
                    None => OperationalEvent::of_key(
                        recovery.project.clone(),
                        recovery.webhook_id,
                        at,
                        change,
                    ),
                };
                bus.put(&[event]).await;
            }
        }
        *progress = Some(now);
        tracing::info!(recovery_id = %recovery.id, webhook_id = %recovery.webhook_id, queued, expired, "recovery deliveries queued");
        Ok(match page.next {
            Some(after) => Next::After(
                Phase::Send {
                    after: Some(after),
                    release_from: Some(started.after(release.ends_after(queued))),
                },
                release.next_step(queued),
            ),
            None => Next::Done,
        })
    }
}

impl<S, Q> RunStep for Recoverer<S, Q>
where
    S: RecoveryStore + WebhookStore + std::fmt::Debug,
    Q: DeliveryQueue + std::fmt::Debug,
{
    fn run(&self, step: Step, until: Instant) -> BoxFuture<'_, Result<Progress, StepError>> {
        Box::pin(async move {
            Driver::new(&self.store, &self.queue, self.log)
                .with_events(&self.events)
                .steps(step, until)
                .await
        })
    }
}
