//! The inspector: a receiver for webhooks on one's own machine, like
//! webhook.site. Point a webhook at `http://127.0.0.1:3001/<name>`; every
//! request to `/<name>` is recorded, and `GET /<name>` lists them, oldest
//! first. The query string chooses the answer: `?status=503` answers that
//! status, `?delay=20` answers after 20 seconds, `?fail_first=2` answers the
//! first 2 requests to the path 503, `?retry_after=3` adds that `Retry-After`
//! to a 429 or 503; the recorded `path` keeps it. `make dev` also records
//! every operational event its event bus routes to it under
//! `/operational-events` (method `EVENT`, the EventBridge event as body).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shared::domain::Timestamp;

/// Largest body recorded; longer ones are cut.
const MAX_BODY: usize = 2 * 1024 * 1024;

/// One request as received.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as requested.
    pub path: String,
    /// Lower-case names; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    /// The body exactly as received (as text).
    pub body: String,
    pub received_at: Timestamp,
    #[serde(skip)]
    pub instant: Instant,
}

impl Recorded {
    /// A header's value, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The path without its query: the name requests are listed under.
    pub fn name(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

/// The recorded requests, shared with whoever serves the router.
#[derive(Debug, Clone, Default)]
pub struct Inspector {
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Inspector {
    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    /// Everything recorded, oldest first.
    pub fn all(&self) -> Vec<Recorded> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What was recorded under `/<name>`, oldest first.
    pub fn named(&self, name: &str) -> Vec<Recorded> {
        self.all()
            .into_iter()
            .filter(|r| r.name() == name)
            .collect()
    }

    /// Records an operational event taken from the event bus under
    /// `/<name>`, as if it had been POSTed there.
    pub fn record_event(&self, name: &str, event: &str) {
        self.push(Recorded {
            method: "EVENT".to_owned(),
            path: format!("/{name}"),
            headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
            body: event.to_owned(),
            received_at: Timestamp::now(),
            instant: Instant::now(),
        });
    }

    fn push(&self, recorded: Recorded) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(recorded);
    }
}

async fn handle(State(inspector): State<Inspector>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    if parts.method == Method::GET {
        return axum::Json(inspector.named(parts.uri.path())).into_response();
    }
    let body: Bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    inspector.push(Recorded {
        method: parts.method.to_string(),
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        received_at: Timestamp::now(),
        instant: Instant::now(),
    });
    let query = parts.uri.query().unwrap_or_default();
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(delay) = param("delay")
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
    {
        tokio::time::sleep(Duration::from_secs_f64(delay.min(3600.0))).await;
    }
    let status = param("status")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    // `?fail_first=2`: the first 2 requests to this path answer 503.
    let failing = param("fail_first")
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| inspector.named(parts.uri.path()).len() <= n);
    let status = if failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        status
    };
    let mut response = (status, "recorded\n").into_response();
    // `?retry_after=3`: sent with a 429 or 503.
    if let Some(value) = param("retry_after")
        .filter(|_| matches!(status.as_u16(), 429 | 503))
        .and_then(|v| axum::http::HeaderValue::from_str(&v).ok())
    {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
    if status.is_redirection() {
        response.headers_mut().insert(
            axum::http::header::LOCATION,
            axum::http::HeaderValue::from_static("/redirected"),
        );
    }
    response
}
