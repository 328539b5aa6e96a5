//! Custom headers per webhook through the real stack: sent on every
//! delivery beside the service's own (the signature unchanged), values
//! write-only in every view, masked in the history (even when the endpoint
//! echoes them) and the logs, never in a queue message; names the service
//! owns refused with the field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::StatusCode;
use integration_tests::stack::Stack;
use integration_tests::standard_webhooks_verify as verify;
use serde_json::{Value, json};

const GATEWAY_TOKEN: &str = "gw-token-7f3a9c1e5b";
const ROUTE_KEY: &str = "route-key-42d8e6";

/// What the echoing endpoint received: each request's headers and body.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>;

/// An endpoint that answers with every request header it got, as JSON, as
/// debugging endpoints do; answers the endpoint and what it received.
async fn echoing_endpoint() -> (String, Seen) {
    let seen = Seen::default();
    let keep = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: String| {
        let keep = keep.clone();
        async move {
            let echoed: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or_default())))
                .collect();
            keep.lock().unwrap().push((headers, body));
            Value::Object(echoed).to_string()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/gateway"), seen)
}

#[tokio::test]
async fn custom_headers_arrive_on_every_delivery_and_their_values_are_shown_nowhere() {
    let stack = Stack::start().await;
    let (endpoint, seen) = echoing_endpoint().await;
    let (created, signing) = stack
        .api
        .create_signed_webhook(
            "HDRS",
            json!({
                "title": "behind a gateway",
                "endpoint": endpoint,
                "events": ["run.completed"],
                "secret": "shared-secret",
                "headers": {"Authorization": format!("Bearer {GATEWAY_TOKEN}"), "X-Route": ROUTE_KEY},
            }),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["headers"],
        json!({"authorization": "***", "x-route": "***"})
    );
    // Queued, not yet delivered: the message carries no header value.
    stack
        .publish("HDRS", "run.completed", json!({"id": 1}))
        .await;
    let queued = stack.receive().await;
    assert_eq!(queued.len(), 1);
    for message in &queued {
        let body = message.body.as_deref().unwrap();
        assert!(!body.contains(GATEWAY_TOKEN) && !body.contains(ROUTE_KEY));
    }
    // Back to the queue at once, then delivered, the logs captured.
    stack
        .sqs
        .change_message_visibility()
        .queue_url(&stack.api.queue_url)
        .receipt_handle(queued[0].receipt_handle.as_deref().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let ((), logs) = integration_tests::logged(async {
        stack.deliver_all().await;
    })
    .await;
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "delivered once");
    let (request, received) = &got[0];
    assert_eq!(
        request["authorization"].to_str().unwrap(),
        format!("Bearer {GATEWAY_TOKEN}")
    );
    assert_eq!(request["x-route"].to_str().unwrap(), ROUTE_KEY);
    assert_eq!(request["x-qase-secret"].to_str().unwrap(), "shared-secret");
    // The signature covers the body as before; the custom headers do not
    // change it.
    let headers: std::collections::BTreeMap<String, String> = request
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let page = stack
        .api
        .admin(
            "GET",
            &format!("/projects/HDRS/webhooks/{id}/deliveries"),
            None,
        )
        .await;
    let delivery = page.body["deliveries"][0]["delivery_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = stack
        .api
        .admin(
            "GET",
            &format!("/projects/HDRS/webhooks/{id}/deliveries/{delivery}"),
            None,
        )
        .await;
    let attempt = &detail.body["attempts"][0];
    assert_eq!(attempt["request_headers"]["authorization"], "***");
    assert_eq!(attempt["request_headers"]["x-route"], "***");
    let echoed = attempt["response_body"].as_str().unwrap();
    assert!(echoed.contains("x-route"), "the endpoint echoed: {echoed}");
    verify(&signing, received, &headers).unwrap();
    // Nowhere to be read: the webhook's views, the history, the logs.
    let view = stack.get("HDRS", &id).await;
    let list = stack
        .api
        .admin("GET", "/projects/HDRS/webhooks", None)
        .await;
    for shown in [
        view.to_string(),
        list.text.clone(),
        page.text.clone(),
        detail.text.clone(),
        logs.clone(),
    ] {
        assert!(!shown.contains(GATEWAY_TOKEN), "{shown}");
        assert!(!shown.contains(ROUTE_KEY), "{shown}");
    }
    assert_eq!(
        view["headers"],
        json!({"authorization": "***", "x-route": "***"})
    );
}

#[tokio::test]
async fn names_the_service_owns_and_unsafe_values_are_refused_with_the_field() {
    let stack = Stack::start().await;
    for (name, value) in [
        ("Host", "val-9z1"),
        ("Content-Type", "val-9z2"),
        ("Content-Length", "val-9z3"),
        ("User-Agent", "val-9z4"),
        ("Connection", "val-9z5"),
        ("Transfer-Encoding", "val-9z6"),
        ("X-Qase-Secret", "val-9z7"),
        ("webhook-signature", "val-9z8"),
        ("bad name", "val-9z9"),
        ("X-Ok", " val-9z0"),
    ] {
        let reply = stack
            .api
            .admin(
                "POST",
                "/projects/REFUSE/webhooks",
                Some(json!({
                    "title": "t",
                    "endpoint": "http://127.0.0.1:9/x",
                    "events": ["run.completed"],
                    "headers": {name: value},
                })),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            reply.text
        );
        assert_eq!(reply.error_code(), "invalid_field");
        assert_eq!(
            reply.error_field(),
            Some(format!("headers.{name}").as_str())
        );
        assert!(
            !reply.text.contains(value.trim()),
            "a value is never echoed: {}",
            reply.text
        );
    }
    let list = stack
        .api
        .admin("GET", "/projects/REFUSE/webhooks", None)
        .await;
    assert_eq!(list.body["webhooks"], json!([]), "nothing was created");
}

#[tokio::test]
async fn a_patch_replaces_the_whole_set_and_an_empty_one_removes_it() {
    let stack = Stack::start().await;
    let created = stack
        .api
        .create_webhook(
            "REPLACE",
            json!({"title": "t", "endpoint": "http://127.0.0.1:9/x", "events": ["run.completed"],
                   "headers": {"X-One": "1", "X-Two": "2"}}),
        )
        .await;
    let path = format!(
        "/projects/REPLACE/webhooks/{}",
        created["id"].as_str().unwrap()
    );
    let patched = stack
        .api
        .admin("PATCH", &path, Some(json!({"headers": {"X-Three": "3"}})))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.body["headers"], json!({"x-three": "***"}));
    let refused = stack
        .api
        .admin("PATCH", &path, Some(json!({"headers": {"Host": "h"}})))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        stack.api.admin("GET", &path, None).await.body["headers"],
        json!({"x-three": "***"})
    );
    let emptied = stack
        .api
        .admin("PATCH", &path, Some(json!({"headers": {}})))
        .await;
    assert_eq!(emptied.body["headers"], json!({}));
}
