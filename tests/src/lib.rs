//! Support for the workspace-level integration tests: the local AWS emulator
//! (moto), fresh tables, and a handle on the config API router.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::OnceLock;

use aws_config::SdkConfig;
use local_stack::emulator::Emulator;
use shared::adapters::DynamoStore;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The emulator of this test process. It is never dropped: it stops when the
/// test process exits and its standard input closes.
static EMULATOR: OnceLock<Emulator> = OnceLock::new();

/// Starts the emulator once per test binary, on a free port, and points the
/// AWS SDK at it through the SDK's standard environment variables.
pub fn emulator() -> &'static Emulator {
    EMULATOR.get_or_init(|| {
        let emulator = Emulator::start(&workspace_root(), 0)
            .unwrap_or_else(|e| panic!("{e} (`make test` installs it)"));
        // SAFETY: runs once, inside `get_or_init`, before any test of this
        // binary has loaded an AWS config (every such test calls this first
        // and blocks until it returns); Rust's own env accesses are locked
        // against this write, and no test resolves host names meanwhile.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("AWS_ENDPOINT_URL", emulator.endpoint());
            std::env::set_var("AWS_REGION", "us-east-1");
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::remove_var("AWS_SESSION_TOKEN");
            std::env::remove_var("AWS_PROFILE");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
        emulator
    })
}

