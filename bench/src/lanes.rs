//! The lanes on the local stack, side by side: healthy deliveries while
//! another project's endpoints never answer and receive half of the traffic,
//! against the same run without them; and the same runs in the fleet model,
//! with the emulator's own call latencies, to check the model against a
//! real run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use integration_tests::stack::Stack;
use local_stack::loopback_policy;
use serde_json::{Value, json};
use shared::domain::{ProjectCode, Timestamp, WebhookId};
use shared::ports::{DeliveryQueue, DeliveryStore, WebhookStore};

use crate::fleet::{self, Design, Endpoint, Esm, Latencies, Scenario};
use crate::receiver::Receiver;
use crate::stats::quantile;

/// Healthy webhooks, each in a project of its own.
const WEBHOOKS: usize = 10;
/// Pollers per lane, as `make dev` runs them.
const POLLERS: usize = 4;

/// What one run on the local stack measured.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// Publish to arrival of each healthy delivery, seconds.
    pub healthy: Vec<f64>,
    /// From the first publish until every delivery to the silent endpoints
    /// was attempted and recorded, seconds (with them).
    pub silent_done: Option<f64>,
    /// The publish calls, seconds.
    pub publish: Vec<f64>,
}

/// `events` publishes to 10 healthy endpoints at `rate` per second, and as
/// many to another project's endpoint between them (half of all traffic):
/// an endpoint that never answers (known as failing) when `with_silent`,
/// otherwise one that answers at once, so both runs carry the same traffic.
/// The sender's deadline is `deadline`.
pub async fn local_run(
    with_silent: bool,
    events: usize,
    rate: f64,
    deadline: Duration,
    history: shared::domain::DeliveryLog,
    wait_for_silent: bool,
) -> LocalRun {
    let mut stack = Stack::with_sender(loopback_policy(), deadline).await;
    let http = shared::adapters::HttpPoster::new(loopback_policy(), deadline)
        .unwrap_or_else(|e| panic!("{e}"));
    stack.sender = std::sync::Arc::new(
        sender::Sender::new(stack.api.store.clone(), http, 10)
            .with_lanes(
                shared::adapters::SqsQueue::from_sdk(
                    &integration_tests::sdk_config().await,
                    stack.api.queue_urls.clone(),
                ),
                stack.api.queue_urls.names(),
                shared::domain::retry::STANDARD_SCHEDULE.to_vec(),
            )
            .with_history(history),
    );
    let rx = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    for i in 0..WEBHOOKS {
        stack
            .webhook(
                &format!("LIVE{i}"),
                &rx.url(&format!("/live/{i}")),
                &["run.completed"],
                None,
            )
            .await;
    }
    let path = if with_silent { "/slow/other" } else { "/other" };
    let other = stack
        .webhook("OTHER", &rx.url(path), &["run.completed"], None)
        .await;
    let other = (
        ProjectCode::parse("OTHER").unwrap_or_else(|e| panic!("OTHER: {e}")),
        WebhookId::parse(&other).unwrap_or_else(|| panic!("{other}")),
    );
    if with_silent {
        let hook = stack
            .api
            .store
            .get(&other.0, other.1)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("stored"));
        // Known as failing, as after its first timeout.
        let reason = format!("timeout after {}s", deadline.as_secs());
        let _ = stack
            .api
            .store
            .record_failure(&hook, Timestamp::now(), &reason, false)
            .await;
    }
    let running = stack.run_lanes(POLLERS);
    let started = Instant::now();
    let mut sent_at = Vec::with_capacity(events);
    let mut publish = Vec::new();
    for seq in 0..events {
        let due = started + Duration::from_secs_f64(seq as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let at = Instant::now();
        sent_at.push(at);
        stack
            .publish(
                &format!("LIVE{}", seq % WEBHOOKS),
                "run.completed",
                json!({ "seq": seq }),
            )
            .await;
        publish.push(at.elapsed().as_secs_f64());
        stack
            .publish("OTHER", "run.completed", json!({ "seq": seq }))
            .await;
    }
    let mut healthy: HashMap<usize, f64> = HashMap::new();
    let give_up = Instant::now() + Duration::from_secs(120);
    while healthy.len() < events && Instant::now() < give_up {
        for (path, body, at) in rx.log.take() {
            if !path.starts_with("/live/") {
                continue;
            }
            let envelope: Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(seq) = envelope["payload"]["seq"].as_u64().map(|s| s as usize)
                && seq < events
            {
                healthy
                    .entry(seq)
                    .or_insert(at.duration_since(sent_at[seq]).as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut silent_done = None;
    if with_silent && wait_for_silent {
        let give_up = Instant::now() + deadline * (events as u32) + Duration::from_secs(60);
        while Instant::now() < give_up {
            let found = stack
                .api
                .store
                .get_many(std::slice::from_ref(&other))
                .await
                .unwrap_or_default();
            let counted = found
                .values()
                .map(|h| h.failure_count as usize)
                .sum::<usize>();
            if counted > events {
                silent_done = Some(started.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(running);
    LocalRun {
        healthy: healthy.into_values().collect(),
        silent_done,
        publish,
    }
}

/// The emulator's own latencies, for the model of the local run: each call
/// timed a few times on the same clients the sender uses, medians.
pub async fn emulator_latencies(publish: &[f64]) -> Latencies {
    let stack = Stack::start().await;
    let rx = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    let ids = stack
        .webhooks("CAL", 10, |i| rx.url(&format!("/cal/{i}")))
        .await;
    let project = ProjectCode::parse("CAL").unwrap_or_else(|e| panic!("CAL: {e}"));
    let keys: Vec<_> = ids
        .iter()
        .filter_map(|id| WebhookId::parse(id))
        .map(|id| (project.clone(), id))
        .collect();
    let queue = shared::adapters::SqsQueue::from_sdk(
        &integration_tests::sdk_config().await,
        stack.api.queue_urls.clone(),
    );
    let (mut read, mut write, mut send, mut pickup) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..10 {
        let at = Instant::now();
        let hooks = stack.api.store.get_many(&keys).await.unwrap_or_default();
        read.push(at.elapsed().as_secs_f64());
        if let Some(hook) = hooks.values().next() {
            let at = Instant::now();
            let _ = stack.api.store.mark_slow(hook, Timestamp::now()).await;
            write.push(at.elapsed().as_secs_f64());
        }
        let at = Instant::now();
        let _ = queue
            .enqueue_one(
                shared::domain::Lane::Slow,
                "CAL",
                "{}".into(),
                Duration::ZERO,
            )
            .await;
        send.push(at.elapsed().as_secs_f64());
        // A poller already waiting, then a message: how soon it has it.
        let sqs = stack.sqs.clone();
        let url = stack.api.queue_urls.fast.clone();
        let waiting = tokio::spawn(async move {
            let out = sqs
                .receive_message()
                .queue_url(url)
                .wait_time_seconds(2)
                .send()
                .await;
            (
                Instant::now(),
                out.map(|o| o.messages.unwrap_or_default().len())
                    .unwrap_or(0),
            )
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = Instant::now();
        let _ = queue
            .enqueue(shared::domain::Lane::Fast, "CAL", vec!["{}".into()])
            .await;
        if let Ok((got, 1)) = waiting.await {
            pickup.push(got.duration_since(sent).as_secs_f64());
        }
    }
    let us = |samples: &[f64]| (quantile(samples, 0.5) * 1e6) as u64;
    Latencies {
        pickup_us: us(&pickup),
        read_us: us(&read),
        write_us: us(&write),
        send_us: us(&send),
        history_us: us(&write),
        publish_us: us(publish),
        healthy_median_us: 500,
        slow_answer_us: 5_000_000,
        failing_answer_us: 1_000,
    }
}

/// The local run, in the model: the same webhooks, rate, deadline and
/// pollers, with the emulator's latencies.
pub fn modelled(
    with_silent: bool,
    events: usize,
    rate: f64,
    deadline: Duration,
    latencies: Latencies,
) -> fleet::Report {
    let mut scenario = Scenario::fleet(Design::Lanes { fair: false }, 0, fleet::Onset::Steady);
    scenario.webhooks = WEBHOOKS + 1;
    scenario.per_project = 1;
    scenario.endpoints = (0..=WEBHOOKS)
        .map(|i| {
            if i < WEBHOOKS || !with_silent {
                Endpoint::Healthy
            } else {
                Endpoint::BlackHole
            }
        })
        .collect();
    scenario.onsets = HashMap::new();
    // Half of the traffic to the other webhook, half spread over the 10.
    scenario.traffic_to = Some(
        (0..WEBHOOKS)
            .chain(std::iter::repeat_n(WEBHOOKS, WEBHOOKS))
            .collect(),
    );
    scenario.events_per_second = 2.0 * rate;
    scenario.seconds =
        (events as f64 / rate) as u64 + (deadline.as_secs() + 5) * (events as u64 / 4 + 1);
    scenario.stop_publishing_after_us = Some((events as f64 / rate * 1e6) as u64);
    scenario.deadline_us = deadline.as_micros() as u64;
    let local = Esm {
        batch: 10,
        concurrency: POLLERS,
        window_us: 0,
    };
    scenario.fast = local;
    scenario.slow = local;
    scenario.waiting = Esm {
        batch: 10,
        concurrency: 1,
        window_us: 0,
    };
    scenario.sender_concurrency = 10;
    scenario.latencies = latencies;
    scenario.sample_every_us = 1_000_000;
    fleet::run(&scenario, None)
}
