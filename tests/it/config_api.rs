//! The config API over its real router and DynamoDB (the moto emulator).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use integration_tests::api::{ADMIN, Api, webhook_body};
use serde_json::{Value, json};

fn id_of(hook: &Value) -> &str {
    hook["id"].as_str().unwrap()
}

#[tokio::test]
async fn create_get_update_toggle_delete() {
    let api = Api::start().await;
    let created = api
        .create_webhook(
            "DEMO",
            json!({
                "title": "Slack notifier",
                "endpoint": "https://hooks.example.com/qase",
                "secret": "s3cret-value",
                "events": ["run.completed", "defect.created", "run.completed"],
                "notify_emails": ["owner@example.com"],
            }),
        )
        .await;
    assert_eq!(created["title"], "Slack notifier");
    assert_eq!(created["project"], "DEMO");
    assert_eq!(created["has_secret"], true);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["status"], "active");
    assert_eq!(
        created["events"],
        json!(["run.completed", "defect.created"])
    );
    assert_eq!(created["notify_emails"], json!(["owner@example.com"]));
    assert_eq!(created["failing_since"], Value::Null);
    let id = id_of(&created);
    let path = format!("/projects/DEMO/webhooks/{id}");

    let got = api.admin("GET", &path, None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, created);

    let updated = api
        .admin(
            "PATCH",
            &path,
            Some(json!({"title": "Renamed", "events": ["case.created"]})),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.body["title"], "Renamed");
    assert_eq!(updated.body["events"], json!(["case.created"]));
    assert_eq!(updated.body["endpoint"], "https://hooks.example.com/qase");
    assert_eq!(updated.body["has_secret"], true, "untouched fields stay");
    assert_ne!(updated.body["updated_at"], created["updated_at"]);
    assert_eq!(updated.body["created_at"], created["created_at"]);

    let off = api
        .admin("PATCH", &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(
        (off.body["enabled"].clone(), off.body["status"].clone()),
        (json!(false), json!("disabled"))
    );
    let on = api
        .admin("PATCH", &path, Some(json!({"enabled": true})))
        .await;
    assert_eq!(
        (on.body["enabled"].clone(), on.body["status"].clone()),
        (json!(true), json!("active"))
    );

    let no_secret = api
        .admin("PATCH", &path, Some(json!({"secret": null})))
        .await;
    assert_eq!(no_secret.body["has_secret"], false);

    let deleted = api.admin("DELETE", &path, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.admin("GET", &path, None).await.status,
        StatusCode::NOT_FOUND
    );
    let again = api.admin("DELETE", &path, None).await;
    assert_eq!(
        (again.status, again.error_code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let patch_gone = api.admin("PATCH", &path, Some(json!({"title": "x"}))).await;
    assert_eq!(patch_gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn create_answers_201_with_location() {
    let api = Api::start().await;
    let reply = api
        .admin("POST", "/projects/DEMO/webhooks", Some(webhook_body("A")))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(
        reply.header("location"),
        Some(format!("/projects/DEMO/webhooks/{}", id_of(&reply.body)).as_str())
    );
}

#[tokio::test]
async fn list_paginates_in_creation_order_over_several_pages() {
    let api = Api::start().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            id_of(
                &api.create_webhook("PAGED", webhook_body(&format!("hook {i}")))
                    .await,
            )
            .to_owned(),
        );
    }
    api.create_webhook("OTHER", webhook_body("elsewhere")).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/projects/PAGED/webhooks?limit=3&cursor={c}"),
            None => "/projects/PAGED/webhooks?limit=3".to_owned(),
        };
        let reply = api.admin("GET", &path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        pages += 1;
        let page = reply.body["webhooks"].as_array().unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|h| id_of(h).to_owned()));
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3, "7 webhooks in pages of 3, and no empty last page");
    assert_eq!(seen, ids);

    let all = api.admin("GET", "/projects/PAGED/webhooks", None).await;
    assert_eq!(all.body["webhooks"].as_array().unwrap().len(), 7);
    assert_eq!(all.body["next_cursor"], Value::Null);
    let empty = api.admin("GET", "/projects/NOTHING/webhooks", None).await;
    assert_eq!(empty.body, json!({"webhooks": [], "next_cursor": null}));
}