/// The SDK configuration, loaded exactly as the Lambdas load it.
pub async fn sdk_config() -> SdkConfig {
    emulator();
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

pub mod bus;
pub mod counting;
pub mod mail;
pub mod receiver;

/// New queues for the three lanes (each with its dead-letter queue), with a
/// unique name, created from the code's definition; answers their URLs.
pub async fn fresh_queues() -> shared::adapters::sqs::LaneUrls {
    let sdk = sdk_config().await;
    let name = format!("deliveries-{}", uuid::Uuid::new_v4());
    shared::adapters::sqs::create_delivery_queues(&aws_sdk_sqs::Client::new(&sdk), &name)
        .await
        .expect("create queues")
        .0
}

/// A new, empty table with a unique name, created from the code's definition.
pub async fn fresh_store() -> DynamoStore {
    let sdk = sdk_config().await;
    let store = DynamoStore::from_sdk(&sdk, format!("webhooks-{}", uuid::Uuid::new_v4()));
    store.create_table().await.expect("create table");
    store
}

pub mod api {
    //! The config API router, built through the same start-up path as the
    //! Lambda, and driven request by request.

    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderMap, Request, StatusCode, header};
    use config_api::{AdminTokenSource, ApiConfig};
    use http_body_util::BodyExt;
    use serde_json::Value;
    use shared::adapters::DynamoStore;
    use shared::domain::{ApiToken, EndpointRules};
    use tower::ServiceExt;

    pub const ADMIN: &str = "admin-token-for-tests-0123456789";

    #[derive(Debug, Clone)]
    pub struct Api {
        pub router: Router,
        pub store: DynamoStore,
        /// The fast lane's queue.
        pub queue_url: String,
        /// All three lanes' queues.
        pub queue_urls: shared::adapters::sqs::LaneUrls,
    }

    #[derive(Debug)]
    pub struct Reply {
        pub status: StatusCode,
        pub headers: HeaderMap,
        pub text: String,
        pub body: Value,
    }

    impl Reply {
        pub fn error_code(&self) -> &str {
            self.body["error"]["code"].as_str().unwrap_or_default()
        }

        pub fn error_field(&self) -> Option<&str> {
            self.body["error"]["field"].as_str()
        }

        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }
    }

    impl Api {
        /// A fresh table and the production defaults: https only, public
        /// addresses only.
        pub async fn start() -> Self {
            Self::with_rules(EndpointRules::default()).await
        }

        pub async fn with_rules(rules: EndpointRules) -> Self {
            Self::with_admin(rules, ADMIN).await
        }

        /// With another admin token, e.g. the one in the `events/` samples.
        pub async fn with_admin(rules: EndpointRules, admin: &str) -> Self {
            let store = super::fresh_store().await;
            let queue_urls = super::fresh_queues().await;
            let config = ApiConfig {
                table_name: store.table().to_owned(),
                queue_urls: queue_urls.clone(),
                admin_token: AdminTokenSource::Plain(ApiToken::presented(admin)),
                endpoint_rules: rules,
                signing_overlap: config_api::DEFAULT_SIGNING_OVERLAP,
                delivery_log: shared::domain::DeliveryLog::default(),
                publish_share: shared::domain::PublishShare::off(),
                event_bus: None,
            };
            let router = config_api::app(&super::sdk_config().await, config)
                .await
                .expect("start the config API");
            Self {
                router,
                store,
                queue_url: queue_urls.fast.clone(),
                queue_urls,
            }
        }

        pub async fn send(&self, request: Request<Body>) -> Reply {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("infallible");
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let text = String::from_utf8(bytes.to_vec()).expect("utf-8 body");
            let json = headers
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            let body = if text.is_empty() || !json {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got {text:?}"))
            };
            Reply {
                status,
                headers,
                text,
                body,
            }
        }

        /// A request with an optional bearer token and an optional JSON body.
        pub async fn call(
            &self,
            method: &str,
            path: &str,
            token: Option<&str>,
            body: Option<Value>,
        ) -> Reply {
            let mut builder = Request::builder().method(method).uri(path);
            if let Some(token) = token {
                builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            let body = match body {
                Some(json) => {
                    builder = builder.header(header::CONTENT_TYPE, "application/json");
                    Body::from(json.to_string())
                }
                None => Body::empty(),
            };
            self.send(builder.body(body).unwrap()).await
        }

        pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
            self.call(method, path, Some(ADMIN), body).await
        }

        /// The same table and queue, served by a router over other clients of
        /// them (e.g. counting ones), with the local stack's endpoint rules.
        pub fn over<S: config_api::Store, Q: config_api::Queue>(&self, store: S, queue: Q) -> Self {
            self.over_with_log(store, queue, shared::domain::DeliveryLog::default())
        }

        /// The same table and queues, served by a router that gives each
        /// project `share` of the publish rate.
        pub async fn with_share(&self, share: shared::domain::PublishShare) -> Self {
            self.serving(self.state().await.with_publish_share(share))
        }

        /// The same table and queues, served by a router that puts its
        /// operational events on `bus`.
        pub async fn with_events(&self, bus: shared::adapters::EventBus) -> Self {
            self.serving(self.state().await.with_events(bus))
        }

        /// A state over this API's table and queues, with the local stack's
        /// endpoint rules, to be given more before it is served.
        async fn state(&self) -> config_api::AppState<DynamoStore, shared::adapters::SqsQueue> {
            config_api::AppState::new(
                self.store.clone(),
                shared::adapters::SqsQueue::new(
                    aws_sdk_sqs::Client::new(&crate::sdk_config().await),
                    self.queue_urls.clone(),
                ),
                config_api::AdminToken::new(&ApiToken::presented(ADMIN)),
                local_stack::local_rules(),
                config_api::DEFAULT_SIGNING_OVERLAP,
                shared::domain::DeliveryLog::default(),
            )
        }

        /// This API, served by a router over `state`.
        fn serving<S: config_api::Store, Q: config_api::Queue>(
            &self,
            state: config_api::AppState<S, Q>,
        ) -> Self {
            Self {
                router: config_api::router(state),
                ..self.clone()
            }
        }

        /// [`Api::over`], keeping the delivery history as `log` says.
        pub fn over_with_log<S: config_api::Store, Q: config_api::Queue>(
            &self,
            store: S,
            queue: Q,
            log: shared::domain::DeliveryLog,
        ) -> Self {
            let state = config_api::AppState::new(
                store,
                queue,
                config_api::AdminToken::new(&ApiToken::presented(ADMIN)),
                local_stack::local_rules(),
                config_api::DEFAULT_SIGNING_OVERLAP,
                log,
            );
            Self {
                router: config_api::router(state),
                ..self.clone()
            }
        }

        /// Publishes `run.completed` with an empty payload to `project`.
        pub async fn publish_run(&self, project: &str) -> Reply {
            self.admin(
                "POST",
                &format!("/projects/{project}/events"),
                Some(serde_json::json!({"event_name": "run.completed", "payload": {}})),
            )
            .await
        }

        /// Mints a project token with the admin token.
        pub async fn project_token(&self, project: &str) -> String {
            let reply = self
                .admin("POST", &format!("/projects/{project}/tokens"), None)
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            reply.body["token"].as_str().unwrap().to_owned()
        }

        /// Creates a webhook with the admin token; returns its JSON as the
        /// other routes show it (without the signing secret, which only the
        /// create response carries).
        pub async fn create_webhook(&self, project: &str, body: Value) -> Value {
            self.create_signed_webhook(project, body).await.0
        }

        /// Creates a webhook; returns its JSON and its signing secret.
        pub async fn create_signed_webhook(&self, project: &str, body: Value) -> (Value, String) {
            let reply = self
                .admin("POST", &format!("/projects/{project}/webhooks"), Some(body))
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            let mut webhook = reply.body;
            let secret = webhook
                .as_object_mut()
                .and_then(|fields| fields.remove("signing_secret"))
                .and_then(|secret| secret.as_str().map(str::to_owned))
                .expect("the create response carries the signing secret");
            (webhook, secret)
        }
    }

    /// A valid create body.
    pub fn webhook_body(title: &str) -> Value {
        serde_json::json!({
            "title": title,
            "endpoint": "https://hooks.example.com/qase",
            "events": ["run.completed", "defect.created"],
        })
    }
}

