//! Publishing and delivery end to end: the API queues into SQS (moto), the
//! sender receives real SQS batches and POSTs to a real receiver on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::http::StatusCode;
use integration_tests::receiver::Receiver;
use integration_tests::sender_deadline;
use integration_tests::stack::Stack;
use serde_json::{Value, json};
use shared::domain::delivery::RECORD_MARGIN;
use shared::domain::{AddressPolicy, EventName};

const FIXTURE: &str = r#"{"event_name":"run.completed","timestamp":1650540194,"payload":{"id":2,"cases":14,"passed":0,"failed":0,"blocked":0,"duration":0},"team_member_id":40,"project_code":"ID"}"#;

fn run_payload() -> Value {
    json!({"id": 2, "cases": 14, "passed": 0, "failed": 0, "blocked": 0, "duration": 0})
}

#[tokio::test]
async fn a_published_event_reaches_exactly_its_subscribers() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack
        .webhook(
            "ID",
            &rx.url("/with-secret"),
            &["run.completed"],
            Some("s3cr3t"),
        )
        .await;
    stack
        .webhook(
            "ID",
            &rx.url("/plain"),
            &["run.completed", "case.created"],
            None,
        )
        .await;
    stack
        .webhook("ID", &rx.url("/unsubscribed"), &["case.created"], None)
        .await;
    let disabled = stack
        .webhook("ID", &rx.url("/disabled"), &["run.completed"], None)
        .await;
    stack
        .api
        .admin(
            "PATCH",
            &format!("/projects/ID/webhooks/{disabled}"),
            Some(json!({"enabled": false})),
        )
        .await;
    stack
        .webhook("OTHER", &rx.url("/other-project"), &["run.completed"], None)
        .await;

    // The payload's bytes are kept as published, key order included.
    let published = stack
        .publish_raw(
            "ID",
            r#"{"event_name":"run.completed","timestamp":1650540194,"team_member_id":40,"payload":{"id":2,"cases":14,"passed":0,"failed":0,"blocked":0,"duration":0}}"#,
        )
        .await;
    assert_eq!(published["deliveries"], 2);
    stack.deliver_all().await;

    let secret = rx.at("/with-secret");
    let plain = rx.at("/plain");
    assert_eq!((secret.len(), plain.len()), (1, 1));
    for got in [&secret[0], &plain[0]] {
        assert_eq!(got.method, "POST");
        assert_eq!(got.body, FIXTURE, "exact envelope bytes");
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert!(
            got.header("user-agent")
                .unwrap()
                .starts_with("ProjectWebhooks/")
        );
        assert_eq!(got.header("x-qase-event"), Some("run.completed"));
    }
    assert_eq!(secret[0].header("x-qase-secret"), Some("s3cr3t"));
    assert_eq!(plain[0].header("x-qase-secret"), None);
    let ids: HashSet<&str> = [&secret[0], &plain[0]]
        .iter()
        .map(|r| r.header("x-qase-delivery-id").unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "delivery ids are unique");
    for path in ["/unsubscribed", "/disabled", "/other-project"] {
        assert!(rx.at(path).is_empty(), "{path} received something");
    }
}

#[tokio::test]
async fn publishing_with_no_subscriber_queues_nothing() {
    let stack = Stack::start().await;
    let published = stack.publish("EMPTY", "run.completed", json!({})).await;
    assert_eq!(published["deliveries"], 0);
    assert!(published["event_id"].as_str().is_some());
    assert!(stack.deliver_all().await.is_empty());
}

#[tokio::test]
async fn all_43_catalog_events_publish_and_deliver() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let all: Vec<&str> = EventName::ALL.iter().map(|e| e.as_str()).collect();
    stack.webhook("ALL", &rx.url("/all"), &all, None).await;
    for name in &all {
        let published = stack.publish("ALL", name, json!({"id": 1})).await;
        assert_eq!(published["deliveries"], 1, "{name}");
    }
    stack.deliver_all().await;
    let got: HashSet<String> = rx
        .at("/all")
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["event_name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(got.len(), 43);
    assert_eq!(got, all.iter().map(|s| s.to_string()).collect());
}

