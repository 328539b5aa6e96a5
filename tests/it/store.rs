//! Storage and start-up paths against the emulator that the HTTP tests do not
//! reach on their own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::StatusCode;
use config_api::{AdminTokenSource, ApiConfig};
use integration_tests::api::{Api, webhook_body};
use integration_tests::counting::interleaved_store;
use serde_json::{Value, json};
use shared::adapters::DynamoStore;
use shared::domain::{EndpointRules, ProjectCode, Timestamp, Webhook, WebhookChanges, WebhookId};
use shared::ports::{DeliveryStore, SweepStore, WebhookStore};

/// Records three failures on a webhook, the first at `since`, through the
/// sender's own store method.
async fn seed_failure(api: &Api, project: &str, id: &str, since: &str) {
    let project = ProjectCode::parse(project).unwrap();
    let hook = api
        .store
        .get(&project, WebhookId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let since = Timestamp::parse(since).unwrap();
    for _ in 0..3 {
        api.store
            .record_failure(&hook, since, "HTTP 503", false)
            .await
            .unwrap();
    }
}

/// The ids in the sweeper's `FAILING` queue, whatever their age.
async fn failing_index_ids(api: &Api) -> Vec<String> {
    let far = Timestamp::parse("2999-01-01T00:00:00Z").unwrap();
    api.store
        .due(far)
        .await
        .unwrap()
        .items
        .iter()
        .map(|hook| hook.id.to_string())
        .collect()
}

#[tokio::test]
async fn failure_state_shows_and_re_enabling_a_disabled_webhook_clears_it() {
    let api = Api::start().await;
    let hook = api.create_webhook("DEMO", webhook_body("flaky")).await;
    let id = hook["id"].as_str().unwrap();
    let path = format!("/projects/DEMO/webhooks/{id}");
    seed_failure(&api, "DEMO", id, "2026-11-01T10:00:00.000Z").await;
    assert_eq!(failing_index_ids(&api).await, vec![id.to_owned()]);

    let failing = api.admin("GET", &path, None).await.body;
    assert_eq!(failing["status"], "failing");
    assert_eq!(failing["failing_since"], "2026-11-01T10:00:00.000Z");
    assert_eq!(failing["last_failure_reason"], "HTTP 503");
    assert_eq!(failing["failure_count"], 3);

    // An unrelated edit, even one sending enabled: true, keeps the history.
    let edited = api
        .admin(
            "PATCH",
            &path,
            Some(json!({"title": "still flaky", "enabled": true})),
        )
        .await
        .body;
    assert_eq!(edited["status"], "failing");
    assert_eq!(edited["failing_since"], "2026-11-01T10:00:00.000Z");

    // Disabling keeps the history visible but leaves the sweeper's index.
    let off = api
        .admin("PATCH", &path, Some(json!({"enabled": false})))
        .await
        .body;
    assert_eq!(off["status"], "disabled");
    assert_eq!(off["last_failure_reason"], "HTTP 503");
    assert!(failing_index_ids(&api).await.is_empty());

    let on = api
        .admin("PATCH", &path, Some(json!({"enabled": true})))
        .await
        .body;
    assert_eq!(on["status"], "active");
    for field in [
        "failing_since",
        "last_failure_at",
        "last_failure_reason",
        "disabled_at",
        "disabled_reason",
    ] {
        assert_eq!(on[field], Value::Null, "{field}");
    }
    assert_eq!(on["failure_count"], 0);
    assert!(failing_index_ids(&api).await.is_empty());
}

#[tokio::test]
async fn the_admin_token_is_read_from_secrets_manager() {
    let store = integration_tests::fresh_store().await;
    let sdk = integration_tests::sdk_config().await;
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(format!("admin-{}", uuid::Uuid::new_v4()))
        .secret_string("generated-admin-token-from-the-template")
        .send()
        .await
        .unwrap();
    let queue_urls = integration_tests::fresh_queues().await;
    let config = ApiConfig {
        table_name: store.table().to_owned(),
        queue_urls: queue_urls.clone(),
        admin_token: AdminTokenSource::Secret(secret.arn().unwrap().to_owned()),
        endpoint_rules: EndpointRules::default(),
        signing_overlap: config_api::DEFAULT_SIGNING_OVERLAP,
        delivery_log: shared::domain::DeliveryLog::default(),
        publish_share: shared::domain::PublishShare::off(),
        event_bus: None,
    };
    let api = Api {
        router: config_api::app(&sdk, config).await.unwrap(),
        store,
        queue_url: queue_urls.fast.clone(),
        queue_urls,
    };
    let ok = api
        .call(
            "GET",
            "/event-types",
            Some("generated-admin-token-from-the-template"),
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let wrong = api
        .call("GET", "/event-types", Some("something-else-entirely"), None)
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn startup_refuses_a_missing_secret_and_a_weak_admin_token() {
    let sdk = integration_tests::sdk_config().await;
    let missing = ApiConfig {
        table_name: "unused".into(),
        queue_urls: unused_queues(),
        admin_token: AdminTokenSource::Secret("no-such-secret".into()),
        endpoint_rules: EndpointRules::default(),
        signing_overlap: config_api::DEFAULT_SIGNING_OVERLAP,
        delivery_log: shared::domain::DeliveryLog::default(),
        publish_share: shared::domain::PublishShare::off(),
        event_bus: None,
    };
    let err = config_api::app(&sdk, missing).await.unwrap_err();
    assert!(err.to_string().contains("admin token"), "{err}");
    let weak = ApiConfig {
        table_name: "unused".into(),
        queue_urls: unused_queues(),
        admin_token: AdminTokenSource::Plain(shared::domain::ApiToken::presented("short")),
        endpoint_rules: EndpointRules::default(),
        signing_overlap: config_api::DEFAULT_SIGNING_OVERLAP,
        delivery_log: shared::domain::DeliveryLog::default(),
        publish_share: shared::domain::PublishShare::off(),
        event_bus: None,
    };
    let err = config_api::app(&sdk, weak).await.unwrap_err();
    assert!(
        matches!(err, config_api::StartupError::WeakAdminToken),
        "{err}"
    );
}

#[tokio::test]
async fn webhooks_survive_a_round_trip_through_dynamodb_unchanged() {
    let api = Api::start().await;
    let mut body = webhook_body("round trip");
    body["secret"] = json!("kept");
    body["notify_emails"] = json!(["a@example.com", "b@example.com"]);
    body["enabled"] = json!(false);
    let created = api.create_webhook("RT", body).await;
    let read = api
        .admin(
            "GET",
            &format!("/projects/RT/webhooks/{}", created["id"].as_str().unwrap()),
            None,
        )
        .await
        .body;
    assert_eq!(read, created);
    assert_eq!(read["status"], "disabled");
}

/// A store of its own, on a runtime of its own: another writer, for steps
/// interleaved into a call of the code under test.
fn other_writer<T>(table: &str, step: impl AsyncFnOnce(&DynamoStore) -> T) -> T {
    integration_tests::counting::block_on(async {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        step(&DynamoStore::from_sdk(&sdk, table)).await
    })
}

/// `PATCH {"enabled": true, "title": "renamed"}` through a router over `store`.
async fn patch_over(api: &Api, store: DynamoStore, path: &str) -> integration_tests::api::Reply {
    let queue = integration_tests::counting::counting_queue(&api.queue_urls)
        .await
        .0;
    api.over(store, queue)
        .admin(
            "PATCH",
            path,
            Some(json!({"enabled": true, "title": "renamed"})),
        )
        .await
}

/// A failing webhook: created, then three failures recorded three days ago.
async fn failing_webhook(api: &Api, project: &str) -> Webhook {
    let hook = api.create_webhook(project, webhook_body("racing")).await;
    let id = hook["id"].as_str().unwrap();
    let since = Timestamp::from(Timestamp::now().as_datetime() - chrono::Duration::days(3));
    seed_failure(api, project, id, &since.to_string()).await;
    api.store
        .get(
            &ProjectCode::parse(project).unwrap(),
            WebhookId::parse(id).unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_re_enable_racing_the_sweeper_is_applied_or_refused_never_misreported() {
    let api = Api::start().await;
    let hook = failing_webhook(&api, "RACE").await;
    let path = format!("/projects/RACE/webhooks/{}", hook.id);
    // The sweeper disables the webhook between the PATCH's first attempt
    // (re-enable a disabled webhook) and its second (edit an enabled one).
    let table = api.store.table().to_owned();
    let read = hook.clone();
    let store = interleaved_store(&table.clone(), "UpdateItem", move |call| {
        if call == 2 {
            let disabled = other_writer(&table, async |store| {
                store
                    .disable(&read, Timestamp::now(), "failing")
                    .await
                    .unwrap()
            });
            assert!(disabled.is_some(), "the sweeper's disable applied");
        }
    })
    .await;
    let reply = patch_over(&api, store, &path).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["enabled"], true, "{}", reply.text);
    assert_eq!(reply.body["title"], "renamed");
    let stored = api.admin("GET", &path, None).await.body;
    assert_eq!(stored["enabled"], true);
    assert_eq!(
        stored["status"], "active",
        "re-enabled with its failure state cleared"
    );
}

#[tokio::test]
async fn a_re_enable_that_keeps_losing_the_race_answers_409_and_changes_nothing() {
    let api = Api::start().await;
    let hook = failing_webhook(&api, "FLIP").await;
    let path = format!("/projects/FLIP/webhooks/{}", hook.id);
    // Before every attempt after the first, another writer flips `enabled`
    // to the opposite of what the attempt's condition needs.
    let table = api.store.table().to_owned();
    let (project, id) = (hook.project.clone(), hook.id);
    let store = interleaved_store(&table.clone(), "UpdateItem", move |call| {
        if call >= 2 {
            let changes = WebhookChanges {
                enabled: Some(call % 2 == 1),
                ..WebhookChanges::default()
            };
            other_writer(&table, async |store| {
                store
                    .update(&project, id, &changes, Timestamp::now())
                    .await
                    .unwrap()
            });
        }
    })
    .await;
    let reply = patch_over(&api, store, &path).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert_eq!(reply.error_code(), "conflict");
    let stored = api.admin("GET", &path, None).await.body;
    assert_eq!(stored["title"], "racing", "the PATCH changed nothing");
}

#[tokio::test]
async fn a_success_racing_the_sweeper_keeps_the_owed_e_mail() {
    let api = Api::start().await;
    // The sender read the webhook (enabled, failing for 3 days) and POSTs.
    let read = failing_webhook(&api, "OWED").await;
    // Meanwhile the sweeper disables it; its e-mail is now owed.
    let disabled = api
        .store
        .disable(&read, Timestamp::now(), "failing")
        .await
        .unwrap();
    assert!(disabled.is_some());
    // The POST returns 200: the sender records a recovery from its read.
    api.store
        .record_recovery(&read, false, shared::domain::Timestamp::now())
        .await
        .unwrap();
    let pending = api.store.pending_notices().await.unwrap();
    assert_eq!(
        pending.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![read.id]
    );
    let view = api
        .admin("GET", &format!("/projects/OWED/webhooks/{}", read.id), None)
        .await
        .body;
    assert_eq!(view["status"], "disabled");
    assert_eq!(
        view["failing_since"],
        read.failing_since.unwrap().to_string()
    );
}

/// Queue URLs for a start-up that never queues.
fn unused_queues() -> shared::adapters::sqs::LaneUrls {
    shared::adapters::sqs::LaneUrls {
        fast: "unused".into(),
        slow: "unused".into(),
        waiting: "unused".into(),
    }
}
