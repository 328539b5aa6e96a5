//! The config API: webhooks, tokens and the event catalog, as one `axum`
//! router. The Lambda serves it through `lambda_http`; the local stack and
//! the tests serve the very same router.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use shared::adapters::secrets::{SecretError, read_secret_string};
use shared::adapters::sqs::LaneUrls;
use shared::adapters::{DynamoStore, EventBus, SqsQueue};
use shared::config::{ConfigError, Env};
use shared::domain::{ApiToken, DeliveryLog, EndpointRules, PublishShare};
use shared::ports::{
    DeliveryQueue, HistoryStore, IdempotencyStore, RateStore, RecoveryStore, TokenStore,
    WebhookStore,
};

pub mod auth;
pub mod error;
pub mod extract;
pub mod ingest;
pub mod routes;
pub mod ui;
pub mod view;

pub use auth::{AdminToken, Principal};
pub use error::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Shortest accepted admin token.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// What the API needs from storage.
pub trait Store:
    WebhookStore + TokenStore + HistoryStore + RateStore + IdempotencyStore + RecoveryStore + 'static
{
}
impl<
    T: WebhookStore
        + TokenStore
        + HistoryStore
        + RateStore
        + IdempotencyStore
        + RecoveryStore
        + 'static,
> Store for T
{
}

/// What the API needs from the delivery queue.
pub trait Queue: DeliveryQueue + 'static {}
impl<T: DeliveryQueue + 'static> Queue for T {}

/// How long a replaced signing secret keeps signing, by default.
pub const DEFAULT_SIGNING_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// Shared by every request; cheap to clone.
#[derive(Debug)]
pub struct AppState<S, Q>(Arc<Inner<S, Q>>);

#[derive(Debug)]
pub struct Inner<S, Q> {
    pub store: S,
    pub queue: Q,
    pub admin: AdminToken,
    pub rules: EndpointRules,
    /// How long a replaced signing secret keeps signing.
    pub signing_overlap: Duration,
    /// How long published events are kept for redelivery; off stores none.
    pub delivery_log: DeliveryLog,
    /// Each project's share of the publish rate.
    pub publish_share: PublishShare,
    /// The windows in which this instance saw a project's share used up:
    /// further publishes of that project in the window are refused without
    /// a storage call.
    pub full_windows: routes::events::FullWindows,
    /// Where the operational events of re-enables and of recoveries it
    /// finishes go.
    pub events: EventBus,
}

impl<S, Q> Clone for AppState<S, Q> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<S, Q> Deref for AppState<S, Q> {
    type Target = Inner<S, Q>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<S, Q> AppState<S, Q> {
    pub fn new(
        store: S,
        queue: Q,
        admin: AdminToken,
        rules: EndpointRules,
        signing_overlap: Duration,
        delivery_log: DeliveryLog,
    ) -> Self {
        Self(Arc::new(Inner {
            store,
            queue,
            admin,
            rules,
            signing_overlap,
            delivery_log,
            publish_share: PublishShare::off(),
            full_windows: routes::events::FullWindows::default(),
            events: EventBus::off(),
        }))
    }

    /// Puts operational events on `bus`. Call before the state is shared.
    pub fn with_events(self, bus: EventBus) -> Self {
        match Arc::try_unwrap(self.0) {
            Ok(inner) => Self(Arc::new(Inner {
                events: bus,
                ..inner
            })),
            Err(shared) => {
                tracing::error!("the event bus was set on a state already shared; ignored");
                Self(shared)
            }
        }
    }

    /// Limits each project to `share` of the publish rate. Call before the
    /// state is shared.
    pub fn with_publish_share(self, share: PublishShare) -> Self {
        match Arc::try_unwrap(self.0) {
            Ok(inner) => Self(Arc::new(Inner {
                publish_share: share,
                ..inner
            })),
            Err(shared) => {
                tracing::error!("the publish share was set on a state already shared; ignored");
                Self(shared)
            }
        }
    }
}

/// Every route of the API.
pub fn router<S: Store, Q: Queue>(state: AppState<S, Q>) -> Router {
    use routes::{catalog, deliveries, events, recoveries, tokens, webhooks};
    Router::new()
        .route(
            "/projects/{project}/webhooks",
            get(webhooks::list::<S, Q>).post(webhooks::create::<S, Q>),
        )
        .route(
            "/projects/{project}/webhooks/{id}",
            get(webhooks::read::<S, Q>)
                .patch(webhooks::update::<S, Q>)
                .delete(webhooks::delete::<S, Q>),
        )
        .route(
            "/projects/{project}/webhooks/{id}/signing-secret",
            get(webhooks::signing_secret::<S, Q>),
        )
        .route(
            "/projects/{project}/webhooks/{id}/signing-secret/rotate",
            post(webhooks::rotate_signing_secret::<S, Q>),
        )
        .route(
            "/projects/{project}/webhooks/{id}/deliveries",
            get(deliveries::list::<S, Q>),
        )
        .route(
            "/projects/{project}/webhooks/{id}/deliveries/{delivery_id}",
            get(deliveries::read::<S, Q>),
        )
        .route(
            "/projects/{project}/webhooks/{id}/deliveries/{delivery_id}/redeliver",
            post(deliveries::redeliver::<S, Q>),
        )
        .route(
            "/projects/{project}/webhooks/{id}/ping",
            post(deliveries::ping::<S, Q>),
        )
        .route(
            "/projects/{project}/webhooks/{id}/recover",
            post(recoveries::recover::<S, Q>),
        )
        .route(
            "/projects/{project}/webhooks/{id}/recoveries/{recovery_id}",
            get(recoveries::read::<S, Q>),
        )
        .route("/projects/{project}/events", post(events::publish::<S, Q>))
        .route("/projects/{project}/tokens", post(tokens::mint::<S, Q>))
        .route(
            "/projects/{project}/tokens/{id}",
            delete(tokens::revoke::<S, Q>),
        )
        .route("/me", get(tokens::me))
        .route("/event-types", get(catalog::event_types))
        .route("/openapi.json", get(catalog::openapi))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate::<S, Q>,
        ))
        // The settings page's static files need no token.
        .merge(ui::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::map_response(error::json_errors))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// One log line per request: method, route template, status, latency.
