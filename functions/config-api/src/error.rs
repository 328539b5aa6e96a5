//! API errors: a stable machine `code`, a human `message`, and the request
//! `field` at fault when there is one. Internals never reach the client.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shared::domain::{FieldError, Timestamp};
use shared::ports::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds to wait before trying again (`Retry-After`), on a 429 or a
    /// 409 that ends at a known time.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body_<'a>,
}

#[derive(Serialize)]
struct Body_<'a> {
    code: &'a str,
    message: &'a str,
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 429: the project published more than its share of the rate.
    pub fn over_publish_share(limit: u32, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "publish_rate_exceeded",
                format!(
                    "this project published {limit} events in this second, its share of the publish rate; try again after {retry_after} s (Retry-After)"
                ),
            )
        }
    }

    /// 409: an idempotency key used before with another body.
    pub fn idempotency_key_reused() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this Idempotency-Key was used with another body in the last 24 hours; use a new key for a new event",
        )
        .with_field("Idempotency-Key")
    }

    /// 409: a publish with the same idempotency key is under way.
    pub fn idempotency_in_progress() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::CONFLICT,
                "idempotency_in_progress",
                "a publish with this Idempotency-Key is under way; repeat it after Retry-After to get its answer",
            )
        }
    }

    /// 409: a previous rotation's overlap lasts until `until` (it is `now`).
    pub fn rotation_overlap(until: Timestamp, now: Timestamp) -> Self {
        let wait = until
            .as_datetime()
            .signed_duration_since(now.as_datetime())
            .num_seconds()
            .max(0)
            + 1;
        Self {
            retry_after: Some(u64::try_from(wait).unwrap_or(1)),
            ..Self::new(
                StatusCode::CONFLICT,
                "rotation_overlap",
                format!(
                    "the previous rotation's old secret still signs until {until}; rotating now would drop it early, so rotate again after that time (Retry-After)"
                ),
            )
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn invalid_field(err: FieldError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_field", err.message).with_field(err.field)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds {} KiB", limit / 1024),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON (Content-Type: application/json)",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the request could not be completed; try again",
        )
    }

    /// Maps a storage failure. `what` names the missing thing for 404s.
    pub fn from_store(err: StoreError, what: &str) -> Self {
        match err {
            StoreError::NotFound => Self::not_found(what),
            StoreError::AlreadyExists => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            StoreError::Conflict => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} was changed at the same time; nothing was applied, try again"),
            ),
            StoreError::LimitReached(max) => Self::new(
                StatusCode::CONFLICT,
                "webhook_limit_reached",
                format!("a project holds at most {max} webhooks; delete one first"),
            ),
            StoreError::Unavailable(_) => {
                tracing::error!(error = %error_chain(&err), "storage unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "storage is unavailable; try again",
                )
            }
            StoreError::Corrupt(_) => {
                tracing::error!(error = %error_chain(&err), "stored item is malformed");
                Self::internal()
            }
        }
    }
}

pub use shared::error_chain;

impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        Self::invalid_field(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Envelope {
            error: Body_ {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"webhooks\""),
            );
        }
        response
    }
}

/// Rewrites the plain-text errors axum produces on its own (unknown route,
/// wrong method, unreadable path) into the JSON error shape, keeping their
/// status and headers such as `Allow`.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let detail = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .unwrap_or_default();
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::new(status, "not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            ApiError::new(
                status,
                "method_not_allowed",
                format!("method not allowed here; allowed: {allow}"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(crate::MAX_BODY_BYTES),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::unsupported_media_type(),
        s if s.is_client_error() => ApiError::new(
            s,
            "invalid_request",
            if detail.is_empty() {
                "invalid request".to_owned()
            } else {
                detail
            },
        ),
        _ => ApiError::internal(),
    };
    let fresh = error.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (_, body): (_, Body) = fresh.into_parts();
    Response::from_parts(parts, body)
}
