//! Webhook CRUD under `/projects/{project}/webhooks`.

use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::domain::operational::{Change, OperationalEvent};
use shared::domain::{
    FieldError, MAX_WEBHOOKS_PER_PROJECT, SigningSecret, Timestamp, WebhookId, WebhookInput,
    WebhookPatch,
};
use shared::error_chain;
use shared::ports::Rotation;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::view::{CreatedWebhook, SigningSecretView, WebhookList, WebhookView};
use crate::{AppState, Queue, Store};

const WEBHOOK: &str = "webhook";
pub const DEFAULT_PAGE_SIZE: u32 = 20;

fn store_error(err: shared::ports::StoreError) -> ApiError {
    ApiError::from_store(err, WEBHOOK)
}

fn webhook_id(raw: &str) -> Result<WebhookId, ApiError> {
    WebhookId::parse(raw).ok_or_else(|| ApiError::not_found(WEBHOOK))
}

pub async fn create<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path(project): Path<String>,
    JsonBody(input): JsonBody<WebhookInput>,
) -> Result<Response, ApiError> {
    let project = principal.project(&project, "project")?;
    let mut hook = input.validate(&state.rules)?.into_webhook(
        WebhookId::generate(),
        project,
        Timestamp::now(),
    );
    let signing = new_signing_secret()?;
    hook.signing_secret = Some(signing.clone());
    state.store.create(&hook).await.map_err(store_error)?;
    tracing::info!(project = %hook.project, webhook_id = %hook.id, "webhook created");
    let location = format!("/projects/{}/webhooks/{}", hook.project, hook.id);
    let created = CreatedWebhook {
        webhook: WebhookView::from(hook),
        signing_secret: signing.expose().to_owned(),
    };
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

fn new_signing_secret() -> Result<SigningSecret, ApiError> {
    SigningSecret::generate().map_err(|e| {
        tracing::error!(error = %error_chain(&e), "signing secret generation failed");
        ApiError::internal()
    })
}

/// `GET .../signing-secret`: the secret deliveries are signed with. A
/// webhook stored before deliveries were signed gets one now.
pub async fn signing_secret<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<SigningSecretView>, ApiError> {
    let project = principal.project(&project, WEBHOOK)?;
    let id = webhook_id(&id)?;
    let hook = state
        .store
        .signing_secret(&project, id, new_signing_secret()?)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(WEBHOOK))?;
    let secret = hook
        .signing_secret
        .as_ref()
        .ok_or_else(ApiError::internal)?;
    let now = Timestamp::now();
    Ok(Json(SigningSecretView {
        signing_secret: secret.expose().to_owned(),
        previous_valid_until: hook
            .previous_signing(secret, now)
            .and(hook.previous_signing_until),
    }))
}

/// `POST .../signing-secret/rotate`: a new signing secret; the one it
/// replaces keeps signing beside it for the overlap (24 hours by default),
/// so receivers can switch without missing a delivery. Refused (409) while
/// a previous rotation's overlap lasts: it would drop, before the time it
/// promised, the secret receivers may still verify with.
pub async fn rotate_signing_secret<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<SigningSecretView>, ApiError> {
    let project = principal.project(&project, WEBHOOK)?;
    let id = webhook_id(&id)?;
    let now = Timestamp::now();
    let until = now.after(state.signing_overlap);
    let secret = match state
        .store
        .rotate_signing_secret(&project, id, new_signing_secret()?, now, until)
        .await
        .map_err(store_error)?
    {
        Rotation::Rotated(secret) => secret,
        Rotation::NotFound => return Err(ApiError::not_found(WEBHOOK)),
        Rotation::Overlapping { until } => return Err(ApiError::rotation_overlap(until, now)),
    };
    tracing::info!(project = %project, webhook_id = %id, "signing secret rotated");
    Ok(Json(SigningSecretView {
        signing_secret: secret.expose().to_owned(),
        previous_valid_until: Some(until),
    }))
}

/// A page's `limit`: 1 to 100.
pub fn page_size(value: &str) -> Result<u32, FieldError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_WEBHOOKS_PER_PROJECT).contains(n))
        .ok_or_else(|| {
            FieldError::new(
                "limit",
                format!("must be an integer from 1 to {MAX_WEBHOOKS_PER_PROJECT}"),
            )
        })
}

