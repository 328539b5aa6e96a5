//! `GET /openapi.json` is kept in step with the router: every documented
//! route answers a documented status, undocumented methods get 405 with the
//! documented `Allow`, and documented shapes match what the API sends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use axum::http::StatusCode;
use integration_tests::api::{Api, webhook_body};
use serde_json::{Value, json};
use shared::domain::EventName;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn spec() -> Value {
    serde_json::from_str(config_api::routes::catalog::OPENAPI).unwrap()
}

fn schema<'a>(spec: &'a Value, name: &str) -> &'a Value {
    &spec["components"]["schemas"][name]
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// A body made of the first example of every property of a request schema.
fn example_body(spec: &Value, schema_name: &str) -> Value {
    let props = schema(spec, schema_name)["properties"].as_object().unwrap();
    let mut body = json!({});
    for (name, prop) in props {
        body[name] = prop["examples"][0].clone();
    }
    body
}

#[tokio::test]
async fn served_document_is_the_openapi_31_file() {
    let api = Api::start().await;
    let reply = api.admin("GET", "/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.body, spec());
    assert!(reply.body["openapi"].as_str().unwrap().starts_with("3.1"));
}

/// A delivery of a stored event to webhook `id` of DEMO, recorded as the
/// sender records it; answers its id.
async fn recorded_delivery(api: &Api, id: &str) -> String {
    use shared::domain::{
        Attempt, DeliveryLog, EventName, Outcome, ProjectCode, StoredEvent, Timestamp, WebhookId,
    };
    use shared::ports::{DeliveryStore, HistoryStore};
    let now = Timestamp::now();
    let event = StoredEvent {
        id: uuid::Uuid::now_v7(),
        project: ProjectCode::parse("DEMO").unwrap(),
        event_name: EventName::RunCompleted,
        envelope: r#"{"event_name":"run.completed","payload":{}}"#.into(),
        created_at: now,
    };
    let expires = DeliveryLog::default().expires_at(now).unwrap();
    api.store.put_event(&event, expires).await.unwrap();
    let message = event.redelivery(WebhookId::parse(id).unwrap()).unwrap();
    let attempt = Attempt::of(&message, now).sent(
        Default::default(),
        &Outcome::Delivered { status: 200 },
        std::time::Duration::from_millis(5),
        b"ok",
    );
    api.store
        .record_attempts(&[attempt], expires)
        .await
        .unwrap();
    message.delivery_id.to_string()
}

#[tokio::test]
async fn every_documented_operation_answers_a_documented_status() {
    let api = Api::start().await;
    let spec = spec();
    let hook = api.create_webhook("DEMO", webhook_body("target")).await;
    let token = api.admin("POST", "/projects/DEMO/tokens", None).await.body;
    let delivery = recorded_delivery(&api, hook["id"].as_str().unwrap()).await;
    // A recovery's window is relative to now: the example's times, moved
    // to the last hour.
    let since = shared::domain::Timestamp::now().before(std::time::Duration::from_secs(3600));
    let recovery = api
        .admin(
            "POST",
            &format!(
                "/projects/DEMO/webhooks/{}/recover",
                hook["id"].as_str().unwrap()
            ),
            Some(json!({"since": since.to_string()})),
        )
        .await;
    assert_eq!(recovery.status, StatusCode::ACCEPTED, "{}", recovery.text);
    let paths = spec["paths"].as_object().unwrap();
    let mut operations = Vec::new();
    for (template, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            operations.push((template.clone(), method.to_uppercase(), op.clone()));
        }
    }
    // Deletions last, so every other operation still finds its target;
    // before them the changes (the PATCH example disables the webhook,
    // which a recovery refuses).
    operations.sort_by_key(|(_, method, _)| (method == "DELETE", method == "PATCH"));
    assert_eq!(operations.len(), 19);
    for (template, method, op) in operations {
        let id = if template.contains("tokens") {
            &token["id"]
        } else {
            &hook["id"]
        };
        let path = template
            .replace("{project}", "DEMO")
            .replace("{id}", id.as_str().unwrap())
            .replace("{delivery_id}", &delivery)
            .replace(
                "{recovery_id}",
                recovery.body["recovery_id"].as_str().unwrap(),
            );
        let mut body = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .map(|r| example_body(&spec, r.rsplit('/').next().unwrap()));
        if let Some(body) = body.as_mut().filter(|_| template.ends_with("/recover")) {
            body["since"] = json!(since.to_string());
            body.as_object_mut().unwrap().remove("until");
        }
        let reply = api.admin(&method, &path, body).await;
        let documented = keys(&op["responses"]);
        assert!(
            documented.contains(reply.status.as_str()),
            "{method} {path} answered {} ({}), documented: {documented:?}",
            reply.status,
            reply.text
        );
        assert!(reply.status.is_success(), "{method} {path}: {}", reply.text);
    }
}

#[tokio::test]
async fn undocumented_methods_are_405_with_the_documented_allow() {
    let api = Api::start().await;
    let spec = spec();
    for (template, item) in spec["paths"].as_object().unwrap() {
        let path = template.replace("{project}", "DEMO").replace("{id}", "x");
        let documented: BTreeSet<String> = keys(item)
            .into_iter()
            .filter(|k| k != "parameters")
            .map(|k| k.to_uppercase())
            .collect();
        for method in METHODS.iter().filter(|m| !documented.contains(**m)) {
            let reply = api.admin(method, &path, None).await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            let allowed: BTreeSet<String> = reply
                .header("allow")
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| m != "HEAD")
                .collect();
            assert_eq!(allowed, documented, "{path}");
        }
    }
}

