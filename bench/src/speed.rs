//! Sender throughput against a bare reqwest loop, and slow-endpoint isolation.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use futures::future::join_all;
use sender::Sender;
use shared::adapters::HttpPoster;
use shared::domain::delivery::{
    DELIVERY_ID_HEADER, EVENT_HEADER, USER_AGENT, WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
};
use shared::domain::{
    DeliveryLog, DeliveryMessage, Event, ProjectCode, PublishInput, SigningSecret, Timestamp,
    Webhook, WebhookId, WebhookInput,
};

use crate::memstore::MemoryStore;
use crate::receiver::Receiver;
use crate::stats::Figure;

pub const BATCH: usize = 10;

fn project() -> ProjectCode {
    ProjectCode::parse("BENCH").unwrap_or_else(|_| unreachable!("a valid code"))
}

pub fn webhook(endpoint: String) -> Webhook {
    let mut hook = WebhookInput {
        title: Some("bench".into()),
        endpoint: Some(endpoint),
        secret: Some("bench-secret".into()),
        events: Some(vec!["run.completed".into()]),
        ..WebhookInput::default()
    }
    .validate(&local_stack::local_rules())
    .unwrap_or_else(|e| panic!("bench webhook: {e}"))
    .into_webhook(WebhookId::generate(), project(), Timestamp::now());
    hook.signing_secret = Some(signing_secret());
    hook
}

fn signing_secret() -> SigningSecret {
    SigningSecret::generate().unwrap_or_else(|e| panic!("{e}"))
}