pub mod stack {
    //! The config API, the delivery queue and the sender, wired as deployed:
    //! publish through the router, receive from SQS, hand batches to the sender.

    use std::time::Duration;

    use axum::http::StatusCode;
    use local_stack::{local_rules, loopback_policy};
    use sender::Sender;
    use sender::poller::{Poll, poll_once};
    use shared::adapters::SqsQueue;

    /// The retry schedule of the test stack: the standard one, in seconds.
    pub const TEST_RETRY_SCHEDULE: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];
    use serde_json::{Value, json};
    use shared::adapters::{DynamoStore, HttpPoster};
    use shared::domain::{AddressPolicy, FailureRules};

    use crate::api::Api;

    /// What [`Stack::counting`] answers.
    #[derive(Debug)]
    pub struct Counting {
        pub api: Api,
        pub store: DynamoStore,
        pub queue: shared::adapters::SqsQueue,
        pub dynamo: crate::counting::CallCounter,
        pub sqs: crate::counting::CallCounter,
    }

    #[derive(Debug)]
    pub struct Stack {
        pub api: Api,
        pub sender: std::sync::Arc<Sender<DynamoStore, SqsQueue>>,
        pub sqs: aws_sdk_sqs::Client,
    }

    /// Pollers feeding the sender from every lane in the background, as the
    /// event source mappings do; they stop when this is dropped.
    #[derive(Debug)]
    pub struct Running {
        stop: tokio::sync::watch::Sender<bool>,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.stop.send(true);
        }
    }

    impl Stack {
        /// Loopback allowed everywhere, 2-second deadline.
        pub async fn start() -> Self {
            Self::with_sender(loopback_policy(), Duration::from_secs(2)).await
        }

        /// The API accepts loopback endpoints; the sender uses `policy`.
        pub async fn with_sender(policy: AddressPolicy, deadline: Duration) -> Self {
            Self::build(
                policy,
                deadline,
                shared::adapters::EventBus::off(),
                FailureRules::default(),
            )
            .await
        }

        /// Loopback, 2-second deadline, `rules`; the API, the sender and its
        /// recoveries put their operational events on `bus`.
        pub async fn with_events(bus: shared::adapters::EventBus, rules: FailureRules) -> Self {
            Self::build(loopback_policy(), Duration::from_secs(2), bus, rules).await
        }

        async fn build(
            policy: AddressPolicy,
            deadline: Duration,
            events: shared::adapters::EventBus,
            rules: FailureRules,
        ) -> Self {
            let api = Api::with_rules(local_rules()).await;
            let api = if events.is_on() {
                api.with_events(events.clone()).await
            } else {
                api
            };
            let http = HttpPoster::new(policy, deadline).unwrap();
            let sdk = crate::sdk_config().await;
            // Retries (for webhooks that ask for them) wait a second, then
            // two: a test sees a whole schedule in seconds.
            let queue = SqsQueue::from_sdk(&sdk, api.queue_urls.clone());
            let recoveries = shared::recovery::Recoverer::new(
                api.store.clone(),
                queue.clone(),
                shared::domain::DeliveryLog::default(),
            )
            .with_events(events.clone());
            let sender = Sender::new(api.store.clone(), http, 10)
                .with_lanes(queue, api.queue_urls.names(), TEST_RETRY_SCHEDULE.to_vec())
                .with_history(shared::domain::DeliveryLog::default())
                .with_rules(rules)
                .with_events(events)
                .with_recoveries(std::sync::Arc::new(recoveries));
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            Self {
                api,
                sender: std::sync::Arc::new(sender),
                sqs,
            }
        }

        /// Publishes with the admin token; answers the 202 body.
        pub async fn publish(&self, project: &str, event_name: &str, payload: Value) -> Value {
            let reply = self
                .api
                .admin(
                    "POST",
                    &format!("/projects/{project}/events"),
                    Some(json!({"event_name": event_name, "payload": payload, "team_member_id": 40, "timestamp": 1650540194})),
                )
                .await;
            assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
            reply.body
        }

        /// Publishes a raw JSON body with the admin token; answers the 202 body.
        pub async fn publish_raw(&self, project: &str, body: &str) -> Value {
            let request = axum::http::Request::post(format!("/projects/{project}/events"))
                .header("authorization", format!("Bearer {}", crate::api::ADMIN))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_owned()))
                .unwrap();
            let reply = self.api.send(request).await;
            assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
            reply.body
        }

        /// Takes up to 10 messages off the delivery queue without handling them.
        pub async fn receive(&self) -> Vec<aws_sdk_sqs::types::Message> {
            self.sqs
                .receive_message()
                .queue_url(&self.api.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default()
        }

        /// One poll of each lane (fast, slow, waiting), one after the other:
        /// up to 10 messages of each through the sender; answers the sum.
        pub async fn poll(&self) -> Poll {
            let mut sum = Poll::default();
            for url in [
                &self.api.queue_urls.fast,
                &self.api.queue_urls.slow,
                &self.api.queue_urls.waiting,
            ] {
                let poll = poll_once(&self.sender, &self.sqs, url, 0).await.unwrap();
                sum.received += poll.received;
                sum.acknowledged += poll.acknowledged;
                sum.returned += poll.returned;
            }
            sum
        }

        /// `pollers` concurrent pollers per lane in the background, as the
        /// lanes' event source mappings run them.
        pub fn run_lanes(&self, pollers: usize) -> Running {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            for url in [
                &self.api.queue_urls.fast,
                &self.api.queue_urls.slow,
                &self.api.queue_urls.waiting,
            ] {
                for _ in 0..pollers {
                    tokio::spawn(sender::poller::run(
                        self.sender.clone(),
                        self.sqs.clone(),
                        url.clone(),
                        stopped.clone(),
                    ));
                }
            }
            Running { stop }
        }

        /// One poll of one lane.
        pub async fn poll_lane(&self, lane: shared::domain::Lane) -> Poll {
            poll_once(&self.sender, &self.sqs, self.api.queue_urls.url(lane), 0)
                .await
                .unwrap()
        }

        /// Polls every lane until all answer empty; answers every non-empty
        /// poll.
        pub async fn deliver_all(&self) -> Vec<Poll> {
            let mut polls = Vec::new();
            loop {
                let poll = self.poll().await;
                if poll.received == 0 {
                    return polls;
                }
                polls.push(poll);
            }
        }

        /// How many messages `lane`'s queue holds, visible, in flight and
        /// delayed.
        pub async fn depth(&self, lane: shared::domain::Lane) -> [usize; 3] {
            use aws_sdk_sqs::types::QueueAttributeName as A;
            let out = self
                .sqs
                .get_queue_attributes()
                .queue_url(self.api.queue_urls.url(lane))
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(A::ApproximateNumberOfMessagesDelayed)
                .send()
                .await
                .unwrap();
            let attributes = out.attributes.unwrap_or_default();
            let read = |name: A| {
                attributes
                    .get(&name)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            [
                read(A::ApproximateNumberOfMessages),
                read(A::ApproximateNumberOfMessagesNotVisible),
                read(A::ApproximateNumberOfMessagesDelayed),
            ]
        }

        /// Creates `count` webhooks of `project` for `run.completed`, the
        /// `i`-th to `endpoint(i)`; answers their ids.
        pub async fn webhooks(
            &self,
            project: &str,
            count: usize,
            endpoint: impl Fn(usize) -> String,
        ) -> Vec<String> {
            let mut ids = Vec::with_capacity(count);
            for i in 0..count {
                ids.push(
                    self.webhook(project, &endpoint(i), &["run.completed"], None)
                        .await,
                );
            }
            ids
        }

        /// The router, the store and the queue over clients that count their
        /// AWS calls.
        pub async fn counting(&self) -> Counting {
            self.counting_with_log(shared::domain::DeliveryLog::default())
                .await
        }

        /// [`Stack::counting`], the router keeping the history as `log` says.
        pub async fn counting_with_log(&self, log: shared::domain::DeliveryLog) -> Counting {
            let (store, dynamo) = crate::counting::counting_store(self.api.store.table()).await;
            let (queue, sqs) = crate::counting::counting_queue(&self.api.queue_urls).await;
            Counting {
                api: self.api.over_with_log(store.clone(), queue.clone(), log),
                store,
                queue,
                dynamo,
                sqs,
            }
        }

        /// Creates a webhook to `endpoint` for `events`; answers its id.
        pub async fn webhook(
            &self,
            project: &str,
            endpoint: &str,
            events: &[&str],
            secret: Option<&str>,
        ) -> String {
            let mut body = json!({"title": "hook", "endpoint": endpoint, "events": events});
            if let Some(secret) = secret {
                body["secret"] = json!(secret);
            }
            let hook = self.api.create_webhook(project, body).await;
            hook["id"].as_str().unwrap().to_owned()
        }

        /// The stored webhook `id` of `project`, and a first-attempt
        /// message of a `run.completed` event for it, as the sender
        /// receives one.
        pub async fn first_message(
            &self,
            project: &str,
            id: &str,
        ) -> (shared::domain::Webhook, shared::domain::DeliveryMessage) {
            use shared::domain::{
                DeliveryMessage, ProjectCode, PublishInput, Timestamp, WebhookId,
            };
            use shared::ports::WebhookStore;
            let project = ProjectCode::parse(project).unwrap();
            let hook = self
                .api
                .store
                .get(&project, WebhookId::parse(id).unwrap())
                .await
                .unwrap()
                .unwrap();
            let event = serde_json::from_str::<PublishInput>(
                r#"{"event_name":"run.completed","payload":{}}"#,
            )
            .unwrap()
            .validate(project, Timestamp::now())
            .unwrap();
            let message = DeliveryMessage::new(&event, hook.id, event.envelope().unwrap());
            (hook, message)
        }

        pub async fn get(&self, project: &str, id: &str) -> Value {
            self.api
                .admin("GET", &format!("/projects/{project}/webhooks/{id}"), None)
                .await
                .body
        }
    }
}

