//! Log lines and metrics. Log lines are tracing's, formatted as Lambda's
//! logging controls ask (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`, as
//! `lambda_runtime`'s default subscriber does). Metrics are CloudWatch
//! embedded metric format (EMF) documents, one JSON object per line in the
//! same log stream: CloudWatch turns them into metrics, with no API call
//! from the function. They travel as tracing events with target
//! [`TARGET`], which a layer of their own writes as they are.

use std::io::Write as _;

use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "ProjectWebhooks";
/// The one dimension of every metric: the Lambda function's name
/// (`AWS_LAMBDA_FUNCTION_NAME`), so each stack's functions have their own.
pub const DIMENSION: &str = "FunctionName";
/// The tracing target metric documents travel under.
pub const TARGET: &str = "emf";

/// The metrics the functions publish (README, "Alarms"; the template's
/// alarms name them, and a test reads both).
pub mod metric {
    /// Sweeper: disable e-mails over their project's day of e-mails, left
    /// pending for the next day's allowance.
    pub const NOTICES_DEFERRED: &str = "NoticesDeferred";
    /// Sender: batch history writes that failed (their attempts are not in
    /// the delivery history; the deliveries stand).
    pub const HISTORY_WRITES_FAILED: &str = "HistoryWritesFailed";
    /// Sweeper: disable e-mails sent (to the owners or, refused, to the
    /// default recipient).
    pub const NOTICES_SENT: &str = "NoticesSent";
    /// Sender, per lane: deliveries POSTed and answered 2xx.
    pub const DELIVERED: &str = "Delivered";
    /// Sender, per lane: deliveries POSTed that failed (status, timeout,
    /// connection).
    pub const FAILED: &str = "Failed";
    /// Sender, per lane: records acknowledged without a POST (webhook
    /// deleted, disabled, unsubscribed).
    pub const SKIPPED: &str = "Skipped";
    /// Sender, per lane: records returned to their queue unsent (SQS
    /// delivers them again).
    pub const RETURNED: &str = "Returned";
    /// Sender, per lane: records moved to another lane.
    pub const MOVED: &str = "Moved";
    /// Sender, per lane: failed deliveries whose next attempt was queued.
    pub const RETRIES_QUEUED: &str = "RetriesQueued";
    /// Sender, waiting lane: retries seen before they were due and put back
    /// to sleep.
    pub const RETRIES_WAITING: &str = "RetriesWaiting";
    /// Sender, per lane: each POST's time to the response head, in
    /// milliseconds (CloudWatch computes p50 and p99 from the values).
    pub const POST_LATENCY: &str = "PostLatency";
    /// Config API: events published.
    pub const PUBLISHED: &str = "Published";
    /// Config API: deliveries queued by one publish.
    pub const FAN_OUT: &str = "FanOut";
    /// Sender, sweeper, config API: operational events the bus did not
    /// take (the state changes stand; the events are not put again).
    pub const OPERATIONAL_EVENTS_FAILED: &str = "OperationalEventsFailed";
    /// Every metric above.
    pub const ALL: [&str; 14] = [
        NOTICES_DEFERRED,
        HISTORY_WRITES_FAILED,
        NOTICES_SENT,
        DELIVERED,
        FAILED,
        SKIPPED,
        RETURNED,
        MOVED,
        RETRIES_QUEUED,
        RETRIES_WAITING,
        POST_LATENCY,
        PUBLISHED,
        FAN_OUT,
        OPERATIONAL_EVENTS_FAILED,
    ];
}

/// The dimension the sender's delivery metrics carry beside
/// [`DIMENSION`]: the lane (`fast`, `slow`, `waiting`).
pub const LANE_DIMENSION: &str = "Lane";
/// At most this many values of one metric in one document (CloudWatch's
/// limit).
pub const MAX_VALUES: usize = 100;

/// One EMF document under construction: metrics of this function, with
/// optional extra dimensions.
#[derive(Debug, Default)]
pub struct Emf {
    dimensions: Vec<(&'static str, String)>,
    metrics: Vec<(&'static str, &'static str, serde_json::Value)>,
}

impl Emf {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a dimension to every metric of the document.
    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    /// A count.
    pub fn count(mut self, name: &'static str, value: u64) -> Self {
        self.metrics.push((name, "Count", json!(value)));
        self
    }

