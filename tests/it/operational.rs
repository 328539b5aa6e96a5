//! Operational events on EventBridge (`domain::operational`): the emulator's
//! EventBridge with a rule sending every event of a fresh bus to a queue the
//! test reads back, as an operator's rule would. Each state change puts one
//! event, also when writers race; a healthy delivery puts none; no event
//! carries a secret, token, header value or e-mail address.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::http::StatusCode;
use integration_tests::api::ADMIN;
use integration_tests::bus::Bus;
use integration_tests::mail::{unique_address, verified_sender};
use integration_tests::receiver::Receiver;
use integration_tests::stack::Stack;
use serde_json::{Value, json};
use shared::adapters::SesMailer;
use shared::domain::{FailureRules, NoticeSettings, ProjectCode, Timestamp, WebhookId};
use shared::ports::{DeliveryStore, WebhookStore};
use sweeper::Sweeper;

const PROJECT: &str = "OPS";

async fn create(stack: &Stack, body: Value) -> (String, String) {
    let (created, signing) = stack.api.create_signed_webhook(PROJECT, body).await;
    (created["id"].as_str().unwrap().to_owned(), signing)
}

/// Delivers until `done` holds or `limit` passes.
async fn deliver_until(stack: &Stack, limit: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() && start.elapsed() < limit {
        stack.deliver_all().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A sweeper over the stack's table putting events on `bus`, whose window
/// has passed for every failing webhook.
async fn sweeper(
    stack: &Stack,
    bus: &Bus,
    window: Duration,
) -> Sweeper<shared::adapters::DynamoStore, SesMailer> {
    Sweeper::new(
        stack.api.store.clone(),
        SesMailer::from_sdk(&integration_tests::sdk_config().await),
        window,
        NoticeSettings {
            from: verified_sender().await,
            default_to: unique_address("ops"),
            ..NoticeSettings::default()
        },
    )
    .with_events(bus.events())
}

/// The drained events by webhook id and `detail-type`.
fn by_webhook(events: &[Value]) -> HashMap<(String, String), Vec<Value>> {
    let mut found: HashMap<(String, String), Vec<Value>> = HashMap::new();
    for event in events {
        let key = (
            event["detail"]["webhook_id"].as_str().unwrap().to_owned(),
            event["detail-type"].as_str().unwrap().to_owned(),
        );
        found.entry(key).or_default().push(event.clone());
    }
    found
}

#[tokio::test]
async fn each_state_change_puts_one_event_and_a_healthy_delivery_none() {
    let bus = Bus::fresh().await;
    let stack = Stack::with_events(
        bus.events(),
        FailureRules {
            disable_on_gone: true,
            ..FailureRules::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    let owner = "owner-ops@example.com";
    let header_value = "custom-header-value-7c1e";
    let secret = "qase-secret-value-91ab";
    let common = |title: &str, path: &str, policy: &str| {
        json!({
            "title": title,
            "endpoint": rx.url(path),
            "events": ["run.completed"],
            "secret": secret,
            "headers": {"X-Team-Key": header_value},
            "notify_emails": [owner],
            "retry_policy": policy,
        })
    };
    // Fails twice, then delivers: failing, then recovered.
    let (flaky, flaky_signing) =
        create(&stack, common("Flaky", "/flaky?fail_first=2", "standard")).await;
    // Fails every attempt: failing, its retries exhausted; later a bulk
    // recovery of it finishes and the sweep disables it.
    let (broken, broken_signing) =
        create(&stack, common("Broken", "/broken?status=503", "standard")).await;
    // 410 Gone with DisableOnGone: disabled at once; re-enabled by a person.
    let (gone, gone_signing) = create(&stack, common("Gone", "/gone?status=410", "none")).await;
    // Healthy: no event at all.
    let (healthy, healthy_signing) =
        create(&stack, common("Healthy", "/healthy", "standard")).await;

    let since = Timestamp::now().before(Duration::from_secs(5));
    for n in 0..3 {
        stack
            .publish(PROJECT, "run.completed", json!({"n": n}))
            .await;
    }
    // 3 events: flaky gets 503, 503 then 200s; broken 3 attempts each.
    deliver_until(&stack, Duration::from_secs(30), || {
        rx.at("/broken").len() >= 9 && rx.at("/healthy").len() >= 3 && rx.at("/flaky").len() >= 4
    })
    .await;
    stack.deliver_all().await;
    assert_eq!(rx.at("/broken").len(), 9, "3 events, 3 attempts each");
    // The batch's deliveries to it were read enabled: up to 3 POSTs before
    // the first 410 disabled it; one disable, one event (below).
    assert!((1..=3).contains(&rx.at("/gone").len()));
    assert_eq!(rx.at("/healthy").len(), 3);

    // A person turns the gone webhook on again.
    let reply = stack
        .api
        .admin(
            "PATCH",
            &format!("/projects/{PROJECT}/webhooks/{gone}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    // A second PATCH of an enabled webhook changes no state: no event.
    let again = stack
        .api
        .admin(
            "PATCH",
            &format!("/projects/{PROJECT}/webhooks/{gone}"),
            Some(json!({"enabled": true, "title": "Gone again"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);

    // A bulk recovery of the broken webhook: its one delivery per event
    // fails again, and the recovery finishes.
    let reply = stack
        .api
        .admin(
            "POST",
            &format!("/projects/{PROJECT}/webhooks/{broken}/recover"),
            Some(json!({"since": since.to_string(), "rate_per_second": 100})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let recovery = reply.body["recovery_id"].as_str().unwrap().to_owned();
    deliver_until(&stack, Duration::from_secs(30), || {
        rx.at("/broken").len() >= 12
    })
    .await;
    let path = format!("/projects/{PROJECT}/webhooks/{broken}/recoveries/{recovery}");
    let start = Instant::now();
    while stack.api.admin("GET", &path, None).await.body["state"] != "finished" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the recovery did not finish"
        );
        stack.deliver_all().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The sweep: the broken webhook has failed past its (zero) window.
    let report = sweeper(&stack, &bus, Duration::ZERO)
        .await
        .sweep(Timestamp::now(), Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(report.disabled, 1, "{report:?}");

    let events = bus.drain().await;
    let found = by_webhook(&events);
    let one = |id: &str, kind: &str| -> Value {
        let got = found
            .get(&(id.to_owned(), kind.to_owned()))
            .cloned()
            .unwrap_or_default();
        assert_eq!(got.len(), 1, "{kind} of {id}: {got:#?}\nall: {events:#?}");
        got[0]["detail"].clone()
    };
    let failing = one(&flaky, "Webhook Failing");
    assert_eq!(failing["last_error"], "HTTP 503");
    assert_eq!(failing["title"], "Flaky");
    assert_eq!(failing["endpoint_host"], "127.0.0.1");
    assert_eq!(failing["project"], PROJECT);
    let recovered = one(&flaky, "Webhook Recovered");
    assert_eq!(recovered["failing_since"], failing["failing_since"]);
    assert_eq!(recovered["failures"], 2);
    one(&broken, "Webhook Failing");
    let exhausted = found
        .get(&(broken.clone(), "Delivery Retries Exhausted".to_owned()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(exhausted.len(), 3, "one per event: {exhausted:#?}");
    for event in &exhausted {
        assert_eq!(event["detail"]["attempts"], 3);
        assert_eq!(event["detail"]["event_name"], "run.completed");
    }
    let finished = one(&broken, "Recovery Finished");
    assert_eq!(finished["recovery_id"], recovery.as_str());
    assert_eq!(
        (finished["found"].as_u64(), finished["failed"].as_u64()),
        (Some(3), Some(3))
    );
    let swept = one(&broken, "Webhook Disabled");
    assert_eq!(swept["reason"], "no_success");
    assert_eq!(swept["last_error"], "HTTP 503");
    let disabled = one(&gone, "Webhook Disabled");
    assert_eq!(disabled["reason"], "gone");
    assert_eq!(disabled["last_error"], "HTTP 410");
    let re_enabled = one(&gone, "Webhook Re-enabled");
    assert_eq!(re_enabled["disabled_at"], disabled["at"]);
    assert_eq!(
        events.len(),
        10,
        "flaky 2, broken 6 (failing, 3 exhausted, finished, disabled), gone 2: {events:#?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["detail"]["webhook_id"] != healthy.as_str()),
        "a healthy webhook's deliveries put no event"
    );
    // The samples in events/ are what the code puts: one per detail-type,
    // the same source and the same detail fields.
    let mut samples = std::collections::BTreeSet::new();
    for event in &events {
        let kind = event["detail-type"].as_str().unwrap();
        let slug = kind.to_lowercase().replace(' ', "-");
        let path =
            integration_tests::workspace_root().join(format!("events/operational-{slug}.json"));
        let sample: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(sample["source"], event["source"], "{slug}");
        assert_eq!(sample["detail-type"], event["detail-type"], "{slug}");
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&sample["detail"]), keys(&event["detail"]), "{slug}");
        samples.insert(slug);
    }
    assert_eq!(
        samples.len(),
        shared::domain::operational::DETAIL_TYPES.len(),
        "{samples:?}"
    );
    for event in &events {
        assert_eq!(event["source"], "project-webhooks");
        assert!(
            shared::domain::operational::DETAIL_TYPES
                .contains(&event["detail-type"].as_str().unwrap()),
            "{event}"
        );
    }

    // Nothing a receiver or a person holds is in any event.
    let text = serde_json::to_string(&events).unwrap();
    for (what, value) in [
        ("the webhook secret", secret),
        ("a custom header value", header_value),
        ("an owner's e-mail address", owner),
        ("the admin token", ADMIN),
        ("the endpoint's path and query", "fail_first"),
        ("a signing secret", flaky_signing.as_str()),
        ("a signing secret", broken_signing.as_str()),
        ("a signing secret", gone_signing.as_str()),
        ("a signing secret", healthy_signing.as_str()),
        ("any e-mail address", "@example.com"),
    ] {
        assert!(
            !text.contains(value),
            "{what} in an operational event: {text}"
        );
    }
}

/// Records of one batch, each the same body (SQS delivered one message
/// more than once, or several deliveries arrived at once).
fn batch(bodies: &[String]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = bodies
        .iter()
        .map(|body| {
            let mut record = SqsMessage::default();
            record.message_id = Some(uuid::Uuid::new_v4().to_string());
            record.body = Some(body.clone());
            record
        })
        .collect();
    event
}

#[tokio::test]
async fn racing_writers_put_one_event_per_state_change() {
    let bus = Bus::fresh().await;
    let stack = Stack::with_events(bus.events(), FailureRules::default()).await;
    let rx = Receiver::start().await;

    // Two senders record the first failure of one healthy webhook at once
    // (each read it healthy, each POSTed, each writes): one event.
    let (racing, _) = create(
        &stack,
        json!({"title": "Racing", "endpoint": rx.url("/racing?status=503"), "events": ["run.completed"]}),
    )
    .await;
    stack
        .publish(PROJECT, "run.completed", json!({"n": 1}))
        .await;
    stack
        .publish(PROJECT, "run.completed", json!({"n": 2}))
        .await;
    let queued: Vec<String> = stack
        .receive()
        .await
        .into_iter()
        .filter_map(|m| m.body)
        .collect();
    assert_eq!(queued.len(), 2);
    let deadline = integration_tests::sender_deadline();
    let (first, second) = futures::join!(
        stack.sender.handle(batch(&queued[..1]), deadline),
        stack.sender.handle(batch(&queued[1..]), deadline),
    );
    assert!(first.batch_item_failures.is_empty() && second.batch_item_failures.is_empty());
    assert_eq!(rx.at("/racing").len(), 2, "both POSTed");

    // The last attempt of a delivery arrives twice (SQS is at least
    // once): POSTed twice, its retries exhausted once.
    let (twice, _) = create(
        &stack,
        json!({"title": "Twice", "endpoint": rx.url("/twice?status=503"), "events": ["case.created"], "retry_policy": "standard"}),
    )
    .await;
    stack
        .publish(PROJECT, "case.created", json!({"n": 3}))
        .await;
    let mut last: Value = serde_json::from_str(
        &stack
            .receive()
            .await
            .into_iter()
            .find_map(|m| m.body)
            .unwrap(),
    )
    .unwrap();
    last["attempt"] = json!(3);
    let last = last.to_string();
    // Both copies in one batch: the webhook is read healthy, both POST.
    let response = stack
        .sender
        .handle(
            batch(&[last.clone(), last.clone()]),
            integration_tests::sender_deadline(),
        )
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(rx.at("/twice").len(), 2, "both copies POSTed");

    // The sweep's disable races a success of the same webhook, for several
    // webhooks: each ends disabled or recovered, with that one event.
    let project = ProjectCode::parse(PROJECT).unwrap();
    let long_ago = Timestamp::now().before(Duration::from_secs(3 * 86_400));
    let mut contested = Vec::new();
    for n in 0..6 {
        let (id, _) = create(
            &stack,
            json!({"title": format!("Contested {n}"), "endpoint": rx.url("/contested"), "events": ["plan.created"]}),
        )
        .await;
        let hook = stack
            .api
            .store
            .get(&project, WebhookId::parse(&id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(
            stack
                .api
                .store
                .record_failure(&hook, long_ago, "HTTP 503", false)
                .await
                .unwrap()
        );
        contested.push(id);
    }
    stack
        .publish(PROJECT, "plan.created", json!({"n": 4}))
        .await;
    // Failing webhooks' deliveries take the slow lane.
    let slow = &stack.api.queue_urls.slow;
    let mut successes = SqsEvent::default();
    while successes.records.len() < contested.len() {
        let got = stack
            .sqs
            .receive_message()
            .queue_url(slow)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        assert!(!got.is_empty(), "the deliveries are queued");
        for message in got {
            let mut record = SqsMessage::default();
            record.message_id = message.message_id;
            record.body = message.body;
            record.event_source_arn = Some(format!(
                "arn:aws:sqs:us-east-1:123456789012:{}",
                shared::domain::lane::queue_name(slow)
            ));
            successes.records.push(record);
        }
    }
    let sweep = sweeper(&stack, &bus, Duration::from_secs(86_400)).await;
    let (report, response) = futures::join!(
        sweep.sweep(Timestamp::now(), Instant::now() + Duration::from_secs(60)),
        stack
            .sender
            .handle(successes, integration_tests::sender_deadline()),
    );
    let report = report.unwrap();
    assert!(response.batch_item_failures.is_empty());

    let events = bus.drain().await;
    let found = by_webhook(&events);
    let count = |id: &str, kind: &str| {
        found
            .get(&(id.to_owned(), kind.to_owned()))
            .map_or(0, Vec::len)
    };
    assert_eq!(count(&racing, "Webhook Failing"), 1, "{events:#?}");
    assert_eq!(count(&twice, "Webhook Failing"), 1, "{events:#?}");
    assert_eq!(
        count(&twice, "Delivery Retries Exhausted"),
        1,
        "{events:#?}"
    );
    let mut disabled = 0;
    for id in &contested {
        let (off, back) = (
            count(id, "Webhook Disabled"),
            count(id, "Webhook Recovered"),
        );
        assert_eq!(
            off + back,
            1,
            "{id}: disabled {off}, recovered {back}: {events:#?}"
        );
        disabled += off;
        let view = stack
            .api
            .admin("GET", &format!("/projects/{PROJECT}/webhooks/{id}"), None)
            .await
            .body;
        let expected = if off == 1 { "disabled" } else { "active" };
        assert_eq!(
            view["status"], expected,
            "the event says what the state is: {view}"
        );
    }
    assert_eq!(disabled, report.disabled, "{report:?}");
    assert_eq!(events.len(), 3 + contested.len(), "{events:#?}");
}

#[tokio::test]
async fn a_store_write_says_whether_it_made_the_change_when_many_race() {
    let stack = Stack::start().await;
    let (id, _) = create(
        &stack,
        json!({"title": "Store", "endpoint": "http://127.0.0.1:9/x", "events": ["run.completed"]}),
    )
    .await;
    let store = &stack.api.store;
    let project = ProjectCode::parse(PROJECT).unwrap();
    let hook = store
        .get(&project, WebhookId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let now = Timestamp::now();
    let began = futures::future::join_all(
        (0..8).map(|_| store.record_failure(&hook, now, "HTTP 503", false)),
    )
    .await;
    assert_eq!(
        began.iter().filter(|b| *b.as_ref().unwrap()).count(),
        1,
        "{began:?}"
    );
    let cleared =
        futures::future::join_all((0..8).map(|_| store.record_recovery(&hook, false, now))).await;
    let cleared: Vec<_> = cleared.into_iter().filter_map(Result::unwrap).collect();
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert_eq!((cleared[0].failing_since, cleared[0].failures), (now, 8));
    let delivery = uuid::Uuid::now_v7();
    let claims = futures::future::join_all(
        (0..8).map(|_| store.claim_exhausted(&hook, delivery, now.after(Duration::from_secs(60)))),
    )
    .await;
    assert_eq!(
        claims.iter().filter(|c| *c.as_ref().unwrap()).count(),
        1,
        "{claims:?}"
    );
    let gone = futures::future::join_all((0..4).map(|_| store.disable_gone(&hook, now))).await;
    assert_eq!(
        gone.iter().filter(|g| *g.as_ref().unwrap()).count(),
        1,
        "{gone:?}"
    );
    // Four people re-enable it at once: one turned it on.
    let on = shared::domain::WebhookChanges {
        enabled: Some(true),
        ..Default::default()
    };
    let enabled =
        futures::future::join_all((0..4).map(|_| store.update(&project, hook.id, &on, now))).await;
    assert_eq!(
        enabled
            .iter()
            .filter(|u| u.as_ref().unwrap().re_enabled)
            .count(),
        1,
        "{enabled:?}"
    );
    assert!(enabled.iter().all(|u| u.as_ref().unwrap().webhook.enabled));
}

#[tokio::test]
async fn an_event_the_bus_refuses_is_logged_and_counted_as_a_metric() {
    // A bus that does not exist: every put is refused.
    let sdk = integration_tests::sdk_config().await;
    let missing = shared::adapters::EventBus::new(
        aws_sdk_eventbridge::Client::new(&sdk),
        &format!("missing-{}", uuid::Uuid::new_v4()),
    );
    let stack = Stack::with_events(missing, FailureRules::default()).await;
    let rx = Receiver::start().await;
    let secret = "refused-bus-secret-33aa";
    create(
        &stack,
        json!({"title": "Refused", "endpoint": rx.url("/refused?status=503"), "events": ["run.completed"], "secret": secret}),
    )
    .await;
    let ((), logs) = integration_tests::logged(async {
        stack.publish(PROJECT, "run.completed", json!({})).await;
        let queued: Vec<String> = stack
            .receive()
            .await
            .into_iter()
            .filter_map(|m| m.body)
            .collect();
        let response = stack
            .sender
            .handle(batch(&queued), integration_tests::sender_deadline())
            .await;
        assert!(
            response.batch_item_failures.is_empty(),
            "the delivery stands"
        );
    })
    .await;
    assert_eq!(rx.at("/refused").len(), 1);
    assert_eq!(
        integration_tests::metric_values(
            &logs,
            shared::telemetry::metric::OPERATIONAL_EVENTS_FAILED
        ),
        [1],
        "{logs}"
    );
    let docs = integration_tests::metric_documents(&logs, "OperationalEventsFailed");
    assert_eq!(
        docs[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["FunctionName"]])
    );
    assert!(
        logs.contains("the bus refused an operational event")
            || logs.contains("could not put operational events"),
        "the refusal is logged: {logs}"
    );
    assert!(!logs.contains(secret));
}

#[tokio::test]
async fn a_recovery_the_api_finishes_at_once_puts_its_event_from_the_api() {
    let bus = Bus::fresh().await;
    let stack = Stack::with_events(bus.events(), FailureRules::default()).await;
    let rx = Receiver::start().await;
    let (id, _) = create(
        &stack,
        json!({"title": "Nothing lost", "endpoint": rx.url("/fine"), "events": ["run.completed"]}),
    )
    .await;
    // Nothing failed in the window: the API's first steps find nothing and
    // finish the recovery before answering; no sender takes part.
    let since = Timestamp::now().before(Duration::from_secs(60));
    let reply = stack
        .api
        .admin(
            "POST",
            &format!("/projects/{PROJECT}/webhooks/{id}/recover"),
            Some(json!({"since": since.to_string()})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.body["state"], "finished", "{}", reply.text);
    let events = bus.drain().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let detail = &events[0]["detail"];
    assert_eq!(events[0]["detail-type"], "Recovery Finished");
    assert_eq!(detail["recovery_id"], reply.body["recovery_id"]);
    assert_eq!(
        (detail["found"].as_u64(), detail["title"].as_str()),
        (Some(0), Some("Nothing lost"))
    );
}