/// Writes webhooks straight to the table, 25 per `BatchWriteItem`: for tests
/// and benchmarks that need thousands of them.
pub async fn bulk_insert(store: &DynamoStore, hooks: &[shared::domain::Webhook]) {
    let items = hooks
        .iter()
        .map(|hook| shared::adapters::dynamo::schema::webhook_item(hook).unwrap())
        .collect();
    bulk_put(store, items).await;
}

/// `n` events of `project` stored for `webhook`, each with one failed
/// attempt, as a day of outage leaves them (written straight to the
/// table: publishing and failing them one by one would take minutes).
pub async fn failed_deliveries(store: &DynamoStore, project: &str, webhook: &str, n: usize) {
    let project = shared::domain::ProjectCode::parse(project).unwrap();
    let webhook = shared::domain::WebhookId::parse(webhook).unwrap();
    let now = shared::domain::Timestamp::now();
    let expires = now.after(std::time::Duration::from_secs(86_400));
    let mut items = Vec::with_capacity(2 * n);
    for i in 0..n {
        let event = shared::domain::StoredEvent {
            id: uuid::Uuid::now_v7(),
            project: project.clone(),
            event_name: shared::domain::EventName::RunCompleted,
            envelope: serde_json::json!({"event_name": "run.completed", "timestamp": 1, "payload": {"n": i}, "team_member_id": null, "project_code": project.as_str()}).to_string(),
            created_at: now,
        };
        let message = shared::domain::DeliveryMessage::for_event(
            event.id,
            project.clone(),
            event.event_name,
            webhook,
            serde_json::value::RawValue::from_string(event.envelope.clone()).unwrap(),
        );
        let mut attempt = shared::domain::Attempt::of(&message, now);
        attempt.outcome = shared::domain::history::AttemptOutcome::Failed;
        attempt.status = Some(503);
        attempt.failure_reason = Some("HTTP 503".into());
        items.push(shared::adapters::dynamo::schema::event_item(&event, expires).unwrap());
        items.push(shared::adapters::dynamo::schema::attempt_item(&attempt, expires).unwrap());
    }
    bulk_put(store, items).await;
}