#[tokio::test]
async fn publish_rejects_bad_events_and_oversized_envelopes() {
    let stack = Stack::start().await;
    for (body, field) in [
        (
            json!({"event_name": "run.exploded", "payload": {}}),
            "event_name",
        ),
        (json!({"payload": {}}), "event_name"),
        (
            json!({"event_name": "run.completed", "payload": [1, 2]}),
            "payload",
        ),
        (
            json!({"event_name": "run.completed", "payload": "text"}),
            "payload",
        ),
        (json!({"event_name": "run.completed"}), "payload"),
        (
            json!({"event_name": "run.completed", "payload": {}, "team_member_id": "x"}),
            "team_member_id",
        ),
        (
            json!({"event_name": "run.completed", "payload": {}, "timestamp": "yesterday"}),
            "timestamp",
        ),
        (
            json!({"event_name": "run.completed", "payload": {}, "extra": 1}),
            "extra",
        ),
    ] {
        let reply = stack
            .api
            .admin("POST", "/projects/ID/events", Some(body.clone()))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.error_field(), Some(field), "{body}: {}", reply.text);
    }
    let huge = json!({"event_name": "run.completed", "payload": {"blob": "x".repeat(300 * 1024)}});
    let reply = stack
        .api
        .admin("POST", "/projects/ID/events", Some(huge))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let other = stack.api.project_token("OTHER").await;
    let reply = stack
        .api
        .call(
            "POST",
            "/projects/ID/events",
            Some(&other),
            Some(json!({"event_name": "run.completed", "payload": {}})),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::NOT_FOUND,
        "a project token publishes to its own project only"
    );
}

#[tokio::test]
async fn a_silent_endpoint_times_out_without_holding_back_the_batch() {
    let deadline = Duration::from_secs(2);
    let stack = Stack::with_sender(local_stack::loopback_policy(), deadline).await;
    let rx = Receiver::start().await;
    let slow = stack
        .webhook("B", &rx.url("/slow?delay=3600"), &["run.completed"], None)
        .await;
    stack
        .webhooks("B", 9, |i| rx.url(&format!("/fast/{i}")))
        .await;
    assert_eq!(
        stack.publish("B", "run.completed", run_payload()).await["deliveries"],
        10
    );

    let started = Instant::now();
    let poll = stack.poll().await;
    let elapsed = started.elapsed();
    assert_eq!(poll.received, 10, "one SQS batch of 10");
    assert_eq!(
        (poll.acknowledged, poll.returned),
        (10, 0),
        "a timeout is not retried"
    );
    let fast: Vec<_> = rx
        .received()
        .into_iter()
        .filter(|r| r.path.starts_with("/fast/"))
        .collect();
    assert_eq!(fast.len(), 9);
    for got in &fast {
        assert!(
            got.instant < started + deadline,
            "a fast endpoint waited for the slow one"
        );
    }
    assert!(elapsed >= deadline, "the slow delivery ran to its deadline");

    let hook = stack.get("B", &slow).await;
    assert_eq!(hook["last_failure_reason"], "timeout after 2s");
    assert_eq!(hook["status"], "failing");
}

