//! Signed deliveries: every delivery carries the Standard Webhooks headers,
//! and the specification's reference library (`standardwebhooks`, pinned)
//! verifies what the receiver got: normally, during a rotation, for a webhook
//! stored before signing existed; it refuses a tampered body and a stale
//! timestamp. The signing secret is shown only where it belongs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::StatusCode;
use integration_tests::receiver::Receiver;
use integration_tests::stack::Stack;
use integration_tests::standard_webhooks_verify as verify;
use serde_json::{Value, json};
use shared::domain::{ProjectCode, SigningSecret, Timestamp, WebhookId};
use shared::ports::WebhookStore;

async fn signed_webhook(stack: &Stack, rx: &Receiver, path: &str) -> (String, String) {
    let (created, signing) = stack
        .api
        .create_signed_webhook(
            "SIGN",
            json!({"title": "signed", "endpoint": rx.url(path), "events": ["run.completed"], "secret": "shared-secret"}),
        )
        .await;
    (created["id"].as_str().unwrap().to_owned(), signing)
}

async fn deliver_one(stack: &Stack) {
    stack
        .publish("SIGN", "run.completed", json!({"id": 7}))
        .await;
    stack.deliver_all().await;
}

#[tokio::test]
async fn every_delivery_is_signed_and_the_reference_library_verifies_it() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (id, secret) = signed_webhook(&stack, &rx, "/signed").await;
    assert!(SigningSecret::parse(&secret).is_some(), "{secret}");
    deliver_one(&stack).await;
    deliver_one(&stack).await;
    let got = rx.at("/signed");
    assert_eq!(got.len(), 2);
    for request in &got {
        verify(&secret, &request.body, &request.headers).unwrap();
        assert_eq!(request.header("x-qase-secret"), Some("shared-secret"));
        assert!(
            request
                .header("webhook-signature")
                .unwrap()
                .starts_with("v1,")
        );
        let sent_at: i64 = request
            .header("webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        assert!((Timestamp::now().unix_seconds() - sent_at).abs() < 60);
    }
    // webhook-id is the event's id: two events, two ids; the delivery id
    // header stays unique per delivery.
    assert_ne!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_ne!(
        got[0].header("x-qase-delivery-id"),
        got[1].header("x-qase-delivery-id")
    );

    // A tampered body, a wrong secret, a stale timestamp: refused.
    let request = &got[0];
    let tampered = request.body.replace("\"id\":7", "\"id\":8");
    assert_ne!(tampered, request.body);
    assert!(verify(&secret, &tampered, &request.headers).is_err());
    let other = SigningSecret::generate().unwrap();
    assert!(verify(other.expose(), &request.body, &request.headers).is_err());
    let signing = SigningSecret::parse(&secret).unwrap();
    let stale = Timestamp::now().unix_seconds() - 600;
    let mut headers = request.headers.clone();
    headers.insert("webhook-timestamp".into(), stale.to_string());
    let webhook_id = request.header("webhook-id").unwrap();
    headers.insert(
        "webhook-signature".into(),
        signing.sign(webhook_id, stale, &request.body).unwrap(),
    );
    let err = verify(&secret, &request.body, &headers).unwrap_err();
    assert!(err.contains("too old"), "{err}");

    // The secret again, from its own route; never in the webhook's views.
    let path = format!("/projects/SIGN/webhooks/{id}/signing-secret");
    let read = stack.api.admin("GET", &path, None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["signing_secret"], secret.as_str());
    let view = stack.get("SIGN", &id).await;
    let list = stack
        .api
        .admin("GET", "/projects/SIGN/webhooks", None)
        .await;
    for shown in [view.to_string(), list.text.clone()] {
        assert!(!shown.contains(&secret), "{shown}");
        assert!(!shown.contains("whsec_"), "{shown}");
    }
}

