//! The delivery history of one webhook, under
//! `/projects/{project}/webhooks/{id}`: its attempts, one delivery's
//! attempts in detail, redelivery and ping (`docs/ARCHITECTURE.md`,
//! "Delivery history").

use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use serde::Serialize;
use shared::domain::history::{AttemptCursor, StatusFilter, ping_event};
use shared::domain::{
    Attempt, DeliveryMessage, FieldError, Lane, ProjectCode, StoredEvent, Timestamp, Trigger,
    Webhook, WebhookId,
};
use uuid::Uuid;

use super::webhooks::{DEFAULT_PAGE_SIZE, page_size};
use crate::auth::Principal;
use crate::error::{ApiError, error_chain};
use crate::{AppState, Queue, Store};

const WEBHOOK: &str = "webhook";
const DELIVERY: &str = "delivery";

/// One page of a webhook's attempts, newest first.
#[derive(Debug, Serialize)]
pub struct DeliveryList {
    pub deliveries: Vec<Attempt>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One delivery: its attempts, first first, with request and response.
#[derive(Debug, Serialize)]
pub struct DeliveryDetail {
    pub delivery_id: Uuid,
    pub attempts: Vec<Attempt>,
}

/// A delivery queued at a person's request.
#[derive(Debug, Serialize)]
pub struct Queued {
    pub delivery_id: Uuid,
}

pub(crate) fn webhook_id(raw: &str) -> Result<WebhookId, ApiError> {
    WebhookId::parse(raw).ok_or_else(|| ApiError::not_found(WEBHOOK))
}

fn delivery_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw)
        .ok()
        .filter(|id| id.hyphenated().to_string() == raw)
        .ok_or_else(|| ApiError::not_found(DELIVERY))
}

pub(crate) fn log_off() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "delivery_log_off",
        "the delivery history is off in this deployment (DeliveryLogDays is 0)",
    )
}

/// `status`, `limit` (1..=100, default 20) and the `cursor` of the
/// previous page.
fn list_params(
    query: Option<&str>,
) -> Result<(Option<StatusFilter>, u32, Option<AttemptCursor>), ApiError> {
    let mut status = None;
    let mut limit = DEFAULT_PAGE_SIZE;
    let mut after = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "status" => {
                status = Some(match value.as_ref() {
                    "delivered" => StatusFilter::Delivered,
                    "failed" => StatusFilter::Failed,
                    _ => {
                        return Err(FieldError::new("status", "must be delivered or failed").into());
                    }
                });
            }
            "limit" => limit = page_size(&value)?,
            "cursor" => {
                after = Some(AttemptCursor::parse(&value).ok_or_else(|| {
                    FieldError::new("cursor", "must be the next_cursor of a previous page")
                })?);
            }
            _ => {}
        }
    }
    Ok((status, limit, after))
}