/// Marks each kind of failure once and twice, then recovers with a 200.
#[tokio::test]
async fn failures_are_recorded_once_with_their_reason_and_a_success_clears_them() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cases = [
        (rx.url("/err?status=500"), "HTTP 500"),
        (
            rx.url("/moved?status=302"),
            "HTTP 302 (redirects are not followed)",
        ),
        (
            format!("http://127.0.0.1:{closed}/refused"),
            "connection refused",
        ),
    ];
    let mut ids = Vec::new();
    for (endpoint, _) in &cases {
        ids.push(stack.webhook("F", endpoint, &["run.completed"], None).await);
    }
    stack.publish("F", "run.completed", run_payload()).await;
    let polls = stack.deliver_all().await;
    assert!(
        polls.iter().all(|p| p.returned == 0),
        "endpoint failures are not returned for retry"
    );
    let mut first_seen = Vec::new();
    for ((_, reason), id) in cases.iter().zip(&ids) {
        let hook = stack.get("F", id).await;
        assert_eq!(hook["status"], "failing", "{reason}");
        assert_eq!(hook["last_failure_reason"], *reason);
        assert_eq!(hook["failure_count"], 1);
        assert_eq!(hook["failing_since"], hook["last_failure_at"]);
        first_seen.push(hook["failing_since"].clone());
    }

    tokio::time::sleep(Duration::from_millis(5)).await;
    stack.publish("F", "run.completed", run_payload()).await;
    stack.deliver_all().await;
    for ((_, reason), (id, first)) in cases.iter().zip(ids.iter().zip(&first_seen)) {
        let hook = stack.get("F", id).await;
        assert_eq!(
            hook["failing_since"], *first,
            "{reason}: a second failure keeps the first timestamp"
        );
        assert_ne!(hook["last_failure_at"], *first, "{reason}");
        assert_eq!(hook["failure_count"], 2);
    }
    assert_eq!(rx.at("/err").len(), 2);
    assert_eq!(rx.at("/moved").len(), 2, "the redirect is not followed");
    assert!(rx.at("/redirected").is_empty());

    for id in &ids {
        let reply = stack
            .api
            .admin(
                "PATCH",
                &format!("/projects/F/webhooks/{id}"),
                Some(json!({"endpoint": rx.url("/fine")})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    stack.publish("F", "run.completed", run_payload()).await;
    stack.deliver_all().await;
    assert_eq!(
        rx.at("/fine").len(),
        3,
        "a changed endpoint applies to new deliveries"
    );
    for id in &ids {
        let hook = stack.get("F", id).await;
        assert_eq!(hook["status"], "active");
        assert_eq!(hook["failing_since"], Value::Null);
        assert_eq!(hook["last_failure_reason"], Value::Null);
        assert_eq!(hook["failure_count"], 0);
    }
}

#[tokio::test]
async fn with_the_allow_list_off_loopback_is_blocked_and_never_contacted() {
    let stack = Stack::with_sender(AddressPolicy::public_only(), Duration::from_secs(2)).await;
    let rx = Receiver::start().await;
    let literal = stack
        .webhook("X", &rx.url("/literal"), &["run.completed"], None)
        .await;
    let by_name = stack
        .webhook(
            "X",
            &format!("http://localhost:{}/by-name", rx.addr.port()),
            &["run.completed"],
            None,
        )
        .await;
    stack.publish("X", "run.completed", run_payload()).await;
    let polls = stack.deliver_all().await;
    assert!(polls.iter().all(|p| p.returned == 0));
    assert!(
        rx.received().is_empty(),
        "the receiver saw {} requests",
        rx.received().len()
    );
    for id in [literal, by_name] {
        let hook = stack.get("X", &id).await;
        assert_eq!(
            hook["last_failure_reason"], "blocked address",
            "{}",
            hook["endpoint"]
        );
        assert_eq!(hook["status"], "failing");
    }
}

fn sqs_record(id: &str, body: &str) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(id.to_owned());
    record.body = Some(body.to_owned());
    record
}

#[tokio::test]
async fn a_malformed_record_fails_alone() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack
        .webhook("M", &rx.url("/ok"), &["run.completed"], None)
        .await;
    stack.publish("M", "run.completed", run_payload()).await;
    let good = stack.receive().await.remove(0);
    let mut event = SqsEvent::default();
    event.records = vec![
        sqs_record("bad-json", "{not json"),
        sqs_record("good", good.body.as_deref().unwrap()),
        sqs_record(
            "wrong-version",
            &good
                .body
                .as_deref()
                .unwrap()
                .replacen("\"v\":1", "\"v\":9", 1),
        ),
    ];
    let response = stack.sender.handle(event, sender_deadline()).await;
    let failed: HashSet<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(
        failed,
        HashSet::from(["bad-json".to_owned(), "wrong-version".to_owned()])
    );
    assert_eq!(rx.at("/ok").len(), 1, "the good record was delivered");
}

#[tokio::test]
async fn a_storage_fault_before_the_post_returns_the_records_for_retry() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack
        .webhook("D", &rx.url("/ok"), &["run.completed"], None)
        .await;
    stack.publish("D", "run.completed", run_payload()).await;
    let messages = stack.receive().await;
    let broken_store = shared::adapters::DynamoStore::from_sdk(
        &integration_tests::sdk_config().await,
        "no-such-table",
    );
    let http =
        shared::adapters::HttpPoster::new(local_stack::loopback_policy(), Duration::from_secs(2))
            .unwrap();
    let sender = sender::Sender::new(broken_store, http, 10);
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| sqs_record(m.message_id().unwrap(), m.body().unwrap()))
        .collect();
    let response = sender.handle(event, sender_deadline()).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        response.batch_item_failures[0].item_identifier,
        messages[0].message_id().unwrap()
    );
    assert!(
        rx.received().is_empty(),
        "nothing is POSTed without the webhook"
    );
}