#[tokio::test]
async fn during_a_rotation_both_secrets_verify_and_the_old_one_stops_after_it() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (id, old) = signed_webhook(&stack, &rx, "/rotating").await;
    let rotated = stack
        .api
        .admin(
            "POST",
            &format!("/projects/SIGN/webhooks/{id}/signing-secret/rotate"),
            None,
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let new = rotated.body["signing_secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let until = Timestamp::parse(rotated.body["previous_valid_until"].as_str().unwrap()).unwrap();
    let expected = Timestamp::now().after(config_api::DEFAULT_SIGNING_OVERLAP);
    assert!((expected.unix_seconds() - until.unix_seconds()).abs() < 60);

    deliver_one(&stack).await;
    let during = rx.at("/rotating").pop().unwrap();
    let signatures: Vec<&str> = during
        .header("webhook-signature")
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    verify(&new, &during.body, &during.headers).unwrap();
    verify(&old, &during.body, &during.headers).unwrap();

    // End the overlap (as 24 hours would), rotate again with none: only
    // the new secret signs.
    let project = ProjectCode::parse("SIGN").unwrap();
    let hook_id = WebhookId::parse(&id).unwrap();
    end_overlap(&stack, "SIGN", &id).await;
    let newer = SigningSecret::generate().unwrap();
    let now = Timestamp::now();
    assert_eq!(
        stack
            .api
            .store
            .rotate_signing_secret(&project, hook_id, newer.clone(), now, now)
            .await
            .unwrap(),
        shared::ports::Rotation::Rotated(newer.clone())
    );
    deliver_one(&stack).await;
    let after = rx.at("/rotating").pop().unwrap();
    assert_eq!(
        after
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        1
    );
    verify(newer.expose(), &after.body, &after.headers).unwrap();
    assert!(verify(&new, &after.body, &after.headers).is_err());
}

#[tokio::test]
async fn a_webhook_stored_before_signing_gets_a_secret_and_is_never_sent_unsigned() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (id, _) = signed_webhook(&stack, &rx, "/legacy").await;
    // As stored before deliveries were signed: no signing secret.
    let store = &stack.api.store;
    store
        .client()
        .update_item()
        .table_name(store.table())
        .set_key(Some(shared::adapters::dynamo::schema::webhook_key(
            &ProjectCode::parse("SIGN").unwrap(),
            WebhookId::parse(&id).unwrap(),
        )))
        .update_expression("REMOVE signing_secret")
        .send()
        .await
        .unwrap();
    deliver_one(&stack).await;
    let got = rx.at("/legacy").pop().unwrap();
    let read = stack
        .api
        .admin(
            "GET",
            &format!("/projects/SIGN/webhooks/{id}/signing-secret"),
            None,
        )
        .await;
    let assigned = read.body["signing_secret"].as_str().unwrap();
    verify(assigned, &got.body, &got.headers).unwrap();
    // The same one stays: a second read and delivery agree.
    deliver_one(&stack).await;
    let again = rx.at("/legacy").pop().unwrap();
    verify(assigned, &again.body, &again.headers).unwrap();
}

