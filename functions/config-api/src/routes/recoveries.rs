//! Bulk recovery of one webhook (`domain::recover`, `docs/ARCHITECTURE.md`,
//! "Bulk recovery"): `POST .../webhooks/{id}/recover` starts one and runs
//! its first steps while it answers; the sender runs the rest from the
//! waiting lane. `GET .../recoveries/{recovery_id}` shows its progress.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use shared::domain::recover::{
    Progress, RecoverInput, Recovery, State as RecoveryState, Step, Window,
};
use shared::domain::{Lane, Timestamp, WebhookId};
use shared::recovery::Driver;
use uuid::Uuid;

use super::deliveries::{log_off, webhook, webhook_id};
use crate::auth::Principal;
use crate::error::{ApiError, error_chain};
use crate::extract::JsonBody;
use crate::{AppState, Queue, Store};

/// How long the request itself finds and queues before the sender takes
/// over: a recovery of a few thousand deliveries is found in this time.
pub const FIRST_STEPS: Duration = Duration::from_secs(3);

/// A recovery and its progress.
#[derive(Debug, Serialize)]
pub struct RecoveryView {
    pub recovery_id: Uuid,
    pub webhook_id: WebhookId,
    pub state: RecoveryState,
    /// Deliveries found to send (so far, while `state` is `finding`).
    pub deliveries: u64,
    pub queued: u64,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Found, but their event is no longer kept: not sent.
    pub expired: u64,
    pub since: Timestamp,
    pub until: Timestamp,
    /// The span whose missed events it sends, if any.
    pub missed: Option<Window>,
    pub rate_per_second: u32,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

impl RecoveryView {
    fn of(recovery: &Recovery, progress: &Progress) -> Self {
        Self {
            recovery_id: recovery.id,
            webhook_id: recovery.webhook_id,
            state: progress.state(),
            deliveries: progress.found,
            queued: progress.queued,
            sent: progress.sent,
            delivered: progress.delivered,
            failed: progress.failed,
            skipped: progress.skipped,
            expired: progress.expired,
            since: recovery.plan.window.from,
            until: recovery.plan.window.to,
            missed: recovery.plan.missed,
            rate_per_second: recovery.plan.rate,
            created_at: recovery.created_at,
            finished_at: recovery.finished_at,
        }
    }
}

/// `POST .../webhooks/{id}/recover`: 202 with the recovery, after its
/// first steps.
pub async fn recover<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path((project, id)): Path<(String, String)>,
    JsonBody(input): JsonBody<RecoverInput>,
) -> Result<(StatusCode, Json<RecoveryView>), ApiError> {
    let project = principal.project(&project, "webhook")?;
    let id = webhook_id(&id)?;
    if !state.delivery_log.is_on() {
        return Err(log_off());
    }
    let hook = webhook(&state, &project, id).await?;
    if !hook.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "webhook_disabled",
            "the webhook is disabled: re-enable it first (a recovery sends only to an enabled webhook)",
        ));
    }
    let now = Timestamp::now();
    let plan = input
        .validate(hook.last_disabled(), state.delivery_log, now)
        .map_err(ApiError::invalid_field)?;
    let recovery = Recovery {
        id: Uuid::now_v7(),
        project,
        webhook_id: id,
        plan,
        created_at: now,
        finished_at: None,
    };
    let driver =
        Driver::new(&state.store, &state.queue, state.delivery_log).with_events(&state.events);
    let progress = match driver.start(&recovery, Instant::now() + FIRST_STEPS).await {
        Ok(progress) => progress,
        Err(err) => {
            tracing::error!(recovery_id = %recovery.id, error = %error_chain(&err), "the recovery's first steps failed; handed to the sender");
            resume(&state, &recovery).await?
        }
    };
    tracing::info!(recovery_id = %recovery.id, project = %recovery.project, webhook_id = %id, found = progress.found, "recovery started");
    Ok((
        StatusCode::ACCEPTED,
        Json(RecoveryView::of(&recovery, &progress)),
    ))
}

/// After its first steps failed: the recovery's first step again, in the
/// waiting lane (what it marked stays marked; each event is sent once
/// more at least). 503 if the recovery was not even stored.
async fn resume<S: Store, Q: Queue>(
    state: &AppState<S, Q>,
    recovery: &Recovery,
) -> Result<Progress, ApiError> {
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "recovery_unavailable",
            "the recovery could not be started; try again",
        )
    };
    let Some((_, progress)) = state
        .store
        .get_recovery(&recovery.project, recovery.id)
        .await
        .map_err(|_| unavailable())?
    else {
        return Err(unavailable());
    };
    let body = Step::first(recovery).encode().map_err(|_| unavailable())?;
    state
        .queue
        .enqueue_one(
            Lane::Waiting,
            recovery.project.as_str(),
            body,
            Duration::ZERO,
        )
        .await
        .map_err(|_| unavailable())?;
    Ok(progress)
}

/// `GET .../webhooks/{id}/recoveries/{recovery_id}`.
pub async fn read<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path((project, id, recovery)): Path<(String, String, String)>,
) -> Result<Json<RecoveryView>, ApiError> {
    let project = principal.project(&project, "webhook")?;
    let id = webhook_id(&id)?;
    let recovery = Uuid::try_parse(&recovery)
        .ok()
        .filter(|parsed| parsed.hyphenated().to_string() == recovery)
        .ok_or_else(|| ApiError::not_found("recovery"))?;
    let found = state
        .store
        .get_recovery(&project, recovery)
        .await
        .map_err(|e| ApiError::from_store(e, "recovery"))?
        .filter(|(recovery, _)| recovery.webhook_id == id);
    let (recovery, progress) = found.ok_or_else(|| ApiError::not_found("recovery"))?;
    Ok(Json(RecoveryView::of(&recovery, &progress)))
}