#[tokio::test]
async fn deleted_webhooks_and_unsubscribed_events_are_skipped_even_when_queued() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let gone = stack
        .webhook("Q", &rx.url("/gone"), &["run.completed"], None)
        .await;
    let moved_on = stack
        .webhook("Q", &rx.url("/moved-on"), &["run.completed"], None)
        .await;
    let paused = stack
        .webhook("Q", &rx.url("/paused"), &["run.completed"], None)
        .await;
    assert_eq!(
        stack.publish("Q", "run.completed", run_payload()).await["deliveries"],
        3
    );
    // Changes after queueing apply to what is already queued.
    stack
        .api
        .admin("DELETE", &format!("/projects/Q/webhooks/{gone}"), None)
        .await;
    stack
        .api
        .admin(
            "PATCH",
            &format!("/projects/Q/webhooks/{moved_on}"),
            Some(json!({"events": ["case.created"]})),
        )
        .await;
    stack
        .api
        .admin(
            "PATCH",
            &format!("/projects/Q/webhooks/{paused}"),
            Some(json!({"enabled": false})),
        )
        .await;
    let polls = stack.deliver_all().await;
    assert_eq!(
        polls.iter().map(|p| p.acknowledged).sum::<usize>(),
        3,
        "skips are acknowledged"
    );
    assert!(rx.received().is_empty());
}

/// The queued messages as one SQS event, as the event source mapping sends it.
fn as_event(messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| sqs_record(m.message_id().unwrap(), m.body().unwrap()))
        .collect();
    event
}

#[tokio::test]
async fn a_post_that_could_not_end_within_the_invocation_is_not_started() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack
        .webhooks("T", 3, |i| rx.url(&format!("/silent/{i}?delay=3600")))
        .await;
    stack.publish("T", "run.completed", run_payload()).await;
    let messages = stack.receive().await;
    assert_eq!(messages.len(), 3);
    // One at a time, 2-second deadline, and an invocation that ends 5 seconds
    // from now: the first POST fits (2 s + 2 s to record), the next would not.
    let deadline = Duration::from_secs(2);
    let http = shared::adapters::HttpPoster::new(local_stack::loopback_policy(), deadline).unwrap();
    let sender = sender::Sender::new(stack.api.store.clone(), http, 1);
    let ends = Instant::now() + deadline + RECORD_MARGIN + Duration::from_secs(1);
    let response = sender.handle(as_event(&messages), ends).await;
    assert!(Instant::now() <= ends, "answered within the invocation");
    assert_eq!(rx.received().len(), 1, "only the POST that fitted was sent");
    assert_eq!(
        response.batch_item_failures.len(),
        2,
        "the two unsent records go back to the queue"
    );
}

/// The real store, whose failure and history writes hang (a DynamoDB that
/// stopped answering after the read).
#[derive(Debug, Clone)]
struct HangingWrites(shared::adapters::DynamoStore);

impl shared::ports::RecoveryProgress for HangingWrites {
    async fn take_recovery_slots(
        &self,
        recovery: uuid::Uuid,
        second: i64,
        wanted: u32,
        limit: u32,
    ) -> Result<u32, shared::ports::StoreError> {
        self.0
            .take_recovery_slots(recovery, second, wanted, limit)
            .await
    }

    async fn tally_recovery(
        &self,
        recovery: uuid::Uuid,
        tally: shared::domain::recover::Tally,
    ) -> Result<shared::domain::recover::Progress, shared::ports::StoreError> {
        self.0.tally_recovery(recovery, tally).await
    }

    async fn finish_recovery(
        &self,
        recovery: uuid::Uuid,
        at: shared::domain::Timestamp,
    ) -> Result<bool, shared::ports::StoreError> {
        self.0.finish_recovery(recovery, at).await
    }
}

impl shared::ports::DeliveryStore for HangingWrites {
    async fn get_many(
        &self,
        keys: &[shared::ports::WebhookKey],
    ) -> Result<
        std::collections::HashMap<shared::domain::WebhookId, shared::domain::Webhook>,
        shared::ports::StoreError,
    > {
        self.0.get_many(keys).await
    }

