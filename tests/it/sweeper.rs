//! The sweeper against the emulator, SES included: what it disables, what it
//! mails (read back from the emulator), and that races and failures still
//! give one disable and one e-mail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use integration_tests::api::webhook_body;
use integration_tests::counting::counting_store;
use integration_tests::mail::{sent_to, unique_address, verified_sender, verify};
use integration_tests::stack::Stack;
use serde_json::{Value, json};
use shared::adapters::{DynamoStore, SesMailer};
use shared::domain::notice::{DEFAULT_WINDOW, cutoff, next_notice_day};
use shared::domain::{NoticeSettings, ProjectCode, Timestamp, Webhook, WebhookId};
use shared::ports::{DeliveryStore, SweepStore, WebhookStore};
use sweeper::{SweepReport, Sweeper};

const DAY: i64 = 24 * 3600;

fn at(now: Timestamp, seconds: i64) -> Timestamp {
    Timestamp::from(now.as_datetime() + chrono::Duration::seconds(seconds))
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

async fn sweeper(
    store: &DynamoStore,
    from: &str,
    default_to: &str,
) -> Sweeper<DynamoStore, SesMailer> {
    integration_tests::sweeper_over(
        store,
        NoticeSettings {
            from: from.to_owned(),
            default_to: default_to.to_owned(),
            api_url: Some("https://api.example.com".into()),
            settings_url: Some("https://app.example.com/{project}/webhooks/{id}".into()),
        },
    )
    .await
}

/// Creates a webhook through the API and records a failure at `since`.
async fn failing(stack: &Stack, project: &str, body: Value, since: Option<Timestamp>) -> Webhook {
    let created = stack.api.create_webhook(project, body).await;
    let project = ProjectCode::parse(project).unwrap();
    let id = WebhookId::parse(created["id"].as_str().unwrap()).unwrap();
    let hook = stack.api.store.get(&project, id).await.unwrap().unwrap();
    if let Some(since) = since {
        stack
            .api
            .store
            .record_failure(&hook, since, "HTTP 503", false)
            .await
            .unwrap();
    }
    stack.api.store.get(&project, id).await.unwrap().unwrap()
}

async fn view(stack: &Stack, hook: &Webhook) -> Value {
    stack.get(hook.project.as_str(), &hook.id.to_string()).await
}

fn body_with(title: &str, emails: &[&str]) -> Value {
    let mut body = webhook_body(title);
    body["notify_emails"] = json!(emails);
    body
}

#[tokio::test]
async fn disables_only_what_failed_for_more_than_two_days_and_mails_each_owner_once() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let (a1, a2, ops) = (
        unique_address("a1"),
        unique_address("a2"),
        unique_address("ops"),
    );
    let due = failing(
        &stack,
        "SWEEP",
        body_with("Due hook", &[&a1, &a2]),
        Some(at(now, -2 * DAY - 60)),
    )
    .await;
    let due_default = failing(
        &stack,
        "SWEEP",
        body_with("No owner", &[]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let recent = failing(
        &stack,
        "SWEEP",
        body_with("Recent", &[&a1]),
        Some(at(now, -2 * DAY + 60)),
    )
    .await;
    let healthy = failing(&stack, "SWEEP", body_with("Healthy", &[&a1]), None).await;

    let sweeper = sweeper(&stack.api.store, &verified_sender().await, &ops).await;
    let report = sweeper.sweep(now, later()).await.unwrap();
    assert_eq!(report.disabled, 2);
    assert_eq!(report.mailed, 2);
    assert_eq!(report.examined, 2, "only the due webhooks are read");

    let disabled = view(&stack, &due).await;
    assert_eq!(disabled["status"], "disabled");
    assert_eq!(disabled["enabled"], false);
    assert_eq!(disabled["disabled_at"], now.to_string());
    let since = due.failing_since.unwrap().to_string();
    assert_eq!(
        disabled["disabled_reason"],
        format!("no successful delivery since {since}; last error: HTTP 503")
    );
    assert_eq!(view(&stack, &due_default).await["status"], "disabled");
    let recent_view = view(&stack, &recent).await;
    assert_eq!(
        (
            recent_view["status"].clone(),
            recent_view["enabled"].clone()
        ),
        (json!("failing"), json!(true))
    );
    assert_eq!(view(&stack, &healthy).await["status"], "active");

    // One e-mail to both of the webhook's addresses; the other to the default.
    let mails = sent_to(&a1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].destinations.to, vec![a1.clone(), a2.clone()]);
    assert_eq!(
        mails[0].subject,
        "Webhook \"Due hook\" in project SWEEP was disabled"
    );
    for needle in [
        "Due hook",
        "SWEEP",
        "https://hooks.example.com/qase",
        since.as_str(),
        "HTTP 503",
        &format!("https://api.example.com/projects/SWEEP/webhooks/{}", due.id),
        &format!("https://app.example.com/SWEEP/webhooks/{}", due.id),
    ] {
        assert!(
            mails[0].body.contains(needle),
            "{needle:?} missing: {}",
            mails[0].body
        );
    }
    let default = sent_to(&ops).await;
    assert_eq!(default.len(), 1);
    assert!(default[0].body.contains("No owner"));
}

#[tokio::test]
async fn sweeps_in_a_row_and_at_once_disable_once_and_mail_once() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let from = verified_sender().await;
    let owner = unique_address("owner");
    let owner2 = unique_address("owner2");
    let first = failing(
        &stack,
        "TWICE",
        body_with("In a row", &[&owner]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let sweeper = sweeper(&stack.api.store, &from, &owner).await;
    let one = sweeper.sweep(now, later()).await.unwrap();
    let two = sweeper.sweep(at(now, 60), later()).await.unwrap();
    assert_eq!((one.disabled, one.mailed), (1, 1));
    assert_eq!(two, SweepReport::default(), "nothing left to do");
    assert_eq!(sent_to(&owner).await.len(), 1);
    assert_eq!(view(&stack, &first).await["disabled_at"], now.to_string());

    let second = failing(
        &stack,
        "ONCE",
        body_with("At once", &[&owner2]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let (a, b) = tokio::join!(sweeper.sweep(now, later()), sweeper.sweep(now, later()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.disabled + b.disabled, 1, "{a:?} {b:?}");
    assert_eq!(a.mailed + b.mailed, 1, "{a:?} {b:?}");
    assert_eq!(sent_to(&owner2).await.len(), 1);
    assert_eq!(view(&stack, &second).await["status"], "disabled");
}

#[tokio::test]
async fn a_rejected_e_mail_stays_pending_and_the_next_sweep_sends_it_once() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let from = format!("unverified-{}@example.com", uuid::Uuid::new_v4());
    let owner = unique_address("owner");
    let hook = failing(
        &stack,
        "SES",
        body_with("Rejected", &[&owner]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    // One e-mail a day for the project: the failed one must not use it up.
    let sweeper = sweeper(&stack.api.store, &from, &owner)
        .await
        .with_daily_limit(1);

    let first = sweeper.sweep(now, later()).await.unwrap();
    assert_eq!(
        (first.disabled, first.mailed, first.mail_failures),
        (1, 0, 1)
    );
    let err = first.clone().into_result().unwrap_err();
    assert_eq!(err.0, 1, "the invocation fails, so the error alarm sees it");
    assert_eq!(view(&stack, &hook).await["status"], "disabled");
    assert!(sent_to(&owner).await.is_empty());
    let pending = stack.api.store.pending_notices().await.unwrap();
    assert_eq!(
        pending.iter().filter(|h| h.id == hook.id).count(),
        1,
        "the notice is pending, not lost"
    );

    verify(&from).await;
    let second = sweeper.sweep(at(now, 1), later()).await.unwrap();
    assert_eq!(
        (
            second.disabled,
            second.mailed,
            second.mail_failures,
            second.mail_deferred
        ),
        (0, 1, 0, 0),
        "the same day, the count the failed e-mail took was given back"
    );
    assert!(second.into_result().is_ok());
    let third = sweeper.sweep(at(now, 1800), later()).await.unwrap();
    assert_eq!(third.mailed, 0);
    assert_eq!(sent_to(&owner).await.len(), 1);
    assert!(
        stack
            .api
            .store
            .pending_notices()
            .await
            .unwrap()
            .iter()
            .all(|h| h.id != hook.id)
    );
}

#[tokio::test]
async fn a_success_between_the_query_and_the_update_keeps_the_webhook_enabled() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let hook = failing(
        &stack,
        "RACE",
        body_with("Raced", &[]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let store = &stack.api.store;
    let due = store.due(cutoff(now, DEFAULT_WINDOW)).await.unwrap();
    let seen = due.items.into_iter().find(|h| h.id == hook.id).unwrap();
    store
        .record_recovery(&seen, false, Timestamp::now())
        .await
        .unwrap(); // the sender's success lands
    assert!(store.disable(&seen, now, "late").await.unwrap().is_none());
    let after = view(&stack, &hook).await;
    assert_eq!(
        (after["status"].clone(), after["enabled"].clone()),
        (json!("active"), json!(true))
    );

    // A re-enable that races the sweep wins too.
    let hook = failing(
        &stack,
        "RACE",
        body_with("Re-enabled", &[]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let seen = store
        .due(cutoff(now, DEFAULT_WINDOW))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|h| h.id == hook.id)
        .unwrap();
    let path = format!("/projects/RACE/webhooks/{}", hook.id);
    stack
        .api
        .admin("PATCH", &path, Some(json!({"enabled": false})))
        .await;
    stack
        .api
        .admin("PATCH", &path, Some(json!({"enabled": true})))
        .await;
    assert!(store.disable(&seen, now, "late").await.unwrap().is_none());
    assert_eq!(view(&stack, &hook).await["status"], "active");
}

#[tokio::test]
async fn a_re_enabled_webhook_gets_two_more_days() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let owner = unique_address("owner");
    let hook = failing(
        &stack,
        "AGAIN",
        body_with("Again", &[&owner]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let sweeper = sweeper(&stack.api.store, &verified_sender().await, &owner).await;
    assert_eq!(sweeper.sweep(now, later()).await.unwrap().disabled, 1);

    let path = format!("/projects/AGAIN/webhooks/{}", hook.id);
    let on = stack
        .api
        .admin("PATCH", &path, Some(json!({"enabled": true})))
        .await;
    assert_eq!(on.status, StatusCode::OK);
    for field in [
        "failing_since",
        "last_failure_at",
        "last_failure_reason",
        "disabled_at",
        "disabled_reason",
    ] {
        assert_eq!(on.body[field], Value::Null, "{field}");
    }
    assert_eq!(
        sweeper.sweep(at(now, 60), later()).await.unwrap().disabled,
        0
    );

    // It fails again: due only two days after this new failure.
    let hook = stack
        .api
        .store
        .get(&hook.project, hook.id)
        .await
        .unwrap()
        .unwrap();
    stack
        .api
        .store
        .record_failure(&hook, at(now, 120), "HTTP 500", false)
        .await
        .unwrap();
    assert_eq!(
        sweeper
            .sweep(at(now, 2 * DAY + 60), later())
            .await
            .unwrap()
            .disabled,
        0
    );
    assert_eq!(view(&stack, &hook).await["status"], "failing");
    let late = sweeper
        .sweep(at(now, 2 * DAY + 180), later())
        .await
        .unwrap();
    assert_eq!((late.disabled, late.mailed), (1, 1));
    assert_eq!(sent_to(&owner).await.len(), 2, "one e-mail per disable");
}

#[tokio::test]
async fn html_special_characters_arrive_escaped() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let owner = unique_address("owner");
    let mut body = body_with("<b>Bold</b> & \"quoted\"", &[&owner]);
    body["endpoint"] = json!("https://hooks.example.com/<x>?a=1&b=2");
    let created = failing(&stack, "HTML", body, None).await;
    stack
        .api
        .store
        .record_failure(
            &created,
            at(now, -3 * DAY),
            "HTTP 500 <script>alert(1)</script>",
            false,
        )
        .await
        .unwrap();
    let sweeper = sweeper(&stack.api.store, &verified_sender().await, &owner).await;
    assert_eq!(sweeper.sweep(now, later()).await.unwrap().mailed, 1);
    let mail = &sent_to(&owner).await[0];
    assert!(
        mail.body
            .contains("&lt;b&gt;Bold&lt;/b&gt; &amp; &quot;quoted&quot;"),
        "{}",
        mail.body
    );
    assert!(
        mail.body
            .contains("https://hooks.example.com/%3Cx%3E?a=1&amp;b=2"),
        "{}",
        mail.body
    );
    assert!(
        mail.body
            .contains("HTTP 500 &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        mail.body
    );
    assert!(!mail.body.contains("<script>") && !mail.body.contains("<b>Bold"));
}

#[tokio::test]
async fn out_of_time_takes_no_new_work_and_the_next_run_continues() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let owner = unique_address("owner");
    let hook = failing(
        &stack,
        "TIME",
        body_with("Later", &[&owner]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let sweeper = sweeper(&stack.api.store, &verified_sender().await, &owner).await;
    let rushed = sweeper.sweep(now, Instant::now()).await.unwrap();
    assert!(rushed.out_of_time);
    assert_eq!((rushed.disabled, rushed.mailed), (0, 0));
    assert_eq!(view(&stack, &hook).await["status"], "failing");
    let next = sweeper.sweep(now, later()).await.unwrap();
    assert_eq!((next.disabled, next.mailed), (1, 1));
}

#[tokio::test]
async fn with_disable_on_gone_a_410_disables_at_once_and_the_owner_gets_one_e_mail() {
    let stack = Stack::start().await;
    let rx = integration_tests::receiver::Receiver::start().await;
    let owner = unique_address("gone");
    let mut body = body_with("Gone hook", &[&owner]);
    body["endpoint"] = json!(rx.url("/gone?status=410"));
    body["events"] = json!(["run.completed"]);
    let hook = failing(&stack, "GONE", body.clone(), None).await;
    body["endpoint"] = json!(rx.url("/gone-kept?status=410"));
    let kept = failing(&stack, "GONE", body, None).await;
    let http =
        shared::adapters::HttpPoster::new(local_stack::loopback_policy(), Duration::from_secs(2))
            .unwrap();
    let rules = shared::domain::FailureRules {
        disable_on_timeout: false,
        disable_on_gone: true,
    };
    let gone_sender = sender::Sender::new(stack.api.store.clone(), http, 10).with_rules(rules);
    // Only the first webhook's delivery goes through the sender with the
    // option on; the second one's through the default sender.
    let store = &stack.api.store;
    store
        .update(
            &kept.project,
            kept.id,
            &shared::domain::WebhookChanges {
                events: Some(
                    [shared::domain::EventName::CaseCreated]
                        .into_iter()
                        .collect(),
                ),
                ..Default::default()
            },
            Timestamp::now(),
        )
        .await
        .unwrap();
    stack.publish("GONE", "run.completed", json!({})).await;
    sender::poller::poll_once(&gone_sender, &stack.sqs, &stack.api.queue_url, 0)
        .await
        .unwrap();
    stack.publish("GONE", "case.created", json!({})).await;
    stack.deliver_all().await;
    assert_eq!((rx.at("/gone").len(), rx.at("/gone-kept").len()), (1, 1));

    let disabled = view(&stack, &hook).await;
    assert_eq!(
        disabled["status"], "disabled",
        "disabled at once, before any sweep"
    );
    assert_eq!(disabled["disabled_reason"], "endpoint answered 410 Gone");
    assert_eq!(disabled["last_failure_reason"], "HTTP 410");
    let failing_view = view(&stack, &kept).await;
    assert_eq!(
        failing_view["status"], "failing",
        "without the option a 410 is a failure"
    );

    let sweeper = sweeper(&stack.api.store, &verified_sender().await, &owner).await;
    let report = sweeper.sweep(Timestamp::now(), later()).await.unwrap();
    assert_eq!((report.disabled, report.mailed), (0, 1), "{report:?}");
    let mails = sent_to(&owner).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].body.contains("410 Gone"), "{}", mails[0].body);
    let again = sweeper.sweep(Timestamp::now(), later()).await.unwrap();
    assert_eq!(again, SweepReport::default());
    assert_eq!(sent_to(&owner).await.len(), 1);
}

#[tokio::test]
async fn a_410_after_the_sweeper_disabled_the_webhook_changes_nothing_and_mails_once() {
    use shared::ports::DeliveryStore;
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let owner = unique_address("gone-race");
    let hook = failing(
        &stack,
        "GONERACE",
        body_with("Raced", &[&owner]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let sweeper = sweeper(&stack.api.store, &verified_sender().await, &owner).await;
    // The sweeper disables and files the notice (its e-mail not sent yet) ...
    let disabled = stack
        .api
        .store
        .disable(&hook, now, "no successful delivery")
        .await
        .unwrap()
        .unwrap();
    // ... then a sender that read the webhook while enabled gets a 410.
    stack
        .api
        .store
        .disable_gone(&hook, Timestamp::now())
        .await
        .unwrap();
    let view = view(&stack, &hook).await;
    assert_eq!(
        view["disabled_reason"], "no successful delivery",
        "the first disable stands"
    );
    assert_eq!(
        view["disabled_at"],
        disabled.disabled_at.unwrap().to_string()
    );
    let report = sweeper.sweep(Timestamp::now(), later()).await.unwrap();
    assert_eq!(report.mailed, 1);
    assert_eq!(sent_to(&owner).await.len(), 1);
}

#[tokio::test]
async fn with_the_option_on_a_first_timeout_is_disabled_at_the_next_sweep() {
    let stack = Stack::start().await;
    let rx = integration_tests::receiver::Receiver::start().await;
    let owner = unique_address("owner");
    let mut body = body_with("Slow", &[&owner]);
    body["endpoint"] = json!(rx.url("/slow?delay=30"));
    body["events"] = json!(["run.completed"]);
    let hook = failing(&stack, "TIMEOUT", body, None).await;
    let http =
        shared::adapters::HttpPoster::new(local_stack::loopback_policy(), Duration::from_secs(1))
            .unwrap();
    let sender = sender::Sender::new(stack.api.store.clone(), http, 10).with_rules(
        shared::domain::FailureRules {
            disable_on_timeout: true,
            disable_on_gone: false,
        },
    );
    stack.publish("TIMEOUT", "run.completed", json!({})).await;
    let poll = sender::poller::poll_once(&sender, &stack.sqs, &stack.api.queue_url, 0)
        .await
        .unwrap();
    assert_eq!(poll.received, 1);
    assert_eq!(
        view(&stack, &hook).await["last_failure_reason"],
        "timeout after 1s"
    );

    let sweeper = sweeper(&stack.api.store, &verified_sender().await, &owner).await;
    let report = sweeper.sweep(Timestamp::now(), later()).await.unwrap();
    assert_eq!((report.disabled, report.mailed), (1, 1));
    assert_eq!(view(&stack, &hook).await["status"], "disabled");
}

#[tokio::test]
async fn a_sweep_over_10000_webhooks_reads_only_the_5_due() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let store = &stack.api.store;
    let template = failing(&stack, "BULK", webhook_body("bulk"), None).await;
    // 10,000 webhooks written straight to the table.
    let mut hooks = Vec::new();
    for i in 0..10_000 {
        let mut hook = template.clone();
        hook.id = WebhookId::generate();
        hook.project = ProjectCode::parse(&format!("BULK{}", i % 100)).unwrap();
        hooks.push(hook);
    }
    integration_tests::bulk_insert(store, &hooks).await;
    for hook in &hooks[..5] {
        store
            .record_failure(hook, at(now, -3 * DAY), "HTTP 503", false)
            .await
            .unwrap();
    }
    for hook in &hooks[5..10] {
        store
            .record_failure(hook, at(now, -DAY), "HTTP 503", false)
            .await
            .unwrap();
    }
    let (counted, calls) = counting_store(store.table()).await;
    let owner = unique_address("owner");
    let sweeper = sweeper(&counted, &verified_sender().await, &owner).await;
    let report = sweeper.sweep(now, later()).await.unwrap();
    assert_eq!(
        report.examined, 5,
        "the index Query read only the 5 due items"
    );
    assert_eq!((report.disabled, report.mailed), (5, 5));
    assert_eq!(calls.get("Scan"), 0);
    assert_eq!(
        calls.get("Query"),
        3,
        "FAILING, DUE and NOTICE partitions: {:?}",
        calls.all()
    );
}

#[tokio::test]
async fn a_manual_disable_keeps_the_pending_e_mail() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let from = format!("unverified-{}@example.com", uuid::Uuid::new_v4());
    let owner = unique_address("owner");
    let hook = failing(
        &stack,
        "OWED",
        body_with("Owed", &[&owner]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let sweeper = sweeper(&stack.api.store, &from, &owner).await;
    assert_eq!(sweeper.sweep(now, later()).await.unwrap().mail_failures, 1);

    // The owner (or a UI) switches it off again before the e-mail went out.
    let path = format!("/projects/OWED/webhooks/{}", hook.id);
    let off = stack
        .api
        .admin("PATCH", &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(off.status, StatusCode::OK);
    assert!(
        stack
            .api
            .store
            .pending_notices()
            .await
            .unwrap()
            .iter()
            .any(|h| h.id == hook.id)
    );

    verify(&from).await;
    assert_eq!(
        sweeper.sweep(at(now, 900), later()).await.unwrap().mailed,
        1
    );
    assert_eq!(sent_to(&owner).await.len(), 1);
}

/// A scheduled event as EventBridge sends it, with `time` set.
fn scheduled_at(time: Timestamp) -> aws_lambda_events::event::eventbridge::EventBridgeEvent<Value> {
    serde_json::from_value(json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.to_string(),
        "region": "us-east-1",
        "resources": [],
        "detail": {}
    }))
    .unwrap()
}

#[tokio::test]
async fn a_scheduled_event_from_the_future_disables_nothing_early() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let owner = unique_address("owner");
    let hook = failing(
        &stack,
        "FUTURE",
        body_with("One day", &[&owner]),
        Some(at(now, -DAY)),
    )
    .await;
    let sweeper = sweeper(&stack.api.store, &verified_sender().await, &owner).await;
    let report = sweeper
        .handle(&scheduled_at(at(now, 5 * DAY)), later())
        .await
        .unwrap();
    assert_eq!(report.disabled, 0, "{report:?}");
    assert_eq!(view(&stack, &hook).await["status"], "failing");
    assert!(sent_to(&owner).await.is_empty());
}

#[tokio::test]
async fn a_late_or_replayed_event_disables_as_of_the_clock() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let owner = unique_address("owner");
    let hook = failing(
        &stack,
        "LATE",
        body_with("Three days", &[&owner]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let sweeper = sweeper(&stack.api.store, &verified_sender().await, &owner).await;
    let report = sweeper
        .handle(&scheduled_at(at(now, -10 * DAY)), later())
        .await
        .unwrap();
    assert_eq!((report.disabled, report.mailed), (1, 1), "{report:?}");
    let disabled_at =
        Timestamp::parse(view(&stack, &hook).await["disabled_at"].as_str().unwrap()).unwrap();
    assert!(
        disabled_at >= now,
        "disabled as of the clock, got {disabled_at}"
    );
    assert_eq!(sent_to(&owner).await.len(), 1);
}

/// A failing webhook whose stored `notify_emails` the mail service refuses
/// (as one stored before addresses were checked could be).
async fn failing_with_recipients(stack: &Stack, project: &str, emails: &[&str]) -> Webhook {
    let now = Timestamp::now();
    let hook = failing(
        stack,
        project,
        webhook_body("Refused"),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let changes = shared::domain::WebhookChanges {
        notify_emails: Some(emails.iter().map(|e| e.to_string()).collect()),
        ..Default::default()
    };
    stack
        .api
        .store
        .update(&hook.project, hook.id, &changes, now)
        .await
        .unwrap()
        .webhook
}

#[tokio::test]
async fn refused_recipients_get_the_notice_through_the_default_recipient_once() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let owner = unique_address("ops");
    failing_with_recipients(&stack, "REFUSED", &["not-an-address"]).await;
    let sweeper = sweeper(&stack.api.store, &verified_sender().await, &owner).await;
    let report = sweeper.sweep(now, later()).await.unwrap();
    assert_eq!(
        (
            report.disabled,
            report.mailed,
            report.mail_failures,
            report.mail_refused
        ),
        (1, 1, 0, 0),
        "{report:?}"
    );
    let mails = sent_to(&owner).await;
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].body.contains("default recipient"),
        "{}",
        mails[0].body
    );
    let again = sweeper.sweep(at(now, 60), later()).await.unwrap();
    assert_eq!(again, SweepReport::default(), "the notice is done");
}

#[tokio::test]
async fn a_notice_refused_for_good_is_given_up_not_retried_every_sweep() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let hook = failing_with_recipients(&stack, "GIVEUP", &[]).await;
    // The default recipient itself is refused: nowhere left to send it.
    let sweeper = sweeper(&stack.api.store, &verified_sender().await, "no-domain").await;
    let report = sweeper.sweep(now, later()).await.unwrap();
    assert_eq!(
        (report.disabled, report.mailed, report.mail_refused),
        (1, 0, 1),
        "{report:?}"
    );
    assert_eq!(view(&stack, &hook).await["status"], "disabled");
    let (counted, calls) =
        integration_tests::counting::counting_store(stack.api.store.table()).await;
    let again = integration_tests::sweeper_over(
        &counted,
        NoticeSettings {
            from: verified_sender().await,
            default_to: "no-domain".into(),
            ..NoticeSettings::default()
        },
    )
    .await
    .sweep(at(now, 60), later())
    .await
    .unwrap();
    assert_eq!(again, SweepReport::default(), "nothing pending");
    assert_eq!(calls.get("UpdateItem"), 0, "no claim: the notice is done");
}

#[tokio::test]
async fn a_project_gets_at_most_its_daily_e_mails_the_rest_wait_for_the_next_days() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let from = verified_sender().await;
    let owners: Vec<String> = (0..3).map(|i| unique_address(&format!("cap{i}"))).collect();
    let other = unique_address("other");
    let mut capped = Vec::new();
    for owner in &owners {
        capped.push(
            failing(
                &stack,
                "CAP",
                body_with("Capped", &[owner]),
                Some(at(now, -3 * DAY)),
            )
            .await,
        );
    }
    failing(
        &stack,
        "OTHER",
        body_with("Other", &[&other]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let sweeper = sweeper(&stack.api.store, &from, &other)
        .await
        .with_daily_limit(2);

    let report = sweeper.sweep(now, later()).await.unwrap();
    assert_eq!(
        (report.disabled, report.mailed, report.mail_deferred),
        (4, 3, 1),
        "{report:?}"
    );
    let mut mailed_to = Vec::new();
    for owner in &owners {
        if !sent_to(owner).await.is_empty() {
            mailed_to.push(owner.clone());
        }
    }
    assert_eq!(mailed_to.len(), 2, "two e-mails for CAP");
    assert_eq!(
        sent_to(&other).await.len(),
        1,
        "another project has its own count"
    );
    for hook in &capped {
        assert_eq!(view(&stack, hook).await["status"], "disabled");
    }
    let deferred: Vec<&String> = owners.iter().filter(|o| !mailed_to.contains(o)).collect();
    assert_eq!(deferred.len(), 1);
    assert_eq!(
        stack.api.store.pending_notices().await.unwrap().len(),
        1,
        "the notice over the limit stays pending, not lost"
    );
    // The same day, later sweeps leave it waiting: nothing sent, nothing
    // counted again.
    let again = sweeper.sweep(at(now, 60), later()).await.unwrap();
    assert_eq!(again, SweepReport::default());

    // The next day, CAP's count starts again: the waiting notice goes out
    // with the day's first.
    let tomorrow = at(next_notice_day(now), 60);
    let owner = unique_address("tomorrow");
    failing(
        &stack,
        "CAP",
        body_with("Next day", &[&owner]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let next = sweeper.sweep(tomorrow, later()).await.unwrap();
    assert_eq!(
        (next.disabled, next.mailed, next.mail_deferred),
        (1, 2, 0),
        "{next:?}"
    );
    assert_eq!(sent_to(&owner).await.len(), 1);
    assert_eq!(sent_to(deferred[0]).await.len(), 1, "sent a day late, once");
    assert!(stack.api.store.pending_notices().await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_sweeps_never_count_past_the_daily_limit() {
    let stack = Stack::start().await;
    let store = &stack.api.store;
    let project = ProjectCode::parse("RACE").unwrap();
    let expires = at(Timestamp::now(), DAY);
    let mut tries = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, project) = (store.clone(), project.clone());
        tries.spawn(async move { store.count_notice(&project, "2026-11-29", 3, expires).await });
    }
    let mut taken = 0;
    while let Some(result) = tries.join_next().await {
        taken += usize::from(result.unwrap().unwrap());
    }
    assert_eq!(taken, 3);
    assert!(
        !store
            .count_notice(&project, "2026-11-29", 3, expires)
            .await
            .unwrap()
    );
    assert!(
        store
            .count_notice(&project, "2026-11-30", 3, expires)
            .await
            .unwrap(),
        "another day"
    );
    store.uncount_notice(&project, "2026-11-29").await.unwrap();
    assert!(
        store
            .count_notice(&project, "2026-11-29", 3, expires)
            .await
            .unwrap(),
        "a count given back can be taken again"
    );
}

#[tokio::test]
async fn the_failing_index_never_holds_a_secret() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let mut body = body_with("With secret", &[]);
    body["secret"] = json!("index-must-not-hold-this");
    let hook = failing(&stack, "SECRET", body, Some(at(now, -3 * DAY))).await;
    assert!(hook.secret.is_some(), "the table holds it");
    let store = &stack.api.store;
    let raw = store
        .client()
        .query()
        .table_name(store.table())
        .index_name(shared::adapters::dynamo::schema::FAILING_INDEX)
        .key_condition_expression("failing_pk = :p")
        .expression_attribute_values(
            ":p",
            aws_sdk_dynamodb::types::AttributeValue::S("FAILING".into()),
        )
        .send()
        .await
        .unwrap();
    let items = raw.items.unwrap_or_default();
    assert_eq!(items.len(), 1);
    assert!(!items[0].contains_key("secret"), "{:?}", items[0].keys());
    assert!(items[0].contains_key("title"));
    let due = store.due(cutoff(now, DEFAULT_WINDOW)).await.unwrap();
    assert_eq!(due.items.len(), 1);
    assert_eq!(due.items[0].id, hook.id);
    assert!(due.items[0].secret.is_none());
}

#[tokio::test]
async fn the_sweepers_logs_carry_ids_and_counts_never_addresses_titles_or_secrets() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let title = "Tenant Title Zebra";
    let (owner, ops) = (unique_address("logowner"), unique_address("logops"));
    let mut body = body_with(title, &[&owner]);
    body["secret"] = json!("log-secret-value-42");
    let sent = failing(&stack, "LOGS", body.clone(), Some(at(now, -3 * DAY))).await;
    let capped = failing(&stack, "LOGS", body.clone(), Some(at(now, -3 * DAY))).await;
    let refused = failing_with_recipients(&stack, "LOGS2", &["refused-recipient-zz"]).await;
    let unsent = failing(&stack, "LOGS3", body, Some(at(now, -3 * DAY))).await;

    let sweeper = sweeper(&stack.api.store, &verified_sender().await, &ops)
        .await
        .with_daily_limit(1);
    let unverified = format!("unverified-{}@example.com", uuid::Uuid::new_v4());
    let failing_mail = integration_tests::sweeper_over(
        &stack.api.store,
        NoticeSettings {
            from: unverified.clone(),
            default_to: ops.clone(),
            ..NoticeSettings::default()
        },
    )
    .await;
    let ((unverified_run, verified_run), logs) = integration_tests::logged(async {
        let unverified_run = failing_mail.sweep(now, later()).await.unwrap();
        let verified_run = sweeper.sweep(at(now, 600), later()).await.unwrap();
        (unverified_run, verified_run)
    })
    .await;
    // The first sweep (unverified sender) disabled all four and mailed none;
    // the second mailed LOGS once (the other notice was over the limit),
    // fell back to the default recipient for LOGS2, and mailed LOGS3.
    assert_eq!(
        (unverified_run.disabled, unverified_run.mail_failures),
        (4, 4),
        "{unverified_run:?}"
    );
    assert_eq!(
        (verified_run.mailed, verified_run.mail_deferred),
        (3, 1),
        "{verified_run:?}"
    );
    for hook in [&sent, &capped, &refused, &unsent] {
        assert!(
            logs.contains(&hook.id.to_string()),
            "{} not logged",
            hook.id
        );
    }
    assert!(logs.contains("recipients"), "{logs}");
    // Each sweep published its deferred notices as a metric.
    let deferred: Vec<u64> = integration_tests::metric_values(&logs, "NoticesDeferred");
    assert_eq!(deferred, [0, 1], "{logs}");
    for private in [
        owner.as_str(),
        ops.as_str(),
        unverified.as_str(),
        "refused-recipient-zz",
        title,
        "log-secret-value-42",
    ] {
        assert!(
            !logs.contains(private),
            "{private:?} is in the logs:\n{logs}"
        );
    }
}

/// The emulator's SES, but the first send waits for `during` to run first:
/// a person and a sender act while a sweep's e-mail is on its way.
struct MailingWhile<F> {
    ses: SesMailer,
    during: tokio::sync::Mutex<Option<F>>,
}

impl<F, Fut> shared::ports::Mailer for MailingWhile<F>
where
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send,
{
    async fn send(&self, mail: &shared::domain::Mail) -> Result<(), shared::ports::MailError> {
        let during = self.during.lock().await.take();
        if let Some(during) = during {
            during().await;
        }
        self.ses.send(mail).await
    }
}

#[tokio::test]
async fn a_sweep_marks_sent_only_the_notice_it_claimed_not_one_filed_while_it_mailed() {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let from = verified_sender().await;
    let owner = unique_address("refiled");
    let hook = failing(
        &stack,
        "REFILE",
        body_with("Refiled", &[&owner]),
        Some(at(now, -3 * DAY)),
    )
    .await;
    let path = format!("/projects/REFILE/webhooks/{}", hook.id);
    // While the sweep's e-mail for the first disable is on its way, the
    // owner re-enables the webhook and its endpoint answers 410 Gone
    // (DisableOnGone): a second notice is filed.
    let during = || async {
        let reply = stack
            .api
            .admin("PATCH", &path, Some(json!({"enabled": true})))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let enabled = stack
            .api
            .store
            .get(&hook.project, hook.id)
            .await
            .unwrap()
            .unwrap();
        stack
            .api
            .store
            .disable_gone(&enabled, Timestamp::now())
            .await
            .unwrap();
    };
    let mailer = MailingWhile {
        ses: SesMailer::from_sdk(&integration_tests::sdk_config().await),
        during: tokio::sync::Mutex::new(Some(during)),
    };
    let notice = NoticeSettings {
        from: from.clone(),
        default_to: unique_address("ops"),
        ..NoticeSettings::default()
    };
    let first = Sweeper::new(
        stack.api.store.clone(),
        mailer,
        DEFAULT_WINDOW,
        notice.clone(),
    )
    .sweep(now, later())
    .await
    .unwrap();
    assert_eq!(
        (first.disabled, first.mailed, first.claims_lost),
        (1, 1, 1),
        "{first:?}"
    );
    assert_eq!(sent_to(&owner).await.len(), 1, "the first notice's e-mail");
    let pending = stack.api.store.pending_notices().await.unwrap();
    assert_eq!(
        pending.iter().filter(|h| h.id == hook.id).count(),
        1,
        "the second notice is still owed"
    );
    let second = sweeper(&stack.api.store, &from, &notice.default_to)
        .await
        .sweep(at(now, 60), later())
        .await
        .unwrap();
    assert_eq!(second.mailed, 1, "{second:?}");
    let mails = sent_to(&owner).await;
    assert_eq!(mails.len(), 2, "one e-mail per disable");
    assert!(mails[1].body.contains("410"), "{}", mails[1].body);
}
