//! What delivery costs in AWS calls, counted on real clients against the
//! emulator: a healthy batch of 10 is one read and no write; publishing to N
//! webhooks is ceil(N/10) `SendMessageBatch` calls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::http::StatusCode;
use integration_tests::counting::counting_queue;
use integration_tests::receiver::Receiver;
use integration_tests::stack::{Counting, Stack};
use local_stack::loopback_policy;
use sender::Sender;
use sender::poller::poll_once;
use shared::adapters::HttpPoster;

#[tokio::test]
async fn publishing_to_n_webhooks_costs_ceil_n_over_10_send_message_batch_calls() {
    let stack = Stack::start().await;
    let counting = stack.counting().await;
    let (api, sqs_calls) = (&counting.api, &counting.sqs);
    let mut created = 0;
    for (n, expected_calls) in [(1, 1), (10, 1), (11, 2), (25, 3), (100, 10)] {
        stack
            .webhooks("N", n - created, |_| "http://127.0.0.1:9/x".into())
            .await;
        created = n;
        sqs_calls.reset();
        let reply = api.publish_run("N").await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        assert_eq!(reply.body["deliveries"], n);
        assert_eq!(sqs_calls.get("SendMessageBatch"), expected_calls, "N = {n}");
        assert_eq!(
            sqs_calls.all().len(),
            1,
            "no other SQS call: {:?}",
            sqs_calls.all()
        );
    }
}

#[tokio::test]
async fn a_healthy_batch_of_10_costs_one_batch_get_item_and_no_write() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack
        .webhooks("H", 10, |i| rx.url(&format!("/ok/{i}")))
        .await;
    stack.api.publish_run("H").await;
    let Counting {
        store,
        dynamo: dynamo_calls,
        ..
    } = stack.counting().await;
    let sender = Sender::new(
        store,
        HttpPoster::new(loopback_policy(), Duration::from_secs(2)).unwrap(),
        10,
    );
    let poll = poll_once(&sender, &stack.sqs, &stack.api.queue_url, 0)
        .await
        .unwrap();
    assert_eq!(poll.received, 10);
    assert_eq!(rx.received().len(), 10);
    assert_eq!(dynamo_calls.get("BatchGetItem"), 1);
    assert_eq!(
        dynamo_calls.all().len(),
        1,
        "no write for healthy webhooks: {:?}",
        dynamo_calls.all()
    );

    // A failing one costs exactly one conditional write more.
    let failing = stack
        .webhook("H", &rx.url("/down?status=503"), &["run.completed"], None)
        .await;
    stack.api.publish_run("H").await;
    dynamo_calls.reset();
    let mut delivered = 0;
    while delivered < 11 {
        delivered += poll_once(&sender, &stack.sqs, &stack.api.queue_url, 0)
            .await
            .unwrap()
            .received;
    }
    assert_eq!(dynamo_calls.get("UpdateItem"), 1);
    assert_eq!(
        stack.get("H", &failing).await["last_failure_reason"],
        "HTTP 503"
    );
}

#[tokio::test]
async fn when_sqs_refuses_the_answer_says_nothing_was_queued() {
    let stack = Stack::start().await;
    stack
        .webhook("S", "http://127.0.0.1:9/x", &["run.completed"], None)
        .await;
    let deleted = |url: &str| format!("{url}-deleted");
    let urls = &stack.api.queue_urls;
    let (queue, _) = counting_queue(&shared::adapters::sqs::LaneUrls {
        fast: deleted(&urls.fast),
        slow: deleted(&urls.slow),
        waiting: deleted(&urls.waiting),
    })
    .await;
    let api = stack.api.over(stack.api.store.clone(), queue);
    let reply = api.publish_run("S").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.error_code(), "enqueue_failed");
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("0 of 1"), "{message}");
}

#[tokio::test]
async fn a_bearer_that_cannot_be_a_token_costs_no_dynamodb_call() {
    let stack = Stack::start().await;
    let minted = stack.api.project_token("AUTH").await;
    let Counting {
        api, dynamo: calls, ..
    } = stack.counting().await;
    for not_a_token in [
        "wrong-token",
        "qwh_too-short",
        &format!("{minted}x"),
        &minted.replacen("qwh_", "qwx_", 1),
    ] {
        let reply = api
            .call("GET", "/projects/AUTH/webhooks", Some(not_a_token), None)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{not_a_token}");
    }
    assert_eq!(calls.all().len(), 0, "no storage call: {:?}", calls.all());
    // A token of the right shape is looked up: one GetItem, then its own work.
    let reply = api
        .call("GET", "/projects/AUTH/webhooks", Some(&minted), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(calls.get("GetItem"), 1);
    let unknown = format!("qwh_{}", "A".repeat(43));
    let reply = api
        .call("GET", "/projects/AUTH/webhooks", Some(&unknown), None)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(calls.get("GetItem"), 2, "the right shape is looked up");
}