/// Never the body, headers or query, which may carry secrets.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        method = %method,
        route,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// Where the admin token comes from.
#[derive(Debug, Clone)]
pub enum AdminTokenSource {
    /// A Secrets Manager secret (name or ARN), as deployed.
    Secret(String),
    /// The token itself, for local runs.
    Plain(ApiToken),
}

/// The config API's configuration, from the environment.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub table_name: String,
    /// `DELIVERY_QUEUE_URL`, `SLOW_QUEUE_URL`, `WAITING_QUEUE_URL`: the
    /// lanes publishing queues to, and the waiting lane, where a bulk
    /// recovery's later steps wait for the sender.
    pub queue_urls: LaneUrls,
    pub admin_token: AdminTokenSource,
    pub endpoint_rules: EndpointRules,
    /// `SIGNING_SECRET_OVERLAP`, default 24 hours.
    pub signing_overlap: Duration,
    /// `DELIVERY_LOG_DAYS`, default 30; 0 stores no events.
    pub delivery_log: DeliveryLog,
    /// `PUBLISH_RATE_PER_PROJECT`: publishes per second of one project, 0
    /// (off) by default.
    pub publish_share: PublishShare,
    /// `OPERATIONAL_EVENT_BUS`: the bus of the operational events; none
    /// when unset or empty.
    pub event_bus: Option<String>,
}

impl ApiConfig {
    /// `TABLE_NAME`, `DELIVERY_QUEUE_URL`, `SLOW_QUEUE_URL`,
    /// `WAITING_QUEUE_URL`; `ADMIN_TOKEN_SECRET_ARN` (deployed) or `ADMIN_TOKEN`
    /// (local); `ALLOW_HTTP_ENDPOINTS`, `ENDPOINT_ALLOW_CIDRS`.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let admin_token = match (
            env.optional("ADMIN_TOKEN_SECRET_ARN"),
            env.optional("ADMIN_TOKEN"),
        ) {
            (Some(arn), _) => AdminTokenSource::Secret(arn),
            (None, Some(token)) => AdminTokenSource::Plain(ApiToken::presented(token.trim())),
            (None, None) => return Err(ConfigError::Missing("ADMIN_TOKEN_SECRET_ARN")),
        };
        Ok(Self {
            table_name: env.required("TABLE_NAME")?,
            queue_urls: lane_urls(env)?,
            admin_token,
            endpoint_rules: env.endpoint_rules()?,
            signing_overlap: env.duration("SIGNING_SECRET_OVERLAP", DEFAULT_SIGNING_OVERLAP)?,
            delivery_log: env.delivery_log()?,
            publish_share: env.publish_share(0)?,
            event_bus: env.optional(shared::config::EVENT_BUS),
        })
    }
}

/// `DELIVERY_QUEUE_URL`, `SLOW_QUEUE_URL`, `WAITING_QUEUE_URL`, all
/// required: the lanes publishing queues to (the API and the ingest
/// function).
pub fn lane_urls(env: &Env<'_>) -> Result<LaneUrls, ConfigError> {
    Ok(LaneUrls {
        fast: env.required("DELIVERY_QUEUE_URL")?,
        slow: env.required("SLOW_QUEUE_URL")?,
        waiting: env.required("WAITING_QUEUE_URL")?,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("could not load the admin token")]
    Secret(#[from] SecretError),
    #[error("the admin token must be at least {MIN_ADMIN_TOKEN_LEN} characters")]
    WeakAdminToken,
}

/// Builds the router over DynamoDB and SQS: what the Lambda and the local stack run.
/// Reads the admin token once, here.
pub async fn app(sdk: &aws_config::SdkConfig, config: ApiConfig) -> Result<Router, StartupError> {
    let admin = match config.admin_token {
        AdminTokenSource::Secret(id) => ApiToken::presented(&read_secret_string(sdk, &id).await?),
        AdminTokenSource::Plain(token) => token,
    };
    if admin.expose().len() < MIN_ADMIN_TOKEN_LEN {
        return Err(StartupError::WeakAdminToken);
    }
    let store = DynamoStore::from_sdk(sdk, config.table_name);
    let queue = SqsQueue::from_sdk(sdk, config.queue_urls);
    let events = EventBus::from_sdk(sdk, config.event_bus.as_deref());
    tracing::info!(endpoints = %config.endpoint_rules.addresses, allow_http = config.endpoint_rules.allow_http, "config API ready");
    Ok(router(
        AppState::new(
            store,
            queue,
            AdminToken::new(&admin),
            config.endpoint_rules,
            config.signing_overlap,
            config.delivery_log,
        )
        .with_publish_share(config.publish_share)
        .with_events(events),
    ))
}
