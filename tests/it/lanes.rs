//! The delivery lanes (`docs/ARCHITECTURE.md`, "Lanes") through the real
//! queues of the emulator and receivers on 127.0.0.1: a failing or slow
//! endpoint never holds up healthy ones, lane moves lose and duplicate
//! nothing, the seed's rules hold in the slow lane, waiting retries cost
//! nothing while they wait, and each project gets its share of publishing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::http::StatusCode;
use integration_tests::counting::{Refuse, counting_queue, refusing_queue};
use integration_tests::mail::{sent_to, unique_address, verified_sender};
use integration_tests::receiver::Receiver;
use integration_tests::stack::Stack;
use serde_json::json;
use shared::domain::{
    DeliveryMessage, Lane, NoticeSettings, ProjectCode, PublishInput, PublishShare, Timestamp,
    Webhook, WebhookId,
};
use shared::ports::WebhookStore;

/// The stored webhook.
async fn stored(stack: &Stack, project: &str, id: &str) -> Webhook {
    stack
        .api
        .store
        .get(
            &ProjectCode::parse(project).unwrap(),
            WebhookId::parse(id).unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
}

/// A `run.completed` delivery to `hook`, as published.
fn message_for(hook: &Webhook) -> DeliveryMessage {
    let event =
        serde_json::from_str::<PublishInput>(r#"{"event_name":"run.completed","payload":{}}"#)
            .unwrap()
            .validate(hook.project.clone(), Timestamp::now())
            .unwrap();
    DeliveryMessage::new(&event, hook.id, event.envelope().unwrap())
}

/// Points the webhook at `endpoint`, keeping its failure state.
async fn point_to(stack: &Stack, project: &str, id: &str, endpoint: &str) {
    let reply = stack
        .api
        .admin(
            "PATCH",
            &format!("/projects/{project}/webhooks/{id}"),
            Some(json!({ "endpoint": endpoint })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

/// A sender over `store` and `queue` (the stack's lanes), as the stack's
/// own but for those clients.
fn lanes_sender<S: shared::ports::DeliveryStore, Q: shared::ports::DeliveryQueue>(
    stack: &Stack,
    store: S,
    queue: Q,
) -> sender::Sender<S, Q> {
    let http =
        shared::adapters::HttpPoster::new(local_stack::loopback_policy(), Duration::from_secs(2))
            .unwrap();
    sender::Sender::new(store, http, 10).with_lanes(
        queue,
        stack.api.queue_urls.names(),
        integration_tests::stack::TEST_RETRY_SCHEDULE.to_vec(),
    )
}

/// The delivery ids `path` received, in order.
fn delivery_ids(rx: &Receiver, path: &str) -> Vec<String> {
    rx.at(path)
        .iter()
        .map(|r| {
            r.header("x-qase-delivery-id")
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Puts `message` on `lane`'s queue, as a publish made earlier would have.
async fn put(stack: &Stack, lane: Lane, message: &DeliveryMessage, delay: i32) {
    stack
        .sqs
        .send_message()
        .queue_url(stack.api.queue_urls.url(lane))
        .message_body(message.encode().unwrap())
        .delay_seconds(delay)
        .send()
        .await
        .unwrap();
}

/// Receives up to 10 messages of `lane` and wraps them as the event source
/// mapping does; answers the event and the receipt handles by message id.
async fn receive(stack: &Stack, lane: Lane) -> (SqsEvent, Vec<(String, String)>) {
    let url = stack.api.queue_urls.url(lane);
    let out = stack
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let mut event = SqsEvent::default();
    let mut receipts = Vec::new();
    for message in out.messages.unwrap_or_default() {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id.clone();
        record.receipt_handle = message.receipt_handle.clone();
        record.body = message.body.clone();
        record.event_source_arn = Some(format!(
            "arn:aws:sqs:us-east-1:123456789012:{}",
            shared::domain::lane::queue_name(url)
        ));
        receipts.push((message.message_id.unwrap(), message.receipt_handle.unwrap()));
        event.records.push(record);
    }
    (event, receipts)
}

/// A webhook of `project` to `endpoint` for `run.completed`, failing: one
/// delivery to it failed and was recorded, as the sender records it.
async fn failing_webhook(stack: &Stack, project: &str, endpoint: &str) -> String {
    let id = stack
        .webhook(project, endpoint, &["run.completed"], None)
        .await;
    stack.publish(project, "run.completed", json!({})).await;
    stack.deliver_all().await;
    let hook = stored(stack, project, &id).await;
    assert!(hook.failing_since.is_some(), "the first delivery failed");
    id
}

#[tokio::test]
async fn a_healthy_webhook_is_not_held_up_by_another_projects_hanging_endpoint() {
    // A 3-second deadline; the hanging endpoint answers after 30.
    let stack = Stack::with_sender(local_stack::loopback_policy(), Duration::from_secs(3)).await;
    let rx = Receiver::start().await;
    let dead = failing_webhook(&stack, "DEAD", &rx.url("/hang?delay=30")).await;
    let failures = stored(&stack, "DEAD", &dead).await.failure_count;
    stack
        .webhook("LIVE", &rx.url("/live"), &["run.completed"], None)
        .await;
    for i in 0..10 {
        stack
            .publish("DEAD", "run.completed", json!({"i": i}))
            .await;
        stack
            .publish("LIVE", "run.completed", json!({"i": i}))
            .await;
    }
    // Published while failing, the dead endpoint's deliveries went to the
    // slow lane: the fast lane holds only the healthy ones.
    assert_eq!(stack.depth(Lane::Fast).await[0], 10);
    assert_eq!(stack.depth(Lane::Slow).await[0], 10);
    let running = stack.run_lanes(1);
    let started = Instant::now();
    while rx.at("/live").len() < 10 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rx.at("/live").len(), 10, "every healthy delivery arrived");
    // ... while the dead endpoint's POSTs were still in flight: none of
    // them has ended (each would have recorded its timeout).
    let hanging = stored(&stack, "DEAD", &dead).await;
    assert_eq!(
        hanging.failure_count, failures,
        "no hanging POST had ended when the last healthy delivery arrived"
    );
    // They had started (the slow lane runs them together) and end with
    // their deadline, each recorded.
    let started_hanging = rx.at("/hang").len();
    assert!(started_hanging > 1, "{started_hanging}");
    while stored(&stack, "DEAD", &dead).await.failure_count < failures + 10
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(running);
    let after = stored(&stack, "DEAD", &dead).await;
    assert_eq!(
        after.failure_count,
        failures + 10,
        "every one was attempted"
    );
    assert_eq!(rx.at("/hang").len(), 11, "each once");
}

#[tokio::test]
async fn a_webhook_that_starts_failing_moves_lanes_and_comes_back_after_a_success() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = failing_webhook(&stack, "MOVE", &rx.url("/down?status=503")).await;
    let hook = stored(&stack, "MOVE", &id).await;
    // A delivery queued in the fast lane before the failure was recorded
    // moves to the slow lane without a POST.
    put(&stack, Lane::Fast, &message_for(&hook), 0).await;
    let fast = stack.poll_lane(Lane::Fast).await;
    assert_eq!((fast.received, fast.acknowledged), (1, 1));
    assert_eq!(
        rx.at("/down").len(),
        1,
        "only the first delivery was POSTed"
    );
    assert_eq!(stack.depth(Lane::Slow).await, [1, 0, 0]);
    // New events go to the slow lane at once.
    stack.publish("MOVE", "run.completed", json!({})).await;
    assert_eq!(stack.depth(Lane::Slow).await, [2, 0, 0]);
    assert_eq!(stack.depth(Lane::Fast).await, [0, 0, 0]);
    // The endpoint comes back: the slow lane delivers, and the success puts
    // the webhook back in the fast lane.
    point_to(&stack, "MOVE", &id, &rx.url("/up")).await;
    let slow = stack.poll_lane(Lane::Slow).await;
    assert_eq!(slow.received, 2);
    assert_eq!(rx.at("/up").len(), 2);
    let recovered = stored(&stack, "MOVE", &id).await;
    assert_eq!(recovered.failing_since, None);
    assert_eq!(Lane::of(&recovered), Lane::Fast);
    stack.publish("MOVE", "run.completed", json!({})).await;
    assert_eq!(stack.depth(Lane::Fast).await, [1, 0, 0]);
    assert_eq!(stack.depth(Lane::Slow).await, [0, 0, 0]);
    stack.deliver_all().await;
    assert_eq!(rx.at("/up").len(), 3);
}

#[tokio::test]
async fn a_slow_endpoint_is_marked_while_its_post_waits_and_a_quick_answer_unmarks_it() {
    let stack = Stack::with_sender(local_stack::loopback_policy(), Duration::from_secs(5)).await;
    let rx = Receiver::start().await;
    let id = stack
        .webhook("PACE", &rx.url("/slow?delay=2.5"), &["run.completed"], None)
        .await;
    stack.publish("PACE", "run.completed", json!({})).await;
    stack.deliver_all().await;
    assert_eq!(rx.at("/slow").len(), 1);
    let slow = stored(&stack, "PACE", &id).await;
    assert!(slow.slow_since.is_some(), "a 2.5 s answer marks it slow");
    assert_eq!(slow.failing_since, None, "a slow success is no failure");
    stack.publish("PACE", "run.completed", json!({})).await;
    assert_eq!(stack.depth(Lane::Slow).await, [1, 0, 0]);
    point_to(&stack, "PACE", &id, &rx.url("/quick")).await;
    stack.deliver_all().await;
    assert_eq!(rx.at("/quick").len(), 1);
    let quick = stored(&stack, "PACE", &id).await;
    assert_eq!(quick.slow_since, None, "a quick answer unmarks it");
    assert_eq!(Lane::of(&quick), Lane::Fast);
}

#[tokio::test]
async fn a_lane_move_the_slow_queue_refuses_loses_and_duplicates_nothing() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = failing_webhook(&stack, "REFUSE", &rx.url("/refuse?status=503")).await;
    let hook = stored(&stack, "REFUSE", &id).await;
    let message = message_for(&hook);
    put(&stack, Lane::Fast, &message, 0).await;

    // The slow lane refuses: the record is not acknowledged.
    let refuse = Refuse::new("SendMessage");
    let (queue, calls) = refusing_queue(&stack.api.queue_urls, refuse.clone()).await;
    let sender = lanes_sender(&stack, stack.api.store.clone(), queue);
    let (event, receipts) = receive(&stack, Lane::Fast).await;
    let response = sender
        .handle(event, integration_tests::sender_deadline())
        .await;
    let returned: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        returned,
        vec![receipts[0].0.clone()],
        "returned to the fast lane"
    );
    assert_eq!(refuse.refused(), 1);
    assert_eq!(calls.get("SendMessage"), 1);
    assert_eq!(stack.depth(Lane::Slow).await, [0, 0, 0], "nothing moved");
    assert_eq!(stack.depth(Lane::Fast).await, [0, 1, 0], "still held");
    assert_eq!(rx.at("/refuse").len(), 1, "and not POSTed here");

    // Its visibility timeout passes; the slow lane takes it now.
    stack
        .sqs
        .change_message_visibility()
        .queue_url(&stack.api.queue_urls.fast)
        .receipt_handle(&receipts[0].1)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    refuse.set(false);
    let (event, receipts) = receive(&stack, Lane::Fast).await;
    assert_eq!(receipts.len(), 1, "the same delivery came back");
    let response = sender
        .handle(event, integration_tests::sender_deadline())
        .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "moved, acknowledged"
    );
    stack
        .sqs
        .delete_message()
        .queue_url(&stack.api.queue_urls.fast)
        .receipt_handle(&receipts[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(stack.depth(Lane::Fast).await, [0, 0, 0]);
    assert_eq!(stack.depth(Lane::Slow).await, [1, 0, 0], "moved once");
    // Delivered exactly once, from the slow lane, as queued.
    stack.deliver_all().await;
    assert_eq!(
        delivery_ids(&rx, "/refuse")[1..],
        [message.delivery_id.to_string()],
        "the first delivery, then this one once"
    );
}

#[tokio::test]
async fn the_two_day_disable_and_one_e_mail_hold_for_a_webhook_failing_in_the_slow_lane() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let owner = unique_address("slow-lane");
    let created = stack
        .api
        .create_webhook(
            "SLOWSWEEP",
            json!({"title": "Slow lane", "endpoint": rx.url("/gone-quiet?status=503"), "events": ["run.completed"], "notify_emails": [owner]}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    stack.publish("SLOWSWEEP", "run.completed", json!({})).await;
    stack.deliver_all().await;
    let first = stored(&stack, "SLOWSWEEP", &id).await;
    let since = first.failing_since.expect("failing");
    // Every later event is still attempted, in the slow lane, each failure
    // recorded the same way; `failing_since` stays the first failure.
    for _ in 0..3 {
        stack.publish("SLOWSWEEP", "run.completed", json!({})).await;
    }
    assert_eq!(stack.depth(Lane::Slow).await, [3, 0, 0]);
    let slow = stack.poll_lane(Lane::Slow).await;
    assert_eq!(slow.received, 3);
    assert_eq!(rx.at("/gone-quiet").len(), 4);
    let hook = stored(&stack, "SLOWSWEEP", &id).await;
    assert_eq!(hook.failure_count, 4);
    assert_eq!(hook.failing_since, Some(since));
    assert!(hook.last_failure_at.unwrap() > since);

    let sweeper = integration_tests::sweeper_over(
        &stack.api.store,
        NoticeSettings {
            from: verified_sender().await,
            default_to: unique_address("ops"),
            api_url: None,
            settings_url: None,
        },
    )
    .await;
    let later = || Instant::now() + Duration::from_secs(60);
    let early = sweeper
        .sweep(since.after(Duration::from_secs(2 * 86_400 - 60)), later())
        .await
        .unwrap();
    assert_eq!(early.disabled, 0, "not before two days");
    let due = since.after(Duration::from_secs(2 * 86_400 + 60));
    let report = sweeper.sweep(due, later()).await.unwrap();
    assert_eq!((report.disabled, report.mailed), (1, 1));
    let again = sweeper
        .sweep(due.after(Duration::from_secs(900)), later())
        .await
        .unwrap();
    assert_eq!((again.disabled, again.mailed), (0, 0));
    assert_eq!(sent_to(&owner).await.len(), 1, "one e-mail");
    let view = stack.get("SLOWSWEEP", &id).await;
    assert_eq!(view["status"], "disabled");
    // A disabled webhook gets nothing more, whatever its lane.
    stack.publish("SLOWSWEEP", "run.completed", json!({})).await;
    stack.deliver_all().await;
    assert_eq!(rx.at("/gone-quiet").len(), 4);
}

#[tokio::test]
async fn a_retry_due_in_a_day_costs_no_queue_traffic_while_it_waits() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    // The endpoint asks for a day (Retry-After: 86400) before the retry.
    let created = stack
        .api
        .create_webhook(
            "WAIT",
            json!({"title": "waits", "endpoint": rx.url("/tomorrow?status=503&retry_after=86400"), "events": ["run.completed"], "retry_policy": "standard"}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let (queue, calls) = counting_queue(&stack.api.queue_urls).await;
    let sender = lanes_sender(&stack, stack.api.store.clone(), queue);
    stack.publish("WAIT", "run.completed", json!({})).await;
    let (event, receipts) = receive(&stack, Lane::Fast).await;
    assert_eq!(receipts.len(), 1);
    sender
        .handle(event, integration_tests::sender_deadline())
        .await;
    assert_eq!(rx.at("/tomorrow").len(), 1);
    // The retry went to the waiting lane, delayed: one SendMessage.
    assert_eq!(calls.all(), [("SendMessage".to_owned(), 1)].into());
    assert_eq!(stack.depth(Lane::Waiting).await, [0, 0, 1]);
    assert_eq!(stack.depth(Lane::Slow).await, [0, 0, 0]);
    // While it waits, no lane hands anything to the sender.
    for _ in 0..3 {
        assert_eq!(stack.poll().await.received, 0);
    }
    assert_eq!(rx.at("/tomorrow").len(), 1);

    // When the waiting lane shows it (every 15 minutes at first, then about
    // every 12 hours), it costs one ChangeMessageVisibility and goes back
    // to sleep for as long as SQS allows, without reading the webhook.
    calls.reset();
    let hook = stored(&stack, "WAIT", &id).await;
    let waiting =
        message_for(&hook).into_retry(Timestamp::now().after(Duration::from_secs(86_000)));
    put(&stack, Lane::Waiting, &waiting, 0).await;
    let (event, _) = receive(&stack, Lane::Waiting).await;
    let (dynamo, dynamo_calls) =
        integration_tests::counting::counting_store(stack.api.store.table()).await;
    let (queue, calls) = counting_queue(&stack.api.queue_urls).await;
    let sender = lanes_sender(&stack, dynamo, queue);
    let response = sender
        .handle(event, integration_tests::sender_deadline())
        .await;
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "left in the waiting lane"
    );
    assert_eq!(
        calls.all(),
        [("ChangeMessageVisibility".to_owned(), 1)].into()
    );
    assert!(dynamo_calls.all().is_empty(), "{:?}", dynamo_calls.all());
    assert_eq!(stack.depth(Lane::Waiting).await[..2], [0, 1]);
    assert!(receive(&stack, Lane::Waiting).await.1.is_empty(), "asleep");
}

#[tokio::test]
async fn a_due_retry_leaves_the_waiting_lane_for_its_webhooks_lane() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = failing_webhook(&stack, "DUE", &rx.url("/due?status=503")).await;
    let hook = stored(&stack, "DUE", &id).await;
    let retry = message_for(&hook).into_retry(Timestamp::now());
    put(&stack, Lane::Waiting, &retry, 0).await;
    let waiting = stack.poll_lane(Lane::Waiting).await;
    assert_eq!((waiting.received, waiting.acknowledged), (1, 1));
    assert_eq!(rx.at("/due").len(), 1, "not POSTed from the waiting lane");
    assert_eq!(
        stack.depth(Lane::Slow).await,
        [1, 0, 0],
        "failing: slow lane"
    );
    stack.poll_lane(Lane::Slow).await;
    assert_eq!(
        delivery_ids(&rx, "/due")[1..],
        [retry.delivery_id.to_string()]
    );
}

#[tokio::test]
async fn a_project_over_its_publish_share_gets_429_with_retry_after_while_another_publishes() {
    let stack = Stack::start().await;
    let api = stack.api.with_share(PublishShare::per_second(3)).await;
    // Start at the beginning of a second, so the burst falls in one window.
    let into = Timestamp::now().as_datetime().timestamp_subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1000 - into) + 20)).await;
    let mut publishes = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let api = api.clone();
        publishes.spawn(async move { api.publish_run("BUSY").await });
    }
    let burst = publishes.join_all().await;
    let accepted = burst
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .count();
    let refused: Vec<_> = burst
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(accepted + refused.len(), 8);
    assert_eq!(accepted, 3, "the share, no more");
    for reply in &refused {
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert_eq!(reply.error_code(), "publish_rate_exceeded");
    }
    // Another project publishes meanwhile, within its own share.
    let other = api.publish_run("QUIET").await;
    assert_eq!(other.status, StatusCode::ACCEPTED, "{}", other.text);
    // The next second, the busy project publishes again.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(api.publish_run("BUSY").await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_batch_of_failures_to_one_webhook_is_one_write_that_counts_them_all() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = failing_webhook(&stack, "HOT", &rx.url("/hot?status=503")).await;
    let before = stored(&stack, "HOT", &id).await;
    for i in 0..10 {
        stack.publish("HOT", "run.completed", json!({"i": i})).await;
    }
    assert_eq!(stack.depth(Lane::Slow).await, [10, 0, 0]);
    let (store, dynamo) =
        integration_tests::counting::counting_store(stack.api.store.table()).await;
    let queue = shared::adapters::SqsQueue::from_sdk(
        &integration_tests::sdk_config().await,
        stack.api.queue_urls.clone(),
    );
    let sender = lanes_sender(&stack, store, queue);
    let poll = sender::poller::poll_once(&sender, &stack.sqs, &stack.api.queue_urls.slow, 0)
        .await
        .unwrap();
    assert_eq!(poll.received, 10);
    assert_eq!(rx.at("/hot").len(), 11, "every event attempted");
    assert_eq!(dynamo.get("UpdateItem"), 1, "{:?}", dynamo.all());
    let after = stored(&stack, "HOT", &id).await;
    assert_eq!(after.failure_count, before.failure_count + 10);
    assert_eq!(after.failing_since, before.failing_since);
    assert!(after.last_failure_at > before.last_failure_at);
}

#[tokio::test]
async fn each_batch_publishes_its_outcomes_latencies_and_lane_as_metrics() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack
        .webhook("METRIC", &rx.url("/ok"), &["run.completed"], None)
        .await;
    stack
        .webhook(
            "METRIC",
            &rx.url("/bad?status=503"),
            &["run.completed"],
            None,
        )
        .await;
    let ((), logs) = integration_tests::logged(async {
        stack.publish("METRIC", "run.completed", json!({})).await;
        let (event, _) = receive(&stack, Lane::Fast).await;
        assert_eq!(event.records.len(), 2);
        stack
            .sender
            .handle(event, integration_tests::sender_deadline())
            .await;
    })
    .await;
    assert_eq!(integration_tests::metric_values(&logs, "Published"), [1]);
    assert_eq!(integration_tests::metric_values(&logs, "FanOut"), [2]);
    let docs = integration_tests::metric_documents(&logs, "Delivered");
    assert_eq!(docs.len(), 1, "one document per batch: {logs}");
    let doc = &docs[0];
    assert_eq!(doc["Lane"], "fast");
    assert_eq!(
        (doc["Delivered"].as_u64(), doc["Failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(doc["Skipped"], 0);
    assert_eq!(doc["PostLatency"].as_array().unwrap().len(), 2, "{doc}");
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["FunctionName", "Lane"]])
    );
}
