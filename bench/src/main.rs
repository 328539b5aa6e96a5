//! `make bench`: measures the sender against a bare HTTP client, slow-endpoint
//! isolation, AWS requests per unit of work and their cost, cold start and
//! footprint, and the local stack end to end. Writes `BENCHMARKS.md` and
//! `bench/results.json` with exactly the figures it prints.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use shared::domain::history::DEFAULT_DELIVERY_LOG_DAYS;
use shared::domain::{DeliveryLog, PublishShare};

mod aws;
mod coldstart;
mod cost;
mod fleet;
mod items;
mod lanes;
mod memstore;
mod receiver;
mod speed;
mod stats;

use stats::Figure;

#[derive(Debug, Default, Serialize)]
struct Results {
    machine: BTreeMap<String, String>,
    command: String,
    sections: Vec<Section>,
    aws_calls: BTreeMap<String, BTreeMap<String, f64>>,
    cost: Vec<cost::Cost>,
    prices_as_of: String,
}

#[derive(Debug, Serialize)]
struct Section {
    title: String,
    method: String,
    figures: Vec<Figure>,
}

impl Results {
    fn section(&mut self, title: &str, method: &str, figures: Vec<Figure>) {
        println!("\n## {title}");
        for f in &figures {
            println!("{}", line(f));
        }
        self.sections.push(Section {
            title: title.to_owned(),
            method: method.to_owned(),
            figures,
        });
    }
}

fn line(f: &Figure) -> String {
    let target = f
        .target
        .as_deref()
        .map(|t| format!(" (target {t})"))
        .unwrap_or_default();
    if f.runs > 1 {
        format!(
            "{}: min {} / median {} / max {} {} over {} runs{target}",
            f.name,
            num(f.min),
            num(f.median),
            num(f.max),
            f.unit,
            f.runs
        )
    } else {
        format!("{}: {} {}{target}", f.name, num(f.median), f.unit)
    }
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "n/a".to_owned()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn machine() -> BTreeMap<String, String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    BTreeMap::from([
        ("cpu".into(), cpu),
        ("cores".into(), cores.to_string()),
        ("memory".into(), mem),
        ("kernel".into(), kernel.trim().to_owned()),
        ("arch".into(), std::env::consts::ARCH.to_owned()),
    ])
}