/// A typical Qase event (`run.completed`, 171 bytes as Qase sends it),
/// used by every run.
pub fn event() -> Event {
    let input: PublishInput = serde_json::from_str(
        r#"{"event_name":"run.completed","timestamp":1650540194,"team_member_id":40,"payload":{"id":2,"cases":14,"passed":0,"failed":0,"blocked":0,"duration":0}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    input
        .validate(project(), Timestamp::now())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One SQS batch of messages to `hooks`, as the event source mapping sends it.
fn batch(event: &Event, hooks: &[Webhook]) -> SqsEvent {
    let envelope = event.envelope().unwrap_or_else(|e| panic!("{e}"));
    let mut sqs = SqsEvent::default();
    for (i, hook) in hooks.iter().enumerate() {
        let mut record = SqsMessage::default();
        record.message_id = Some(format!("m{i}"));
        record.body = DeliveryMessage::new(event, hook.id, envelope.clone())
            .encode()
            .ok();
        sqs.records.push(record);
    }
    sqs
}

/// A sender over an in-memory store of `hooks`, recording the delivery
/// history (as deployed) or not.
fn sender_over(hooks: &[Webhook], deadline: Duration, log: DeliveryLog) -> Sender<MemoryStore> {
    let store = MemoryStore::default();
    for hook in hooks {
        store.insert(hook.clone());
    }
    let http =
        HttpPoster::new(local_stack::loopback_policy(), deadline).unwrap_or_else(|e| panic!("{e}"));
    Sender::new(store, http, BATCH).with_history(log)
}

/// Deliveries per second through `Sender::handle`, batch after batch. The
/// batches arrive owned, as the Lambda runtime hands them over; copying them
/// is not timed.
async fn sender_run(sender: &Sender<MemoryStore>, batches: &[SqsEvent]) -> f64 {
    let count = batches.len();
    let batches = batches.to_vec();
    let started = Instant::now();
    for event in batches {
        let response = sender
            .handle(event, Instant::now() + sender::FUNCTION_TIMEOUT)
            .await;
        assert!(response.batch_item_failures.is_empty());
    }
    (count * BATCH) as f64 / started.elapsed().as_secs_f64()
}

/// How the bare loop signs.
#[derive(Clone, Copy)]
enum Signing<'a> {
    Unsigned,
    /// The Standard Webhooks headers are computed but not sent: the cost of
    /// signing alone.
    ComputeOnly(&'a SigningSecret),
    Signed(&'a SigningSecret),
}

/// Deliveries per second for plain reqwest POSTs: the same payload, headers,
/// receiver and concurrency (waves of 10); signed, each request also carries
/// the Standard Webhooks headers, signed over its body.
async fn bare_run(
    client: &reqwest::Client,
    urls: &[String],
    body: &str,
    waves: usize,
    signing: Signing<'_>,
) -> f64 {
    let started = Instant::now();
    for _ in 0..waves {
        let posts = urls.iter().map(|url| {
            let mut request = client
                .post(url)
                .header("content-type", "application/json")
                .header(DELIVERY_ID_HEADER, uuid::Uuid::now_v7().to_string())
                .header(EVENT_HEADER, "run.completed")
                .header("x-qase-secret", "bench-secret");
            if let Signing::Signed(secret) | Signing::ComputeOnly(secret) = signing {
                let id = uuid::Uuid::now_v7().to_string();
                let at = Timestamp::now().unix_seconds();
                let signature = secret.sign(&id, at, body).unwrap_or_default();
                if matches!(signing, Signing::Signed(_)) {
                    request = request
                        .header(WEBHOOK_ID_HEADER, id)
                        .header(WEBHOOK_TIMESTAMP_HEADER, at.to_string())
                        .header(WEBHOOK_SIGNATURE_HEADER, signature);
                } else {
                    std::hint::black_box((id, at, signature));
                }
            }
            request.body(body.to_owned()).send()
        });
        for response in join_all(posts).await {
            let response = response.unwrap_or_else(|e| panic!("bare POST: {e}"));
            assert!(response.status().is_success());
            let _ = response.bytes().await;
        }
    }
    (waves * BATCH) as f64 / started.elapsed().as_secs_f64()
}

/// Sender vs bare reqwest: `runs` interleaved runs of `waves` x 10 deliveries.
pub async fn throughput(runs: usize, waves: usize) -> (Vec<Figure>, f64) {
    let rx = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    let hooks: Vec<Webhook> = (0..BATCH)
        .map(|i| webhook(rx.url(&format!("/ok/{i}"))))
        .collect();
    let event = event();
    let batches: Vec<SqsEvent> = (0..waves).map(|_| batch(&event, &hooks)).collect();
    let sender = sender_over(&hooks, Duration::from_secs(15), DeliveryLog::default());
    let unrecorded = sender_over(&hooks, Duration::from_secs(15), DeliveryLog::off());
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let urls: Vec<String> = hooks.iter().map(|h| h.endpoint.to_string()).collect();
    let body = event
        .envelope()
        .unwrap_or_else(|e| panic!("{e}"))
        .get()
        .to_owned();

    let secret = signing_secret();
    // Warm both clients' connection pools.
    sender_run(&sender, &batches[..2]).await;
    sender_run(&unrecorded, &batches[..2]).await;
    bare_run(&client, &urls, &body, 2, Signing::Unsigned).await;
    let (mut ours, mut bare, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut signed, mut signed_ratio, mut compute_ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut off, mut history_ratio) = (Vec::new(), Vec::new());
    for run in 0..runs {
        // The five variants in an order that rotates from run to run, so
        // that none always runs first or last.
        let mut rates = [0.0; 5];
        for k in 0..5 {
            let i = (run + k) % 5;
            rates[i] = match i {
                0 => sender_run(&sender, &batches).await,
                1 => sender_run(&unrecorded, &batches).await,
                2 => bare_run(&client, &urls, &body, waves, Signing::Unsigned).await,
                3 => bare_run(&client, &urls, &body, waves, Signing::Signed(&secret)).await,
                _ => bare_run(&client, &urls, &body, waves, Signing::ComputeOnly(&secret)).await,
            };
        }
        let [s, s_off, b, b_signed, b_compute] = rates;
        ours.push(s);
        off.push(s_off);
        history_ratio.push(s / s_off);
        bare.push(b);
        ratio.push(s / b);
        signed.push(b_signed);
        signed_ratio.push(b_signed / b);
        compute_ratio.push(b_compute / b);
    }
    rx.log.take();
    let batch_seconds = BATCH as f64 / crate::stats::quantile(&ours, 0.5);
    (
        vec![
            Figure::new("sender delivery path", "deliveries/s", &ours),
            Figure::new("bare reqwest POST loop", "deliveries/s", &bare),
            Figure::new("sender / bare ratio", "ratio", &ratio).with_target(">= 0.9"),
            Figure::new("sender, delivery history off", "deliveries/s", &off),
            Figure::new(
                "sender with / without the delivery history ratio",
                "ratio",
                &history_ratio,
            ),
            Figure::new(
                "recording one attempt (record, masked headers, serialized)",
                "µs",
                &record_fixture(&hooks[0], &event),
            ),
            Figure::new(
                "bare loop, Standard Webhooks signed",
                "deliveries/s",
                &signed,
            ),
            Figure::new("signed / unsigned bare ratio", "ratio", &signed_ratio)
                .with_target(">= 0.95"),
            Figure::new(
                "signatures computed, not sent / unsigned bare ratio",
                "ratio",
                &compute_ratio,
            )
            .with_target(">= 0.95"),
            Figure::new(
                "signing one delivery of the fixture event",
                "µs",
                &sign_fixture(&body),
            ),
            Figure::new(
                "signing the largest envelope (256 KiB)",
                "µs",
                &sign_largest(),
            ),
        ],
        batch_seconds,
    )
}

/// Microseconds per delivery for the whole signing step of the fixture
/// event (the id and timestamp headers, the HMAC, its base64), averaged over
/// 10,000 signatures, 15 times: the CPU a signed delivery adds.
fn sign_fixture(body: &str) -> Vec<f64> {
    let secret = signing_secret();
    (0..15)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..10_000 {
                let id = uuid::Uuid::now_v7().to_string();
                let at = Timestamp::now().unix_seconds();
                let signature = secret.sign(&id, at, body);
                std::hint::black_box((id, at.to_string(), signature));
            }
            started.elapsed().as_secs_f64() * 1e6 / 10_000.0
        })
        .collect()
}

/// Microseconds per delivery for what the history adds to it: the attempt
/// record, its masked headers, and its serialization (as the in-memory store
/// does), averaged over 10,000 deliveries, 15 times.
fn record_fixture(hook: &Webhook, event: &Event) -> Vec<f64> {
    use shared::domain::delivery::prepare;
    use shared::domain::history::masked_headers;
    use shared::domain::{Attempt, Outcome};
    let signing = hook
        .signing_secret
        .clone()
        .unwrap_or_else(|| unreachable!());
    let envelope = event.envelope().unwrap_or_else(|e| panic!("{e}"));
    let dispatch = prepare(
        hook,
        &signing,
        DeliveryMessage::new(event, hook.id, envelope.clone()),
        Timestamp::now(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let messages: Vec<DeliveryMessage> = (0..10_000)
        .map(|_| DeliveryMessage::new(event, hook.id, envelope.clone()))
        .collect();
    (0..15)
        .map(|_| {
            let started = Instant::now();
            for message in &messages {
                let attempt = Attempt::of(message, Timestamp::now()).sent(
                    masked_headers(&dispatch.headers),
                    &Outcome::Delivered { status: 200 },
                    Duration::from_millis(3),
                    b"recorded\n",
                );
                std::hint::black_box(serde_json::to_vec(&attempt).map(|v| v.len()).ok());
            }
            started.elapsed().as_secs_f64() * 1e6 / 10_000.0
        })
        .collect()
}

/// Microseconds to sign a 256 KiB body (the largest envelope), 50 times.
fn sign_largest() -> Vec<f64> {
    let secret = signing_secret();
    let body = "x".repeat(shared::domain::delivery::MAX_ENVELOPE_BYTES);
    (0..50)
        .map(|i| {
            let started = Instant::now();
            let signature = secret.sign("msg", i, &body);
            assert!(signature.is_some());
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

/// One batch where one endpoint never answers, against a short deadline.
pub async fn isolation(runs: usize, deadline: Duration) -> Vec<Figure> {
    let rx = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    let mut hooks: Vec<Webhook> = (0..BATCH - 1)
        .map(|i| webhook(rx.url(&format!("/fast/{i}"))))
        .collect();
    hooks.push(webhook(rx.url("/slow")));
    let sender = sender_over(&hooks, deadline, DeliveryLog::default());
    let event = event();
    let (mut nine, mut total) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        rx.log.take();
        let started = Instant::now();
        sender
            .handle(
                batch(&event, &hooks),
                Instant::now() + sender::FUNCTION_TIMEOUT,
            )
            .await;
        total.push(started.elapsed().as_secs_f64() * 1000.0);
        let fast: Vec<Instant> = rx
            .log
            .take()
            .into_iter()
            .filter(|(path, _, _)| path.starts_with("/fast/"))
            .map(|(_, _, at)| at)
            .collect();
        assert_eq!(fast.len(), BATCH - 1, "the 9 fast endpoints were reached");
        let last = fast.iter().max().copied().unwrap_or(started);
        nine.push(last.duration_since(started).as_secs_f64() * 1000.0);
    }
    let deadline_ms = deadline.as_secs_f64() * 1000.0;
    vec![
        Figure::new("9 fast endpoints all received after", "ms", &nine),
        Figure::new("batch with one silent endpoint took", "ms", &total)
            .with_target(&format!("deadline {deadline_ms:.0} ms + a few ms")),
    ]
}