    async fn record_failures(
        &self,
        _webhook: &shared::domain::Webhook,
        _at: shared::domain::Timestamp,
        _reason: &str,
        _due_now: bool,
        _count: u32,
    ) -> Result<bool, shared::ports::StoreError> {
        std::future::pending().await
    }

    async fn record_recovery(
        &self,
        webhook: &shared::domain::Webhook,
        slow: bool,
        at: shared::domain::Timestamp,
    ) -> Result<Option<shared::ports::Cleared>, shared::ports::StoreError> {
        self.0.record_recovery(webhook, slow, at).await
    }

    async fn mark_slow(
        &self,
        _webhook: &shared::domain::Webhook,
        _at: shared::domain::Timestamp,
    ) -> Result<(), shared::ports::StoreError> {
        std::future::pending().await
    }

    async fn disable_gone(
        &self,
        webhook: &shared::domain::Webhook,
        at: shared::domain::Timestamp,
    ) -> Result<bool, shared::ports::StoreError> {
        self.0.disable_gone(webhook, at).await
    }

    async fn claim_exhausted(
        &self,
        webhook: &shared::domain::Webhook,
        delivery: uuid::Uuid,
        until: shared::domain::Timestamp,
    ) -> Result<bool, shared::ports::StoreError> {
        self.0.claim_exhausted(webhook, delivery, until).await
    }

    async fn assign_signing_secret(
        &self,
        webhook: &shared::domain::Webhook,
        fresh: shared::domain::SigningSecret,
    ) -> Result<shared::domain::SigningSecret, shared::ports::StoreError> {
        self.0.assign_signing_secret(webhook, fresh).await
    }

    async fn record_attempts(
        &self,
        _attempts: &[shared::domain::Attempt],
        _expires_at: shared::domain::Timestamp,
    ) -> Result<(), shared::ports::StoreError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_write_that_hangs_after_the_post_still_lets_the_batch_answer_in_time() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack
        .webhook("W", &rx.url("/down?status=503"), &["run.completed"], None)
        .await;
    stack.publish("W", "run.completed", run_payload()).await;
    let messages = stack.receive().await;
    let http =
        shared::adapters::HttpPoster::new(local_stack::loopback_policy(), Duration::from_secs(2))
            .unwrap();
    let sender = sender::Sender::new(HangingWrites(stack.api.store.clone()), http, 10)
        .with_history(shared::domain::DeliveryLog::default());
    let ends = Instant::now() + Duration::from_secs(6);
    let answered = tokio::time::timeout(
        Duration::from_secs(60),
        sender.handle(as_event(&messages), ends),
    )
    .await
    .expect("the handler answered although its write never returned");
    assert!(
        answered.batch_item_failures.is_empty(),
        "the POST was made: acknowledged, never sent again"
    );
    assert_eq!(rx.at("/down").len(), 1);
}

#[tokio::test]
async fn a_self_signed_certificate_is_recorded_as_a_tls_error() {
    let stack = Stack::start().await;
    let rx = integration_tests::receiver::SelfSignedReceiver::start().await;
    let id = stack
        .webhook("TLS", &rx.url("/hook"), &["run.completed"], None)
        .await;
    stack.publish("TLS", "run.completed", run_payload()).await;
    stack.deliver_all().await;
    assert_eq!(rx.accepted(), 1, "the sender reached the receiver");
    let hook = stack.get("TLS", &id).await;
    assert_eq!(hook["status"], "failing");
    assert_eq!(hook["last_failure_reason"], "TLS error");
}

#[tokio::test]
async fn a_payload_the_queue_could_not_carry_is_a_400_and_queues_nothing() {
    let stack = Stack::start().await;
    stack
        .webhook("U", "http://127.0.0.1:9/x", &["run.completed"], None)
        .await;
    let body = "{\"event_name\": \"run.completed\", \"payload\": {\"title\": \"a\u{FFFF}b\"}}";
    let request = axum::http::Request::post("/projects/U/events")
        .header(
            "authorization",
            format!("Bearer {}", integration_tests::api::ADMIN),
        )
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    let reply = stack.api.send(request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.error_code(), "invalid_field");
    assert_eq!(reply.error_field(), Some("payload"));
    assert!(stack.receive().await.is_empty(), "nothing was queued");
}
