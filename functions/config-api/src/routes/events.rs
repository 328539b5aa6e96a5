//! `POST /projects/{project}/events`: one queued delivery per enabled,
//! subscribed webhook of the project, in the webhook's lane (slow while it
//! is failing or slow); with the delivery history on, the event is stored
//! once first, for redelivery. Each project gets its share of the publish
//! rate (`PublishRatePerProject`), checked first.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shared::domain::delivery::{MAX_ENVELOPE_BYTES, envelope_fits};
use shared::domain::idempotency::{IDEMPOTENCY_HEADER, IDEMPOTENCY_WINDOW};
use shared::domain::rate::RETRY_AFTER_SECS;
use shared::domain::{
    DeliveryLog, DeliveryMessage, Event, IdempotencyKey, Lane, MAX_WEBHOOKS_PER_PROJECT,
    ProjectCode, PublishInput, PublishShare, StoredEvent, Timestamp, Webhook, WebhookId,
};
use shared::ports::{PublishAttempt, PublishClaim};
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, error_chain};
use crate::extract::JsonBody;
use crate::{AppState, Queue, Store};

#[derive(Debug, Serialize)]
pub struct Published {
    pub event_id: Uuid,
    /// How many deliveries were queued: one per subscribed webhook.
    pub deliveries: usize,
}

pub async fn publish<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path(project): Path<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<PublishInput>,
) -> Result<Response, ApiError> {
    let project = principal.project(&project, "project")?;
    let key = match headers.get(IDEMPOTENCY_HEADER) {
        None => None,
        Some(raw) => Some(
            IdempotencyKey::parse(raw.to_str().unwrap_or_default())
                .map_err(ApiError::invalid_field)?,
        ),
    };
    let (answer, replayed) =
        publish_event(&state.publisher(), project, input, key.as_ref()).await?;
    Ok(published(answer, replayed))
}

/// What publishing needs: the API's, or the ingest function's (publishing
/// from EventBridge), so both run the same rules.
#[derive(Debug)]
pub struct Publisher<'a, S, Q> {
    pub store: &'a S,
    pub queue: &'a Q,
    pub delivery_log: DeliveryLog,
    pub publish_share: PublishShare,
    pub full_windows: &'a FullWindows,
}

impl<S, Q> AppState<S, Q> {
    pub fn publisher(&self) -> Publisher<'_, S, Q> {
        Publisher {
            store: &self.store,
            queue: &self.queue,
            delivery_log: self.delivery_log,
            publish_share: self.publish_share,
            full_windows: &self.full_windows,
        }
    }
}

/// Publishes `input` to `project`'s subscribed webhooks, under `key` when
/// given: validation, the project's share, the stored event, one queued
/// delivery per subscriber. Answers the event and its deliveries, and
/// whether this repeated an earlier publish with the key (which queued
/// nothing more).
pub async fn publish_event<S: Store, Q: Queue>(
    state: &Publisher<'_, S, Q>,
    project: ProjectCode,
    input: PublishInput,
    key: Option<&IdempotencyKey>,
) -> Result<(Published, bool), ApiError> {
    let now = Timestamp::now();
    let fingerprint = input.fingerprint();
    let mut event = input.validate(project, now)?;
    // With a key: what an earlier publish with it left decides.
    let mut claim = None;
    let mut already = BTreeSet::new();
    if let Some(key) = key {
        let attempt = PublishAttempt {
            fingerprint: &fingerprint,
            event_id: event.id,
            timestamp: event.timestamp,
            now,
            expires_at: now.after(IDEMPOTENCY_WINDOW),
        };
        match state
            .store
            .claim_publish(&event.project, key, attempt)
            .await
            .map_err(|e| ApiError::from_store(e, "idempotency key"))?
        {
            PublishClaim::Fresh => {}
            PublishClaim::Resume {
                event_id,
                timestamp,
                queued,
            } => {
                event.id = event_id;
                event.timestamp = timestamp;
                already = queued;
            }
            PublishClaim::Done {
                event_id,
                deliveries,
            } => {
                tracing::info!(event_id = %event_id, project = %event.project, "publish repeated with its idempotency key; answered as before");
                return Ok((
                    Published {
                        event_id,
                        deliveries,
                    },
                    true,
                ));
            }
            PublishClaim::Mismatch => return Err(ApiError::idempotency_key_reused()),
            PublishClaim::InProgress => return Err(ApiError::idempotency_in_progress()),
        }
        claim = Some((key, now));
    }
    let outcome = fan_out(state, &event, &already, now).await;
    if let Some((key, claimed_at)) = claim {
        let (queued, done) = match &outcome {
            Ok(queued) => (queued.clone(), true),
            Err(Failed { queued, .. }) => (queued.clone(), false),
        };
        if let Err(err) = state
            .store
            .settle_publish(&event.project, key, claimed_at, &queued, done)
            .await
        {
            // The key stays claimed until its claim is stale (30 s); a
            // repeat then resumes it. The deliveries stand.
            tracing::error!(event_id = %event.id, error = %error_chain(&err), "could not settle the idempotency key");
        }
    }
    match outcome {
        Ok(queued) => {
            let deliveries = already.len() + queued.len();
            tracing::info!(event_id = %event.id, project = %event.project, event_name = %event.name, deliveries, "event published");
            shared::telemetry::Emf::new()
                .count(shared::telemetry::metric::PUBLISHED, 1)
                .count(
                    shared::telemetry::metric::FAN_OUT,
                    u64::try_from(queued.len()).unwrap_or(u64::MAX),
                )
                .emit();
            Ok((
                Published {
                    event_id: event.id,
                    deliveries,
                },
                false,
            ))
        }
        Err(Failed { error, .. }) => Err(error),
    }
}