#[tokio::test]
async fn the_signing_secret_is_never_in_a_queued_message_or_a_response_it_does_not_belong_to() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let ((id, secret), logs) = integration_tests::logged(async {
        let (id, secret) = signed_webhook(&stack, &rx, "/quiet").await;
        stack
            .publish("SIGN", "run.completed", json!({"id": 1}))
            .await;
        let messages = stack.receive().await;
        assert_eq!(messages.len(), 1);
        let body = messages[0].body().unwrap();
        assert!(
            !body.contains(&secret) && !body.contains("whsec_"),
            "{body}"
        );
        // Rotated, published again and delivered (the message read above
        // stays invisible), with every log line captured.
        stack
            .publish("SIGN", "run.completed", json!({"id": 2}))
            .await;
        let path = format!("/projects/SIGN/webhooks/{id}/signing-secret/rotate");
        let rotated = stack.api.admin("POST", &path, None).await;
        let new = rotated.body["signing_secret"].as_str().unwrap().to_owned();
        stack.deliver_all().await;
        (id, format!("{secret} {new}"))
    })
    .await;
    assert_eq!(rx.at("/quiet").len(), 1);
    assert!(logs.contains(&id), "the logs were captured");
    for secret in secret.split(' ') {
        assert!(!logs.contains(secret), "a signing secret is in the logs");
    }
    assert!(!logs.contains("whsec_"));
    let patched = stack
        .api
        .admin(
            "PATCH",
            &format!("/projects/SIGN/webhooks/{id}"),
            Some(json!({"title": "renamed"})),
        )
        .await;
    assert!(!patched.text.contains("whsec_"), "{}", patched.text);
    // Another project's token cannot read it (nor learn that it exists).
    let token = stack.api.project_token("OTHER").await;
    let foreign = stack
        .api
        .call(
            "GET",
            &format!("/projects/SIGN/webhooks/{id}/signing-secret"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.text);
    assert!(!foreign.text.contains("whsec_"));
    let missing = stack
        .api
        .admin(
            "POST",
            &format!(
                "/projects/SIGN/webhooks/{}/signing-secret/rotate",
                WebhookId::generate()
            ),
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"]["code"], Value::from("not_found"));
}

#[tokio::test]
async fn senders_and_a_read_assigning_a_secret_at_once_all_get_the_one_stored() {
    use shared::ports::DeliveryStore;
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (id, _) = signed_webhook(&stack, &rx, "/race").await;
    let project = ProjectCode::parse("SIGN").unwrap();
    let hook_id = WebhookId::parse(&id).unwrap();
    let store = stack.api.store.clone();
    store
        .client()
        .update_item()
        .table_name(store.table())
        .set_key(Some(shared::adapters::dynamo::schema::webhook_key(
            &project, hook_id,
        )))
        .update_expression("REMOVE signing_secret")
        .send()
        .await
        .unwrap();
    let legacy = store.get(&project, hook_id).await.unwrap().unwrap();
    assert!(legacy.signing_secret.is_none());
    // Four senders (each with its own fresh secret) and four API reads.
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (store, legacy, project) = (store.clone(), legacy.clone(), project.clone());
        racers.spawn(async move {
            let fresh = SigningSecret::generate().unwrap();
            if i % 2 == 0 {
                store.assign_signing_secret(&legacy, fresh).await.unwrap()
            } else {
                store
                    .signing_secret(&project, hook_id, fresh)
                    .await
                    .unwrap()
                    .unwrap()
                    .signing_secret
                    .unwrap()
            }
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = racers.join_next().await {
        answers.push(answer.unwrap());
    }
    let stored = store
        .get(&project, hook_id)
        .await
        .unwrap()
        .unwrap()
        .signing_secret
        .unwrap();
    assert!(
        answers.iter().all(|a| *a == stored),
        "one secret, the stored one"
    );
}

/// Moves the end of the webhook's rotation overlap to a second ago, as the
/// passing of the overlap would.
async fn end_overlap(stack: &Stack, project: &str, id: &str) {
    use shared::adapters::dynamo::schema::{attr, webhook_key};
    let store = &stack.api.store;
    let ended = Timestamp::now().before(std::time::Duration::from_secs(1));
    store
        .client()
        .update_item()
        .table_name(store.table())
        .set_key(Some(webhook_key(
            &ProjectCode::parse(project).unwrap(),
            WebhookId::parse(id).unwrap(),
        )))
        .update_expression("SET #until = :until")
        .expression_attribute_names("#until", attr::PREVIOUS_SIGNING_UNTIL)
        .expression_attribute_values(":until", serde_dynamo::to_attribute_value(ended).unwrap())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_overlap_shows_while_it_lasts_and_a_second_rotation_inside_it_keeps_its_promise() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (id, first) = signed_webhook(&stack, &rx, "/twice").await;
    let path = format!("/projects/SIGN/webhooks/{id}/signing-secret");
    let read = stack.api.admin("GET", &path, None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(
        read.body["previous_valid_until"].is_null(),
        "no rotation yet"
    );

    let rotated = stack
        .api
        .admin("POST", &format!("{path}/rotate"), None)
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let second = rotated.body["signing_secret"].as_str().unwrap().to_owned();
    let until = rotated.body["previous_valid_until"].clone();
    let read = stack.api.admin("GET", &path, None).await;
    assert_eq!(read.body["signing_secret"], second.as_str());
    assert_eq!(
        read.body["previous_valid_until"], until,
        "shown while it lasts"
    );

    // A second rotation inside the overlap is refused with the time it may
    // be done; the first secret keeps verifying as promised.
    let again = stack
        .api
        .admin("POST", &format!("{path}/rotate"), None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert_eq!(again.error_code(), "rotation_overlap");
    assert!(
        again.text.contains(until.as_str().unwrap()),
        "{}",
        again.text
    );
    let wait: i64 = again.header("retry-after").unwrap().parse().unwrap();
    let overlap = config_api::DEFAULT_SIGNING_OVERLAP.as_secs() as i64;
    assert!((overlap - 60..=overlap + 1).contains(&wait), "{wait}");
    let read = stack.api.admin("GET", &path, None).await;
    assert_eq!(read.body["signing_secret"], second.as_str(), "unchanged");
    deliver_one(&stack).await;
    let during = rx.at("/twice").pop().unwrap();
    verify(&first, &during.body, &during.headers).unwrap();
    verify(&second, &during.body, &during.headers).unwrap();

    // Once the overlap has ended, nothing is shown and rotating works.
    end_overlap(&stack, "SIGN", &id).await;
    let read = stack.api.admin("GET", &path, None).await;
    assert!(read.body["previous_valid_until"].is_null(), "{}", read.text);
    let third = stack
        .api
        .admin("POST", &format!("{path}/rotate"), None)
        .await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.text);
}

#[tokio::test]
async fn two_rotations_at_once_rotate_once() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (id, _) = signed_webhook(&stack, &rx, "/racing").await;
    let path = format!("/projects/SIGN/webhooks/{id}/signing-secret/rotate");
    let rotate = || stack.api.admin("POST", &path, None);
    let (a, b) = tokio::join!(rotate(), rotate());
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let won = if a.status == StatusCode::OK { &a } else { &b };
    let read = stack
        .api
        .admin(
            "GET",
            &format!("/projects/SIGN/webhooks/{id}/signing-secret"),
            None,
        )
        .await;
    assert_eq!(read.body["signing_secret"], won.body["signing_secret"]);
}