#[tokio::test]
async fn list_rejects_bad_limit_and_cursor() {
    let api = Api::start().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("cursor=bogus", "cursor"),
    ] {
        let reply = api
            .admin("GET", &format!("/projects/DEMO/webhooks?{query}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(reply.error_field(), Some(field), "{query}");
    }
}

#[tokio::test]
async fn every_validation_rule_names_its_field() {
    let api = Api::start().await;
    let base = webhook_body("ok");
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (without("title"), "title"),
        (with("title", json!("")), "title"),
        (with("title", json!("   ")), "title"),
        (with("title", json!("x".repeat(256))), "title"),
        (with("title", json!(42)), "title"),
        (without("endpoint"), "endpoint"),
        (with("endpoint", json!("not a url")), "endpoint"),
        (with("endpoint", json!("/relative/path")), "endpoint"),
        (
            with("endpoint", json!("http://hooks.example.com/")),
            "endpoint",
        ),
        (
            with("endpoint", json!("ftp://hooks.example.com/")),
            "endpoint",
        ),
        (
            with("endpoint", json!("https://user:pw@hooks.example.com/")),
            "endpoint",
        ),
        (
            with(
                "endpoint",
                json!(format!("https://example.com/{}", "a".repeat(2040))),
            ),
            "endpoint",
        ),
        (with("secret", json!("")), "secret"),
        (with("secret", json!("s".repeat(256))), "secret"),
        (with("secret", json!("bad\nsecret")), "secret"),
        (with("secret", json!(12345)), "secret"),
        (without("events"), "events"),
        (with("events", json!([])), "events"),
        (with("events", json!(["run.exploded"])), "events"),
        (with("events", json!("run.completed")), "events"),
        (with("enabled", json!("yes")), "enabled"),
        (
            with("notify_emails", json!(["not-an-address"])),
            "notify_emails[0]",
        ),
        (
            with("notify_emails", json!(["a@example.com", "b@"])),
            "notify_emails[1]",
        ),
        (
            with(
                "notify_emails",
                json!(
                    (0..11)
                        .map(|i| format!("u{i}@example.com"))
                        .collect::<Vec<_>>()
                ),
            ),
            "notify_emails",
        ),
        (with("surprise", json!(1)), "surprise"),
    ];
    for (body, field) in cases {
        let reply = api
            .admin("POST", "/projects/DEMO/webhooks", Some(body.clone()))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.error_field(), Some(field), "{body}: {}", reply.text);
        assert!(!reply.body["error"]["message"].as_str().unwrap().is_empty());
    }
    let bad_project = api
        .admin("POST", "/projects/BAD%20CODE/webhooks", Some(base.clone()))
        .await;
    assert_eq!(
        (bad_project.status, bad_project.error_field()),
        (StatusCode::BAD_REQUEST, Some("project"))
    );
    let not_json = api
        .send(
            Request::post("/projects/DEMO/webhooks")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"title\": "))
                .unwrap(),
        )
        .await;
    assert_eq!(
        (not_json.status, not_json.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    // Nothing was stored by any rejected request.
    let list = api.admin("GET", "/projects/DEMO/webhooks", None).await;
    assert_eq!(list.body["webhooks"], json!([]));
}

#[tokio::test]
async fn patch_validates_the_fields_it_names() {
    let api = Api::start().await;
    let hook = api.create_webhook("DEMO", webhook_body("ok")).await;
    let path = format!("/projects/DEMO/webhooks/{}", id_of(&hook));
    for (body, field) in [
        (json!({}), "body"),
        (json!({"title": ""}), "title"),
        (json!({"endpoint": "https://10.0.0.1/"}), "endpoint"),
        (json!({"events": []}), "events"),
        (json!({"enabled": null}), "enabled"),
        (json!({"notify_emails": null}), "notify_emails"),
        (json!({"title": null}), "title"),
        (json!({"notify_emails": ["x"]}), "notify_emails[0]"),
        (json!({"id": "other"}), "id"),
    ] {
        let reply = api.admin("PATCH", &path, Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.error_field(), Some(field), "{body}: {}", reply.text);
    }
    assert_eq!(
        api.admin("GET", &path, None).await.body,
        hook,
        "nothing changed"
    );
}

#[tokio::test]
async fn every_address_class_is_refused_at_create_time() {
    let api = Api::start().await;
    for endpoint in [
        "https://127.0.0.1/hook",
        "https://127.1.2.3/hook",
        "https://10.1.2.3/hook",
        "https://172.16.0.1/hook",
        "https://192.168.1.10/hook",
        "https://100.64.1.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://224.0.0.251/hook",
        "https://255.255.255.255/hook",
        "https://0.0.0.0/hook",
        "https://[::1]/hook",
        "https://[::]/hook",
        "https://[fc00::1]/hook",
        "https://[fd00:ec2::254]/hook",
        "https://[fe80::1]/hook",
        "https://[ff02::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://[::ffff:169.254.169.254]/hook",
        "https://2130706433/hook",
        "https://0x7f.1/hook",
        "https://0177.0.0.01/hook",
        "https://localhost/hook",
    ] {
        let mut body = webhook_body("internal");
        body["endpoint"] = json!(endpoint);
        let reply = api
            .admin("POST", "/projects/DEMO/webhooks", Some(body))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{endpoint}");
        assert_eq!(reply.error_field(), Some("endpoint"), "{endpoint}");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("publicly routable"),
            "{endpoint}: {}",
            reply.text
        );
    }
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let api = Api::start().await;
    for token in [
        None,
        Some("wrong-token"),
        Some("qwh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        for (method, path) in [
            ("GET", "/projects/DEMO/webhooks"),
            ("POST", "/projects/DEMO/webhooks"),
            ("GET", "/event-types"),
            ("POST", "/projects/DEMO/tokens"),
        ] {
            let reply = api.call(method, path, token, Some(webhook_body("x"))).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert_eq!(reply.error_code(), "unauthorized");
            assert!(
                reply
                    .header("www-authenticate")
                    .unwrap()
                    .starts_with("Bearer")
            );
        }
    }
    let basic = api
        .send(
            Request::get("/event-types")
                .header(header::AUTHORIZATION, format!("Basic {ADMIN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        basic.status,
        StatusCode::UNAUTHORIZED,
        "the admin token only counts as a Bearer token"
    );
}

#[tokio::test]
async fn a_project_token_reaches_its_own_project_only() {
    let api = Api::start().await;
    let mine = api.project_token("MINE").await;
    let theirs_hook = api.create_webhook("THEIRS", webhook_body("theirs")).await;
    let theirs_path = format!("/projects/THEIRS/webhooks/{}", id_of(&theirs_hook));
    let missing_path = format!("/projects/MINE/webhooks/{}", uuid::Uuid::now_v7());

    // Own project: full access.
    let own = api
        .call(
            "POST",
            "/projects/MINE/webhooks",
            Some(&mine),
            Some(webhook_body("own")),
        )
        .await;
    assert_eq!(own.status, StatusCode::CREATED);
    let own_path = format!("/projects/MINE/webhooks/{}", id_of(&own.body));
    assert_eq!(
        api.call("GET", &own_path, Some(&mine), None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.call("GET", "/event-types", Some(&mine), None)
            .await
            .status,
        StatusCode::OK
    );

    // Another project's webhook looks exactly like a missing one.
    let missing = api.call("GET", &missing_path, Some(&mine), None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"title": "pwned"}))),
        ("DELETE", None),
    ] {
        let reply = api.call(method, &theirs_path, Some(&mine), body).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(
            reply.body, missing.body,
            "{method}: same answer as a missing webhook"
        );
    }
    let list = api
        .call("GET", "/projects/THEIRS/webhooks", Some(&mine), None)
        .await;
    assert_eq!(list.status, StatusCode::NOT_FOUND);
    let create = api
        .call(
            "POST",
            "/projects/THEIRS/webhooks",
            Some(&mine),
            Some(webhook_body("x")),
        )
        .await;
    assert_eq!(create.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.admin("GET", &theirs_path, None).await.body,
        theirs_hook,
        "untouched"
    );

    // Tokens are the admin's business.
    let mint_own = api
        .call("POST", "/projects/MINE/tokens", Some(&mine), None)
        .await;
    assert_eq!(
        (mint_own.status, mint_own.error_code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let mint_other = api
        .call("POST", "/projects/THEIRS/tokens", Some(&mine), None)
        .await;
    assert_eq!(mint_other.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn minted_tokens_are_shown_once_stored_hashed_and_revocable() {
    let api = Api::start().await;
    let reply = api.admin("POST", "/projects/DEMO/tokens", None).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let token = reply.body["token"].as_str().unwrap().to_owned();
    let id = reply.body["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("qwh_"));
    assert_eq!(reply.body["project"], "DEMO");

    // The table holds the hash, never the token.
    let scan = api
        .store
        .client()
        .scan()
        .table_name(api.store.table())
        .send()
        .await
        .unwrap();
    let dump = format!("{:?}", scan.items());
    assert!(!dump.contains(&token[4..]), "token stored in clear");
    assert!(dump.contains(&id));

    assert_eq!(
        api.call("GET", "/projects/DEMO/webhooks", Some(&token), None)
            .await
            .status,
        StatusCode::OK
    );
    let other = api
        .admin("DELETE", &format!("/projects/OTHER/tokens/{id}"), None)
        .await;
    assert_eq!(
        other.status,
        StatusCode::NOT_FOUND,
        "revoking names the token's own project"
    );
    let revoked = api
        .admin("DELETE", &format!("/projects/DEMO/tokens/{id}"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = api
        .call("GET", "/projects/DEMO/webhooks", Some(&token), None)
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.admin("DELETE", &format!("/projects/DEMO/tokens/{id}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.admin("DELETE", "/projects/DEMO/tokens/nonsense", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_secret_never_appears_in_a_response() {
    let api = Api::start().await;
    let secret = "TOP-SECRET-do-not-leak-42";
    let mut body = webhook_body("secretive");
    body["secret"] = json!(secret);
    let create = api
        .admin("POST", "/projects/DEMO/webhooks", Some(body))
        .await;
    let path = format!("/projects/DEMO/webhooks/{}", id_of(&create.body));
    let mut replies = vec![create];
    replies.push(api.admin("GET", &path, None).await);
    replies.push(api.admin("GET", "/projects/DEMO/webhooks", None).await);
    replies.push(
        api.admin(
            "PATCH",
            &path,
            Some(json!({"secret": format!("{secret}-2")})),
        )
        .await,
    );
    replies.push(
        api.admin(
            "PATCH",
            &path,
            Some(json!({"secret": format!("{secret}\n")})),
        )
        .await,
    );
    let mut bad = webhook_body("x");
    bad["secret"] = json!(format!("{secret}{}", "x".repeat(300)));
    replies.push(
        api.admin("POST", "/projects/DEMO/webhooks", Some(bad))
            .await,
    );
    for reply in &replies {
        assert!(!reply.text.contains("TOP-SECRET"), "{}", reply.text);
    }
    assert_eq!(replies[1].body["has_secret"], true);
    assert!(replies[1].body.get("secret").is_none());
    assert_eq!(replies[4].status, StatusCode::BAD_REQUEST);
    assert_eq!(replies[5].status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_project_holds_at_most_100_webhooks() {
    let api = Api::start().await;
    let mut last = Value::Null;
    for i in 0..100 {
        last = api
            .create_webhook("FULL", webhook_body(&format!("hook {i}")))
            .await;
    }
    let over = api
        .admin(
            "POST",
            "/projects/FULL/webhooks",
            Some(webhook_body("101st")),
        )
        .await;
    assert_eq!(
        (over.status, over.error_code()),
        (StatusCode::CONFLICT, "webhook_limit_reached")
    );
    let page = api
        .admin("GET", "/projects/FULL/webhooks?limit=100", None)
        .await;
    assert_eq!(page.body["webhooks"].as_array().unwrap().len(), 100);
    // Other projects are not affected, and deleting one makes room again.
    api.create_webhook("ROOMY", webhook_body("fine")).await;
    let deleted = api
        .admin(
            "DELETE",
            &format!("/projects/FULL/webhooks/{}", id_of(&last)),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    api.create_webhook("FULL", webhook_body("room again")).await;
}

#[tokio::test]
async fn oversized_non_json_and_wrong_method_requests() {
    let api = Api::start().await;
    let mut huge = webhook_body("big");
    huge["title"] = json!("x".repeat(300 * 1024));
    let too_big = api
        .admin("POST", "/projects/DEMO/webhooks", Some(huge))
        .await;
    assert_eq!(
        (too_big.status, too_big.error_code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = Request::post("/projects/DEMO/webhooks")
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let reply = api
            .send(
                request
                    .body(Body::from(webhook_body("x").to_string()))
                    .unwrap(),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(reply.error_code(), "unsupported_media_type");
    }

    let wrong = api.admin("PUT", "/projects/DEMO/webhooks", None).await;
    assert_eq!(
        (wrong.status, wrong.error_code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let allow = wrong.header("allow").unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let wrong_item = api.admin("POST", "/projects/DEMO/webhooks/abc", None).await;
    assert_eq!(wrong_item.status, StatusCode::METHOD_NOT_ALLOWED);
    let allow = wrong_item.header("allow").unwrap();
    assert!(
        allow.contains("PATCH") && allow.contains("DELETE"),
        "{allow}"
    );

    let unknown = api.admin("GET", "/nope", None).await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let bad_utf8 = api.admin("GET", "/projects/%FF/webhooks", None).await;
    assert_eq!(bad_utf8.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_utf8.error_code(), "invalid_request");
}

#[tokio::test]
async fn concurrent_updates_of_different_fields_both_hold() {
    let api = Api::start().await;
    let hook = api.create_webhook("DEMO", webhook_body("before")).await;
    let path = format!("/projects/DEMO/webhooks/{}", id_of(&hook));
    for round in 0..5 {
        let title = format!("title {round}");
        let endpoint = format!("https://hooks.example.com/{round}");
        let (a, b, c) = tokio::join!(
            api.admin("PATCH", &path, Some(json!({"title": title}))),
            api.admin("PATCH", &path, Some(json!({"endpoint": endpoint}))),
            api.admin(
                "PATCH",
                &path,
                Some(json!({"notify_emails": [format!("r{round}@example.com")]}))
            ),
        );
        assert!(
            [a.status, b.status, c.status]
                .iter()
                .all(|s| *s == StatusCode::OK)
        );
        let now = api.admin("GET", &path, None).await.body;
        assert_eq!(now["title"], json!(title));
        assert_eq!(now["endpoint"], json!(endpoint));
        assert_eq!(
            now["notify_emails"],
            json!([format!("r{round}@example.com")])
        );
    }
}

#[tokio::test]
async fn event_types_lists_the_whole_catalog() {
    let api = Api::start().await;
    let reply = api.admin("GET", "/event-types", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let types = reply.body["event_types"].as_array().unwrap();
    assert_eq!(types.len(), 43);
    assert_eq!(
        types[24],
        json!({"name": "run.completed", "entity": "run", "entity_label": "Test runs", "label": "Test run completed"})
    );
    for t in types {
        let name = t["name"].as_str().unwrap();
        assert!(
            name.starts_with(&format!("{}.", t["entity"].as_str().unwrap())),
            "{name}"
        );
    }
}

#[tokio::test]
async fn inputs_that_could_never_be_delivered_are_refused_with_the_field() {
    let api = Api::start().await;
    for (field, value, expected_field) in [
        ("endpoint", json!("https://localhost./hook"), "endpoint"),
        (
            "endpoint",
            json!("https://LOCALHOST.localdomain/hook"),
            "endpoint",
        ),
        ("secret", json!(" s3cret"), "secret"),
        ("secret", json!("s3cret "), "secret"),
        (
            "notify_emails",
            json!(["josé@example.com"]),
            "notify_emails[0]",
        ),
    ] {
        let mut body = webhook_body("never");
        body[field] = value.clone();
        let reply = api
            .admin("POST", "/projects/NEVER/webhooks", Some(body))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{field} {value}: {}",
            reply.text
        );
        assert_eq!(reply.error_field(), Some(expected_field), "{}", reply.text);
    }
    let mut body = webhook_body("idn");
    body["notify_emails"] = json!(["jose@exämple.com"]);
    let created = api.create_webhook("NEVER", body).await;
    assert_eq!(created["notify_emails"], json!(["jose@xn--exmple-cua.com"]));
    let path = format!("/projects/NEVER/webhooks/{}", id_of(&created));
    let reply = api
        .admin("PATCH", &path, Some(json!({"secret": "padded "})))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text.contains("could never match"), "{}", reply.text);
}

#[tokio::test]
async fn me_names_the_tokens_reach() {
    let api = Api::start().await;
    let admin = api.admin("GET", "/me", None).await;
    assert_eq!(admin.status, StatusCode::OK);
    assert_eq!(admin.body, json!({"role": "admin"}));
    let token = api.project_token("MINE").await;
    let mine = api.call("GET", "/me", Some(&token), None).await;
    assert_eq!(mine.body, json!({"role": "project", "project": "MINE"}));
    assert_eq!(
        api.call("GET", "/me", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_settings_page_is_served_without_a_token_under_a_strict_policy() {
    use axum::body::Body;
    use axum::http::Request;
    let api = Api::start().await;
    let get = |path: &str, etag: Option<&str>| {
        let mut request = Request::get(path);
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        api.send(request.body(Body::empty()).unwrap())
    };
    for (path, kind, needle) in [
        ("/ui/", "text/html", "<title>Webhooks settings</title>"),
        ("/ui/app.js", "text/javascript", "textContent"),
        ("/ui/app.css", "text/css", "--accent"),
    ] {
        let reply = get(path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(
            reply.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        assert!(reply.text.contains(needle), "{path}");
        let csp = reply.header("content-security-policy").unwrap();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        // Cached by ETag: the same version answers 304 without a body.
        let etag = reply.header("etag").unwrap().to_owned();
        let again = get(path, Some(&etag)).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.text.is_empty());
        let stale = get(path, Some("\"0000000000000000\"")).await;
        assert_eq!(stale.status, StatusCode::OK);
    }
    // `/ui` sends the browser to `/ui/`, where the page's relative assets
    // resolve; any query is dropped.
    for path in ["/ui", "/ui?token=t&project=P"] {
        let reply = get(path, None).await;
        assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT, "{path}");
        assert_eq!(reply.header("location"), Some("ui/"), "{path}");
    }
    // The API around it still wants a token.
    let reply = api.call("GET", "/projects/DEMO/webhooks", None, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get("/ui/missing.js", None).await.status,
        StatusCode::NOT_FOUND
    );
}