/// The 202 answer; a repeat says it is one (`Idempotent-Replayed: true`).
fn published(answer: Published, replayed: bool) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(answer)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// Marks the answer to a repeated publish.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// A publish that did not queue every delivery: the webhooks it did queue,
/// and the answer.
struct Failed {
    queued: Vec<WebhookId>,
    error: ApiError,
}

/// Queues one delivery of `event` per subscribed webhook not in `already`
/// (queued by an earlier try with the same idempotency key), each in its
/// webhook's lane, after the share and the stored event; answers the
/// webhooks it queued.
async fn fan_out<S: Store, Q: Queue>(
    state: &Publisher<'_, S, Q>,
    event: &Event,
    already: &BTreeSet<WebhookId>,
    now: Timestamp,
) -> Result<Vec<WebhookId>, Failed> {
    let fail = |error| Failed {
        queued: Vec::new(),
        error,
    };
    take_share(state, &event.project, now).await.map_err(fail)?;
    let envelope = event.envelope().map_err(|e| {
        tracing::error!(error = %e, "could not build the envelope");
        fail(ApiError::internal())
    })?;
    if !envelope_fits(&envelope) {
        return Err(fail(ApiError::payload_too_large(MAX_ENVELOPE_BYTES)));
    }
    let (subscribers, missing) = subscribers(state, event).await.map_err(fail)?;
    let subscribers: Vec<Webhook> = subscribers
        .into_iter()
        .filter(|hook| !already.contains(&hook.id))
        .collect();
    let (mut fast, mut slow) = (LaneBatch::default(), LaneBatch::default());
    for hook in &subscribers {
        let body = DeliveryMessage::new(event, hook.id, envelope.clone())
            .encode()
            .map_err(|e| {
                tracing::error!(error = %e, "could not encode a delivery");
                fail(ApiError::internal())
            })?;
        match Lane::of(hook) {
            Lane::Slow => slow.push(hook.id, body),
            _ => fast.push(hook.id, body),
        }
    }
    let total = already.len() + subscribers.len();
    // Stored before any delivery is queued, so every delivery's event can
    // be sent again, and a disabled subscriber can have it replayed once
    // re-enabled (`include_missed`); an event no webhook subscribes to is
    // not stored.
    if let (Some(expires_at), true) = (
        state.delivery_log.expires_at(now),
        !subscribers.is_empty() || missing,
    ) {
        state
            .store
            .put_event(&StoredEvent::new(event, &envelope, now), expires_at)
            .await
            .map_err(|e| fail(ApiError::from_store(e, "event")))?;
    }
    let group = event.project.as_str();
    let sent = tokio::join!(
        enqueue(state, Lane::Fast, group, fast),
        enqueue(state, Lane::Slow, group, slow)
    );
    let mut queued = Vec::with_capacity(subscribers.len());
    let mut failed = None;
    for (ids, result) in [sent.0, sent.1] {
        match result {
            Ok(()) => queued.extend(ids),
            Err(err) => {
                queued.extend(
                    ids.iter()
                        .enumerate()
                        .filter(|(i, _)| !err.failed.contains(i))
                        .map(|(_, id)| *id),
                );
                failed = Some(err);
            }
        }
    }
    if let Some(err) = failed {
        let done = already.len() + queued.len();
        tracing::error!(event_id = %event.id, queued = done, total, error = %error_chain(&err), "enqueue failed");
        return Err(Failed {
            queued,
            error: ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "enqueue_failed",
                format!(
                    "event {} was queued for {done} of {total} subscribed webhooks; the others will not receive it unless the publish is repeated with the same Idempotency-Key, which queues only them",
                    event.id
                ),
            ),
        });
    }
    Ok(queued)
}