/// `limit` (1..=100, default 20) and the `cursor` of the previous page: the
/// id of its last webhook.
fn page_params(query: Option<&str>) -> Result<(u32, Option<WebhookId>), ApiError> {
    let mut limit = DEFAULT_PAGE_SIZE;
    let mut after = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "limit" => limit = page_size(&value)?,
            "cursor" => {
                after = Some(WebhookId::parse_any_case(&value).ok_or_else(|| {
                    FieldError::new(
                        "cursor",
                        "must be the next_cursor of a previous page (a webhook id)",
                    )
                })?);
            }
            _ => {}
        }
    }
    Ok((limit, after))
}

pub async fn list<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<WebhookList>, ApiError> {
    let project = principal.project(&project, "project")?;
    let (limit, after) = page_params(query.as_deref())?;
    let page = state
        .store
        .list(&project, limit, after)
        .await
        .map_err(store_error)?;
    Ok(Json(WebhookList {
        webhooks: page.items.into_iter().map(WebhookView::from).collect(),
        next_cursor: page.next.map(|id| id.to_string()),
    }))
}

pub async fn read<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<WebhookView>, ApiError> {
    let project = principal.project(&project, WEBHOOK)?;
    let id = webhook_id(&id)?;
    let hook = state
        .store
        .get(&project, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(WEBHOOK))?;
    Ok(Json(hook.into()))
}

pub async fn update<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path((project, id)): Path<(String, String)>,
    JsonBody(patch): JsonBody<WebhookPatch>,
) -> Result<Json<WebhookView>, ApiError> {
    let project = principal.project(&project, WEBHOOK)?;
    let id = webhook_id(&id)?;
    let changes = patch.validate(&state.rules)?;
    let now = Timestamp::now();
    let updated = state
        .store
        .update(&project, id, &changes, now)
        .await
        .map_err(store_error)?;
    let hook = updated.webhook;
    tracing::info!(project = %project, webhook_id = %id, enabled = hook.enabled, "webhook updated");
    if updated.re_enabled {
        // This update's conditional write turned it on: its one event. The
        // span it was off is on the webhook now.
        let change = Change::ReEnabled {
            disabled_at: hook.last_disabled_from,
        };
        state
            .events
            .put(&[OperationalEvent::of(&hook, now, change)])
            .await;
    }
    Ok(Json(hook.into()))
}

pub async fn delete<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path((project, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let project = principal.project(&project, WEBHOOK)?;
    let id = webhook_id(&id)?;
    state
        .store
        .delete(&project, id)
        .await
        .map_err(store_error)?;
    tracing::info!(project = %project, webhook_id = %id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_is_the_last_webhook_id_in_any_case() {
        let id = WebhookId::generate();
        let upper = id.to_string().to_uppercase();
        assert_eq!(
            page_params(Some(&format!("cursor={id}"))).unwrap().1,
            Some(id)
        );
        assert_eq!(
            page_params(Some(&format!("cursor={upper}"))).unwrap().1,
            Some(id)
        );
        for bad in [
            "cursor=",
            "cursor=zzz",
            "cursor=0190c3a8b2a17c3e8f1e2d3c4b5a6978",
        ] {
            assert_eq!(
                page_params(Some(bad)).unwrap_err().field.as_deref(),
                Some("cursor"),
                "{bad}"
            );
        }
    }

    #[test]
    fn page_params_validate_limit() {
        assert_eq!(page_params(None).unwrap(), (DEFAULT_PAGE_SIZE, None));
        assert_eq!(page_params(Some("limit=100")).unwrap().0, 100);
        for bad in ["limit=0", "limit=101", "limit=-1", "limit=ten"] {
            assert_eq!(
                page_params(Some(bad)).unwrap_err().field.as_deref(),
                Some("limit"),
                "{bad}"
            );
        }
        assert_eq!(
            page_params(Some("cursor=zzz"))
                .unwrap_err()
                .field
                .as_deref(),
            Some("cursor")
        );
    }
}
