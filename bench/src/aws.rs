//! AWS requests per unit of work, counted on real SDK clients against the
//! emulator, and the end-to-end run on the local stack.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use integration_tests::counting::{CallCounter, counting_store};
use integration_tests::stack::{Counting, Stack};
use local_stack::loopback_policy;
use sender::Sender;
use sender::poller::poll_once;
use serde_json::{Value, json};
use shared::adapters::HttpPoster;
use shared::domain::notice::cutoff;
use shared::domain::{
    DeliveryLog, NoticeSettings, ProjectCode, PublishShare, Timestamp, WebhookId,
};
use shared::ports::{DeliveryStore, WebhookStore};

use crate::receiver::Receiver;
use crate::stats::{Figure, quantile};

/// Calls per operation name, summed over DynamoDB and SQS, divided by `per`.
fn per(counters: &[&CallCounter], per: f64) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for counter in counters {
        for (op, n) in counter.all() {
            *out.entry(op).or_insert(0.0) += n as f64 / per;
        }
    }
    out
}

/// AWS calls per delivery for a publish to 10 webhooks and its SQS batch,
/// with the delivery history kept as `log` says, and with the operational
/// events on a bus when `events` (its calls counted too).
pub async fn per_delivery(failing: bool, log: DeliveryLog, events: bool) -> BTreeMap<String, f64> {
    let stack = Stack::start().await;
    let rx = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    let path = if failing { "/fail" } else { "/ok" };
    stack
        .webhooks("COUNT", 10, |i| rx.url(&format!("{path}/{i}")))
        .await;
    let Counting {
        api,
        store,
        queue,
        dynamo,
        sqs,
    } = stack.counting_with_log(log).await;
    let reply = api.publish_run("COUNT").await;
    assert_eq!(reply.body["deliveries"], 10);
    let bus = match events {
        true => Some(integration_tests::bus::Bus::fresh().await),
        false => None,
    };
    let (bus_events, eventbridge) = match &bus {
        Some(bus) => counting_bus(&bus.name).await,
        None => (shared::adapters::EventBus::off(), CallCounter::default()),
    };
    let sender = Sender::new(
        store,
        HttpPoster::new(loopback_policy(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}")),
        10,
    )
    .with_history(log)
    .with_events(bus_events);
    let mut received = 0;
    while received < 10 {
        received += poll_once(&sender, queue.client(), &stack.api.queue_url, 1)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .received;
    }
    per(&[&dynamo, &sqs, &eventbridge], 10.0)
}

/// AWS calls of one publish to `subscribers` webhooks.
pub async fn per_publish(subscribers: usize, share: PublishShare) -> BTreeMap<String, f64> {
    let stack = Stack::start().await;
    stack
        .webhooks("FANOUT", subscribers, |_| {
            "http://127.0.0.1:9/unused".into()
        })
        .await;
    let Counting {
        api,
        store,
        queue,
        dynamo,
        sqs,
    } = stack.counting().await;
    // The same router, with each project's share of the rate as `share`.
    let state = config_api::AppState::new(
        store,
        queue,
        config_api::AdminToken::new(&shared::domain::ApiToken::presented(
            integration_tests::api::ADMIN,
        )),
        local_stack::local_rules(),
        config_api::DEFAULT_SIGNING_OVERLAP,
        DeliveryLog::default(),
    )
    .with_publish_share(share);
    let api = integration_tests::api::Api {
        router: config_api::router(state),
        ..api
    };
    let reply = api.publish_run("FANOUT").await;
    assert_eq!(reply.body["deliveries"], subscribers);
    per(&[&dynamo, &sqs], 1.0)
}

/// AWS calls of a publish to `subscribers` webhooks with an
/// `Idempotency-Key` (the share off), and of its repeat with the same key
/// and body.
pub async fn per_keyed_publish(
    subscribers: usize,
) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let stack = Stack::start().await;
    stack
        .webhooks("KEYED", subscribers, |_| "http://127.0.0.1:9/unused".into())
        .await;
    let Counting {
        api, dynamo, sqs, ..
    } = stack.counting().await;
    let keyed = || {
        axum::http::Request::post("/projects/KEYED/events")
            .header("authorization", format!("Bearer {}", integration_tests::api::ADMIN))
            .header("content-type", "application/json")
            .header("idempotency-key", "bench-key-1")
            .body(axum::body::Body::from(
                json!({"event_name": "run.completed", "payload": {"id": 1}, "timestamp": 1_650_540_194})
                    .to_string(),
            ))
            .unwrap_or_else(|_| unreachable!())
    };
    let first = api.send(keyed()).await;
    assert_eq!(first.body["deliveries"], subscribers);
    let publish = per(&[&dynamo, &sqs], 1.0);
    dynamo.reset();
    sqs.reset();
    let again = api.send(keyed()).await;
    assert_eq!(again.body, first.body);
    (publish, per(&[&dynamo, &sqs], 1.0))
}