/// One lane's messages: the webhooks and their bodies, in order.
#[derive(Default)]
struct LaneBatch {
    ids: Vec<WebhookId>,
    bodies: Vec<String>,
}

impl LaneBatch {
    fn push(&mut self, id: WebhookId, body: String) {
        self.ids.push(id);
        self.bodies.push(body);
    }
}

/// Queues a lane's messages; nothing to queue is no call. Answers the
/// webhooks with what came of it.
async fn enqueue<S: Store, Q: Queue>(
    state: &Publisher<'_, S, Q>,
    lane: Lane,
    group: &str,
    batch: LaneBatch,
) -> (Vec<WebhookId>, Result<(), shared::ports::EnqueueError>) {
    if batch.bodies.is_empty() {
        return (batch.ids, Ok(()));
    }
    let sent = state.queue.enqueue(lane, group, batch.bodies).await;
    (batch.ids, sent.map(drop))
}

/// The windows in which this instance found a project's share used up.
#[derive(Debug, Default)]
pub struct FullWindows(Mutex<HashMap<ProjectCode, i64>>);

/// Projects remembered at most; older windows are forgotten first.
const MAX_FULL_WINDOWS: usize = 10_000;

impl FullWindows {
    fn is_full(&self, project: &ProjectCode, window: i64) -> bool {
        let full = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        full.get(project) == Some(&window)
    }

    fn fill(&self, project: &ProjectCode, window: i64) {
        let mut full = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if full.len() >= MAX_FULL_WINDOWS {
            full.retain(|_, seen| *seen >= window);
        }
        full.insert(project.clone(), window);
    }
}

/// Counts this publish in the project's share, or answers 429 with
/// `Retry-After`. A window this instance already saw full is refused
/// without a storage call, so a project far over its share costs at most
/// one refused write per instance and second.
async fn take_share<S: Store, Q: Queue>(
    state: &Publisher<'_, S, Q>,
    project: &ProjectCode,
    now: Timestamp,
) -> Result<(), ApiError> {
    let Some(limit) = state.publish_share.per_second else {
        return Ok(());
    };
    let window = PublishShare::window(now);
    if state.full_windows.is_full(project, window) {
        return Err(ApiError::over_publish_share(limit, RETRY_AFTER_SECS));
    }
    let taken = state
        .store
        .take_publish(project, window, limit)
        .await
        .map_err(|e| ApiError::from_store(e, "project"))?;
    if taken {
        Ok(())
    } else {
        state.full_windows.fill(project, window);
        tracing::info!(project = %project, limit, "publish refused: over the project's share of the rate");
        Err(ApiError::over_publish_share(limit, RETRY_AFTER_SECS))
    }
}

/// The project's enabled webhooks subscribed to the event, and whether a
/// disabled one subscribes to it (and misses it).
async fn subscribers<S: Store, Q: Queue>(
    state: &Publisher<'_, S, Q>,
    event: &shared::domain::Event,
) -> Result<(Vec<Webhook>, bool), ApiError> {
    let mut found = Vec::new();
    let mut missing = false;
    let mut after = None;
    loop {
        let page = state
            .store
            .list(&event.project, MAX_WEBHOOKS_PER_PROJECT, after)
            .await
            .map_err(|e| ApiError::from_store(e, "project"))?;
        for hook in page.items {
            match (hook.subscribes_to(event.name), hook.enabled) {
                (true, true) => found.push(hook),
                (true, false) => missing = true,
                (false, _) => {}
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok((found, missing)),
        }
    }
}
