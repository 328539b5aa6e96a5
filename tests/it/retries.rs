//! Opt-in retries (`retry_policy: "standard"`) through the real queue: the
//! test stack's schedule is 1 s then 2 s, so a whole schedule runs in
//! seconds; retries travel as delayed SQS messages in the emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use integration_tests::receiver::Receiver;
use integration_tests::stack::Stack;
use serde_json::json;

async fn webhook(stack: &Stack, endpoint: &str, policy: &str) -> String {
    stack
        .api
        .create_webhook(
            "RETRY",
            json!({"title": "retried", "endpoint": endpoint, "events": ["run.completed"], "retry_policy": policy}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Delivers until `done` holds or `limit` passes; answers how long it took.
async fn deliver_until(stack: &Stack, limit: Duration, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() && start.elapsed() < limit {
        stack.deliver_all().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn a_standard_webhook_is_delivered_on_the_third_attempt() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (created, secret) = stack
        .api
        .create_signed_webhook(
            "RETRY",
            json!({"title": "retried", "endpoint": rx.url("/flaky?fail_first=2"), "events": ["run.completed"], "retry_policy": "standard"}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    stack
        .publish("RETRY", "run.completed", json!({"id": 1}))
        .await;
    deliver_until(&stack, Duration::from_secs(20), || {
        rx.at("/flaky").len() >= 3
    })
    .await;
    let got = rx.at("/flaky");
    assert_eq!(got.len(), 3, "503, 503, then 200");
    // One delivery, one event: the ids stay; the attempts are spaced by the schedule.
    // Every attempt is signed anew (its own timestamp) and verifies with
    // the reference library.
    for request in &got {
        integration_tests::standard_webhooks_verify(&secret, &request.body, &request.headers)
            .unwrap();
    }
    for request in &got[1..] {
        assert_eq!(
            request.header("x-qase-delivery-id"),
            got[0].header("x-qase-delivery-id")
        );
        assert_eq!(request.header("webhook-id"), got[0].header("webhook-id"));
    }
    let first_wait = got[1].instant - got[0].instant;
    let second_wait = got[2].instant - got[1].instant;
    assert!(first_wait >= Duration::from_millis(900), "{first_wait:?}");
    assert!(
        second_wait >= Duration::from_millis(1800),
        "{second_wait:?}"
    );
    // Delivered in the end: the webhook is healthy again.
    let view = stack.get("RETRY", &id).await;
    assert_eq!(view["status"], "active", "{view}");
    assert_eq!(view["retry_policy"], "standard");
    // Nothing more is queued.
    stack.deliver_all().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.deliver_all().await;
    assert_eq!(rx.at("/flaky").len(), 3);
}

#[tokio::test]
async fn none_makes_exactly_one_attempt_and_the_schedule_ends() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    webhook(&stack, &rx.url("/once?status=503"), "none").await;
    webhook(&stack, &rx.url("/always?status=503"), "standard").await;
    stack
        .publish("RETRY", "run.completed", json!({"id": 1}))
        .await;
    deliver_until(&stack, Duration::from_secs(12), || false).await;
    assert_eq!(rx.at("/once").len(), 1, "none: one attempt");
    assert_eq!(
        rx.at("/always").len(),
        3,
        "the first attempt and the schedule's 2 retries"
    );
}

#[tokio::test]
async fn retry_after_later_than_the_schedule_is_honoured() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    webhook(
        &stack,
        &rx.url("/busy?fail_first=1&retry_after=4"),
        "standard",
    )
    .await;
    stack
        .publish("RETRY", "run.completed", json!({"id": 1}))
        .await;
    deliver_until(&stack, Duration::from_secs(15), || {
        rx.at("/busy").len() >= 2
    })
    .await;
    let got = rx.at("/busy");
    assert_eq!(got.len(), 2);
    let wait = got[1].instant - got[0].instant;
    assert!(
        wait >= Duration::from_millis(3900),
        "waited {wait:?}, asked 4 s"
    );
}

#[tokio::test]
async fn a_webhook_disabled_mid_schedule_gets_no_more_attempts() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = webhook(&stack, &rx.url("/stopped?status=503"), "standard").await;
    stack
        .publish("RETRY", "run.completed", json!({"id": 1}))
        .await;
    // One poll: the first attempt (its retry waits a second in the queue).
    assert_eq!(stack.poll().await.received, 1);
    assert_eq!(rx.at("/stopped").len(), 1);
    stack
        .api
        .admin(
            "PATCH",
            &format!("/projects/RETRY/webhooks/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    deliver_until(&stack, Duration::from_secs(8), || false).await;
    assert_eq!(rx.at("/stopped").len(), 1, "the pending retry was dropped");
}

#[tokio::test]
async fn a_retry_that_cannot_be_queued_returns_the_attempt_after_recording_the_failure() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = webhook(&stack, &rx.url("/unqueued?status=503"), "standard").await;
    let (hook, message) = stack.first_message("RETRY", &id).await;
    // A queue that refuses every message.
    let http =
        shared::adapters::HttpPoster::new(local_stack::loopback_policy(), Duration::from_secs(2))
            .unwrap();
    let sender = sender::Sender::new(stack.api.store.clone(), http, 10).with_lanes(
        sender::NoRetries,
        stack.api.queue_urls.names(),
        vec![Duration::from_secs(1)],
    );
    let _ = hook;
    stack
        .sqs
        .send_message()
        .queue_url(&stack.api.queue_url)
        .message_body(message.encode().unwrap())
        .send()
        .await
        .unwrap();
    let poll = sender::poller::poll_once(&sender, &stack.sqs, &stack.api.queue_url, 0)
        .await
        .unwrap();
    assert_eq!(
        (poll.received, poll.returned),
        (1, 1),
        "the attempt goes back to the queue"
    );
    assert_eq!(rx.at("/unqueued").len(), 1, "POSTed once");
    let view = stack.get("RETRY", &id).await;
    assert_eq!(
        view["status"], "failing",
        "the failure is recorded all the same"
    );
    assert_eq!(view["last_failure_reason"], "HTTP 503");
}
