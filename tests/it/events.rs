//! Every sample in `events/` (the files `sam local invoke -e` takes) runs
//! through its handler here, so none can rot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use aws_lambda_events::event::sqs::SqsEvent;
use axum::http::StatusCode;
use integration_tests::api::Api;
use integration_tests::receiver::Receiver;
use integration_tests::sender_deadline;
use integration_tests::stack::Stack;
use integration_tests::workspace_root;
use local_stack::local_rules;
use serde_json::Value;
use shared::domain::{ProjectCode, Timestamp, WebhookId, WebhookInput};
use shared::ports::WebhookStore;

/// The admin token the API samples carry.
const SAMPLE_TOKEN: &str = "replace-with-your-admin-token";

/// Each sample and the status its handler answers, in the order they run.
const API_SAMPLES: [(&str, StatusCode); 4] = [
    ("api-create-webhook.json", StatusCode::CREATED),
    ("api-list-webhooks.json", StatusCode::OK),
    ("api-event-types.json", StatusCode::OK),
    ("api-publish-event.json", StatusCode::ACCEPTED),
];
const SQS_SAMPLES: [&str; 1] = ["sqs-delivery.json"];
const SCHEDULED_SAMPLES: [&str; 1] = ["scheduled-sweep.json"];
/// The ingest function's samples: run in `ingest.rs`.
const EVENTBRIDGE_SAMPLES: [&str; 2] = [
    "eventbridge-publish.json",
    "eventbridge-publish-malformed.json",
];
/// What the functions put on the operational bus (not a handler's input):
/// compared with the events a run puts in `operational.rs`.
const OPERATIONAL_SAMPLES: [&str; 6] = [
    "operational-webhook-failing.json",
    "operational-webhook-disabled.json",
    "operational-webhook-recovered.json",
    "operational-webhook-re-enabled.json",
    "operational-delivery-retries-exhausted.json",
    "operational-recovery-finished.json",
];

fn sample(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("events").join(name)).unwrap()
}

#[test]
fn every_sample_is_run_by_a_test_here() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(workspace_root().join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let covered: BTreeSet<String> = API_SAMPLES
        .iter()
        .map(|(name, _)| name.to_string())
        .chain(
            SQS_SAMPLES
                .iter()
                .chain(&SCHEDULED_SAMPLES)
                .chain(&EVENTBRIDGE_SAMPLES)
                .chain(&OPERATIONAL_SAMPLES)
                .map(|n| n.to_string()),
        )
        .collect();
    assert_eq!(on_disk, covered);
}

#[tokio::test]
async fn api_gateway_samples_run_through_the_config_api() {
    let api = Api::with_admin(local_rules(), SAMPLE_TOKEN).await;
    for (name, expected) in API_SAMPLES {
        let request = lambda_http::request::from_str(&sample(name)).unwrap();
        let reply = api
            .send(request.map(|body| axum::body::Body::from(body.to_vec())))
            .await;
        assert_eq!(reply.status, expected, "{name}: {}", reply.text);
        if name == "api-publish-event.json" {
            assert_eq!(
                reply.body["deliveries"], 1,
                "the sample webhook subscribes to run.completed"
            );
        }
    }
}

#[tokio::test]
async fn the_sqs_sample_delivers_its_envelope() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let event: SqsEvent = serde_json::from_str(&sample("sqs-delivery.json")).unwrap();
    let sample_body = event.records[0].body.clone().unwrap();
    let body: Value = serde_json::from_str(&sample_body).unwrap();
    // The webhook the sample names, pointing at the test's receiver.
    let hook = WebhookInput {
        title: Some("sample".into()),
        endpoint: Some(rx.url("/sample")),
        events: Some(vec!["run.completed".into()]),
        ..WebhookInput::default()
    }
    .validate(&local_rules())
    .unwrap()
    .into_webhook(
        WebhookId::parse(body["webhook_id"].as_str().unwrap()).unwrap(),
        ProjectCode::parse(body["project"].as_str().unwrap()).unwrap(),
        Timestamp::now(),
    );
    stack.api.store.create(&hook).await.unwrap();

    let event_body = &sample_body;
    let response = stack.sender.handle(event, sender_deadline()).await;
    assert!(response.batch_item_failures.is_empty());
    let got = rx.at("/sample");
    assert_eq!(got.len(), 1);
    let message = shared::domain::DeliveryMessage::decode(event_body).unwrap();
    assert_eq!(
        got[0].body,
        message.envelope.get(),
        "the envelope, byte for byte"
    );
    assert_eq!(
        got[0].header("x-qase-delivery-id"),
        body["delivery_id"].as_str()
    );
}

#[tokio::test]
async fn the_scheduled_sample_sweeps_as_of_the_clock_not_its_time() {
    use shared::ports::DeliveryStore;

    let stack = Stack::start().await;
    let event: aws_lambda_events::event::eventbridge::EventBridgeEvent<Value> =
        serde_json::from_str(&sample(SCHEDULED_SAMPLES[0])).unwrap();
    let owner = integration_tests::mail::unique_address("owner");
    let mut body = integration_tests::api::webhook_body("sample");
    body["notify_emails"] = serde_json::json!([owner]);
    let created = stack.api.create_webhook("DEMO", body).await;
    let project = ProjectCode::parse("DEMO").unwrap();
    let id = WebhookId::parse(created["id"].as_str().unwrap()).unwrap();
    let hook = stack.api.store.get(&project, id).await.unwrap().unwrap();
    // Failing since three days before now, whatever the sample's time says.
    let before = Timestamp::now();
    let since = Timestamp::from(before.as_datetime() - chrono::Duration::days(3));
    stack
        .api
        .store
        .record_failure(&hook, since, "HTTP 503", false)
        .await
        .unwrap();

    let sweeper = integration_tests::sweeper_over(
        &stack.api.store,
        shared::domain::NoticeSettings {
            from: integration_tests::mail::verified_sender().await,
            default_to: owner.clone(),
            ..Default::default()
        },
    )
    .await;
    let stop_at = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let report = sweeper.handle(&event, stop_at).await.unwrap();
    assert_eq!((report.disabled, report.mailed), (1, 1));
    let after = stack.get("DEMO", &id.to_string()).await;
    let disabled_at = Timestamp::parse(after["disabled_at"].as_str().unwrap()).unwrap();
    assert!(
        disabled_at >= before && disabled_at <= Timestamp::now(),
        "the sweep ran as of the clock: {disabled_at}, not the sample's {:?}",
        event.time
    );
    assert_eq!(integration_tests::mail::sent_to(&owner).await.len(), 1);
}