    /// Milliseconds, one value per observation (at most [`MAX_VALUES`]
    /// kept); none is no metric.
    pub fn milliseconds(mut self, name: &'static str, values: &[f64]) -> Self {
        if !values.is_empty() {
            let kept = &values[..values.len().min(MAX_VALUES)];
            self.metrics.push((name, "Milliseconds", json!(kept)));
        }
        self
    }

    /// The document for `function` at `at_ms` (Unix milliseconds), in
    /// [`NAMESPACE`], dimensioned by [`DIMENSION`] and the extra ones.
    pub fn document(&self, function: &str, at_ms: i64) -> String {
        let mut names = vec![DIMENSION];
        names.extend(self.dimensions.iter().map(|(name, _)| *name));
        let mut doc = json!({
            "_aws": {
                "Timestamp": at_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [names],
                    "Metrics": self.metrics
                        .iter()
                        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
                        .collect::<Vec<_>>(),
                }],
            },
            DIMENSION: function,
        });
        for (name, value) in &self.dimensions {
            doc[*name] = json!(value);
        }
        for (name, _, value) in &self.metrics {
            doc[*name] = value.clone();
        }
        doc.to_string()
    }

    /// Publishes the document as this function's (nothing when it holds no
    /// metric).
    pub fn emit(self) {
        if self.metrics.is_empty() {
            return;
        }
        let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let doc = self.document(&function, at_ms);
        tracing::info!(target: TARGET, emf = doc.as_str());
    }
}

/// Publishes `counts` (metric name, value) as one EMF document of this
/// function.
pub fn count(counts: &[(&'static str, u64)]) {
    counts
        .iter()
        .fold(Emf::new(), |emf, (name, value)| emf.count(name, *value))
        .emit();
}

/// Writes metric documents to `writer` as they are, one per line.
pub struct MetricLines<W> {
    writer: W,
}

impl<W> MetricLines<W> {
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

impl<W> std::fmt::Debug for MetricLines<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricLines")
    }
}

/// The `emf` field of an event.
struct Document(Option<String>);

impl Visit for Document {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "emf" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: Subscriber, W: for<'w> MakeWriter<'w> + 'static> Layer<S> for MetricLines<W> {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut document = Document(None);
        event.record(&mut document);
        if let Some(line) = document.0 {
            let _ = writeln!(self.writer.make_writer(), "{line}");
        }
    }
}

/// Whether an event is a log line (not a metric document).
pub fn is_log(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.target() != TARGET
}

/// The process's subscriber, set once at cold start: log lines as
/// `lambda_runtime`'s default subscriber writes them, metric documents as
/// they are, both to stdout.
pub fn init() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|raw| raw.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let logs = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_writer(std::io::stdout);
    let logs = if json {
        logs.json().boxed()
    } else {
        logs.boxed()
    };
    let subscriber = tracing_subscriber::registry()
        .with(logs.with_filter(filter_fn(is_log)).with_filter(level))
        .with(MetricLines::new(std::io::stdout));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_embedded_metric_format() {
        let emf = Emf::new()
            .dimension(LANE_DIMENSION, "slow")
            .count(metric::DELIVERED, 3)
            .milliseconds(metric::POST_LATENCY, &[12.0, 250.5])
            .milliseconds("Unused", &[]);
        let doc: serde_json::Value =
            serde_json::from_str(&emf.document("stack-Sender", 1_764_547_200_000)).unwrap();
        assert_eq!(doc["_aws"]["Timestamp"], 1_764_547_200_000_i64);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "ProjectWebhooks");
        assert_eq!(directive["Dimensions"], json!([["FunctionName", "Lane"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "Delivered", "Unit": "Count"}, {"Name": "PostLatency", "Unit": "Milliseconds"}])
        );
        assert_eq!(doc["FunctionName"], "stack-Sender");
        assert_eq!(doc["Lane"], "slow");
        assert_eq!(doc["Delivered"], 3);
        assert_eq!(doc["PostLatency"], json!([12.0, 250.5]));
        assert!(doc.get("Unused").is_none());
        let many: Vec<f64> = (0..150).map(f64::from).collect();
        let doc: serde_json::Value =
            serde_json::from_str(&Emf::new().milliseconds("L", &many).document("f", 0)).unwrap();
        assert_eq!(doc["L"].as_array().unwrap().len(), MAX_VALUES);
    }
}