/// One sweep over `total` webhooks of which 5 are due, with the delivery
/// history on: items read and calls.
pub async fn per_sweep(total: usize) -> (usize, BTreeMap<String, f64>) {
    let stack = Stack::start().await;
    let now = Timestamp::now();
    let created = stack
        .api
        .create_webhook("SWEEP", integration_tests::api::webhook_body("bulk"))
        .await;
    let id = WebhookId::parse(created["id"].as_str().unwrap_or_default())
        .unwrap_or_else(|| unreachable!());
    let template = stack
        .api
        .store
        .get(
            &ProjectCode::parse("SWEEP").unwrap_or_else(|_| unreachable!()),
            id,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| unreachable!());
    let hooks: Vec<_> = (0..total)
        .map(|i| {
            let mut hook = template.clone();
            hook.id = WebhookId::generate();
            hook.project =
                ProjectCode::parse(&format!("S{}", i % 100)).unwrap_or_else(|_| unreachable!());
            hook
        })
        .collect();
    integration_tests::bulk_insert(&stack.api.store, &hooks).await;
    let long_ago = cutoff(now, Duration::from_secs(3 * 24 * 3600));
    for hook in &hooks[..5] {
        stack
            .api
            .store
            .record_failure(hook, long_ago, "HTTP 503", false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (store, dynamo) = counting_store(stack.api.store.table()).await;
    let sweeper = integration_tests::sweeper_over(
        &store,
        NoticeSettings {
            from: integration_tests::mail::verified_sender().await,
            default_to: "ops@example.com".into(),
            ..NoticeSettings::default()
        },
    )
    .await
    // As deployed: each due webhook's history is looked at before it is disabled.
    .with_history(DeliveryLog::default());
    let report = sweeper
        .sweep(now, Instant::now() + Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.disabled, 5);
    let mut calls = per(&[&dynamo], 1.0);
    calls.insert("SendEmail".into(), report.mailed as f64);
    (report.examined, calls)
}

/// Concurrent queue pollers: what the Lambda SQS event source mapping starts with.
const POLLERS: usize = 5;

/// `events` events published through the API to one webhook on the local
/// stack: publish-to-receipt latency and deliveries per second.
pub async fn end_to_end(events: usize) -> (Vec<Figure>, f64) {
    let stack = Arc::new(Stack::start().await);
    let rx = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    stack
        .webhook("E2E", &rx.url("/e2e"), &["run.completed"], None)
        .await;
    let done = Arc::new(AtomicBool::new(false));
    let pollers: Vec<_> = (0..POLLERS)
        .map(|_| {
            let (stack, done) = (Arc::clone(&stack), Arc::clone(&done));
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let _ = poll_once(&stack.sender, &stack.sqs, &stack.api.queue_url, 1).await;
                }
            })
        })
        .collect();
    let started = Instant::now();
    let publish_times: Vec<(usize, Instant, f64)> = stream::iter(0..events)
        .map(|seq| {
            let stack = Arc::clone(&stack);
            async move {
                let at = Instant::now();
                stack
                    .publish("E2E", "run.completed", json!({ "seq": seq }))
                    .await;
                (seq, at, at.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while rx.log.len() < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.store(true, Ordering::Relaxed);
    for poller in pollers {
        let _ = poller.await;
    }
    let mut sent_at = vec![started; events];
    for (seq, at, _) in &publish_times {
        sent_at[*seq] = *at;
    }
    let received = rx.log.take();
    let mut seen = std::collections::HashSet::new();
    let mut latencies = Vec::new();
    let mut last = started;
    for (_, body, at) in &received {
        let envelope: Value = serde_json::from_slice(body).unwrap_or_default();
        let seq = envelope["payload"]["seq"].as_u64().map(|s| s as usize);
        if let Some(seq) = seq.filter(|s| *s < events && seen.insert(*s)) {
            latencies.push(at.duration_since(sent_at[seq]).as_secs_f64() * 1000.0);
            last = last.max(*at);
        }
    }
    let missing = events - seen.len();
    let rate = seen.len() as f64 / last.duration_since(started).as_secs_f64();
    let publish_ms: Vec<f64> = publish_times.iter().map(|(_, _, ms)| *ms).collect();
    (
        vec![
            Figure::once(
                "publish-to-receipt latency p50",
                "ms",
                quantile(&latencies, 0.5),
            ),
            Figure::once(
                "publish-to-receipt latency p99",
                "ms",
                quantile(&latencies, 0.99),
            ),
            Figure::once("end-to-end deliveries", "deliveries/s", rate),
            Figure::once("deliveries missing", "count", missing as f64).with_target("0"),
            Figure::new(
                "publish call through the API (emulated DynamoDB + SQS)",
                "ms",
                &publish_ms,
            ),
        ],
        quantile(&publish_ms, 0.5),
    )
}

/// AWS calls per 1,000 deliveries of a bulk recovery of `n` failed
/// deliveries at 100 a second, everything included: the request's first
/// steps, the later steps in the waiting lane, the sender's receives, slots,
/// POSTs' bookkeeping and progress. And the calls of the steps alone.
pub async fn per_recovery(n: usize) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    use shared::domain::Lane;
    use shared::domain::recover::{Plan, Recovery, Window};
    use shared::ports::RecoveryStore as _;
    use shared::recovery::{Driver, Recoverer};

    let stack = Stack::start().await;
    let rx = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    let id = stack
        .webhook("RECOVER", &rx.url("/back"), &["run.completed"], None)
        .await;
    let since = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    integration_tests::failed_deliveries(&stack.api.store, "RECOVER", &id, n).await;
    let Counting {
        store,
        queue,
        dynamo,
        sqs,
        ..
    } = stack.counting().await;
    let log = DeliveryLog::default();
    let urls = queue.urls().clone();
    let sender = lane_sender(store.clone(), &queue).with_recoveries(Arc::new(Recoverer::new(
        store.clone(),
        queue.clone(),
        log,
    )));
    let now = Timestamp::now();
    let recovery = Recovery {
        id: uuid::Uuid::now_v7(),
        project: ProjectCode::parse("RECOVER").unwrap_or_else(|_| unreachable!()),
        webhook_id: WebhookId::parse(&id).unwrap_or_else(|| unreachable!()),
        plan: Plan {
            window: Window {
                from: since,
                to: now,
            },
            missed: None,
            rate: 100,
        },
        created_at: now,
        finished_at: None,
    };
    Driver::new(&store, &queue, log)
        .start(&recovery, Instant::now() + Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut steps = per(&[&dynamo, &sqs], 1.0);
    // The bench's own empty receives (it polls in a loop; the event source
    // mapping long-polls) are not the recovery's.
    let mut idle: BTreeMap<String, f64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        for lane in [Lane::Slow, Lane::Waiting] {
            let before = per(&[&dynamo, &sqs], 1.0);
            let poll = poll_once(&sender, queue.client(), urls.url(lane), 0)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let after = per(&[&dynamo, &sqs], 1.0);
            let made = after
                .iter()
                .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0.0)));
            // A waiting-lane batch is a step: its calls are the steps'.
            let into = match (lane, poll.received) {
                (_, 0) => &mut idle,
                (Lane::Waiting, _) => &mut steps,
                _ => continue,
            };
            for (op, n) in made {
                *into.entry(op).or_insert(0.0) += n;
            }
        }
        let (_, progress) = stack
            .api
            .store
            .get_recovery(&recovery.project, recovery.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| unreachable!());
        if progress.state() == shared::domain::recover::State::Finished {
            assert_eq!(progress.delivered, n as u64);
            break;
        }
        assert!(Instant::now() < deadline, "the recovery did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let thousands = n as f64 / 1000.0;
    let mut all = per(&[&dynamo, &sqs], 1.0);
    for (op, n) in idle {
        if let Some(count) = all.get_mut(&op) {
            *count -= n;
        }
    }
    all.retain(|_, n| *n > 0.0);
    let per_thousand = |calls: BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        calls
            .into_iter()
            .map(|(op, count)| (op, count / thousands))
            .collect()
    };
    (per_thousand(all), per_thousand(steps))
}

