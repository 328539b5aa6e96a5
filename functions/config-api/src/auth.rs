//! Bearer tokens (`docs/ARCHITECTURE.md`, "Tokens"). The admin token reaches every
//! project and mints project tokens; a project token reaches its own project
//! only, and any other project looks to it exactly like a missing resource.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shared::domain::{ApiToken, ProjectCode, TokenHash};

use crate::error::ApiError;
use crate::{AppState, Queue, Store};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Project(ProjectCode),
}

impl Principal {
    /// The project named in the path, if this caller may touch it. A project
    /// token on another project gets the same 404 as a missing `what`.
    pub fn project(&self, raw: &str, what: &str) -> Result<ProjectCode, ApiError> {
        match self {
            Principal::Admin => ProjectCode::parse(raw).map_err(ApiError::invalid_field),
            Principal::Project(own) if own.as_str() == raw => Ok(own.clone()),
            Principal::Project(_) => Err(ApiError::not_found(what)),
        }
    }

    /// Like [`Principal::project`], for routes only the admin may use.
    pub fn admin_project(&self, raw: &str, what: &str) -> Result<ProjectCode, ApiError> {
        let project = self.project(raw, what)?;
        match self {
            Principal::Admin => Ok(project),
            Principal::Project(_) => Err(ApiError::forbidden(
                "only the admin token can manage tokens",
            )),
        }
    }
}

/// The admin token, kept only as its hash.
#[derive(Debug, Clone)]
pub struct AdminToken(TokenHash);

impl AdminToken {
    pub fn new(token: &ApiToken) -> Self {
        Self(token.hash())
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Middleware: resolves the caller or answers 401.
pub async fn authenticate<S: Store, Q: Queue>(
    State(state): State<AppState<S, Q>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(presented) = bearer(&request) else {
        return ApiError::unauthorized("missing bearer token (Authorization: Bearer <token>)")
            .into_response();
    };
    let hash = ApiToken::presented(presented).hash();
    let principal = if hash == state.admin.0 {
        Principal::Admin
    } else if !ApiToken::could_be_minted(presented) {
        // Not the shape of any token this service mints: no storage read.
        return ApiError::unauthorized("invalid or revoked token").into_response();
    } else {
        match state.store.find_token(&hash).await {
            Ok(Some(record)) => Principal::Project(record.project),
            Ok(None) => {
                return ApiError::unauthorized("invalid or revoked token").into_response();
            }
            Err(err) => return ApiError::from_store(err, "token").into_response(),
        }
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}
