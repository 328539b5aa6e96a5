//! `POST /projects/{project}/events`: one queued delivery per enabled,
//! subscribed webhook of the project, in the webhook's lane (slow while it
//! is failing or slow); with the delivery history on, the event is stored
//! once first, for redelivery. Each project gets its share of the publish
//! rate (`PublishRatePerProject`), checked first.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use shared::domain::delivery::{MAX_ENVELOPE_BYTES, envelope_fits};
use shared::domain::rate::RETRY_AFTER_SECS;
use shared::domain::{
    DeliveryMessage, Lane, MAX_WEBHOOKS_PER_PROJECT, ProjectCode, PublishInput, PublishShare,
    StoredEvent, Timestamp, Webhook,
};
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
    JsonBody(input): JsonBody<PublishInput>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let project = principal.project(&project, "project")?;
    let now = Timestamp::now();
    take_share(&state, &project, now).await?;
    let event = input.validate(project, now)?;
    let envelope = event.envelope().map_err(|e| {
        tracing::error!(error = %e, "could not build the envelope");
        ApiError::internal()
    })?;
    if !envelope_fits(&envelope) {
        return Err(ApiError::payload_too_large(MAX_ENVELOPE_BYTES));
    }
    let subscribers = subscribers(&state, &event).await?;
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    for hook in &subscribers {
        let body = DeliveryMessage::new(&event, hook.id, envelope.clone())
            .encode()
            .map_err(|e| {
                tracing::error!(error = %e, "could not encode a delivery");
                ApiError::internal()
            })?;
        match Lane::of(hook) {
            Lane::Slow => slow.push(body),
            _ => fast.push(body),
        }
    }
    let total = subscribers.len();
    // Stored before any delivery is queued, so every delivery's event can
    // be sent again; an event no webhook receives is not stored.
    if let (Some(expires_at), false) = (state.delivery_log.expires_at(now), subscribers.is_empty())
    {
        state
            .store
            .put_event(&StoredEvent::new(&event, &envelope, now), expires_at)
            .await
            .map_err(|e| ApiError::from_store(e, "event"))?;
    }
    let group = event.project.as_str();
    let sent = tokio::join!(
        enqueue(&state, Lane::Fast, group, fast),
        enqueue(&state, Lane::Slow, group, slow)
    );
    let mut queued = 0;
    let mut failed = None;
    for result in [sent.0, sent.1] {
        match result {
            Ok(n) => queued += n,
            Err(err) => {
                queued += err.queued;
                failed = Some(err);
            }
        }
    }
    if let Some(err) = failed {
        tracing::error!(event_id = %event.id, queued, total, error = %error_chain(&err), "enqueue failed");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "enqueue_failed",
            format!(
                "event {} was queued for {} of {} subscribed webhooks; the others will not receive it",
                event.id, queued, total
            ),
        ));
    }
    tracing::info!(event_id = %event.id, project = %event.project, event_name = %event.name, deliveries = queued, "event published");
    Ok((
        StatusCode::ACCEPTED,
        Json(Published {
            event_id: event.id,
            deliveries: queued,
        }),
    ))
}

/// Queues `bodies` in `lane`; nothing to queue is no call.
async fn enqueue<S: Store, Q: Queue>(
    state: &AppState<S, Q>,
    lane: Lane,
    group: &str,
    bodies: Vec<String>,
) -> Result<usize, shared::ports::EnqueueError> {
    if bodies.is_empty() {
        return Ok(0);
    }
    state.queue.enqueue(lane, group, bodies).await
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
    state: &AppState<S, Q>,
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

/// The project's enabled webhooks subscribed to the event.
async fn subscribers<S: Store, Q: Queue>(
    state: &AppState<S, Q>,
    event: &shared::domain::Event,
) -> Result<Vec<Webhook>, ApiError> {
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .store
            .list(&event.project, MAX_WEBHOOKS_PER_PROJECT, after)
            .await
            .map_err(|e| ApiError::from_store(e, "project"))?;
        found.extend(
            page.items
                .into_iter()
                .filter(|hook| hook.enabled && hook.subscribes_to(event.name)),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(found),
        }
    }
}