/// `value` carries every required property of the OpenAPI schema `name`
/// and no property it does not document.
pub fn documented(name: &str, value: &serde_json::Value) {
    let spec: serde_json::Value =
        serde_json::from_str(config_api::routes::catalog::OPENAPI).unwrap();
    let schema = &spec["components"]["schemas"][name];
    let documented = schema["properties"].as_object().unwrap();
    let sent = value.as_object().unwrap();
    for key in sent.keys() {
        assert!(
            documented.contains_key(key),
            "{name}: {key} is not documented"
        );
    }
    for key in schema["required"].as_array().unwrap() {
        assert!(
            sent.contains_key(key.as_str().unwrap()),
            "{name}: {key} missing"
        );
    }
}

/// Puts the items, 25 per `BatchWriteItem`, until the emulator took all.
pub async fn bulk_put(store: &DynamoStore, items: Vec<shared::adapters::dynamo::schema::Item>) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    for chunk in items.chunks(25) {
        let mut writes: Vec<WriteRequest> = chunk
            .iter()
            .map(|item| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item.clone()))
                            .build()
                            .unwrap(),
                    )
                    .build()
            })
            .collect();
        while !writes.is_empty() {
            let out = store
                .client()
                .batch_write_item()
                .request_items(store.table(), writes)
                .send()
                .await
                .unwrap();
            writes = out
                .unprocessed_items
                .and_then(|mut left| left.remove(store.table()))
                .unwrap_or_default();
        }
    }
}