/// `GET .../deliveries`: the webhook's attempts, newest first; one Query
/// (and the webhook's GetItem beside it).
pub async fn list<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path((project, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<DeliveryList>, ApiError> {
    let project = principal.project(&project, WEBHOOK)?;
    let id = webhook_id(&id)?;
    let (status, limit, after) = list_params(query.as_deref())?;
    if !state.delivery_log.is_on() {
        return Err(log_off());
    }
    // The webhook is read beside the Query: a deleted one has no history
    // to show, though its records stay until they expire.
    let (_, page) = tokio::try_join!(webhook(&state, &project, id), async {
        state
            .store
            .list_attempts(&project, id, status, limit, after)
            .await
            .map_err(|e| ApiError::from_store(e, WEBHOOK))
    })?;
    Ok(Json(DeliveryList {
        deliveries: page.items.into_iter().map(Attempt::summary).collect(),
        next_cursor: page.next.map(|cursor| cursor.to_string()),
    }))
}

/// The recorded attempts of one delivery; 404 when there are none.
async fn attempts<S: Store, Q: Queue>(
    state: &AppState<S, Q>,
    project: &ProjectCode,
    webhook: WebhookId,
    delivery: Uuid,
) -> Result<Vec<Attempt>, ApiError> {
    if !state.delivery_log.is_on() {
        return Err(log_off());
    }
    let attempts = state
        .store
        .delivery_attempts(project, webhook, delivery)
        .await
        .map_err(|e| ApiError::from_store(e, DELIVERY))?;
    if attempts.is_empty() {
        return Err(ApiError::not_found(DELIVERY));
    }
    Ok(attempts)
}

/// `GET .../deliveries/{delivery_id}`.
pub async fn read<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path((project, id, delivery)): Path<(String, String, String)>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let project = principal.project(&project, WEBHOOK)?;
    let (id, delivery) = (webhook_id(&id)?, delivery_id(&delivery)?);
    let (_, attempts) = tokio::try_join!(
        webhook(&state, &project, id),
        attempts(&state, &project, id, delivery)
    )?;
    Ok(Json(DeliveryDetail {
        delivery_id: delivery,
        attempts,
    }))
}

/// The webhook, or 404.
pub(crate) async fn webhook<S: Store, Q: Queue>(
    state: &AppState<S, Q>,
    project: &ProjectCode,
    id: WebhookId,
) -> Result<Webhook, ApiError> {
    state
        .store
        .get(project, id)
        .await
        .map_err(|e| ApiError::from_store(e, WEBHOOK))?
        .ok_or_else(|| ApiError::not_found(WEBHOOK))
}

/// Queues one message a person asked for in the webhook's lane; answers
/// its delivery id.
async fn queue<S: Store, Q: Queue>(
    state: &AppState<S, Q>,
    hook: &Webhook,
    message: &DeliveryMessage,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let body = message.encode().map_err(|e| {
        tracing::error!(error = %e, "could not encode a delivery");
        ApiError::internal()
    })?;
    let lane = Lane::of(hook);
    let sent = state
        .queue
        .enqueue(lane, message.project.as_str(), vec![body]);
    sent.await.map_err(|err| {
        tracing::error!(delivery_id = %message.delivery_id, error = %error_chain(&err), "enqueue failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "enqueue_failed",
            "the delivery could not be queued; nothing was sent, try again",
        )
    })?;
    tracing::info!(delivery_id = %message.delivery_id, project = %message.project, webhook_id = %message.webhook_id, trigger = ?message.trigger, "delivery queued on request");
    Ok((
        StatusCode::ACCEPTED,
        Json(Queued {
            delivery_id: message.delivery_id,
        }),
    ))
}

/// `POST .../deliveries/{delivery_id}/redeliver`: the same event bytes
/// again, as a new delivery; to a disabled webhook too, which stays
/// disabled.
pub async fn redeliver<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path((project, id, delivery)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let project = principal.project(&project, WEBHOOK)?;
    let (id, delivery) = (webhook_id(&id)?, delivery_id(&delivery)?);
    let (hook, attempts) = tokio::try_join!(
        webhook(&state, &project, id),
        attempts(&state, &project, id, delivery)
    )?;
    let event_id = attempts[0].event_id;
    let event = state
        .store
        .get_event(&project, event_id)
        .await
        .map_err(|e| ApiError::from_store(e, "event"))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::GONE,
                "event_expired",
                format!(
                    "event {event_id} is no longer kept (the history keeps events for DeliveryLogDays); it cannot be sent again"
                ),
            )
        })?;
    let message = event.redelivery(hook.id).map_err(|e| {
        tracing::error!(event_id = %event_id, error = %e, "stored envelope is not JSON");
        ApiError::internal()
    })?;
    queue(&state, &hook, &message).await
}

/// `POST .../ping`: a `webhook.ping` event through the queue and the
/// sender, to an enabled or disabled webhook.
pub async fn ping<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path((project, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let project = principal.project(&project, WEBHOOK)?;
    let hook = webhook(&state, &project, webhook_id(&id)?).await?;
    let now = Timestamp::now();
    let (event, envelope) = ping_event(&hook, now)
        .and_then(|event| event.envelope().map(|envelope| (event, envelope)))
        .map_err(|e| {
            tracing::error!(error = %e, "could not build the ping");
            ApiError::internal()
        })?;
    if let Some(expires_at) = state.delivery_log.expires_at(now) {
        let stored = StoredEvent::new(&event, &envelope, now);
        state
            .store
            .put_event(&stored, expires_at)
            .await
            .map_err(|e| ApiError::from_store(e, "event"))?;
    }
    let message = DeliveryMessage {
        trigger: Trigger::Ping,
        ..DeliveryMessage::new(&event, hook.id, envelope)
    };
    queue(&state, &hook, &message).await
}
