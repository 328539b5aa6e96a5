//! Idempotent publishing through the real stack: repeats with one
//! `Idempotency-Key` (one after the other and at once) queue each
//! subscriber's delivery once; another body with the key is refused; a
//! publish whose enqueue failed part way (an SDK interceptor refusing one
//! lane's queue) is completed by its repeat, for exactly the missing
//! subscribers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use integration_tests::api::{ADMIN, Api, Reply};
use integration_tests::stack::Stack;
use serde_json::{Value, json};
use shared::domain::{Lane, ProjectCode, Timestamp};
use shared::ports::DeliveryStore;

/// Publishes `body` to `project` with `key`, as the admin.
async fn publish(api: &Api, project: &str, key: &str, body: &Value) -> Reply {
    let request = Request::post(format!("/projects/{project}/events"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap();
    api.send(request).await
}

/// Messages in a lane's queue, visible, in flight or delayed.
async fn queued(stack: &Stack, lane: Lane) -> usize {
    stack.depth(lane).await.iter().sum()
}

fn run(id: i64) -> Value {
    json!({"event_name": "run.completed", "payload": {"id": id}, "timestamp": 1_650_540_194})
}

#[tokio::test]
async fn repeats_with_one_key_queue_each_delivery_once_and_answer_the_same() {
    let stack = Stack::start().await;
    stack
        .webhooks("IDEM", 3, |i| format!("http://127.0.0.1:9/idem/{i}"))
        .await;
    let first = publish(&stack.api, "IDEM", "key-1", &run(1)).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    assert_eq!(first.body["deliveries"], 3);
    assert!(first.header("idempotent-replayed").is_none());
    for _ in 0..2 {
        let again = publish(&stack.api, "IDEM", "key-1", &run(1)).await;
        assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
        assert_eq!(again.body, first.body, "the same event, the same count");
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
    }
    assert_eq!(queued(&stack, Lane::Fast).await, 3, "queued once");
    // The same body spaced differently is the same body.
    let spaced = Request::post("/projects/IDEM/events")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .header("idempotency-key", "key-1")
        .body(Body::from(
            r#"{ "timestamp": 1650540194, "payload": {"id":1}, "event_name": "run.completed" }"#,
        ))
        .unwrap();
    assert_eq!(stack.api.send(spaced).await.body, first.body);
    // Another body with the key is refused; nothing is queued.
    let other = publish(&stack.api, "IDEM", "key-1", &run(2)).await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{}", other.text);
    assert_eq!(other.error_code(), "idempotency_key_reused");
    assert_eq!(other.error_field(), Some("Idempotency-Key"));
    // Another key is another event; without a key, as before.
    let next = publish(&stack.api, "IDEM", "key-2", &run(1)).await;
    assert_eq!(next.status, StatusCode::ACCEPTED);
    assert_ne!(next.body["event_id"], first.body["event_id"]);
    stack
        .publish("IDEM", "run.completed", json!({"id": 1}))
        .await;
    assert_eq!(queued(&stack, Lane::Fast).await, 9);
    // A key that cannot be one is a clear 400.
    let bad = publish(&stack.api, "IDEM", "has space", &run(1)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_field(), Some("Idempotency-Key"));
}

#[tokio::test]
async fn concurrent_repeats_with_one_key_fan_out_once() {
    let stack = Stack::start().await;
    stack
        .webhooks("RACEKEY", 4, |i| format!("http://127.0.0.1:9/race/{i}"))
        .await;
    let body = run(7);
    let one = || publish(&stack.api, "RACEKEY", "same-key", &body);
    let all = tokio::join!(one(), one(), one(), one(), one(), one());
    let replies = [all.0, all.1, all.2, all.3, all.4, all.5];
    let mut events = std::collections::BTreeSet::new();
    for reply in &replies {
        match reply.status {
            StatusCode::ACCEPTED => {
                assert_eq!(reply.body["deliveries"], 4, "{}", reply.text);
                events.insert(reply.body["event_id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => {
                assert_eq!(reply.error_code(), "idempotency_in_progress");
                assert_eq!(reply.header("retry-after"), Some("1"));
            }
            other => panic!("{other}: {}", reply.text),
        }
    }
    assert_eq!(events.len(), 1, "one event: {events:?}");
    assert_eq!(queued(&stack, Lane::Fast).await, 4, "fanned out once");
    // Once it is done, a repeat gets its answer.
    let after = publish(&stack.api, "RACEKEY", "same-key", &body).await;
    assert_eq!(after.status, StatusCode::ACCEPTED);
    assert!(events.contains(after.body["event_id"].as_str().unwrap()));
}

/// Refuses every `SendMessageBatch` to one queue, as a queue that is down
/// would; the other lanes' calls go through.
#[derive(Debug)]
struct RefuseQueue(String);

impl Intercept for RefuseQueue {
    fn name(&self) -> &'static str {
        "RefuseQueue"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let to_it = context
            .input()
            .downcast_ref::<aws_sdk_sqs::operation::send_message_batch::SendMessageBatchInput>()
            .is_some_and(|input| input.queue_url() == Some(self.0.as_str()));
        if to_it {
            return Err("the slow lane's queue refused the call (test)".into());
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_repeat_after_a_partly_failed_publish_queues_exactly_the_missing_subscribers() {
    let stack = Stack::start().await;
    let ids = stack
        .webhooks("PART", 5, |i| format!("http://127.0.0.1:9/part/{i}"))
        .await;
    // Two of them failing: their deliveries take the slow lane.
    for id in &ids[3..] {
        let (hook, _) = stack.first_message("PART", id).await;
        stack
            .api
            .store
            .record_failure(&hook, Timestamp::now(), "HTTP 503", false)
            .await
            .unwrap();
    }
    let sdk = integration_tests::sdk_config().await;
    let config = aws_sdk_sqs::config::Builder::from(&sdk)
        .interceptor(RefuseQueue(stack.api.queue_urls.slow.clone()))
        .build();
    let broken = stack.api.over(
        stack.api.store.clone(),
        shared::adapters::SqsQueue::new(
            aws_sdk_sqs::Client::from_conf(config),
            stack.api.queue_urls.clone(),
        ),
    );
    let body = run(3);
    let failed = publish(&broken, "PART", "retry-me", &body).await;
    assert_eq!(
        failed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        failed.text
    );
    assert_eq!(failed.error_code(), "enqueue_failed");
    assert!(failed.text.contains("3 of 5"), "{}", failed.text);
    assert!(failed.text.contains("Idempotency-Key"), "{}", failed.text);
    assert_eq!(
        (
            queued(&stack, Lane::Fast).await,
            queued(&stack, Lane::Slow).await
        ),
        (3, 0)
    );
    // Repeated with its key once the queue is back: only the two missing.
    let completed = publish(&stack.api, "PART", "retry-me", &body).await;
    assert_eq!(completed.status, StatusCode::ACCEPTED, "{}", completed.text);
    assert_eq!(completed.body["deliveries"], 5);
    assert_eq!(
        (
            queued(&stack, Lane::Fast).await,
            queued(&stack, Lane::Slow).await
        ),
        (3, 2)
    );
    // Every queued message is for a different webhook, all of the same event.
    let mut webhooks = std::collections::BTreeSet::new();
    let mut events = std::collections::BTreeSet::new();
    for lane in [Lane::Fast, Lane::Slow] {
        let out = stack
            .sqs
            .receive_message()
            .queue_url(stack.api.queue_urls.url(lane))
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for message in out.messages.unwrap_or_default() {
            let decoded =
                shared::domain::DeliveryMessage::decode(message.body.as_deref().unwrap()).unwrap();
            webhooks.insert(decoded.webhook_id.to_string());
            events.insert(decoded.event_id.to_string());
        }
    }
    assert_eq!(webhooks, ids.iter().cloned().collect());
    assert_eq!(events.len(), 1);
    assert!(events.contains(completed.body["event_id"].as_str().unwrap()));
    let again = publish(&stack.api, "PART", "retry-me", &body).await;
    assert_eq!(again.body, completed.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn a_claim_whose_publish_died_is_taken_over_once_for_the_same_event() {
    use shared::domain::IdempotencyKey;
    use shared::ports::{IdempotencyStore, PublishAttempt, PublishClaim};
    let stack = Stack::start().await;
    let store = &stack.api.store;
    let project = ProjectCode::parse("DIED").unwrap();
    let key = IdempotencyKey::parse("died-key").unwrap();
    let now = Timestamp::now();
    let attempt = |event_id, at: Timestamp| PublishAttempt {
        fingerprint: "f",
        event_id,
        timestamp: 1_650_540_194,
        now: at,
        expires_at: at.after(std::time::Duration::from_secs(86_400)),
    };
    // A publish claimed the key a minute ago and died before settling it.
    let first = uuid::Uuid::now_v7();
    let long_ago = now.before(std::time::Duration::from_secs(60));
    assert_eq!(
        store
            .claim_publish(&project, &key, attempt(first, long_ago))
            .await
            .unwrap(),
        PublishClaim::Fresh
    );
    // Two repeats at once: one takes it over (the same event, nothing
    // queued yet), the other finds it under way.
    let repeat = || store.claim_publish(&project, &key, attempt(uuid::Uuid::now_v7(), now));
    let (a, b) = tokio::join!(repeat(), repeat());
    let mut claims = [a.unwrap(), b.unwrap()];
    claims.sort_by_key(|c| matches!(c, PublishClaim::InProgress));
    assert_eq!(
        claims,
        [
            PublishClaim::Resume {
                event_id: first,
                timestamp: 1_650_540_194,
                queued: Default::default()
            },
            PublishClaim::InProgress
        ]
    );
    // The dead publish can no longer settle it; the one holding it can.
    assert!(
        store
            .settle_publish(&project, &key, long_ago, &[], true)
            .await
            .is_err()
    );
    store
        .settle_publish(&project, &key, now, &[], true)
        .await
        .unwrap();
}