fn calls_line(calls: &BTreeMap<String, f64>) -> String {
    calls
        .iter()
        .map(|(op, n)| format!("{op} {}", num(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let root = integration_tests::workspace_root();
    let emulator = integration_tests::emulator();
    // The functions' release binaries sit beside this one (`make bench` builds them).
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .unwrap_or_else(|| root.join("target/release"));
    let mut results = Results {
        machine: machine(),
        command: "make bench".into(),
        prices_as_of: cost::PRICES_AS_OF.into(),
        ..Results::default()
    };
    println!("machine: {:?}", results.machine);

    // The fleet model alone: `BENCH_ONLY=fleet`; the lanes on the local
    // stack (and the model of that run) alone: `BENCH_ONLY=lanes`.
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "fleet") {
        fleet_sections(&mut results);
        return;
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "lanes") {
        lanes_section(&mut results).await;
        return;
    }

    // 1. Throughput. `BENCH_ONLY=throughput` stops after it (for profiling).
    let (figures, batch_s) = speed::throughput(15, 1_000).await;
    results.section(
        "Sender throughput vs a bare HTTP client",
        "The sender's delivery path (`Sender::handle` on SQS batches of 10: decode, look up the webhooks through the storage port backed by an in-memory store, build and sign the request, POST, classify, record, and add each attempt to the delivery history, serialized as a store would) against a bare reqwest loop posting the same envelope and Qase headers, unsigned, to the same loopback receiver in waves of 10; and the same bare loop with the Standard Webhooks headers signed per request, against the unsigned one. The same sender with the history off, against the one with it. 10,000 deliveries per run, 15 runs of the five loops interleaved in a rotating order, after a warm-up.",
        figures,
    );

    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "throughput") {
        return;
    }

    // 2. Isolation.
    let deadline = Duration::from_secs(2);
    results.section(
        "Slow-endpoint isolation",
        "One SQS batch of 10 records in which one endpoint accepts the connection and never answers; deadline 2 s. Time from the start of the batch until the last of the other 9 endpoints had received its request, and the batch's total duration.",
        speed::isolation(5, deadline).await,
    );

    // 3. AWS calls, with the delivery history on (as deployed) and off.
    let on = DeliveryLog::default();
    let healthy = aws::per_delivery(false, on, false).await;
    let failing = aws::per_delivery(true, on, false).await;
    let healthy_off = aws::per_delivery(false, DeliveryLog::off(), false).await;
    let failing_off = aws::per_delivery(true, DeliveryLog::off(), false).await;
    let healthy_events = aws::per_delivery(false, on, true).await;
    let mut figures = Vec::new();
    for (what, calls) in [
        ("healthy delivery", &healthy),
        ("failing delivery", &failing),
        ("healthy delivery, history off", &healthy_off),
        ("failing delivery, history off", &failing_off),
        (
            "healthy delivery, operational events on a bus",
            &healthy_events,
        ),
    ] {
        figures.push(Figure::once(
            &format!("AWS calls per {what}"),
            "calls",
            calls.values().sum(),
        ));
        results
            .aws_calls
            .insert(format!("per {what}"), calls.clone());
    }
    for n in [1, 10, 100] {
        let calls = aws::per_publish(n, PublishShare::off()).await;
        figures.push(Figure::once(
            &format!("AWS calls per publish to {n} subscribers"),
            "calls",
            calls.values().sum(),
        ));
        results
            .aws_calls
            .insert(format!("per publish to {n} subscribers"), calls);
    }
    let shared_rate = aws::per_publish(10, PublishShare::per_second(5)).await;
    figures.push(Figure::once(
        "AWS calls per publish to 10 subscribers, with the project's publish share (5/s)",
        "calls",
        shared_rate.values().sum(),
    ));
    results.aws_calls.insert(
        "per publish to 10 subscribers, with the publish share".into(),
        shared_rate,
    );
    let (keyed, repeat) = aws::per_keyed_publish(10).await;
    for (what, calls) in [
        ("publish to 10 subscribers with an Idempotency-Key", keyed),
        ("repeat of that publish with its key", repeat),
    ] {
        figures.push(Figure::once(
            &format!("AWS calls per {what}"),
            "calls",
            calls.values().sum(),
        ));
        results.aws_calls.insert(format!("per {what}"), calls);
    }
    let (recovered, steps) = aws::per_recovery(2_000).await;
    for (what, calls) in [
        (
            "1,000 deliveries of a bulk recovery (its steps, the sender's receives, slots, history and progress)",
            recovered,
        ),
        (
            "1,000 deliveries of a bulk recovery: its steps alone",
            steps,
        ),
    ] {
        figures.push(Figure::once(
            &format!("AWS calls per {what}"),
            "calls",
            calls.values().sum(),
        ));
        results.aws_calls.insert(format!("per {what}"), calls);
    }
    // Operational events: 50 webhooks each start failing, then recover.
    let (with_events, put) = aws::per_state_change(50, true).await;
    let (without_events, _) = aws::per_state_change(50, false).await;
    assert_eq!(put, 100, "one event per state change");
    figures.push(Figure::once(
        "dollars per 1,000 state changes for their operational events (EventBridge custom events, as many as the bus received)",
        "USD",
        put as f64 / 100.0 * 1000.0 * cost::EVENTBRIDGE_EVENT,
    ));
    for (what, calls) in [
        (
            "1,000 state changes (a webhook failing, then recovered), operational events on a bus",
            with_events,
        ),
        (
            "1,000 state changes, operational events off",
            without_events,
        ),
    ] {
        figures.push(Figure::once(
            &format!("AWS calls per {what}"),
            "calls",
            calls.values().sum(),
        ));
        results.aws_calls.insert(format!("per {what}"), calls);
    }
    for total in [1_000, 10_000] {
        let (read, calls) = aws::per_sweep(total).await;
        figures.push(
            Figure::once(
                &format!("items read by a sweep over {total} webhooks, 5 due"),
                "items",
                read as f64,
            )
            .with_target("5"),
        );
        figures.push(Figure::once(
            &format!("AWS calls per sweep over {total} webhooks, 5 due"),
            "calls",
            calls.values().sum(),
        ));
        results
            .aws_calls
            .insert(format!("per sweep over {total} webhooks, 5 due"), calls);
    }
    for (what, calls) in &results.aws_calls {
        println!("calls {what}: {}", calls_line(calls));
    }
    results.section(
        "AWS requests per unit of work",
        "Counted, not timed: an SDK interceptor on otherwise ordinary DynamoDB and SQS clients (and EventBridge's, where operational events are on) counts every call, against the moto emulator. A delivery is a publish to 10 webhooks and the SQS batch that delivers it, divided by 10, with the delivery history on (the default) and off; a state change is one of 50 webhooks starting to fail and then recovering (two each), the sender's calls alone, with the operational events put on a bus and without; a sweep is one run of the sweeper over a table of N webhooks of which 5 are due (items read is the Query's ScannedCount).",
        figures,
    );

    // The lanes: side by side on the local stack, and the fleet model.
    lanes_section(&mut results).await;
    fleet_sections(&mut results);

    // 6. End to end (before the cost model, which uses its publish time).
    let (figures, publish_ms) = aws::end_to_end(1_000).await;
    results.section(
        "End to end on the local stack",
        "1,000 events published through the config API router (8 at a time) to one webhook pointing at a loopback receiver, delivered by the sender fed from the emulated SQS queue by 5 pollers (the number of pollers the Lambda SQS event source mapping starts with); latency from the start of each publish to its receipt.",
        figures,
    );

    // 4. Cost, and the history's items.
    let sizes = items::sizes();
    let history = |event_bytes| cost::History {
        attempt_bytes: sizes.attempt,
        event_bytes,
        event_index_bytes: sizes.event_index,
        days: f64::from(DEFAULT_DELIVERY_LOG_DAYS),
    };
    for (scenario, calls, log) in [
        ("healthy webhooks", &healthy, Some(history(sizes.event))),
        ("failing webhooks", &failing, Some(history(sizes.event))),
        ("healthy webhooks, history off", &healthy_off, None),
        ("failing webhooks, history off", &failing_off, None),
        (
            "healthy webhooks, 256 KiB events",
            &healthy,
            Some(history(sizes.largest_event)),
        ),
    ] {
        let c = cost::model(scenario, calls, batch_s, publish_ms / 1000.0, log);
        println!(
            "cost per million deliveries ({scenario}): ${:.2} ({})",
            c.total_per_million,
            c.per_million
                .iter()
                .map(|(k, v)| format!("{k} ${v:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        results.cost.push(c);
    }
    let cost_figures = results
        .cost
        .iter()
        .map(|c| {
            Figure::once(
                &format!("dollars per million deliveries, {}", c.scenario),
                "USD",
                c.total_per_million,
            )
        })
        .collect();
    results.section(
        "Cost model",
        &format!(
            "Per million deliveries, each publish fanning out to {} webhooks: Lambda (128 MB, arm64) requests and GB-seconds from the measured handler time of a 10-record batch (median of section 1) and of a publish (median publish call of the end-to-end run, an upper bound: it includes the emulator), SQS requests, DynamoDB read and write units and API Gateway requests from the counted calls. With the delivery history on (the default, {} days), one attempt item per delivery and one event item per publish with its entry in the `events` index, write units by their measured sizes (next section), and their storage for the retention. The 256 KiB scenario changes only the stored event's size (its SQS and Lambda figures are those of the typical event). Prices: {}.",
            cost::FANOUT,
            DEFAULT_DELIVERY_LOG_DAYS,
            cost::PRICES_AS_OF
        ),
        cost_figures,
    );
    results.section(
        "Delivery history items",
        "Sizes as DynamoDB bills them (attribute names plus values), of the items built by the code that stores them: an attempt of the typical event (`run.completed`, 171 bytes as Qase sends it) with its signed request headers, the secret masked, and a short response; the same attempt failed with a full 1 KiB response body; the stored event, typical and the largest accepted (a 256 KiB envelope), and the typical event's entry in the `events` index (written with it, kept as long). A write costs one unit per started KiB.",
        vec![
            Figure::once("attempt item, typical event, delivered", "bytes", sizes.attempt as f64),
            Figure::once(
                "attempt item, failed with a 1 KiB response body",
                "bytes",
                sizes.attempt_full_body as f64,
            ),
            Figure::once("event item, typical event", "bytes", sizes.event as f64),
            Figure::once(
                "its entry in the events index (a project's events by time)",
                "bytes",
                sizes.event_index as f64,
            ),
            Figure::once(
                "event item, 256 KiB envelope",
                "bytes",
                sizes.largest_event as f64,
            ),
        ],
    );

    // 5. Cold start and footprint.
    let mut figures = Vec::new();
    let aws_env = |extra: &[(&'static str, String)]| {
        let mut env: Vec<(&'static str, String)> = vec![
            ("AWS_ENDPOINT_URL", emulator.endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "bench".into()),
            ("AWS_SECRET_ACCESS_KEY", "bench".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ];
        env.extend_from_slice(extra);
        env
    };
    let stack = integration_tests::stack::Stack::start().await;
    let rx = receiver::Receiver::start().await.unwrap();
    let event = speed::event();
    let envelope = event.envelope().unwrap();
    // One SQS batch of 10 to answering endpoints, one to silent ones.
    let mut batch_of = Vec::new();
    for path in ["/ok", "/slow"] {
        let ids = stack
            .webhooks("BENCH", 10, |i| rx.url(&format!("{path}/{i}")))
            .await;
        let mut records = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let message = shared::domain::DeliveryMessage::new(
                &event,
                shared::domain::WebhookId::parse(id).unwrap(),
                envelope.clone(),
            );
            records.push(json!({"messageId": format!("m{i}"), "body": message.encode().unwrap(), "eventSource": "aws:sqs"}));
        }
        batch_of.push(json!({ "Records": records }).to_string());
    }
    let (fast_batch, slow_batch) = (batch_of[0].clone(), batch_of[1].clone());
    let table = stack.api.store.table().to_owned();
    let api_event = std::fs::read_to_string(root.join("events/api-list-webhooks.json")).unwrap();
    figures.extend(
        coldstart::figures(
            "config-api",
            bin_dir.join("config-api"),
            &aws_env(&[
                ("TABLE_NAME", table.clone()),
                ("DELIVERY_QUEUE_URL", stack.api.queue_url.clone()),
                ("SLOW_QUEUE_URL", stack.api.queue_urls.slow.clone()),
                ("WAITING_QUEUE_URL", stack.api.queue_urls.waiting.clone()),
                ("ADMIN_TOKEN", "replace-with-your-admin-token".into()),
            ]),
            &api_event,
            5,
        )
        .await,
    );
    let sender_env = aws_env(&[
        ("TABLE_NAME", table.clone()),
        ("ENDPOINT_ALLOW_CIDRS", "127.0.0.0/8".into()),
        ("DELIVERY_DEADLINE", "1s".into()),
    ]);
    figures.extend(
        coldstart::figures(
            "sender",
            bin_dir.join("sender"),
            &sender_env,
            &fast_batch,
            5,
        )
        .await,
    );
    let mut in_flight = Vec::new();
    for _ in 0..5 {
        if let Ok((_, kib)) =
            coldstart::cold_start(&bin_dir.join("sender"), &sender_env, &slow_batch).await
        {
            in_flight.push(kib as f64);
        }
    }
    figures.push(Figure::new(
        "sender: peak RSS with 10 deliveries in flight",
        "KiB",
        &in_flight,
    ));
    let sweep_event = std::fs::read_to_string(root.join("events/scheduled-sweep.json")).unwrap();
    figures.extend(
        coldstart::figures(
            "sweeper",
            bin_dir.join("sweeper"),
            &aws_env(&[
                ("TABLE_NAME", table.clone()),
                (
                    "MAIL_FROM",
                    integration_tests::mail::verified_sender().await,
                ),
                ("DEFAULT_NOTIFY_EMAIL", "ops@example.com".into()),
            ]),
            &sweep_event,
            5,
        )
        .await,
    );
    for function in ["ConfigApiFunction", "SenderFunction", "SweeperFunction"] {
        let path = root.join(".aws-sam/build").join(function).join("bootstrap");
        if path.exists() {
            figures.push(Figure::once(
                &format!("{function}: arm64 bootstrap from sam build"),
                "KiB",
                coldstart::size_kib(&path),
            ));
        }
    }
    results.section(
        "Cold start and footprint",
        "Each function's release binary (this machine's x86_64 build of the same profile as the Lambda build: opt-level s, LTO, one codegen unit, stripped, panic=abort) started against a minimal Lambda runtime API served by the bench, timed from process start to the POST of its first response; the first invocation does real work against the emulator (config-api: GET /projects/DEMO/webhooks; sender: a batch of 10 deliveries to a loopback receiver; sweeper: the scheduled sample). Peak RSS is VmHWM after the first response; for the in-flight figure the sender's batch goes to 10 endpoints that never answer, with a 1 s deadline, so all 10 requests are open at once.",
        figures,
    );

    let elapsed = started.elapsed().as_secs_f64();
    println!("\nbench finished in {elapsed:.0} s");
    write_reports(&root, &results, elapsed);
}

/// Healthy deliveries with and without silent endpoints taking half of the
/// traffic, on the local stack; and the same runs in the fleet model.
async fn lanes_section(results: &mut Results) {
    let (events, rate, deadline, pairs) =
        (300, 10.0, shared::domain::delivery::DEFAULT_DEADLINE, 3);
    let on = DeliveryLog::default();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for pair in 0..pairs {
        with.push(lanes::local_run(true, events, rate, deadline, on, pair == 0).await);
        without.push(lanes::local_run(false, events, rate, deadline, on, false).await);
    }
    let p = |v: &[f64], q: f64| stats::quantile(v, q);
    let p99s =
        |runs: &[lanes::LocalRun]| runs.iter().map(|r| p(&r.healthy, 0.99)).collect::<Vec<_>>();
    let p50s =
        |runs: &[lanes::LocalRun]| runs.iter().map(|r| p(&r.healthy, 0.5)).collect::<Vec<_>>();
    let ratios: Vec<f64> = with
        .iter()
        .zip(&without)
        .map(|(w, o)| p(&w.healthy, 0.99) / p(&o.healthy, 0.99))
        .collect();
    let arrived: Vec<f64> = with.iter().map(|r| r.healthy.len() as f64).collect();
    // Each run's p99 is one of its few slowest deliveries; over all the runs
    // of each kind it rests on ten times as many.
    let pool = |runs: &[lanes::LocalRun]| {
        runs.iter()
            .flat_map(|r| r.healthy.iter().copied())
            .collect::<Vec<_>>()
    };
    let pooled_ratio = p(&pool(&with), 0.99) / p(&pool(&without), 0.99);
    let silent_done = with[0].silent_done.unwrap_or(f64::NAN);
    println!(
        "lanes: healthy p99 with silent {:?}, without {:?}, ratios {ratios:?}",
        p99s(&with),
        p99s(&without)
    );
    let mut figures = vec![
        Figure::new(
            "healthy deliveries, p50, with the silent endpoint",
            "s",
            &p50s(&with),
        ),
        Figure::new(
            "healthy deliveries, p99, with the silent endpoint",
            "s",
            &p99s(&with),
        ),
        Figure::new("healthy deliveries, p50, without", "s", &p50s(&without)),
        Figure::new("healthy deliveries, p99, without", "s", &p99s(&without)),
        Figure::new(
            "healthy p99 with / without, per pair of runs",
            "ratio",
            &ratios,
        ),
        Figure::once(
            "healthy p99 with / without, all runs pooled",
            "ratio",
            pooled_ratio,
        )
        .with_target("<= 1.2"),
        Figure::new("healthy deliveries that arrived, with", "count", &arrived)
            .with_target(&events.to_string()),
        Figure::once(
            "every delivery to the silent endpoint attempted and recorded after",
            "s",
            silent_done,
        ),
    ];
    results.section(
        "Lanes on the local stack, side by side",
        &format!("{pairs} pairs of runs, each pair one with and one without, on the local stack as `make dev` runs it (the emulator's queues, {} pollers per lane), a {} s deadline. 10 webhooks with healthy endpoints, each in a project of its own, and another project's webhook. {events} events to the healthy ones at {rate} per second, and as many to the other one, interleaved (half of all traffic): in the first run its endpoint accepts the connection and never answers (its first timeout already recorded), in the second it answers at once, so both runs carry the same traffic. Publish to arrival of each delivery to the first 10. Before the lanes, the same setup on `make dev` delivered healthy events 60 to 105 s late.", 4, deadline.as_secs()),
        figures.clone(),
    );
    // The same runs in the model, with the emulator's latencies.
    let pooled = |runs: &[lanes::LocalRun]| {
        runs.iter()
            .flat_map(|r| r.healthy.iter().copied())
            .collect::<Vec<_>>()
    };
    let publish: Vec<f64> = with
        .iter()
        .chain(&without)
        .flat_map(|r| r.publish.iter().copied())
        .collect();
    let (with_all, without_all) = (pooled(&with), pooled(&without));
    let latencies = lanes::emulator_latencies(&publish).await;
    println!("emulator latencies: {latencies:?}");
    let model_with = lanes::modelled(true, events, rate, deadline, latencies);
    let model_without = lanes::modelled(false, events, rate, deadline, latencies);
    figures.clear();
    for (what, real, model) in [
        (
            "healthy p50, with the silent endpoint",
            p(&with_all, 0.5),
            p(&model_with.healthy, 0.5),
        ),
        (
            "healthy p99, with the silent endpoint",
            p(&with_all, 0.99),
            p(&model_with.healthy, 0.99),
        ),
        (
            "healthy p50, without",
            p(&without_all, 0.5),
            p(&model_without.healthy, 0.5),
        ),
        (
            "healthy p99, without",
            p(&without_all, 0.99),
            p(&model_without.healthy, 0.99),
        ),
        (
            "deliveries to the silent endpoint all done after",
            silent_done,
            model_with.silent_done.unwrap_or(f64::NAN),
        ),
    ] {
        figures.push(Figure::once(&format!("real: {what}"), "s", real));
        figures.push(Figure::once(&format!("model: {what}"), "s", model));
        figures.push(Figure::once(
            &format!("model / real: {what}"),
            "ratio",
            model / real,
        ));
    }
    results.section(
        "The fleet model against the real run",
        &format!("The runs above, modelled (healthy figures pooled over the runs): the same webhooks, rate, deadline, pollers and batches, with the emulator's own latencies measured just before (medians of 10: a poller's pickup of a new message {:.1} ms, BatchGetItem {:.1} ms, UpdateItem {:.1} ms, SendMessage {:.1} ms, a publish call {:.1} ms).", latencies.pickup_us as f64 / 1e3, latencies.read_us as f64 / 1e3, latencies.write_us as f64 / 1e3, latencies.send_us as f64 / 1e3, latencies.publish_us as f64 / 1e3),
        figures,
    );
}

/// The fleet model's runs (virtual time): the fleet in both designs,
/// fairness in the slow lane, and one hot webhook.
fn fleet_sections(results: &mut Results) {
    use fleet::{Design, Onset, Scenario};
    let hours = 6;
    let mut figures = Vec::new();
    let mut dollars = Vec::new();
    for (name, design, onset) in [
        ("single lane (before)", Design::SingleLane, Onset::Steady),
        ("lanes", Design::Lanes { fair: true }, Onset::Steady),
        (
            "single lane (before), all at once",
            Design::SingleLane,
            Onset::AllAtOnce,
        ),
        (
            "lanes, all at once",
            Design::Lanes { fair: true },
            Onset::AllAtOnce,
        ),
    ] {
        let started = Instant::now();
        let report = fleet::run(&Scenario::fleet(design, hours * 3600, onset), None);
        println!(
            "fleet {name}: {:.1} s real, {} posts, backlog {:?}",
            started.elapsed().as_secs_f64(),
            report.posts,
            report.backlog
        );
        let q = |v: f64| stats::quantile(&report.healthy, v);
        let steady_lanes = onset == Onset::Steady && design != Design::SingleLane;
        let target = |f: Figure, t: &str| if steady_lanes { f.with_target(t) } else { f };
        figures.push(Figure::once(
            &format!("{name}: healthy deliveries, p50"),
            "s",
            q(0.5),
        ));
        figures.push(target(
            Figure::once(&format!("{name}: healthy deliveries, p99"), "s", q(0.99)),
            "<= 2",
        ));
        if onset == Onset::Steady {
            for (at, fast, slow, waiting) in report.backlog.iter().skip(2).step_by(2) {
                figures.push(Figure::once(
                    &format!("{name}: messages waiting after {:.0} h", at / 3600.0),
                    "messages",
                    (fast + slow + waiting) as f64,
                ));
            }
            dollars.push(report.dollars_per_million());
        }
        figures.push(Figure::once(
            &format!("{name}: deliveries made in {hours} h"),
            "POSTs",
            report.posts as f64,
        ));
        figures.push(Figure::once(
            &format!("{name}: most messages waiting"),
            "messages",
            report.max_backlog() as f64,
        ));
        figures.push(Figure::once(
            &format!("{name}: messages waiting at the end"),
            "messages",
            report.final_backlog() as f64,
        ));
        figures.push(Figure::once(
            &format!("{name}: Lambda GB-seconds per million deliveries"),
            "GB-s",
            report.gb_seconds / report.posts as f64 * 1e6,
        ));
        figures.push(Figure::once(
            &format!("{name}: dollars per million deliveries"),
            "USD",
            report.dollars_per_million(),
        ));
        figures.push(Figure::once(
            &format!("{name}: busiest webhook item"),
            "write units/s",
            report.busiest_webhook_item as f64,
        ));
        figures.push(Figure::once(
            &format!("{name}: busiest history key"),
            "write units/s",
            report.busiest_history_key as f64,
        ));
        let late = report.healthy.iter().filter(|l| **l >= 2.0).count();
        figures.push(Figure::once(
            &format!("{name}: healthy deliveries taking 2 s or more"),
            "%",
            late as f64 * 100.0 / report.healthy.len().max(1) as f64,
        ));
        figures.push(Figure::once(
            &format!("{name}: the last of them published after"),
            "s",
            report.last_late.unwrap_or(0.0),
        ));
    }
    if let [single, lanes] = dollars[..] {
        figures.push(
            Figure::once(
                "lanes / single lane: dollars per million deliveries",
                "ratio",
                lanes / single,
            )
            .with_target("<= 1.1"),
        );
    }
    results.section(
        "Fleet model",
        "A discrete-event simulation in virtual time (bench/src/fleet.rs) of the queues, the event source mappings and the sender's timing, calling the domain crate's own rules for every routing, recording and retry decision. 10,000 webhooks in 1,000 projects: 5 % never answer (every POST times out at 15 s), 5 % answer 503 at once, 1 % answer 200 after 5 s, the rest 200 after a log-normal time (median 80 ms); 500 events per second, each to one webhook at random, for 6 simulated hours; the template's defaults.",
        figures,
    );

    let mut figures = Vec::new();
    for (name, fair) in [("oldest first", false), ("projects in turn", true)] {
        let report = fleet::run(&fleet::fairness(fair, 100_000, 3600), Some(1));
        let q = |v: f64| stats::quantile(&report.watched, v);
        println!("fairness {name}: backlog {:?}", report.backlog);
        for (label, value) in [("p50", q(0.5)), ("p99", q(0.99)), ("max", q(1.0))] {
            figures.push(Figure::once(
                &format!("slow lane served {name}: the recovering project's deliveries, {label}"),
                "s",
                value,
            ));
        }
    }
    results.section(
        "Fleet model: fairness in the slow lane",
        "One project publishes 100,000 events at once to 100 endpoints that never answer (known as failing, so all in the slow lane); another project's 100 endpoints are failing and recovering (half their answers 503), and get 5 events per second. Publish-to-arrival of the second project's deliveries over one simulated hour, with the slow lane served oldest first and with projects in turn (each slow-lane message carries its project as message group; SQS fair queues serve a backlogged group's neighbours first). Default parameters.",
        figures,
    );

    let mut figures = Vec::new();
    for (name, design) in [
        ("single lane (before)", Design::SingleLane),
        ("lanes", Design::Lanes { fair: true }),
    ] {
        let report = fleet::run(&fleet::retried(design), None);
        figures.push(Figure::once(
            &format!("{name}: POSTs"),
            "POSTs",
            report.posts as f64,
        ));
        figures.push(Figure::once(
            &format!("{name}: queue requests"),
            "SQS requests",
            report.sqs_requests as f64,
        ));
        figures.push(Figure::once(
            &format!("{name}: sender invocations"),
            "invocations",
            report.invocations as f64,
        ));
    }
    results.section(
        "Fleet model: one retried delivery over the whole standard schedule",
        "One delivery to an endpoint that answers 503 every time, `retry_policy: \"standard\"`: 10 attempts over 3.5 days. Queue requests count each receive, delete, send and visibility change of its messages; invocations, the batches it was in (alone here). Before, a wait hopped through the delivery queue every 15 minutes; now it waits in the waiting lane, looked at once per 12 hours at most.",
        figures,
    );

    let mut figures = Vec::new();
    for (design_name, design) in [
        ("before", Design::SingleLane),
        ("now", Design::Lanes { fair: true }),
    ] {
        for (name, endpoint) in [
            ("healthy", fleet::Endpoint::Healthy),
            ("answering 503", fleet::Endpoint::Failing),
        ] {
            let report = fleet::run(&fleet::hot(design, endpoint, 1000.0), None);
            let target = |f: Figure| {
                if design_name == "now" {
                    f.with_target("<= 1000")
                } else {
                    f
                }
            };
            figures.push(target(Figure::once(
                &format!(
                    "{design_name}: 1,000 deliveries/s to one {name} webhook: busiest history key"
                ),
                "write units/s",
                report.busiest_history_key as f64,
            )));
            figures.push(target(Figure::once(
                &format!(
                    "{design_name}: 1,000 deliveries/s to one {name} webhook: its webhook item"
                ),
                "write units/s",
                report.busiest_webhook_item as f64,
            )));
        }
    }
    // One project publishing 5,000 events a second: its partition's reads
    // (the webhook list of each accepted publish, strongly consistent, 4 KB
    // a unit) and its counter's writes, by the share's rule.
    let list_units = (100 * items::webhook_bytes()).div_ceil(4096) as f64;
    for (what, accepted) in [
        ("with no share (before)", 5_000.0),
        ("with the share at its maximum (100/s)", 100.0),
    ] {
        let figure = Figure::once(
            &format!(
                "one project at 5,000 publishes/s, 100 webhooks, {what}: its webhook partition"
            ),
            "read units/s",
            accepted * list_units,
        );
        figures.push(if accepted < 5_000.0 {
            figure.with_target("<= 3000")
        } else {
            figure
        });
    }
    figures.push(
        Figure::once(
            "one project at 5,000 publishes/s, the share at 100/s: its publish counter (accepted, and one refusal per API instance and second, 10 instances)",
            "write units/s",
            100.0 + 10.0,
        )
        .with_target("<= 1000"),
    );
    results.section(
        "Fleet model: one hot webhook",
        "One webhook receiving 1,000 deliveries per second for a simulated minute (the fast lane sized to keep up: 40 concurrent batches), before the lanes and now. The most write units one DynamoDB key took in one second: the webhook's history partition (one unit per attempt of a typical event; a failed attempt with a 1 KiB response body takes 2), and its item (failure and state writes). And one project publishing 5,000 events a second, from the rules rather than the simulation: each accepted publish reads its webhooks (100 items of the size measured in the next section's code, strongly consistent) and counts itself. DynamoDB allows 1,000 write units and 3,000 read units per second per partition.",
        figures,
    );
}

/// Whether a figure meets a target of the form `>= x`, `<= x` or `x`.
fn target_met(f: &Figure) -> Option<bool> {
    let target = f.target.as_deref()?.trim();
    if let Some(bound) = target.strip_prefix(">=") {
        return bound.trim().parse::<f64>().ok().map(|b| f.median >= b);
    }
    if let Some(bound) = target.strip_prefix("<=") {
        return bound.trim().parse::<f64>().ok().map(|b| f.median <= b);
    }
    target
        .parse::<f64>()
        .ok()
        .map(|exact| (f.median - exact).abs() < 1e-9 && (f.max - exact).abs() < 1e-9)
}

fn write_reports(root: &std::path::Path, results: &Results, elapsed: f64) {
    let json = serde_json::to_string_pretty(results).unwrap();
    std::fs::write(root.join("bench/results.json"), json + "\n").unwrap();
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `{}` (the bench took {elapsed:.0} s); every figure below is one that run printed. Timings are min / median / max over repeated runs on one machine in one run; compare ratios, not absolute times, across machines. Machine-readable: `bench/results.json`.\n",
        results.command
    );
    let _ = writeln!(
        md,
        "Machine: {}.\n",
        results
            .machine
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for section in &results.sections {
        let _ = writeln!(md, "## {}\n\n{}\n", section.title, section.method);
        let _ = writeln!(
            md,
            "| figure | min | median | max | unit | runs | target |\n|---|---|---|---|---|---|---|"
        );
        for f in &section.figures {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                f.name,
                num(f.min),
                num(f.median),
                num(f.max),
                f.unit,
                f.runs,
                f.target.as_deref().unwrap_or("")
            );
        }
        let _ = writeln!(md);
        if section.title == "AWS requests per unit of work" {
            let _ = writeln!(md, "| unit of work | calls by operation |\n|---|---|");
            for (what, calls) in &results.aws_calls {
                let _ = writeln!(md, "| {what} | {} |", calls_line(calls));
            }
            let _ = writeln!(md);
        }
        if section.title == "Cost model" {
            let _ = writeln!(
                md,
                "| scenario | USD per million deliveries, by service |\n|---|---|"
            );
            for c in &results.cost {
                let _ = writeln!(
                    md,
                    "| {} | {} |",
                    c.scenario,
                    c.per_million
                        .iter()
                        .map(|(k, v)| format!("{k} {v:.3}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let _ = writeln!(md);
        }
    }
    let _ = writeln!(md, "## Targets\n");
    for section in &results.sections {
        for f in section.figures.iter().filter(|f| f.target.is_some()) {
            let verdict = match target_met(f) {
                Some(true) => "met",
                Some(false) => "MISSED (see below)",
                None => "for reading, not a pass/fail bound",
            };
            let _ = writeln!(
                md,
                "- {}: median {} {}, target {}: {verdict}.",
                f.name,
                num(f.median),
                f.unit,
                f.target.as_deref().unwrap_or("")
            );
        }
    }
    let _ = writeln!(md);
    let notes = std::fs::read_to_string(root.join("bench/NOTES.md")).unwrap_or_default();
    if !notes.is_empty() {
        let _ = writeln!(md, "{notes}");
    }
    std::fs::write(root.join("BENCHMARKS.md"), md).unwrap();
}