/// AWS calls of `webhooks` webhooks each starting to fail and then
/// recovering (two state changes each) through the sender, with the
/// operational events put on a bus (`on`) or not: per 1,000 state changes,
/// by operation, and how many events the bus's rule delivered.
pub async fn per_state_change(webhooks: usize, on: bool) -> (BTreeMap<String, f64>, usize) {
    use shared::domain::Lane;

    let stack = Stack::start().await;
    let rx = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    let ids = stack
        .webhooks("OPS", webhooks, |i| rx.url(&format!("/fail/{i}")))
        .await;
    let bus = integration_tests::bus::Bus::fresh().await;
    let Counting {
        store,
        queue,
        dynamo,
        sqs,
        ..
    } = stack.counting().await;
    let (events, eventbridge) = counting_bus(&bus.name).await;
    let urls = queue.urls().clone();
    let mut sender = lane_sender(store, &queue);
    if on {
        sender = sender.with_events(events);
    }
    let drain = || async {
        loop {
            let mut received = 0;
            for lane in [Lane::Fast, Lane::Slow] {
                received += poll_once(&sender, queue.client(), urls.url(lane), 0)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .received;
            }
            if received == 0 {
                return;
            }
        }
    };
    // Published with the uncounted API: the sender's calls alone.
    let reply = stack.api.publish_run("OPS").await;
    assert_eq!(reply.body["deliveries"], webhooks);
    drain().await;
    for id in &ids {
        let reply = stack
            .api
            .admin(
                "PATCH",
                &format!("/projects/OPS/webhooks/{id}"),
                Some(json!({"endpoint": rx.url(&format!("/ok/{id}"))})),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    stack.api.publish_run("OPS").await;
    drain().await;
    // The sender's own empty receives (the bench polls until a lane is
    // empty) are left out: a mapping long-polls.
    let mut calls = per(
        &[&dynamo, &sqs, &eventbridge],
        webhooks as f64 * 2.0 / 1000.0,
    );
    calls.remove("ReceiveMessage");
    let delivered = bus.drain().await.len();
    (calls, delivered)
}

/// An event bus over a client whose calls are counted.
async fn counting_bus(name: &str) -> (shared::adapters::EventBus, CallCounter) {
    let counter = CallCounter::default();
    let sdk = integration_tests::sdk_config().await;
    let config = aws_sdk_eventbridge::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    (
        shared::adapters::EventBus::new(aws_sdk_eventbridge::Client::from_conf(config), name),
        counter,
    )
}

/// A sender over `store` and the lanes of `queue`, recording the history,
/// without retries, to loopback with a 5-second deadline.
fn lane_sender(
    store: shared::adapters::DynamoStore,
    queue: &shared::adapters::SqsQueue,
) -> Sender<shared::adapters::DynamoStore, shared::adapters::SqsQueue> {
    let urls = queue.urls();
    Sender::new(
        store,
        HttpPoster::new(loopback_policy(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}")),
        10,
    )
    .with_lanes(
        queue.clone(),
        shared::domain::LaneNames::from_urls(&urls.fast, &urls.slow, &urls.waiting),
        Vec::new(),
    )
    .with_history(DeliveryLog::default())
}
