//! `POST /projects/{project}/tokens` and `DELETE /projects/{project}/tokens/{id}`:
//! admin only. The token is in the 201 response and nowhere else, ever.
//! `GET /me`: what the presented token may reach.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use shared::domain::{ApiToken, ProjectCode, Timestamp, TokenId, TokenRecord};

use crate::auth::Principal;
use crate::error::{ApiError, error_chain};
use crate::{AppState, Queue, Store};

#[derive(Debug, Serialize)]
pub struct MintedToken {
    pub id: TokenId,
    pub project: ProjectCode,
    /// Shown once; only its SHA-256 is kept.
    pub token: String,
    pub created_at: Timestamp,
}

pub async fn mint<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path(project): Path<String>,
) -> Result<(StatusCode, Json<MintedToken>), ApiError> {
    let project = principal.admin_project(&project, "project")?;
    let token = ApiToken::generate().map_err(|e| {
        tracing::error!(error = %error_chain(&e), "token generation failed");
        ApiError::internal()
    })?;
    let record = TokenRecord::new(&token.hash(), project, Timestamp::now());
    state
        .store
        .put_token(&record)
        .await
        .map_err(|e| ApiError::from_store(e, "token"))?;
    tracing::info!(token_id = %record.id, project = %record.project, "token minted");
    Ok((
        StatusCode::CREATED,
        Json(MintedToken {
            id: record.id,
            project: record.project,
            token: token.expose().to_owned(),
            created_at: record.created_at,
        }),
    ))
}

pub async fn revoke<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    Extension(principal): Extension<Principal>,
    Path((project, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let project = principal.admin_project(&project, "token")?;
    let id = TokenId::parse(&id).ok_or_else(|| ApiError::not_found("token"))?;
    state
        .store
        .revoke_token(&project, &id)
        .await
        .map_err(|e| ApiError::from_store(e, "token"))?;
    tracing::info!(token_id = %id, project = %project, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /me`: whether the token is the admin's, or a project's and which.
#[derive(Debug, Serialize)]
pub struct Me {
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectCode>,
}

pub async fn me(Extension(principal): Extension<Principal>) -> Json<Me> {
    Json(match principal {
        Principal::Admin => Me {
            role: "admin",
            project: None,
        },
        Principal::Project(project) => Me {
            role: "project",
            project: Some(project),
        },
    })
}
