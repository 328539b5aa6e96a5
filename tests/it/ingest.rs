//! Publishing from EventBridge: the ingest function's handler given events
//! as a rule hands them over (the samples in `events/`), against the
//! emulator's table and queues and a loopback receiver.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use config_api::ingest::{Ingest, IngestError, Ingested};
use integration_tests::receiver::Receiver;
use integration_tests::stack::Stack;
use serde_json::{Value, json};
use shared::adapters::sqs::DeadLetters;
use shared::adapters::{DynamoStore, SqsQueue};
use shared::domain::{DeliveryLog, PublishShare};

fn sample(name: &str) -> String {
    std::fs::read_to_string(
        integration_tests::workspace_root()
            .join("events")
            .join(name),
    )
    .unwrap()
}

/// A fresh dead-letter queue: its URL.
async fn dead_letter_queue(stack: &Stack) -> String {
    stack
        .sqs
        .create_queue()
        .queue_name(format!("ingest-dlq-{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

async fn ingest_over(
    stack: &Stack,
    store: DynamoStore,
    dead_letters: &str,
    share: PublishShare,
) -> Ingest<DynamoStore, SqsQueue> {
    let sdk = integration_tests::sdk_config().await;
    Ingest::new(
        store,
        SqsQueue::from_sdk(&sdk, stack.api.queue_urls.clone()),
        DeliveryLog::default(),
        share,
        DeadLetters::new(stack.sqs.clone(), dead_letters),
    )
}

/// Everything in the dead-letter queue: each body and its reason.
async fn dead_lettered(stack: &Stack, url: &str) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    loop {
        let out = stack
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return found;
        }
        for message in messages {
            let attributes = message.message_attributes.unwrap_or_default();
            let text = |name: &str| {
                attributes
                    .get(name)
                    .and_then(|a| a.string_value.clone())
                    .unwrap_or_default()
            };
            found.push((
                message.body.unwrap_or_default(),
                text("error_code"),
                text("reason"),
            ));
            stack
                .sqs
                .delete_message()
                .queue_url(url)
                .set_receipt_handle(message.receipt_handle)
                .send()
                .await
                .unwrap();
        }
    }
}

/// A stack with a webhook of DEMO (the samples' project) to `/bus` of a
/// receiver, and a fresh dead-letter queue.
async fn setup() -> (Stack, Receiver, String) {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack
        .api
        .create_webhook(
            "DEMO",
            json!({"title": "Bus", "endpoint": rx.url("/bus"), "events": ["run.completed"]}),
        )
        .await;
    let dlq = dead_letter_queue(&stack).await;
    (stack, rx, dlq)
}

#[tokio::test]
async fn an_event_from_the_bus_is_published_once_however_often_it_arrives() {
    let (stack, rx, dlq) = setup().await;
    let (store, calls) = integration_tests::counting::counting_store(stack.api.store.table()).await;
    let ingest = ingest_over(&stack, store, &dlq, PublishShare::per_second(100)).await;
    let event = sample("eventbridge-publish.json");
    let first = ingest.handle(&event).await.unwrap();
    let Ingested::Published {
        event_id,
        deliveries: 1,
        replayed: false,
    } = first
    else {
        panic!("{first:?}");
    };
    // EventBridge delivers at least once: the same event again.
    let again = ingest.handle(&event).await.unwrap();
    assert_eq!(
        again,
        Ingested::Published {
            event_id,
            deliveries: 1,
            replayed: true
        }
    );
    // What an input transformer makes of another shape, keyed by its id.
    let transformed = json!({
        "idempotency_key": "c1d2e3f4-0000-4000-8000-000000000001",
        "project": "DEMO",
        "event": {"event_name": "run.completed", "payload": {"id": 9}},
    })
    .to_string();
    let Ingested::Published {
        deliveries: 1,
        replayed: false,
        ..
    } = ingest.handle(&transformed).await.unwrap()
    else {
        panic!("the transformed input is published");
    };
    stack.deliver_all().await;
    let got = rx.at("/bus");
    assert_eq!(got.len(), 2, "one delivery per event, none for the repeat");
    let envelope: Value = serde_json::from_str(&got[0].body).unwrap();
    let detail = serde_json::from_str::<Value>(&event).unwrap()["detail"]["event"].clone();
    assert_eq!(envelope["event_name"], "run.completed");
    assert_eq!(envelope["payload"], detail["payload"]);
    assert_eq!(envelope["team_member_id"], detail["team_member_id"]);
    assert_eq!(envelope["timestamp"], detail["timestamp"]);
    assert_eq!(envelope["project_code"], "DEMO");
    assert!(dead_lettered(&stack, &dlq).await.is_empty());

    // Every table call it made is one its policy grants.
    let t = crate::template::template();
    let granted = crate::template::allowed_on(
        &t,
        "IngestFunction",
        &json!({"Fn::GetAtt": ["WebhooksTable", "Arn"]}),
    );
    let made = calls.all();
    assert!(
        made.contains_key("Query") && made.contains_key("PutItem"),
        "{made:?}"
    );
    for operation in made.keys() {
        assert!(
            granted.contains(&format!("dynamodb:{operation}")),
            "the ingest function calls {operation}, which its policy does not grant: {granted:?}"
        );
    }
}

#[tokio::test]
async fn an_event_that_cannot_be_published_lands_in_the_dead_letter_queue_with_its_reason() {
    let (stack, rx, dlq) = setup().await;
    let ingest = ingest_over(&stack, stack.api.store.clone(), &dlq, PublishShare::off()).await;
    let malformed = sample("eventbridge-publish-malformed.json");
    let unknown_name = json!({
        "idempotency_key": "k-unknown", "project": "DEMO",
        "event": {"event_name": "run.exploded", "payload": {}},
    })
    .to_string();
    let reused = {
        let mut event: Value = serde_json::from_str(&sample("eventbridge-publish.json")).unwrap();
        assert!(matches!(
            ingest.handle(&event.to_string()).await.unwrap(),
            Ingested::Published { .. }
        ));
        // The same id, another body: not the same event.
        event["detail"]["event"]["payload"]["passed"] = json!(13);
        event.to_string()
    };
    let cases = [
        (malformed.as_str(), "invalid_event", "unknown field `name`"),
        (
            "{\"not\": \"an event\"}",
            "invalid_event",
            "idempotency_key: missing",
        ),
        (
            unknown_name.as_str(),
            "invalid_field",
            "event.event_name: unknown event name",
        ),
        (reused.as_str(), "idempotency_key_reused", ""),
    ];
    for (raw, _, reason) in &cases {
        let Ingested::DeadLettered { reason: said } = ingest.handle(raw).await.unwrap() else {
            panic!("{raw} was published");
        };
        assert!(said.contains(reason), "{said}");
    }
    let queued = dead_lettered(&stack, &dlq).await;
    assert_eq!(queued.len(), cases.len(), "{queued:#?}");
    for ((raw, code, reason), (body, queued_code, queued_reason)) in cases.iter().zip(&queued) {
        assert_eq!(body, raw, "the event as received");
        assert_eq!(queued_code, code);
        assert!(queued_reason.contains(reason), "{queued_reason}");
    }
    stack.deliver_all().await;
    assert_eq!(rx.at("/bus").len(), 1, "only the first, well-formed event");
}

#[tokio::test]
async fn a_passing_fault_fails_the_invocation_for_lambda_to_try_again() {
    let (stack, _rx, dlq) = setup().await;
    // One publish a second: a burst of events is over the share.
    let ingest = ingest_over(
        &stack,
        stack.api.store.clone(),
        &dlq,
        PublishShare::per_second(1),
    )
    .await;
    let event = |n: u32| {
        json!({"idempotency_key": format!("burst-{n}"), "project": "DEMO",
               "event": {"event_name": "run.completed", "payload": {"n": n}}})
        .to_string()
    };
    let mut refused = None;
    for n in 0..5 {
        match ingest.handle(&event(n)).await {
            Ok(Ingested::Published { .. }) => {}
            Err(err @ IngestError::Passing { .. }) => {
                refused = Some((n, err));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let (n, err) = refused.expect("a burst goes over one publish a second");
    assert!(
        err.to_string().starts_with("publish_rate_exceeded"),
        "{err}"
    );
    assert!(
        dead_lettered(&stack, &dlq).await.is_empty(),
        "not the event's fault"
    );
    // Lambda's try a moment later publishes it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(matches!(
        ingest.handle(&event(n)).await.unwrap(),
        Ingested::Published {
            replayed: false,
            ..
        }
    ));
}
