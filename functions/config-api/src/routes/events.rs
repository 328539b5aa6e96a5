//! `POST /projects/{project}/events`: one queued delivery per enabled,
//! subscribed webhook of the project; with the delivery history on, the
//! event is stored once first, for redelivery.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use shared::domain::delivery::{MAX_ENVELOPE_BYTES, envelope_fits};
use shared::domain::{
    DeliveryMessage, MAX_WEBHOOKS_PER_PROJECT, PublishInput, StoredEvent, Timestamp, Webhook,
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
    let event = input.validate(project, now)?;
    let envelope = event.envelope().map_err(|e| {
        tracing::error!(error = %e, "could not build the envelope");
        ApiError::internal()
    })?;
    if !envelope_fits(&envelope) {
        return Err(ApiError::payload_too_large(MAX_ENVELOPE_BYTES));
    }
    let subscribers = subscribers(&state, &event).await?;
    let bodies = subscribers
        .iter()
        .map(|hook| DeliveryMessage::new(&event, hook.id, envelope.clone()).encode())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            tracing::error!(error = %e, "could not encode a delivery");
            ApiError::internal()
        })?;
    let total = bodies.len();
    // Stored before any delivery is queued, so every delivery's event can
    // be sent again; an event no webhook receives is not stored.
    if let (Some(expires_at), false) = (state.delivery_log.expires_at(now), bodies.is_empty()) {
        state
            .store
            .put_event(&StoredEvent::new(&event, &envelope, now), expires_at)
            .await
            .map_err(|e| ApiError::from_store(e, "event"))?;
    }
    let queued = if bodies.is_empty() {
        0
    } else {
        state.queue.enqueue(bodies).await.map_err(|err| {
            tracing::error!(event_id = %event.id, queued = err.queued, total, error = %error_chain(&err), "enqueue failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "enqueue_failed",
                format!(
                    "event {} was queued for {} of {} subscribed webhooks; the others will not receive it",
                    event.id, err.queued, total
                ),
            )
        })?
    };
    tracing::info!(event_id = %event.id, project = %event.project, event_name = %event.name, deliveries = queued, "event published");
    Ok((
        StatusCode::ACCEPTED,
        Json(Published {
            event_id: event.id,
            deliveries: queued,
        }),
    ))
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