/// A sweeper over `store` with the default 2-day window, mailing through the
/// emulator's SES.
pub async fn sweeper_over(
    store: &DynamoStore,
    notice: shared::domain::NoticeSettings,
) -> sweeper::Sweeper<DynamoStore, shared::adapters::SesMailer> {
    sweeper::Sweeper::new(
        store.clone(),
        shared::adapters::SesMailer::from_sdk(&sdk_config().await),
        shared::domain::notice::DEFAULT_WINDOW,
        notice,
    )
}

/// The end of a sender invocation that starts now, as Lambda would set it.
pub fn sender_deadline() -> std::time::Instant {
    std::time::Instant::now() + sender::FUNCTION_TIMEOUT
}

/// The Standard Webhooks reference library (Python `standardwebhooks`,
/// pinned in requirements-dev.txt): whether it accepts a request signed for
/// `secret`. `Err` carries the library's reason.
pub fn standard_webhooks_verify(
    secret: &str,
    body: &str,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    use std::io::Write as _;
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
request = json.load(sys.stdin)
try:
    Webhook(request["secret"]).verify(request["body"], request["headers"])
except Exception as e:
    print(f"{type(e).__name__}: {e}")
    sys.exit(1)
"#;
    let mut child = std::process::Command::new(workspace_root().join(".venv/bin/python"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the reference library");
    let request = serde_json::json!({"secret": secret, "body": body, "headers": headers});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write the request");
    let out = child.wait_with_output().expect("the reference library");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// The embedded-metric-format documents among `logs` that declare the
/// metric `name`, in order; each is checked to declare it in the service's
/// namespace, dimensioned by the function's name first, with a value for
/// every dimension and for the metric.
pub fn metric_documents(logs: &str, name: &str) -> Vec<serde_json::Value> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|doc| doc.get("_aws").is_some())
        .filter(|doc| {
            let directive = &doc["_aws"]["CloudWatchMetrics"][0];
            let declared = directive["Metrics"]
                .as_array()
                .is_some_and(|metrics| metrics.iter().any(|m| m["Name"] == name));
            if declared {
                assert_eq!(directive["Namespace"], shared::telemetry::NAMESPACE);
                let dimensions = directive["Dimensions"][0].as_array().unwrap();
                assert_eq!(dimensions[0], "FunctionName", "{doc}");
                for dimension in dimensions {
                    assert!(doc[dimension.as_str().unwrap()].is_string(), "{doc}");
                }
                assert!(doc.get(name).is_some(), "{doc}");
            }
            declared
        })
        .collect()
}

/// The values of the count `name` in the metric documents among `logs`.
pub fn metric_values(logs: &str, name: &str) -> Vec<u64> {
    metric_documents(logs, name)
        .iter()
        .filter_map(|doc| doc[name].as_u64())
        .collect()
}

/// What the code logs while `run` runs on this thread, as JSON lines (the
/// deployed functions' format), with its metric documents (embedded metric
/// format) among them as they are.
pub async fn logged<F: std::future::Future>(run: F) -> (F::Output, String) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    use lambda_runtime::tracing::subscriber::filter::{LevelFilter, filter_fn};
    use lambda_runtime::tracing::subscriber::layer::{Layer as _, SubscriberExt as _};
    let lines = Lines(Arc::default());
    let (writer, metrics) = (lines.clone(), lines.clone());
    let logs = lambda_runtime::tracing::subscriber::fmt::layer()
        .json()
        .with_writer(move || writer.clone())
        .with_filter(filter_fn(shared::telemetry::is_log))
        .with_filter(LevelFilter::DEBUG);
    let subscriber = lambda_runtime::tracing::subscriber::registry()
        .with(logs)
        .with(shared::telemetry::MetricLines::new(move || metrics.clone()));
    let guard = tracing::subscriber::set_default(subscriber);
    let out = run.await;
    drop(guard);
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    (out, text)
}
