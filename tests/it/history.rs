//! The delivery history through the real stack: the API publishes (and
//! stores the event), the sender delivers to loopback receivers and records
//! each attempt in the emulator's DynamoDB, the API reads them back,
//! redelivers and pings; the sweeper consults the history.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::http::StatusCode;
use integration_tests::counting::counting_store;
use integration_tests::documented;
use integration_tests::receiver::Receiver;
use integration_tests::stack::Stack;
use serde_json::{Value, json};
use shared::adapters::HttpPoster;
use shared::domain::{DeliveryLog, NoticeSettings, ProjectCode, Timestamp, WebhookId};
use shared::ports::WebhookStore;

fn deliveries(project: &str, id: &str) -> String {
    format!("/projects/{project}/webhooks/{id}/deliveries")
}

async fn list(stack: &Stack, project: &str, id: &str, query: &str) -> Value {
    let reply = stack
        .api
        .admin("GET", &format!("{}{query}", deliveries(project, id)), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body
}

async fn detail(stack: &Stack, project: &str, id: &str, delivery: &str) -> Value {
    let reply = stack
        .api
        .admin(
            "GET",
            &format!("{}/{delivery}", deliveries(project, id)),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body
}

/// Every history and event item in the table, as text (test-only Scan).
async fn stored_history_text(stack: &Stack) -> String {
    let out = stack
        .api
        .store
        .client()
        .scan()
        .table_name(stack.api.store.table())
        .send()
        .await
        .unwrap();
    let items: Vec<String> = out
        .items
        .unwrap_or_default()
        .into_iter()
        .filter(|item| {
            item.get("pk")
                .and_then(|pk| pk.as_s().ok())
                .is_some_and(|pk| pk.starts_with("HISTORY#") || pk.starts_with("EVENT#"))
        })
        .map(|item| format!("{item:?}"))
        .collect();
    assert!(!items.is_empty(), "the history holds items");
    items.join("\n")
}

#[tokio::test]
async fn delivered_failed_and_timed_out_deliveries_are_recorded_with_their_details_and_no_secret() {
    let stack = Stack::start().await; // 2-second deadline
    let rx = Receiver::start().await;
    let secret = "hist-secret-0123456789";
    let ok = stack
        .webhook("HIST", &rx.url("/ok"), &["run.completed"], Some(secret))
        .await;
    let busy = stack
        .webhook(
            "HIST",
            &rx.url("/busy?status=503"),
            &["run.completed"],
            Some(secret),
        )
        .await;
    let slow = stack
        .webhook("HIST", &rx.url("/slow?delay=5"), &["run.completed"], None)
        .await;
    let published = stack
        .publish("HIST", "run.completed", json!({"id": 7}))
        .await;
    stack.deliver_all().await;

    let cases = [
        (&ok, "delivered", Some(200_u64), None, "/ok"),
        (&busy, "failed", Some(503), Some("HTTP 503"), "/busy"),
        (&slow, "failed", None, Some("timeout after 2s"), "/slow"),
    ];
    for (id, outcome, status, reason, path) in cases {
        let page = list(&stack, "HIST", id, "").await;
        let items = page["deliveries"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{path}: {page}");
        let item = &items[0];
        let sent = rx.at(path);
        assert_eq!(sent.len(), 1, "{path}");
        let delivery_id = sent[0].header("x-qase-delivery-id").unwrap();
        assert_eq!(item["delivery_id"], delivery_id);
        assert_eq!(item["event_id"], published["event_id"]);
        assert_eq!(item["event_name"], "run.completed");
        assert_eq!(item["webhook_id"], id.as_str());
        assert_eq!(item["attempt"], 1);
        assert_eq!(item["trigger"], "event");
        assert_eq!(item["outcome"], outcome, "{path}");
        assert_eq!(item["status"].as_u64(), status, "{path}");
        assert_eq!(item["failure_reason"].as_str(), reason, "{path}");
        assert!(item["request_headers"].is_null(), "a listing is a summary");
        let started = Timestamp::parse(item["started_at"].as_str().unwrap()).unwrap();
        let completed = Timestamp::parse(item["completed_at"].as_str().unwrap()).unwrap();
        assert!(completed >= started);
        let latency = item["latency_ms"].as_u64().unwrap();
        if path == "/slow" {
            assert!(latency >= 2000, "ran to the deadline: {latency}");
        }

        let one = detail(&stack, "HIST", id, delivery_id).await;
        assert_eq!(one["delivery_id"], delivery_id);
        let attempt = &one["attempts"][0];
        let headers = &attempt["request_headers"];
        assert_eq!(headers["X-Qase-Delivery-Id"], delivery_id);
        assert_eq!(headers["Content-Type"], "application/json");
        assert_eq!(
            headers["webhook-signature"].as_str(),
            sent[0].header("webhook-signature")
        );
        if path == "/slow" {
            assert!(headers.get("X-Qase-Secret").is_none());
            assert!(attempt["response_body"].is_null());
        } else {
            assert_eq!(headers["X-Qase-Secret"], "***", "masked");
            assert_eq!(attempt["response_body"], "recorded\n");
        }
        assert!(!one.to_string().contains(secret));
        assert!(!page.to_string().contains(secret));
        documented("DeliveryDetail", &one);
        documented("DeliveryAttempt", attempt);
        documented("DeliveryAttempt", item);
        documented("DeliveryList", &page);
    }

    // Filtering by outcome.
    let failed = list(&stack, "HIST", &busy, "?status=failed").await;
    assert_eq!(failed["deliveries"].as_array().unwrap().len(), 1);
    let delivered = list(&stack, "HIST", &busy, "?status=delivered").await;
    assert_eq!(delivered["deliveries"], json!([]));
    let bad = stack
        .api
        .admin(
            "GET",
            &format!("{}?status=ok", deliveries("HIST", &busy)),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_field(), Some("status"));

    // Neither the webhook secret nor a signing secret is stored.
    let stored = stored_history_text(&stack).await;
    assert!(!stored.contains(secret));
    for id in [&ok, &busy, &slow] {
        let signing = stack
            .api
            .admin(
                "GET",
                &format!("/projects/HIST/webhooks/{id}/signing-secret"),
                None,
            )
            .await
            .body["signing_secret"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!stored.contains(&signing));
        assert!(!stored.contains(signing.trim_start_matches("whsec_")));
    }
}

#[tokio::test]
async fn a_delivery_skipped_because_the_webhook_was_disabled_meanwhile_says_so() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = stack
        .webhook("SKIP", &rx.url("/s"), &["run.completed"], None)
        .await;
    stack.api.publish_run("SKIP").await;
    stack
        .api
        .admin(
            "PATCH",
            &format!("/projects/SKIP/webhooks/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    stack.deliver_all().await;
    assert!(rx.received().is_empty());
    let page = list(&stack, "SKIP", &id, "").await;
    let item = &page["deliveries"][0];
    assert_eq!(item["outcome"], "skipped");
    assert_eq!(item["skipped_reason"], "webhook disabled");
    assert!(item["status"].is_null() && item["failure_reason"].is_null());
    documented("DeliveryAttempt", item);
}

#[tokio::test]
async fn pages_come_newest_first_and_follow_the_cursor_to_the_end() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = stack
        .webhook("PAGE", &rx.url("/p"), &["run.completed"], None)
        .await;
    for n in 0..5 {
        stack
            .publish("PAGE", "run.completed", json!({"id": n}))
            .await;
        stack.deliver_all().await;
    }
    let sent: Vec<String> = rx
        .at("/p")
        .iter()
        .map(|r| r.header("x-qase-delivery-id").unwrap().to_owned())
        .collect();
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = list(&stack, "PAGE", &id, &query).await;
        let items = page["deliveries"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|i| i["delivery_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let newest_first: Vec<String> = sent.into_iter().rev().collect();
    assert_eq!(seen, newest_first);
    let bad = stack
        .api
        .admin(
            "GET",
            &format!("{}?cursor=nope", deliveries("PAGE", &id)),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_field(), Some("cursor"));
}

#[tokio::test]
async fn a_redelivery_sends_the_same_bytes_under_a_new_delivery_id_even_to_a_disabled_webhook() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = stack
        .webhook("REDO", &rx.url("/r"), &["run.completed"], None)
        .await;
    stack
        .publish_raw(
            "REDO",
            r#"{"event_name":"run.completed","payload":{ "id" : 1, "title":"é \u00e9" },"team_member_id":40,"timestamp":1650540194}"#,
        )
        .await;
    stack.deliver_all().await;
    let first = rx.at("/r").remove(0);
    let original = first.header("x-qase-delivery-id").unwrap().to_owned();
    assert_eq!(first.header("x-qase-redelivery"), None);

    // The user disabled the webhook and tests the fix before re-enabling.
    let off = stack
        .api
        .admin(
            "PATCH",
            &format!("/projects/REDO/webhooks/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK);
    let reply = stack
        .api
        .admin(
            "POST",
            &format!("{}/{original}/redeliver", deliveries("REDO", &id)),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    documented("Queued", &reply.body);
    let again = reply.body["delivery_id"].as_str().unwrap().to_owned();
    assert_ne!(again, original);
    stack.deliver_all().await;

    let got = rx.at("/r");
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].body, first.body, "byte for byte");
    assert_eq!(got[1].header("x-qase-delivery-id"), Some(again.as_str()));
    assert_eq!(got[1].header("x-qase-redelivery"), Some("true"));
    assert_eq!(
        got[1].header("webhook-id"),
        first.header("webhook-id"),
        "the same event"
    );
    assert_eq!(
        stack.get("REDO", &id).await["enabled"],
        false,
        "stays disabled"
    );
    let page = list(&stack, "REDO", &id, "").await;
    let items = page["deliveries"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["delivery_id"], again.as_str(), "newest first");
    assert_eq!(items[0]["trigger"], "redelivery");
    assert_eq!(items[0]["outcome"], "delivered");
    assert_eq!(items[1]["delivery_id"], original.as_str());
}

#[tokio::test]
async fn a_ping_goes_through_the_queue_to_a_disabled_webhook_and_is_recorded() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = stack
        .webhook("PING", &rx.url("/ping"), &["case.created"], None)
        .await;
    stack
        .api
        .admin(
            "PATCH",
            &format!("/projects/PING/webhooks/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    let reply = stack
        .api
        .admin("POST", &format!("/projects/PING/webhooks/{id}/ping"), None)
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let delivery = reply.body["delivery_id"].as_str().unwrap().to_owned();
    assert!(rx.received().is_empty(), "sent by the sender, not the API");
    stack.deliver_all().await;
    let got = rx.at("/ping");
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["event_name"], "webhook.ping");
    assert_eq!(body["payload"], json!({"webhook_id": id, "title": "hook"}));
    assert_eq!(body["project_code"], "PING");
    assert!(body["timestamp"].is_i64());
    assert_eq!(got[0].header("x-qase-event"), Some("webhook.ping"));
    assert_eq!(got[0].header("x-qase-delivery-id"), Some(delivery.as_str()));
    let one = detail(&stack, "PING", &id, &delivery).await;
    assert_eq!(one["attempts"][0]["trigger"], "ping");
    assert_eq!(one["attempts"][0]["event_name"], "webhook.ping");
    assert_eq!(one["attempts"][0]["outcome"], "delivered");
    // The ping is not an event anyone can publish.
    let publish = stack
        .api
        .admin(
            "POST",
            "/projects/PING/events",
            Some(json!({"event_name": "webhook.ping", "payload": {}})),
        )
        .await;
    assert_eq!(publish.status, StatusCode::BAD_REQUEST);
    let missing = stack
        .api
        .admin(
            "POST",
            &format!("/projects/PING/webhooks/{}/ping", WebhookId::generate()),
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_projects_token_can_neither_read_nor_redeliver_nor_ping() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = stack
        .webhook("MINE", &rx.url("/m"), &["run.completed"], None)
        .await;
    stack.api.publish_run("MINE").await;
    stack.deliver_all().await;
    let delivery = rx.at("/m")[0]
        .header("x-qase-delivery-id")
        .unwrap()
        .to_owned();
    let own = stack.api.project_token("MINE").await;
    let other = stack.api.project_token("THEIRS").await;
    let routes = [
        ("GET", deliveries("MINE", &id)),
        ("GET", format!("{}/{delivery}", deliveries("MINE", &id))),
        (
            "POST",
            format!("{}/{delivery}/redeliver", deliveries("MINE", &id)),
        ),
        ("POST", format!("/projects/MINE/webhooks/{id}/ping")),
    ];
    for (method, path) in &routes {
        let reply = stack.api.call(method, path, Some(&other), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        let reply = stack.api.call(method, path, Some(&own), None).await;
        assert!(reply.status.is_success(), "{method} {path}: {}", reply.text);
    }
    // Under another project's path, the webhook's history is not there.
    let elsewhere = format!("{}/{delivery}", deliveries("THEIRS", &id));
    let reply = stack.api.call("GET", &elsewhere, Some(&other), None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = stack
        .api
        .call(
            "POST",
            &format!("{elsewhere}/redeliver"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let page = stack
        .api
        .call("GET", &deliveries("THEIRS", &id), Some(&other), None)
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unknown_delivery_an_expired_event_and_a_deleted_webhook_are_refused_clearly() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = stack
        .webhook("GONE", &rx.url("/g"), &["run.completed"], None)
        .await;
    let published = stack
        .publish("GONE", "run.completed", json!({"id": 1}))
        .await;
    stack.deliver_all().await;
    let delivery = rx.at("/g")[0]
        .header("x-qase-delivery-id")
        .unwrap()
        .to_owned();
    let redeliver = |delivery: String| {
        let path = format!("{}/{delivery}/redeliver", deliveries("GONE", &id));
        let api = stack.api.clone();
        async move { api.admin("POST", &path, None).await }
    };

    let unknown = redeliver(uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "not_found");
    let malformed = redeliver("not-a-delivery".to_owned()).await;
    assert_eq!(malformed.status, StatusCode::NOT_FOUND);

    // Past its expiry, before DynamoDB's TTL removed it: refused.
    let event_key = shared::adapters::dynamo::schema::event_key(
        uuid::Uuid::parse_str(published["event_id"].as_str().unwrap()).unwrap(),
    );
    let table = stack.api.store.table().to_owned();
    let client = stack.api.store.client().clone();
    client
        .update_item()
        .table_name(&table)
        .set_key(Some(event_key.clone()))
        .update_expression("SET expires_at = :past")
        .expression_attribute_values(
            ":past",
            aws_sdk_dynamodb::types::AttributeValue::N(
                (Timestamp::now().unix_seconds() - 1).to_string(),
            ),
        )
        .send()
        .await
        .unwrap();
    let expired = redeliver(delivery.clone()).await;
    assert_eq!(expired.status, StatusCode::GONE, "{}", expired.text);
    assert_eq!(expired.error_code(), "event_expired");
    // Removed by the TTL: the same answer.
    client
        .delete_item()
        .table_name(&table)
        .set_key(Some(event_key))
        .send()
        .await
        .unwrap();
    let removed = redeliver(delivery.clone()).await;
    assert_eq!(removed.status, StatusCode::GONE);
    assert_eq!(rx.at("/g").len(), 1, "nothing more was sent");

    // A deleted webhook: no history to show, nothing to redeliver to.
    let deleted = stack
        .api
        .admin("DELETE", &format!("/projects/GONE/webhooks/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let refused = redeliver(delivery.clone()).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert!(
        refused.text.contains("webhook not found"),
        "{}",
        refused.text
    );
    for path in [
        deliveries("GONE", &id),
        format!("{}/{delivery}", deliveries("GONE", &id)),
    ] {
        let reply = stack.api.admin("GET", &path, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
}

/// Answers the first request 503 at once and every later one 200 after
/// 300 ms: two deliveries in flight at once, the failure first.
async fn first_fails_then_slow_success() -> (String, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move || {
        let counter = Arc::clone(&counter);
        async move {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                tokio::time::sleep(Duration::from_millis(300)).await;
                StatusCode::OK
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test]
async fn a_success_after_a_concurrent_failure_keeps_the_webhook_enabled_days_later() {
    let stack = Stack::start().await;
    let (endpoint, seen) = first_fails_then_slow_success().await;
    let id = stack
        .webhook("RACE", &endpoint, &["run.completed"], None)
        .await;
    stack
        .publish("RACE", "run.completed", json!({"id": 1}))
        .await;
    stack
        .publish("RACE", "run.completed", json!({"id": 2}))
        .await;
    // Both in one batch, judged against one read of a healthy webhook.
    let mut messages = Vec::new();
    while messages.len() < 2 {
        messages.extend(stack.receive().await);
    }
    let mut event = SqsEvent::default();
    event.records = messages
        .into_iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id;
            record.body = m.body;
            record
        })
        .collect();
    stack
        .sender
        .handle(event, integration_tests::sender_deadline())
        .await;
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    let view = stack.get("RACE", &id).await;
    assert_eq!(view["status"], "failing", "the summary missed the success");

    let page = list(&stack, "RACE", &id, "").await;
    let outcomes: Vec<&str> = page["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.contains(&"failed") && outcomes.contains(&"delivered"));

    // No event for three days; the sweeper runs.
    let sweeper = integration_tests::sweeper_over(&stack.api.store, notice())
        .await
        .with_history(DeliveryLog::default());
    let later = Timestamp::now().after(Duration::from_secs(3 * 24 * 3600));
    let report = sweeper
        .sweep(later, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((report.disabled, report.recovered), (0, 1), "{report:?}");
    let view = stack.get("RACE", &id).await;
    assert_eq!(view["enabled"], true);
    assert_eq!(view["status"], "active", "{view}");
    assert!(view["failing_since"].is_null());
}

#[tokio::test]
async fn failures_after_the_success_keep_failing_from_the_success_on() {
    use shared::ports::{DeliveryStore, SweepStore};
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = stack
        .webhook("LATER", &rx.url("/l"), &["run.completed"], None)
        .await;
    stack.api.publish_run("LATER").await;
    stack.deliver_all().await; // delivered now
    let store = &stack.api.store;
    let project = ProjectCode::parse("LATER").unwrap();
    let hook_id = WebhookId::parse(&id).unwrap();
    let hook = store.get(&project, hook_id).await.unwrap().unwrap();
    // Failing since an hour ago by the summary, and again after the success.
    let before = Timestamp::now().before(Duration::from_secs(3600));
    store
        .record_failure(&hook, before, "HTTP 503", false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let after = Timestamp::now();
    store
        .record_failure(&hook, after, "HTTP 503", false)
        .await
        .unwrap();
    let failing = store.get(&project, hook_id).await.unwrap().unwrap();
    let shared::domain::history::SuccessSearch::Delivered(delivered) =
        store.delivered_after(&failing, before).await.unwrap()
    else {
        panic!("the success is found")
    };
    assert!(before < delivered && delivered < after);

    let sweeper = integration_tests::sweeper_over(store, notice())
        .await
        .with_history(DeliveryLog::default());
    let report = sweeper
        .sweep(
            Timestamp::now().after(Duration::from_secs(3 * 24 * 3600)),
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(report.recovered, 1);
    let view = store.get(&project, hook_id).await.unwrap().unwrap();
    assert_eq!(view.failing_since, Some(delivered), "moved to the success");
    assert_eq!(view.last_failure_at, Some(after));
    assert!(view.enabled);
    // A stale read (the failure state changed since) applies nothing.
    assert!(
        !store
            .recover(&failing, shared::domain::history::Recovery::Clear)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn one_batch_write_records_a_whole_batch_and_with_the_log_off_healthy_deliveries_write_nothing()
 {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack
        .webhooks("COST", 10, |i| rx.url(&format!("/c/{i}")))
        .await;
    let (store, calls) = counting_store(stack.api.store.table()).await;
    let http = || HttpPoster::new(local_stack::loopback_policy(), Duration::from_secs(2)).unwrap();
    for (log, expected) in [
        (
            DeliveryLog::default(),
            vec![("BatchGetItem", 1), ("BatchWriteItem", 1)],
        ),
        (DeliveryLog::off(), vec![("BatchGetItem", 1)]),
    ] {
        stack.api.publish_run("COST").await;
        calls.reset();
        let sender = sender::Sender::new(store.clone(), http(), 10).with_history(log);
        let poll = sender::poller::poll_once(&sender, &stack.sqs, &stack.api.queue_url, 0)
            .await
            .unwrap();
        assert_eq!(poll.received, 10);
        let counted: Vec<(String, usize)> = calls.all().into_iter().collect();
        let expected: Vec<(String, usize)> = expected
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(counted, expected, "{log:?}");
    }
    assert_eq!(rx.received().len(), 20);
}

fn notice() -> NoticeSettings {
    NoticeSettings {
        from: "webhooks@example.com".into(),
        default_to: "owner@example.com".into(),
        api_url: None,
        settings_url: None,
    }
}

/// Makes DynamoDB leave all but the first item of the first
/// `BatchWriteItem` unprocessed, as a throttled table does: those items are
/// taken out of that call and handed back in its `UnprocessedItems`.
#[derive(Debug, Clone)]
struct ThrottleFirstBatchWrite {
    table: String,
    left: Arc<std::sync::Mutex<Option<Vec<aws_sdk_dynamodb::types::WriteRequest>>>>,
    calls: Arc<AtomicUsize>,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for ThrottleFirstBatchWrite {
    fn name(&self) -> &'static str {
        "ThrottleFirstBatchWrite"
    }

    fn modify_before_serialization(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextMut<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
        let Some(input) = context.input_mut().downcast_mut::<BatchWriteItemInput>() else {
            return Ok(());
        };
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0
            && let Some(writes) = input
                .request_items
                .as_mut()
                .and_then(|items| items.get_mut(&self.table))
        {
            *self.left.lock().unwrap() = Some(writes.split_off(1));
        }
        Ok(())
    }

    fn modify_before_completion(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextMut<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput;
        if let Some(Ok(output)) = context.output_or_error_mut()
            && let Some(output) = output.downcast_mut::<BatchWriteItemOutput>()
            && let Some(left) = self.left.lock().unwrap().take()
        {
            output.unprocessed_items = Some(std::collections::HashMap::from([(
                self.table.clone(),
                left,
            )]));
        }
        Ok(())
    }
}

#[tokio::test]
async fn attempts_left_unprocessed_by_a_throttled_table_are_written_by_a_second_call() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let ids = stack
        .webhooks("THROTTLE", 3, |i| rx.url(&format!("/t/{i}")))
        .await;
    stack.api.publish_run("THROTTLE").await;
    let throttle = ThrottleFirstBatchWrite {
        table: stack.api.store.table().to_owned(),
        left: Arc::default(),
        calls: Arc::default(),
    };
    let sdk = integration_tests::sdk_config().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(throttle.clone())
        .build();
    let store = shared::adapters::DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        stack.api.store.table(),
    );
    let http = HttpPoster::new(local_stack::loopback_policy(), Duration::from_secs(2)).unwrap();
    let sender = sender::Sender::new(store, http, 10).with_history(DeliveryLog::default());
    let poll = sender::poller::poll_once(&sender, &stack.sqs, &stack.api.queue_url, 0)
        .await
        .unwrap();
    assert_eq!(poll.received, 3);
    assert_eq!(
        throttle.calls.load(Ordering::SeqCst),
        2,
        "one call, then the unprocessed"
    );
    for id in &ids {
        let page = list(&stack, "THROTTLE", id, "").await;
        assert_eq!(page["deliveries"].as_array().unwrap().len(), 1, "{id}");
    }
}

/// Records how many writes each `BatchWriteItem` request carries.
#[derive(Debug, Clone, Default)]
struct BatchWriteSizes(Arc<std::sync::Mutex<Vec<usize>>>);

impl aws_smithy_runtime_api::client::interceptors::Intercept for BatchWriteSizes {
    fn name(&self) -> &'static str {
        "BatchWriteSizes"
    }

    fn read_before_serialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
        if let Some(input) = context.input().downcast_ref::<BatchWriteItemInput>() {
            let writes = input
                .request_items
                .iter()
                .flat_map(|m| m.values())
                .map(Vec::len)
                .sum();
            self.0.lock().unwrap().push(writes);
        }
        Ok(())
    }
}

/// DynamoDB refuses a `BatchWriteItem` that writes one key twice (the
/// emulator does not), so the request itself is checked.
#[tokio::test]
async fn one_attempt_handed_to_a_batch_twice_is_recorded_once_as_it_ended_last() {
    use shared::domain::{Attempt, Outcome, StoredEvent};
    use shared::ports::{DeliveryStore, HistoryStore};
    let stack = Stack::start().await;
    let id = stack
        .webhook("TWICE", "http://127.0.0.1:9/x", &["run.completed"], None)
        .await;
    let project = ProjectCode::parse("TWICE").unwrap();
    let now = Timestamp::now();
    let event = StoredEvent {
        id: uuid::Uuid::now_v7(),
        project: project.clone(),
        event_name: shared::domain::EventName::RunCompleted,
        envelope: "{}".into(),
        created_at: now,
    };
    let message = event.redelivery(WebhookId::parse(&id).unwrap()).unwrap();
    let sent = |outcome: Outcome| {
        Attempt::of(&message, now).sent(Default::default(), &outcome, Duration::ZERO, b"")
    };
    let first = sent(Outcome::Failed {
        reason: shared::domain::FailureReason::Status(503),
    });
    let last = sent(Outcome::Delivered { status: 200 });
    let expires = DeliveryLog::default().expires_at(now).unwrap();
    let sizes = BatchWriteSizes::default();
    let sdk = integration_tests::sdk_config().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(sizes.clone())
        .build();
    let store = shared::adapters::DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        stack.api.store.table(),
    );
    store
        .record_attempts(&[first, last.clone()], expires)
        .await
        .unwrap();
    assert_eq!(*sizes.0.lock().unwrap(), vec![1], "one write of the key");
    let stored = stack
        .api
        .store
        .delivery_attempts(&project, last.webhook_id, last.delivery_id)
        .await
        .unwrap();
    assert_eq!(stored, vec![last]);
}

#[tokio::test]
async fn an_endpoint_that_echoes_its_request_does_not_put_the_secret_in_the_history() {
    // Answers with the request's headers, as echo services do.
    let app = axum::Router::new()
        .fallback(|headers: axum::http::HeaderMap| async move { format!("{headers:?}") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let stack = Stack::start().await;
    let secret = "echoed-secret-0123456789";
    let id = stack
        .webhook(
            "ECHO",
            &format!("http://{addr}/echo"),
            &["run.completed"],
            Some(secret),
        )
        .await;
    stack.api.publish_run("ECHO").await;
    stack.deliver_all().await;
    let page = list(&stack, "ECHO", &id, "").await;
    let delivery = page["deliveries"][0]["delivery_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = detail(&stack, "ECHO", &id, &delivery).await;
    let body = one["attempts"][0]["response_body"].as_str().unwrap();
    assert!(
        body.contains("x-qase-secret"),
        "the endpoint echoed: {body}"
    );
    assert!(!body.contains(secret), "{body}");
    assert!(!stored_history_text(&stack).await.contains(secret));
}

#[tokio::test]
async fn a_history_search_that_stops_before_it_can_tell_does_not_disable() {
    use shared::adapters::dynamo::schema::history_shard;
    use shared::domain::AttemptOutcome;
    use shared::ports::DeliveryStore;
    let stack = Stack::start().await;
    let id = stack
        .webhook("DEEP", "http://127.0.0.1:9/deep", &["run.completed"], None)
        .await;
    let store = &stack.api.store;
    let project = ProjectCode::parse("DEEP").unwrap();
    let hook_id = WebhookId::parse(&id).unwrap();
    let hook = store.get(&project, hook_id).await.unwrap().unwrap();
    let hour = Duration::from_secs(3600);
    let since = Timestamp::now().before(72 * hour);
    store
        .record_failure(&hook, since, "HTTP 503", false)
        .await
        .unwrap();
    // A delivery made an hour before the failures began succeeded an hour
    // after; then 50 failed deliveries in the same history partition, each
    // record near DynamoDB's item limit: two fill a 1 MB page, so the
    // search meets 25 pages without a success before it reaches it.
    let delivery_at = |at: Timestamp, shard: Option<u8>| loop {
        let id = delivery_id_at(at);
        if shard.is_none_or(|s| history_shard(id) == s) {
            break id;
        }
    };
    let record = |delivery_id, started_at, outcome| {
        let mut made = recorded_attempt(&project, hook_id, delivery_id, started_at, outcome);
        made.response_body = Some("x".repeat(350_000));
        made
    };
    let success_id = delivery_at(since.before(hour), None);
    let shard = Some(history_shard(success_id));
    let mut success = record(success_id, since.before(hour), AttemptOutcome::Delivered);
    success.completed_at = since.after(hour);
    let mut attempts = vec![success];
    for i in 0..50 {
        let at = since.after(2 * hour + Duration::from_secs(i));
        attempts.push(record(delivery_at(at, shard), at, AttemptOutcome::Failed));
    }
    let expires = DeliveryLog::default().expires_at(Timestamp::now()).unwrap();
    store.record_attempts(&attempts, expires).await.unwrap();

    let sweeper = integration_tests::sweeper_over(store, notice())
        .await
        .with_history(DeliveryLog::default());
    let report = sweeper
        .sweep(Timestamp::now(), Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        (report.disabled, report.undecided, report.recovered),
        (0, 1, 0),
        "{report:?}"
    );
    let view = store.get(&project, hook_id).await.unwrap().unwrap();
    assert!(view.enabled, "could not tell is not no success");
    assert_eq!(view.failing_since, Some(since), "nothing else changed");
}

/// A delivery id (UUIDv7) made at `at`: where the history sorts it.
fn delivery_id_at(at: Timestamp) -> uuid::Uuid {
    let ms = u64::try_from(at.as_datetime().timestamp_millis()).unwrap();
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        u32::try_from(ms % 1000).unwrap() * 1_000_000,
    ))
}

/// A first attempt of `delivery_id` to the webhook, started and completed
/// at `at`, as the sender records one.
fn recorded_attempt(
    project: &ProjectCode,
    webhook_id: WebhookId,
    delivery_id: uuid::Uuid,
    at: Timestamp,
    outcome: shared::domain::AttemptOutcome,
) -> shared::domain::Attempt {
    use shared::domain::AttemptOutcome;
    shared::domain::Attempt {
        delivery_id,
        attempt: 1,
        event_id: uuid::Uuid::now_v7(),
        event_name: shared::domain::EventName::RunCompleted,
        project: project.clone(),
        webhook_id,
        trigger: shared::domain::Trigger::Event,
        started_at: at,
        completed_at: at,
        latency_ms: 0,
        outcome,
        skipped_reason: None,
        status: Some(if outcome == AttemptOutcome::Delivered {
            200
        } else {
            503
        }),
        failure_reason: None,
        request_headers: Default::default(),
        response_body: None,
    }
}

#[tokio::test]
async fn a_recovery_found_in_the_history_takes_the_due_mark_of_an_earlier_timeout_away() {
    use shared::domain::AttemptOutcome;
    use shared::ports::DeliveryStore;
    let stack = Stack::start().await;
    let id = stack
        .webhook(
            "DUEGONE",
            "http://127.0.0.1:9/due",
            &["run.completed"],
            None,
        )
        .await;
    let store = &stack.api.store;
    let project = ProjectCode::parse("DUEGONE").unwrap();
    let hook_id = WebhookId::parse(&id).unwrap();
    let hook = store.get(&project, hook_id).await.unwrap().unwrap();
    let minute = Duration::from_secs(60);
    let start = Timestamp::now().before(10 * minute);
    // A timeout with DisableOnTimeout marks it due; a delivery in flight
    // then succeeds (the summary misses it); a 503 follows.
    store
        .record_failure(&hook, start, "timeout after 15s", true)
        .await
        .unwrap();
    let mut success = recorded_attempt(
        &project,
        hook_id,
        uuid::Uuid::now_v7(),
        start.before(minute),
        AttemptOutcome::Delivered,
    );
    success.completed_at = start.after(minute);
    let expires = DeliveryLog::default().expires_at(Timestamp::now()).unwrap();
    store.record_attempts(&[success], expires).await.unwrap();
    store
        .record_failure(&hook, start.after(2 * minute), "HTTP 503", false)
        .await
        .unwrap();

    let sweeper = integration_tests::sweeper_over(store, notice())
        .await
        .with_history(DeliveryLog::default());
    let now = Timestamp::now();
    let first = sweeper
        .sweep(now, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((first.recovered, first.disabled), (1, 0), "{first:?}");
    let view = store.get(&project, hook_id).await.unwrap().unwrap();
    assert_eq!(view.failing_since, Some(start.after(minute)));
    // The next sweep, 15 minutes later: failing for minutes, not two days.
    let next = sweeper
        .sweep(
            now.after(15 * minute),
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(next.disabled, 0, "{next:?}");
    let view = store.get(&project, hook_id).await.unwrap().unwrap();
    assert!(view.enabled, "disabled two days early");
    // Two days after the failures began again, the window disables it.
    let late = sweeper
        .sweep(
            start
                .after(minute)
                .after(Duration::from_secs(2 * 24 * 3600) + minute),
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(late.disabled, 1, "{late:?}");
}

#[tokio::test]
async fn a_filtered_listing_fills_its_page_from_below_many_other_outcomes() {
    use shared::domain::AttemptOutcome;
    use shared::ports::DeliveryStore;
    let stack = Stack::start().await;
    let id = stack
        .webhook(
            "SPARSE",
            "http://127.0.0.1:9/sparse",
            &["run.completed"],
            None,
        )
        .await;
    let project = ProjectCode::parse("SPARSE").unwrap();
    let hook_id = WebhookId::parse(&id).unwrap();
    let start = Timestamp::now().before(Duration::from_secs(3600));
    // One failed delivery, then 2,000 delivered ones after it (spread over
    // the history's four partitions: more than ten narrow reads of each).
    let delivery = delivery_id_at;
    let failed_id = delivery(start);
    let mut attempts = vec![recorded_attempt(
        &project,
        hook_id,
        failed_id,
        start,
        AttemptOutcome::Failed,
    )];
    for i in 1..=2000 {
        let at = start.after(Duration::from_millis(i * 100));
        attempts.push(recorded_attempt(
            &project,
            hook_id,
            delivery(at),
            at,
            AttemptOutcome::Delivered,
        ));
    }
    let expires = DeliveryLog::default().expires_at(Timestamp::now()).unwrap();
    stack
        .api
        .store
        .record_attempts(&attempts, expires)
        .await
        .unwrap();
    let page = list(&stack, "SPARSE", &id, "?status=failed&limit=20").await;
    let found: Vec<&str> = page["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["delivery_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [failed_id.to_string()], "{page}");
    assert!(page["next_cursor"].is_null(), "{page}");
    // Unfiltered, the same history pages by 20 as before.
    let all = list(&stack, "SPARSE", &id, "?limit=20").await;
    assert_eq!(all["deliveries"].as_array().unwrap().len(), 20);
    assert!(all["next_cursor"].is_string());
}

#[tokio::test]
async fn an_endpoint_that_echoes_the_secret_escaped_or_encoded_does_not_put_it_in_the_history() {
    use base64::Engine as _;
    // Answers with the secret JSON-escaped, URL-encoded and base64-encoded,
    // as echo services and debugging endpoints do.
    let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let secret = headers
            .get("x-qase-secret")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let block = format!("x-qase-secret: {secret}\r\n");
        json!({
            "json": secret,
            "query": format!("secret={encoded}"),
            "base64": base64::engine::general_purpose::STANDARD.encode(&secret),
            "headers_base64": base64::engine::general_purpose::STANDARD.encode(block),
        })
        .to_string()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let stack = Stack::start().await;
    let secret = r#"echo "quoted" \back/slash & more"#;
    let id = stack
        .webhook(
            "ECHOES",
            &format!("http://{addr}/echo"),
            &["run.completed"],
            Some(secret),
        )
        .await;
    stack.api.publish_run("ECHOES").await;
    stack.deliver_all().await;
    let page = list(&stack, "ECHOES", &id, "").await;
    let delivery = page["deliveries"][0]["delivery_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = detail(&stack, "ECHOES", &id, &delivery).await;
    let body = one["attempts"][0]["response_body"].as_str().unwrap();
    let echoed: Value = serde_json::from_str(body).unwrap();
    for field in ["json", "query", "base64", "headers_base64"] {
        assert!(
            echoed[field].as_str().unwrap().contains("***"),
            "{field}: {body}"
        );
    }
    let stored = stored_history_text(&stack).await;
    let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let escaped = serde_json::to_string(secret).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    for form in [
        secret,
        escaped.trim_matches('"'),
        encoded.as_str(),
        &b64[..b64.len() - 4],
    ] {
        assert!(!body.contains(form), "{form}: {body}");
        assert!(!stored.contains(form), "{form} stored");
    }
}