#[tokio::test]
async fn documented_shapes_match_what_the_api_sends() {
    let api = Api::start().await;
    let spec = spec();
    let created = api
        .admin(
            "POST",
            "/projects/DEMO/webhooks",
            Some(webhook_body("shape")),
        )
        .await
        .body;
    let schema_created = schema(&spec, "CreatedWebhook");
    assert_eq!(keys(&schema_created["properties"]), keys(&created));
    assert_eq!(strings(&schema_created["required"]), keys(&created));
    // Read back, the webhook is the same without its signing secret.
    let id = created["id"].as_str().unwrap();
    let hook = api
        .admin("GET", &format!("/projects/DEMO/webhooks/{id}"), None)
        .await
        .body;
    let webhook = schema(&spec, "Webhook");
    assert_eq!(keys(&webhook["properties"]), keys(&hook));
    assert_eq!(strings(&webhook["required"]), keys(&hook));
    let mut without = keys(&created);
    without.remove("signing_secret");
    assert_eq!(without, keys(&hook));
    let secret_path = format!("/projects/DEMO/webhooks/{id}/signing-secret");
    let read = api.admin("GET", &secret_path, None).await.body;
    let signing = schema(&spec, "SigningSecret");
    assert_eq!(strings(&signing["required"]), keys(&read));
    let rotated = api
        .admin("POST", &format!("{secret_path}/rotate"), None)
        .await
        .body;
    assert_eq!(keys(&signing["properties"]), keys(&rotated));

    let list = api.admin("GET", "/projects/DEMO/webhooks", None).await.body;
    assert_eq!(
        keys(&schema(&spec, "WebhookList")["properties"]),
        keys(&list)
    );

    let minted = api.admin("POST", "/projects/DEMO/tokens", None).await.body;
    assert_eq!(
        keys(&schema(&spec, "MintedToken")["properties"]),
        keys(&minted)
    );

    let types = api.admin("GET", "/event-types", None).await.body;
    let item = &schema(&spec, "EventTypes")["properties"]["event_types"]["items"];
    assert_eq!(keys(&item["properties"]), keys(&types["event_types"][0]));
    let entities: BTreeSet<String> = types["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["entity"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(strings(&item["properties"]["entity"]["enum"]), entities);

    let error = api
        .admin("GET", "/projects/DEMO/webhooks?limit=0", None)
        .await
        .body;
    let error_schema = &schema(&spec, "Error")["properties"]["error"];
    assert_eq!(keys(&error_schema["properties"]), keys(&error["error"]));
    assert!(
        strings(&error_schema["properties"]["code"]["enum"])
            .contains(error["error"]["code"].as_str().unwrap())
    );

    let catalog: Vec<&str> = EventName::ALL.iter().map(|e| e.as_str()).collect();
    let documented: Vec<&str> = schema(&spec, "EventName")["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(documented, catalog);
}

#[tokio::test]
async fn every_documented_request_field_is_accepted_alone() {
    let api = Api::start().await;
    let spec = spec();
    let hook = api.create_webhook("DEMO", webhook_body("fields")).await;
    let path = format!("/projects/DEMO/webhooks/{}", hook["id"].as_str().unwrap());
    let patch = example_body(&spec, "WebhookPatch");
    for (field, value) in patch.as_object().unwrap() {
        let reply = api
            .admin("PATCH", &path, Some(json!({ field: value })))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "PATCH {field}: {}",
            reply.text
        );
    }
    let create = schema(&spec, "WebhookCreate");
    let required = strings(&create["required"]);
    let full = example_body(&spec, "WebhookCreate");
    for optional in keys(&create["properties"]).difference(&required) {
        let mut body = json!({});
        for name in required.iter().chain([optional]) {
            body[name] = full[name].clone();
        }
        let reply = api
            .admin("POST", "/projects/DEMO/webhooks", Some(body))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "create with {optional}: {}",
            reply.text
        );
    }
}

#[test]
fn the_custom_header_names_the_description_refuses_are_the_ones_the_api_refuses() {
    use shared::domain::headers::{RESERVED, RESERVED_PREFIXES, reserved};
    let spec: Value = serde_json::from_str(config_api::routes::catalog::OPENAPI).unwrap();
    for schema in ["WebhookCreate", "WebhookPatch"] {
        let pattern =
            spec["components"]["schemas"][schema]["properties"]["headers"]["propertyNames"]["not"]
                ["pattern"]
                .as_str()
                .unwrap();
        let described = regex_lite::Regex::new(pattern).unwrap();
        let mut names: Vec<String> = RESERVED.iter().map(|n| (*n).to_owned()).collect();
        names.extend(RESERVED_PREFIXES.iter().map(|p| format!("{p}anything")));
        names.extend(RESERVED.iter().map(|n| n.to_uppercase()));
        names.extend(
            [
                "x-route",
                "authorization",
                "hosts",
                "tea",
                "x-qase",
                "webhook",
            ]
            .map(str::to_owned),
        );
        for name in names {
            assert_eq!(
                described.is_match(&name),
                reserved(&name.to_ascii_lowercase()).is_some(),
                "{schema}: {name}"
            );
        }
    }
}
